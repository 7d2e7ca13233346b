"""Cursor-on-Target: the type table, encoders, a hardened parser and TAK transports.

Protocol code only: nothing here imports the HTTP layer. The gateway worker
(``workers/cot.py``) wires it to the state cache, the registry and NATS.
"""

"""The MAVLink bridge: drones and ground vehicles over MAVLink 2 (and 1) ↔ NATS.

``overwatch mavlink`` (or ``serve`` with ``OVERWATCH_MAVLINK=true``) talks MAVLink on
UDP, TCP and serial links, publishes each vehicle's telemetry to NATS like any device,
and turns the command API's commands into MAVLink commands. Nothing in this package
imports the HTTP side; the console reads what it publishes from EntityState.
See ``docs/mavlink.md``.
"""

"""Data contracts: msgspec Structs for KV values, NATS payloads and registry records.

These are the shapes external clients rely on (``../shared/seeds/kv-entitystate-spec.md``,
``downstream-data-pipeline-prd.md``); ``docs/data-contracts.md`` documents them.
"""

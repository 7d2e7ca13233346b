"""The NATS console's HTTP side: one controller per noun (streams, consumers, server, messages, kv, dlq)."""

"""The NATS console's services: streams, consumers, messages, the server view, KV buckets, dead letters."""

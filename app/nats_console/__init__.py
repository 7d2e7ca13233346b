"""The NATS console: streams, consumers, message browser, live tail and server view."""

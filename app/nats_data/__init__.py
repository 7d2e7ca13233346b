"""The NATS console's data pages: the key-value browser and the dead-letter queue."""

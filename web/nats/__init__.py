"""nats package."""

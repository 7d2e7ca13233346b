"""nats_console package."""

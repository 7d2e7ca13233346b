"""NATS workers: one module per consumer, plus the detection worker and the simulator."""

-- NATS credentials come in two kinds: 'device' (publishes its organisation's data) and
-- 'reader' (an integrator: reads state, events, entities and telemetry; never publishes).
-- Every credential issued before readers existed is a device.
ALTER TABLE api_keys ADD COLUMN nats_kind TEXT NOT NULL DEFAULT 'device';

-- Alert rules over entity state and system metrics, their firing/resolved events,
-- and the metric samples behind /system/metrics.
CREATE TABLE alert_rules (
    rule_id       TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    threshold     REAL NOT NULL,
    severity      TEXT NOT NULL,
    duration_s    REAL NOT NULL DEFAULT 0,
    cooldown_s    REAL NOT NULL DEFAULT 0,
    window_s      REAL NOT NULL DEFAULT 300,
    enabled       INTEGER NOT NULL DEFAULT 1,
    org_id        TEXT NOT NULL DEFAULT '',
    entity_id     TEXT NOT NULL DEFAULT '',
    snoozed_until REAL,
    snoozed_by    TEXT,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- One row per firing; resolved_at is set when the condition stops holding.
CREATE TABLE rule_events (
    event_id        TEXT PRIMARY KEY,
    rule_id         TEXT NOT NULL,
    rule_name       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    org_id          TEXT NOT NULL DEFAULT '',
    entity_id       TEXT NOT NULL DEFAULT '',
    severity        TEXT NOT NULL,
    value           REAL NOT NULL,
    threshold       REAL NOT NULL,
    alert_id        TEXT NOT NULL,
    fired_at        TEXT NOT NULL,
    resolved_at     TEXT,
    resolved_value  REAL,
    acknowledged_by TEXT,
    acknowledged_at TEXT
);
CREATE INDEX idx_rule_events_fired ON rule_events(fired_at DESC);
CREATE INDEX idx_rule_events_alert ON rule_events(alert_id, fired_at DESC);

-- Sampled every OVERWATCH_METRICS_INTERVAL seconds, pruned after OVERWATCH_METRICS_RETENTION_HOURS.
CREATE TABLE metric_samples (
    series TEXT NOT NULL,
    ts     REAL NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;
CREATE INDEX idx_metric_samples_ts ON metric_samples(ts);

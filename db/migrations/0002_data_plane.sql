-- Data plane: position tracks, command lifecycle, detection history, alerts.
-- Every table here is bounded by retention pruning (see db/retention.py).

-- Downsampled position history for trails and replay. ts = epoch seconds (UTC).
CREATE TABLE tracks (
    entity_id TEXT NOT NULL,
    ts        REAL NOT NULL,
    latitude  REAL NOT NULL,
    longitude REAL NOT NULL,
    altitude  REAL,
    heading   REAL,
    speed     REAL,
    battery   REAL,
    PRIMARY KEY (entity_id, ts)
) WITHOUT ROWID;
CREATE INDEX idx_tracks_ts ON tracks(ts);

CREATE TABLE commands (
    command_id   TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    command      TEXT NOT NULL,
    params       TEXT NOT NULL DEFAULT '{}',
    status       TEXT NOT NULL CHECK (status IN ('queued', 'delivered', 'accepted', 'completed', 'failed', 'expired')),
    detail       TEXT NOT NULL DEFAULT '',
    issued_by    TEXT NOT NULL DEFAULT '',
    issued_at    TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX idx_commands_entity ON commands(entity_id, issued_at DESC);
CREATE INDEX idx_commands_open ON commands(status) WHERE status IN ('queued', 'delivered', 'accepted');

-- Detection events as received (bounded); the timeline of an ISR entity.
CREATE TABLE detections (
    id           INTEGER PRIMARY KEY,
    entity_id    TEXT NOT NULL,
    org_id       TEXT NOT NULL DEFAULT '',
    track_id     TEXT NOT NULL,
    label        TEXT NOT NULL,
    confidence   REAL NOT NULL,
    threat_level TEXT NOT NULL DEFAULT 'NORMAL',
    event_type   TEXT NOT NULL,
    bbox         TEXT NOT NULL DEFAULT '{}',
    metadata     TEXT NOT NULL DEFAULT '{}',
    ts           TEXT NOT NULL,
    received_at  REAL NOT NULL
);
CREATE INDEX idx_detections_entity ON detections(entity_id, id DESC);
CREATE INDEX idx_detections_received ON detections(received_at);

-- Alerts the console shows: threat (per entity+track), offline, battery, rule alerts.
CREATE TABLE alerts (
    alert_id        TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('threat', 'offline', 'battery', 'device', 'rule')),
    severity        TEXT NOT NULL CHECK (severity IN ('critical', 'high', 'elevated', 'warning', 'info')),
    org_id          TEXT NOT NULL DEFAULT '',
    entity_id       TEXT NOT NULL DEFAULT '',
    track_id        TEXT NOT NULL DEFAULT '',
    title           TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL CHECK (status IN ('active', 'cleared')),
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    cleared_at      TEXT,
    data            TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_alerts_status ON alerts(status, updated_at DESC);
CREATE INDEX idx_alerts_entity ON alerts(entity_id, updated_at DESC);
CREATE INDEX idx_alerts_unacked ON alerts(acknowledged_at) WHERE acknowledged_at IS NULL;

-- Per-node projections (workers/projection.py): the last stream sequence each one applied,
-- written in the same transaction as what it applied, so a restarted node resumes exactly
-- there (nothing applied twice, nothing skipped) and an empty database rebuilds from the stream.
CREATE TABLE projection_cursors (
    name       TEXT PRIMARY KEY,
    stream     TEXT NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    updated_at REAL NOT NULL
);

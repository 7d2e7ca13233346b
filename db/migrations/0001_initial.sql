-- Foundation: key/value metadata and the registry projection (organisations, entities).
-- The registry's source of truth is the CONSTELLATION_REGISTRY KV bucket in NATS; these
-- tables are this node's projection of it (see docs/decisions.md, "registry in NATS").

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE organizations (
    org_id      TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    org_type    TEXT NOT NULL CHECK (org_type IN ('military', 'civilian', 'commercial', 'ngo')),
    description TEXT NOT NULL DEFAULT '',
    metadata    TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    revision    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_organizations_name ON organizations(name);

-- No foreign key to organizations: a replayed registry may deliver an entity before
-- the latest revision of its organisation.
CREATE TABLE entities (
    entity_id    TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    entity_type  TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'unknown',
    priority     TEXT NOT NULL DEFAULT 'normal',
    latitude     REAL,
    longitude    REAL,
    altitude     REAL,
    metadata     TEXT NOT NULL DEFAULT '{}',
    video_config TEXT NOT NULL DEFAULT '{}',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    revision     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_entities_org ON entities(org_id);
CREATE INDEX idx_entities_type ON entities(entity_type);

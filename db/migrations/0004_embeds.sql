-- Embeds an admin made public (readable without signing in, framable by OVERWATCH_EMBED_ORIGINS).
CREATE TABLE public_embeds (
    kind       TEXT NOT NULL CHECK (kind IN ('entity', 'fleet')),
    target     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (kind, target)
) WITHOUT ROWID;

-- Templates and their dependency layers. A layer is content-addressed (its
-- id is the SHA-256 of what it installs); a template points at the ready
-- layer its boxes get, and a layer a template points at cannot be deleted.
-- JSON is TEXT; times are Unix milliseconds.

CREATE TABLE layers (
    id            TEXT PRIMARY KEY,
    runtime       TEXT NOT NULL,
    interpreter   TEXT NOT NULL,
    packages      TEXT NOT NULL,
    package_index TEXT NOT NULL,
    status        TEXT NOT NULL,
    error         TEXT,
    log           TEXT NOT NULL,
    locked        TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    node          TEXT,
    created_at    BIGINT NOT NULL,
    built_at      BIGINT,
    last_used_at  BIGINT
);
CREATE INDEX layers_by_status ON layers (status, id);

CREATE TABLE templates (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    runtime     TEXT NOT NULL,
    packages    TEXT NOT NULL,
    env         TEXT NOT NULL,
    resources   TEXT NOT NULL,
    network     TEXT NOT NULL,
    files       TEXT NOT NULL,
    -- 1 for the built-ins Warden creates at start-up (never deleted).
    builtin     BIGINT NOT NULL,
    layer       TEXT REFERENCES layers(id),
    revision    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX templates_by_runtime ON templates (runtime, id);
CREATE INDEX templates_by_layer ON templates (layer);

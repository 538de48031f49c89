-- Warden's records (PostgreSQL). Times are Unix milliseconds; JSON is TEXT.

CREATE TABLE plugins (
    code        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE plugin_versions (
    id             TEXT PRIMARY KEY,
    plugin         TEXT NOT NULL REFERENCES plugins(code),
    version        TEXT NOT NULL,
    status         TEXT NOT NULL,
    manifest       TEXT NOT NULL,
    package_sha256 TEXT NOT NULL,
    package_size   BIGINT NOT NULL,
    files          TEXT NOT NULL,
    report         TEXT,
    status_reason  TEXT,
    uploaded_by    TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    revision       BIGINT NOT NULL,
    UNIQUE (plugin, version)
);

CREATE TABLE apps (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE installations (
    id             TEXT PRIMARY KEY,
    app            TEXT NOT NULL REFERENCES apps(id),
    plugin         TEXT NOT NULL REFERENCES plugins(code),
    pinned_version TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (app, plugin),
    -- A pinned version exists as long as it is pinned (NULL: follow latest).
    FOREIGN KEY (plugin, pinned_version) REFERENCES plugin_versions (plugin, version)
);

CREATE TABLE executions (
    id          TEXT PRIMARY KEY,
    app         TEXT NOT NULL,
    plugin      TEXT NOT NULL,
    version     TEXT NOT NULL,
    status      TEXT NOT NULL,
    mode        TEXT NOT NULL,
    node        TEXT NOT NULL,
    error_kind  TEXT,
    result      TEXT,
    created_at  BIGINT NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT,
    duration_ms DOUBLE PRECISION
);
CREATE INDEX executions_by_app ON executions (app, id);
CREATE INDEX executions_by_plugin ON executions (plugin, id);
CREATE INDEX executions_by_status ON executions (status, id);
CREATE INDEX executions_by_node ON executions (node, status);

CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    plugin      TEXT,
    version     TEXT,
    from_status TEXT,
    to_status   TEXT,
    reason      TEXT,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_by_plugin ON audit_events (plugin, id);

-- The audit trail is append-only, whatever the code above it does.
CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    app        TEXT,
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

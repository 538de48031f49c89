-- Session snapshots (a workspace as a tar object in the object store) and
-- the nodes sharing this database (their heartbeats and addresses).
-- Times are Unix milliseconds.

CREATE TABLE snapshots (
    id          TEXT PRIMARY KEY,
    app         TEXT NOT NULL,
    session     TEXT NOT NULL,
    template    TEXT NOT NULL,
    status      TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    error       TEXT,
    object      TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    files       BIGINT NOT NULL,
    attempts    BIGINT NOT NULL,
    node        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    ready_at    BIGINT
);
CREATE INDEX snapshots_by_app ON snapshots (app, id);
CREATE INDEX snapshots_by_session ON snapshots (session, status, id);

CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    advertise_url TEXT,
    version       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);

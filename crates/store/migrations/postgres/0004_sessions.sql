-- Sandbox sessions. A session runs on one node (`node`), which alone holds
-- its box; at that node's next start its live sessions become `lost`.
-- `env` and `network` are JSON (an object, a list); times are Unix ms.
CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    app               TEXT NOT NULL,
    template          TEXT NOT NULL,
    status            TEXT NOT NULL,
    status_reason     TEXT,
    cpu_cores         DOUBLE PRECISION NOT NULL,
    memory_mb         BIGINT NOT NULL,
    disk_mb           BIGINT NOT NULL,
    pids              BIGINT NOT NULL,
    idle_timeout_secs BIGINT NOT NULL,
    max_lifetime_secs BIGINT NOT NULL,
    env               TEXT NOT NULL,
    network           TEXT NOT NULL,
    layer             TEXT,
    node              TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    last_active_at    BIGINT NOT NULL,
    ended_at          BIGINT,
    executions        BIGINT NOT NULL
);
CREATE INDEX sessions_by_app ON sessions (app, id);
CREATE INDEX sessions_by_status ON sessions (status, id);
CREATE INDEX sessions_by_node ON sessions (node, status);

-- Executions run plugins or code in a session (`source`). A session's
-- execution has an empty plugin and version, and its session, language and
-- run mode; a plugin's has none of those.
ALTER TABLE executions ADD COLUMN source TEXT NOT NULL DEFAULT 'plugin';
ALTER TABLE executions ADD COLUMN session TEXT;
ALTER TABLE executions ADD COLUMN language TEXT;
ALTER TABLE executions ADD COLUMN run_mode TEXT;
CREATE INDEX executions_by_session ON executions (session, id);

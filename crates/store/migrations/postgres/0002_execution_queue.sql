-- The durable queue: accepted async executions that have not started, with
-- what any node needs to start them. Claiming one deletes its row and marks
-- the execution running in one transaction, so each starts exactly once; a
-- row never outlives its execution's start (events are up to 6 MiB).
CREATE TABLE execution_queue (
    id             TEXT PRIMARY KEY REFERENCES executions(id),
    event          TEXT NOT NULL,
    package_sha256 TEXT NOT NULL,
    timeout_ms     BIGINT NOT NULL,
    memory_mb      BIGINT NOT NULL
);

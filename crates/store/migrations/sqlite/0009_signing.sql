-- Signed packages (issue 15): publishers' minisign keys, and each version's
-- signature over its package hash with the key that made it.
CREATE TABLE signing_keys (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX signing_keys_owner ON signing_keys (owner);
ALTER TABLE plugin_versions ADD COLUMN signature TEXT;
ALTER TABLE plugin_versions ADD COLUMN signed_by TEXT;

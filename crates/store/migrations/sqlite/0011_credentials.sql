-- Platform-held credentials (issue 16): per app, the definition in the
-- clear (kind, where it goes, the hosts it may be sent to, as JSON) and the
-- secret sealed with the server's credentials key (the key's id beside it,
-- so rotated keys still open what they sealed).
CREATE TABLE credentials (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, name)
);

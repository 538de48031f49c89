-- Credentials of one installation (issue 16): an app's installation of a
-- plugin may hold its own credentials by name, used before the app's of
-- the same name. Same shape as `credentials`, plus the plugin; deleted
-- with the installation (by the store, in the uninstall's transaction).
CREATE TABLE installation_credentials (
    app TEXT NOT NULL,
    plugin TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, plugin, name)
);

-- Trust tiers (issue 15): how far the platform trusts a version's code,
-- decided at review (`builtin` for plugins compiled into Warden).
ALTER TABLE plugin_versions ADD COLUMN trust_level TEXT NOT NULL DEFAULT 'untrusted';

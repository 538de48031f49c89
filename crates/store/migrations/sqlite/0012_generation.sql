-- A plugin's registry generation (issue 18): moved by every write that can
-- change what an app's call of the plugin resolves to, so a node may keep a
-- resolution between requests and check, in the statement that records the
-- next execution, that the generation has not moved. Triggers, so that no
-- write path can forget it.
ALTER TABLE plugins ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER installations_insert_generation AFTER INSERT ON installations
BEGIN UPDATE plugins SET generation = generation + 1 WHERE code = NEW.plugin; END;
CREATE TRIGGER installations_update_generation AFTER UPDATE ON installations
BEGIN UPDATE plugins SET generation = generation + 1 WHERE code IN (OLD.plugin, NEW.plugin); END;
CREATE TRIGGER installations_delete_generation AFTER DELETE ON installations
BEGIN UPDATE plugins SET generation = generation + 1 WHERE code = OLD.plugin; END;

CREATE TRIGGER plugin_versions_insert_generation AFTER INSERT ON plugin_versions
BEGIN UPDATE plugins SET generation = generation + 1 WHERE code = NEW.plugin; END;
CREATE TRIGGER plugin_versions_update_generation AFTER UPDATE ON plugin_versions
BEGIN UPDATE plugins SET generation = generation + 1 WHERE code IN (OLD.plugin, NEW.plugin); END;
CREATE TRIGGER plugin_versions_delete_generation AFTER DELETE ON plugin_versions
BEGIN UPDATE plugins SET generation = generation + 1 WHERE code = OLD.plugin; END;

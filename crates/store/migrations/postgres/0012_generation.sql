-- A plugin's registry generation (issue 18): moved by every write that can
-- change what an app's call of the plugin resolves to, so a node may keep a
-- resolution between requests and check, in the statement that records the
-- next execution, that the generation has not moved. Triggers, so that no
-- write path can forget it.
ALTER TABLE plugins ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION warden_move_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE plugins SET generation = generation + 1 WHERE code = OLD.plugin;
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.plugin IS DISTINCT FROM OLD.plugin) THEN
        UPDATE plugins SET generation = generation + 1 WHERE code = NEW.plugin;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER installations_generation AFTER INSERT OR UPDATE OR DELETE ON installations
FOR EACH ROW EXECUTE FUNCTION warden_move_generation();
CREATE TRIGGER plugin_versions_generation AFTER INSERT OR UPDATE OR DELETE ON plugin_versions
FOR EACH ROW EXECUTE FUNCTION warden_move_generation();

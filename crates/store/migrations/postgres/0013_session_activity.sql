-- A session's activity (`last_active_at`) and its count of executions move
-- in the statement that makes one of its executions final, so the hot path
-- of a session execution needs no second round trip (issue 20). An
-- execution counts when it started (`started_at` set): one cancelled or
-- ended before its turn does not. Only the node that holds the session moves
-- it: a node cut off by a failover does not (as with `touch_session`).
CREATE FUNCTION warden_session_activity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sessions
    SET last_active_at = GREATEST(last_active_at, COALESCE(NEW.finished_at, last_active_at)),
        executions = executions + (CASE WHEN NEW.started_at IS NULL THEN 0 ELSE 1 END)
    WHERE id = NEW.session AND node = NEW.node;
    RETURN NULL;
END
$$;

CREATE TRIGGER executions_session_activity AFTER UPDATE OF status ON executions
FOR EACH ROW
WHEN (NEW.session IS NOT NULL
    AND OLD.status IN ('queued', 'running')
    AND NEW.status NOT IN ('queued', 'running'))
EXECUTE FUNCTION warden_session_activity();

-- th2etl schema version 4: the run lifecycle. Every run has an owner (the instance that
-- heartbeats for it) and says what started it; it may wait `queued`; a cancel records who
-- asked; the definitions it executed are kept as a snapshot. Its status is a state machine
-- enforced here, whoever writes the row.

ALTER TABLE th2etl_runs RENAME COLUMN instance_id TO owner_id;
ALTER TABLE th2etl_runs ADD COLUMN started_by TEXT;
ALTER TABLE th2etl_runs ADD COLUMN cancelled_by TEXT;
ALTER TABLE th2etl_runs ADD COLUMN cancel_requested_at TIMESTAMPTZ;
ALTER TABLE th2etl_runs ADD COLUMN definition JSON;
ALTER TABLE th2etl_runs ADD COLUMN timeout DOUBLE PRECISION;
ALTER TABLE th2etl_runs ADD COLUMN executor TEXT;
ALTER TABLE th2etl_runs ADD COLUMN worker TEXT;
ALTER TABLE th2etl_runs ADD COLUMN queued_at TIMESTAMPTZ;
ALTER TABLE th2etl_runs ADD COLUMN claimed_at TIMESTAMPTZ;
-- Before this version a tick was started by its scheduler; a manual run by the API or the
-- CLI, which were not told apart.
UPDATE th2etl_runs SET started_by = CASE
    WHEN scheduler_name IS NOT NULL THEN 'scheduler:' || scheduler_name ELSE 'unknown' END;

DROP INDEX th2etl_runs_running;
CREATE INDEX th2etl_runs_active ON th2etl_runs (scheduler_name)
    WHERE status IN ('queued', 'running');
CREATE INDEX th2etl_runs_owner ON th2etl_runs (owner_id) WHERE status IN ('queued', 'running');
CREATE INDEX th2etl_runs_queue ON th2etl_runs (queued_at, run_id) WHERE status = 'queued';

-- The state machine (the same as th2etl.pipelines.result.TRANSITIONS): a run is recorded
-- queued, running or skipped; queued -> running | cancelled | abandoned | failed | skipped;
-- running -> succeeded | failed | cancelled | abandoned; a terminal status never changes.
CREATE FUNCTION th2etl_run_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status NOT IN ('queued', 'running', 'skipped') THEN
            RAISE EXCEPTION 'th2etl run status: run % cannot be recorded %', NEW.run_id,
                NEW.status USING ERRCODE = 'check_violation';
        END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status AND NOT (
        (OLD.status = 'queued'
            AND NEW.status IN ('running', 'cancelled', 'abandoned', 'failed', 'skipped'))
        OR (OLD.status = 'running'
            AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'abandoned'))
    ) THEN
        RAISE EXCEPTION 'th2etl run status: run % is %, it cannot become %', OLD.run_id,
            OLD.status, NEW.status USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER th2etl_runs_status_insert BEFORE INSERT ON th2etl_runs
    FOR EACH ROW EXECUTE FUNCTION th2etl_run_status();
CREATE TRIGGER th2etl_runs_status_update BEFORE UPDATE OF status ON th2etl_runs
    FOR EACH ROW EXECUTE FUNCTION th2etl_run_status();

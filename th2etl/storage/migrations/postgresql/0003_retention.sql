-- th2etl schema version 3: retention. Pruning old runs (th2etl prune, TH2ETL_RUN_RETENTION_DAYS)
-- keeps which scheduler ticks ran in this compact table, so that a tick whose run was pruned
-- is still taken: a claim (or backfill) of it inserts nothing, as if its run were there.
CREATE TABLE th2etl_ticks (
    scheduler_name TEXT NOT NULL,
    scheduled_time TIMESTAMPTZ NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL,
    PRIMARY KEY (scheduler_name, scheduled_time, attempt)
);

CREATE FUNCTION th2etl_pruned_tick() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.scheduler_name IS NOT NULL AND NEW.scheduled_time IS NOT NULL AND EXISTS (
        SELECT 1 FROM th2etl_ticks
        WHERE scheduler_name = NEW.scheduler_name AND scheduled_time = NEW.scheduled_time
    ) THEN
        RETURN NULL;  -- skip the row: an upsert's RETURNING then returns nothing
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER th2etl_runs_pruned_tick BEFORE INSERT ON th2etl_runs
    FOR EACH ROW EXECUTE FUNCTION th2etl_pruned_tick();

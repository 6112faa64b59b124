-- th2etl schema version 6: schedules as data teams use them (issue 13).
-- * A trigger is a reusable cron expression and zone: its pipeline_name is a label (nullable).
-- * A scheduler binds a pipeline to a trigger, or to the success of other pipelines
--   (after_pipelines), with its own options; schedule-wide defaults live in one row.
-- * A tick is keyed by scheduler, time and attempt (a backfill reruns a tick as a new attempt,
--   the earlier attempt's record stays); a run keeps its data interval.
-- Adding a column with a constant default changes only the catalog; the locks are taken with a
-- lock_timeout and retried by the storage (see postgres.py), so a busy table is never frozen.

ALTER TABLE th2etl_triggers ALTER COLUMN pipeline_name DROP NOT NULL;

ALTER TABLE th2etl_schedulers
    ALTER COLUMN trigger_name DROP NOT NULL,
    ADD COLUMN variables JSON NOT NULL DEFAULT '{}',
    ADD COLUMN missed TEXT CHECK (missed IN ('skip', 'latest', 'all')),
    ADD COLUMN overlap TEXT CHECK (overlap IN ('skip', 'allow')),
    ADD COLUMN max_active_runs INTEGER CHECK (max_active_runs >= 1),
    ADD COLUMN timeout DOUBLE PRECISION CHECK (timeout > 0),
    ADD COLUMN start_date TIMESTAMPTZ,
    ADD COLUMN end_date TIMESTAMPTZ,
    ADD COLUMN after_pipelines JSON NOT NULL DEFAULT '[]',
    ADD CONSTRAINT th2etl_schedulers_dates CHECK (start_date < end_date),
    -- Fired by a trigger or by other pipelines' success: exactly one of the two.
    ADD CONSTRAINT th2etl_schedulers_source
        CHECK ((trigger_name IS NULL) = (json_array_length(after_pipelines) > 0));

CREATE TABLE th2etl_schedule_defaults (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    missed TEXT CHECK (missed IN ('skip', 'latest', 'all')),
    overlap TEXT CHECK (overlap IN ('skip', 'allow')),
    max_active_runs INTEGER CHECK (max_active_runs >= 1),
    timeout DOUBLE PRECISION CHECK (timeout > 0)
);
INSERT INTO th2etl_schedule_defaults (id) VALUES (1);
CREATE TRIGGER th2etl_schedule_defaults_revision AFTER UPDATE ON th2etl_schedule_defaults
    FOR EACH STATEMENT EXECUTE FUNCTION th2etl_bump_revision();

ALTER TABLE th2etl_runs
    ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN interval_start TIMESTAMPTZ,
    ADD COLUMN interval_end TIMESTAMPTZ,
    ADD COLUMN logical_timezone TEXT,
    DROP CONSTRAINT th2etl_runs_tick,
    ADD CONSTRAINT th2etl_runs_tick UNIQUE (scheduler_name, scheduled_time, attempt);
-- Dependencies look for upstream pipelines' successes by logical time.
CREATE INDEX th2etl_runs_pipeline_tick ON th2etl_runs (pipeline_name, scheduled_time)
    WHERE status = 'succeeded';

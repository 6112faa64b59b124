-- th2etl schema version 6: schedules as data teams use them (issue 13); see the PostgreSQL
-- migration for the meaning. SQLite cannot drop NOT NULL or a table constraint in place, so
-- triggers, schedulers and runs are rebuilt (SQLite's documented 12-step procedure: the
-- storage turns foreign keys off around the migration and checks them before COMMIT).

CREATE TABLE th2etl_triggers_new (
    name TEXT PRIMARY KEY,
    pipeline_name TEXT,
    cron_expression TEXT NOT NULL,
    timezone TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    project TEXT
) WITHOUT ROWID;
INSERT INTO th2etl_triggers_new
SELECT name, pipeline_name, cron_expression, timezone, description, created_at, updated_at,
    project
FROM th2etl_triggers;
DROP TABLE th2etl_triggers;
ALTER TABLE th2etl_triggers_new RENAME TO th2etl_triggers;
CREATE TRIGGER th2etl_triggers_insert_revision AFTER INSERT ON th2etl_triggers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_triggers_update_revision AFTER UPDATE ON th2etl_triggers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_triggers_delete_revision AFTER DELETE ON th2etl_triggers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;

CREATE TABLE th2etl_schedulers_new (
    name TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL REFERENCES th2etl_pipelines (name),
    trigger_name TEXT REFERENCES th2etl_triggers (name),
    enabled INTEGER NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    project TEXT,
    variables TEXT NOT NULL DEFAULT '{}',
    missed TEXT CHECK (missed IN ('skip', 'latest', 'all')),
    overlap TEXT CHECK (overlap IN ('skip', 'allow')),
    max_active_runs INTEGER CHECK (max_active_runs >= 1),
    timeout REAL CHECK (timeout > 0),
    start_date TEXT,
    end_date TEXT,
    after_pipelines TEXT NOT NULL DEFAULT '[]',
    CONSTRAINT th2etl_schedulers_dates CHECK (start_date < end_date),
    CONSTRAINT th2etl_schedulers_source
        CHECK ((trigger_name IS NULL) = (json_array_length(after_pipelines) > 0))
) WITHOUT ROWID;
INSERT INTO th2etl_schedulers_new
    (name, pipeline_name, trigger_name, enabled, description, created_at, updated_at, project)
SELECT name, pipeline_name, trigger_name, enabled, description, created_at, updated_at, project
FROM th2etl_schedulers;
DROP TABLE th2etl_schedulers;
ALTER TABLE th2etl_schedulers_new RENAME TO th2etl_schedulers;
CREATE INDEX th2etl_schedulers_pipeline ON th2etl_schedulers (pipeline_name);
CREATE INDEX th2etl_schedulers_trigger ON th2etl_schedulers (trigger_name);
CREATE TRIGGER th2etl_schedulers_insert_revision AFTER INSERT ON th2etl_schedulers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_schedulers_update_revision AFTER UPDATE ON th2etl_schedulers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_schedulers_delete_revision AFTER DELETE ON th2etl_schedulers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;

CREATE TABLE th2etl_schedule_defaults (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    missed TEXT CHECK (missed IN ('skip', 'latest', 'all')),
    overlap TEXT CHECK (overlap IN ('skip', 'allow')),
    max_active_runs INTEGER CHECK (max_active_runs >= 1),
    timeout REAL CHECK (timeout > 0)
);
INSERT INTO th2etl_schedule_defaults (id) VALUES (1);
CREATE TRIGGER th2etl_schedule_defaults_revision AFTER UPDATE ON th2etl_schedule_defaults
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;

CREATE TABLE th2etl_runs_new (
    run_id TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    scheduler_name TEXT,
    trigger_name TEXT,
    scheduled_time TEXT,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    variables TEXT NOT NULL,
    error TEXT,
    owner_id TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    log TEXT NOT NULL DEFAULT '',
    started_by TEXT,
    cancelled_by TEXT,
    cancel_requested_at TEXT,
    definition TEXT,
    timeout REAL,
    executor TEXT,
    worker TEXT,
    queued_at TEXT,
    claimed_at TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    interval_start TEXT,
    interval_end TEXT,
    logical_timezone TEXT,
    -- One run (or skip) per scheduler tick and attempt, whichever instance gets there first.
    CONSTRAINT th2etl_runs_tick UNIQUE (scheduler_name, scheduled_time, attempt)
);
INSERT INTO th2etl_runs_new (
    run_id, pipeline_name, scheduler_name, trigger_name, scheduled_time, status, started_at,
    finished_at, variables, error, owner_id, cancel_requested, log, started_by, cancelled_by,
    cancel_requested_at, definition, timeout, executor, worker, queued_at, claimed_at
)
SELECT run_id, pipeline_name, scheduler_name, trigger_name, scheduled_time, status, started_at,
    finished_at, variables, error, owner_id, cancel_requested, log, started_by, cancelled_by,
    cancel_requested_at, definition, timeout, executor, worker, queued_at, claimed_at
FROM th2etl_runs;
DROP TABLE th2etl_runs;
ALTER TABLE th2etl_runs_new RENAME TO th2etl_runs;
-- The indexes and triggers of schemas 1, 3, 4 and 5, as they were.
CREATE INDEX th2etl_runs_started ON th2etl_runs (started_at DESC);
CREATE INDEX th2etl_runs_pipeline ON th2etl_runs (pipeline_name, started_at DESC);
CREATE INDEX th2etl_runs_active ON th2etl_runs (scheduler_name)
    WHERE status IN ('queued', 'running');
CREATE INDEX th2etl_runs_owner ON th2etl_runs (owner_id) WHERE status IN ('queued', 'running');
CREATE INDEX th2etl_runs_queue ON th2etl_runs (queued_at, run_id) WHERE status = 'queued';
CREATE INDEX th2etl_runs_finished ON th2etl_runs (finished_at);
CREATE TRIGGER th2etl_runs_pruned_tick BEFORE INSERT ON th2etl_runs
WHEN NEW.scheduler_name IS NOT NULL AND NEW.scheduled_time IS NOT NULL AND EXISTS (
    SELECT 1 FROM th2etl_ticks
    WHERE scheduler_name = NEW.scheduler_name AND scheduled_time = NEW.scheduled_time
)
BEGIN
    SELECT RAISE(IGNORE);
END;
CREATE TRIGGER th2etl_runs_status_insert BEFORE INSERT ON th2etl_runs
WHEN NEW.status NOT IN ('queued', 'running', 'skipped')
BEGIN
    SELECT RAISE(ABORT, 'th2etl run status: a run is recorded queued, running or skipped');
END;
CREATE TRIGGER th2etl_runs_status_update BEFORE UPDATE OF status ON th2etl_runs
WHEN NEW.status IS NOT OLD.status AND NOT (
    (OLD.status = 'queued'
        AND NEW.status IN ('running', 'cancelled', 'abandoned', 'failed', 'skipped'))
    OR (OLD.status = 'running'
        AND NEW.status IN ('succeeded', 'failed', 'cancelled', 'abandoned'))
)
BEGIN
    SELECT RAISE(ABORT, 'th2etl run status: illegal transition');
END;
-- Dependencies look for upstream pipelines' successes by logical time.
CREATE INDEX th2etl_runs_pipeline_tick ON th2etl_runs (pipeline_name, scheduled_time)
    WHERE status = 'succeeded';

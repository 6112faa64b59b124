-- th2etl schema version 1: definitions, run history, scheduler coordination.
-- Runs inside one transaction. Timestamps are ISO-8601 text in UTC with microseconds, so they
-- sort and compare as text; JSON is text; booleans are 0/1. Definition tables are WITHOUT
-- ROWID: keyed by name, they are one b-tree instead of a table plus its primary-key index.
CREATE TABLE th2etl_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO th2etl_revision (id, revision) VALUES (1, 0);

CREATE TABLE th2etl_blocs (
    name TEXT PRIMARY KEY,
    bloc_type TEXT NOT NULL,
    config TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE th2etl_pipelines (
    name TEXT PRIMARY KEY,
    stages TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;

-- Which blocs a pipeline names: the foreign key keeps a bloc from being deleted under it.
-- The rows follow the pipeline's stages by trigger, so they can never disagree.
CREATE TABLE th2etl_pipeline_blocs (
    pipeline_name TEXT NOT NULL REFERENCES th2etl_pipelines (name) ON DELETE CASCADE,
    bloc_name TEXT NOT NULL REFERENCES th2etl_blocs (name),
    position INTEGER NOT NULL,
    PRIMARY KEY (pipeline_name, bloc_name)
) WITHOUT ROWID;
CREATE INDEX th2etl_pipeline_blocs_bloc ON th2etl_pipeline_blocs (bloc_name);

CREATE TRIGGER th2etl_pipelines_members_insert AFTER INSERT ON th2etl_pipelines
BEGIN
    INSERT INTO th2etl_pipeline_blocs (pipeline_name, bloc_name, position)
    SELECT NEW.name, bloc.value, stage.key * 10000 + bloc.key
    FROM json_each(NEW.stages) AS stage, json_each(stage.value) AS bloc;
END;
CREATE TRIGGER th2etl_pipelines_members_update AFTER UPDATE OF stages ON th2etl_pipelines
WHEN OLD.stages IS NOT NEW.stages
BEGIN
    DELETE FROM th2etl_pipeline_blocs WHERE pipeline_name = OLD.name;
    INSERT INTO th2etl_pipeline_blocs (pipeline_name, bloc_name, position)
    SELECT NEW.name, bloc.value, stage.key * 10000 + bloc.key
    FROM json_each(NEW.stages) AS stage, json_each(stage.value) AS bloc;
END;

-- pipeline_name is a plain name: the seed's quickstart creates a trigger before its pipeline.
CREATE TABLE th2etl_triggers (
    name TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    cron_expression TEXT NOT NULL,
    timezone TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE th2etl_schedulers (
    name TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL REFERENCES th2etl_pipelines (name),
    trigger_name TEXT NOT NULL REFERENCES th2etl_triggers (name),
    enabled INTEGER NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX th2etl_schedulers_pipeline ON th2etl_schedulers (pipeline_name);
CREATE INDEX th2etl_schedulers_trigger ON th2etl_schedulers (trigger_name);

-- Every definition write bumps the revision in its own transaction.
CREATE TRIGGER th2etl_blocs_insert_revision AFTER INSERT ON th2etl_blocs
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_blocs_update_revision AFTER UPDATE ON th2etl_blocs
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_blocs_delete_revision AFTER DELETE ON th2etl_blocs
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_pipelines_insert_revision AFTER INSERT ON th2etl_pipelines
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_pipelines_update_revision AFTER UPDATE ON th2etl_pipelines
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_pipelines_delete_revision AFTER DELETE ON th2etl_pipelines
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_triggers_insert_revision AFTER INSERT ON th2etl_triggers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_triggers_update_revision AFTER UPDATE ON th2etl_triggers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_triggers_delete_revision AFTER DELETE ON th2etl_triggers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_schedulers_insert_revision AFTER INSERT ON th2etl_schedulers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_schedulers_update_revision AFTER UPDATE ON th2etl_schedulers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;
CREATE TRIGGER th2etl_schedulers_delete_revision AFTER DELETE ON th2etl_schedulers
BEGIN UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1; END;

-- Run history outlives definitions: names here are plain text, not foreign keys.
CREATE TABLE th2etl_runs (
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
    instance_id TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    log TEXT NOT NULL DEFAULT '',
    -- One run (or skip) per scheduler tick, whichever instance gets there first.
    CONSTRAINT th2etl_runs_tick UNIQUE (scheduler_name, scheduled_time)
);
CREATE INDEX th2etl_runs_started ON th2etl_runs (started_at DESC);
CREATE INDEX th2etl_runs_pipeline ON th2etl_runs (pipeline_name, started_at DESC);
CREATE INDEX th2etl_runs_running ON th2etl_runs (scheduler_name) WHERE status = 'running';

CREATE TABLE th2etl_bloc_runs (
    run_id TEXT NOT NULL REFERENCES th2etl_runs (run_id) ON DELETE CASCADE,
    bloc_name TEXT NOT NULL,
    position INTEGER NOT NULL,
    bloc_type TEXT NOT NULL,
    stage INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    rows_in INTEGER NOT NULL,
    rows_out INTEGER NOT NULL,
    duration REAL NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT,
    PRIMARY KEY (run_id, bloc_name)
);

CREATE TABLE th2etl_instances (
    instance_id TEXT PRIMARY KEY,
    hostname TEXT,
    pid INTEGER,
    started_at TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    info TEXT NOT NULL
) WITHOUT ROWID;

-- th2etl schema version 1: definitions, run history, scheduler coordination.
-- Runs inside one transaction with search_path set to th2etl's schema.

CREATE TABLE th2etl_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO th2etl_revision (id, revision) VALUES (1, 0);

-- Every definition write bumps the revision in its own transaction. The function keeps the
-- search_path it was created with, so it finds th2etl_revision whatever the caller's is.
CREATE FUNCTION th2etl_bump_revision() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE th2etl_revision SET revision = revision + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TABLE th2etl_blocs (
    name TEXT PRIMARY KEY,
    bloc_type TEXT NOT NULL,
    config JSON NOT NULL,
    description TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE th2etl_pipelines (
    name TEXT PRIMARY KEY,
    stages JSON NOT NULL,
    description TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Which blocs a pipeline names: the foreign key keeps a bloc from being deleted under it.
-- The rows follow the pipeline's stages by trigger, so they can never disagree.
CREATE TABLE th2etl_pipeline_blocs (
    pipeline_name TEXT NOT NULL REFERENCES th2etl_pipelines (name) ON DELETE CASCADE,
    bloc_name TEXT NOT NULL REFERENCES th2etl_blocs (name),
    position INTEGER NOT NULL,
    PRIMARY KEY (pipeline_name, bloc_name)
);
CREATE INDEX th2etl_pipeline_blocs_bloc ON th2etl_pipeline_blocs (bloc_name);

CREATE FUNCTION th2etl_pipeline_members() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM th2etl_pipeline_blocs WHERE pipeline_name = OLD.name;
    END IF;
    INSERT INTO th2etl_pipeline_blocs (pipeline_name, bloc_name, position)
    SELECT NEW.name, bloc.value, stage.number * 10000 + bloc.number
    FROM json_array_elements(NEW.stages) WITH ORDINALITY AS stage (value, number),
        json_array_elements_text(stage.value) WITH ORDINALITY AS bloc (value, number);
    RETURN NULL;
END
$$;
CREATE TRIGGER th2etl_pipelines_members_insert AFTER INSERT ON th2etl_pipelines
    FOR EACH ROW EXECUTE FUNCTION th2etl_pipeline_members();
-- json has no equality operator: compare the text.
CREATE TRIGGER th2etl_pipelines_members_update AFTER UPDATE OF stages ON th2etl_pipelines
    FOR EACH ROW WHEN (OLD.stages::text IS DISTINCT FROM NEW.stages::text)
    EXECUTE FUNCTION th2etl_pipeline_members();

-- pipeline_name is a plain name: the seed's quickstart creates a trigger before its pipeline.
CREATE TABLE th2etl_triggers (
    name TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    cron_expression TEXT NOT NULL,
    timezone TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE th2etl_schedulers (
    name TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL REFERENCES th2etl_pipelines (name),
    trigger_name TEXT NOT NULL REFERENCES th2etl_triggers (name),
    enabled BOOLEAN NOT NULL,
    description TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX th2etl_schedulers_pipeline ON th2etl_schedulers (pipeline_name);
CREATE INDEX th2etl_schedulers_trigger ON th2etl_schedulers (trigger_name);

CREATE TRIGGER th2etl_blocs_revision AFTER INSERT OR UPDATE OR DELETE ON th2etl_blocs
    FOR EACH STATEMENT EXECUTE FUNCTION th2etl_bump_revision();
CREATE TRIGGER th2etl_pipelines_revision AFTER INSERT OR UPDATE OR DELETE ON th2etl_pipelines
    FOR EACH STATEMENT EXECUTE FUNCTION th2etl_bump_revision();
CREATE TRIGGER th2etl_triggers_revision AFTER INSERT OR UPDATE OR DELETE ON th2etl_triggers
    FOR EACH STATEMENT EXECUTE FUNCTION th2etl_bump_revision();
CREATE TRIGGER th2etl_schedulers_revision AFTER INSERT OR UPDATE OR DELETE ON th2etl_schedulers
    FOR EACH STATEMENT EXECUTE FUNCTION th2etl_bump_revision();

-- Run history outlives definitions: names here are plain text, not foreign keys.
CREATE TABLE th2etl_runs (
    run_id TEXT PRIMARY KEY,
    pipeline_name TEXT NOT NULL,
    scheduler_name TEXT,
    trigger_name TEXT,
    scheduled_time TIMESTAMPTZ,
    status TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    variables JSON NOT NULL,
    error TEXT,
    instance_id TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
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
    rows_in BIGINT NOT NULL,
    rows_out BIGINT NOT NULL,
    duration DOUBLE PRECISION NOT NULL,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT,
    PRIMARY KEY (run_id, bloc_name)
);

CREATE TABLE th2etl_instances (
    instance_id TEXT PRIMARY KEY,
    hostname TEXT,
    pid INTEGER,
    started_at TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    info JSON NOT NULL
);

-- th2etl schema version 2: the project a definition belongs to (set by `th2etl apply FILE`,
-- NULL for definitions made otherwise); `apply --prune` removes only its own project's.
ALTER TABLE th2etl_blocs ADD COLUMN project TEXT;
ALTER TABLE th2etl_pipelines ADD COLUMN project TEXT;
ALTER TABLE th2etl_triggers ADD COLUMN project TEXT;
ALTER TABLE th2etl_schedulers ADD COLUMN project TEXT;

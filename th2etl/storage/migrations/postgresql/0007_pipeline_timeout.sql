-- th2etl schema version 7: a pipeline's timeout, the seconds a whole run may take
-- (NULL: no limit); see th2etl.executors.
ALTER TABLE th2etl_pipelines ADD COLUMN timeout DOUBLE PRECISION;

-- th2etl schema version 8: each owner's own lease. At every heartbeat an instance records when
-- its lease ends, by the database's clock (the host's, on SQLite); the sweep that marks runs
-- abandoned judges each owner by it (see th2etl.storage.coordination). Rows written before
-- this version keep NULL: they are judged by the sweeping process's own stale_after.
ALTER TABLE th2etl_instances ADD COLUMN lease_until TEXT;

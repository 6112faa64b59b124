-- th2etl schema version 8: each owner's own lease. At every heartbeat an instance records when
-- its lease ends, by the database's clock (now() + its lease); the sweep that marks runs
-- abandoned judges each owner by it (see th2etl.storage.coordination). Rows written before
-- this version, or by a th2etl that does not record one, keep NULL: they are judged by the
-- sweeping process's own stale_after, as before.
-- Adding a nullable column changes only the catalog; the lock is taken with a lock_timeout
-- and retried by the storage (see postgres.py), so a busy table is never frozen.
ALTER TABLE th2etl_instances ADD COLUMN lease_until TIMESTAMPTZ;

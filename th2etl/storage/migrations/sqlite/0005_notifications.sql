-- th2etl schema version 5: notifications. Rules per scheduler (scope = its name) or the global
-- default (scope '*'); an outbox of deliveries, each claimed by one service process at a time.
CREATE TABLE th2etl_notification_rules (
    scope TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE th2etl_outbox (
    id TEXT PRIMARY KEY,  -- run, event, channel and target: enqueued once whoever sees it first
    run_id TEXT NOT NULL,
    event TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,  -- pending, sent, failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    claimed_by TEXT,
    claimed_until TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX th2etl_outbox_due ON th2etl_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX th2etl_runs_finished ON th2etl_runs (finished_at);

-- IoT jobs and their executions, per account and region.

-- `spec` is the JSON of `domain::jobs::JobSpec` (document, configurations, cancellation,
-- rollout progress); `targets` a JSON array of ARNs (ListJobs filters on it). `seq` orders
-- ListJobs (newest first).
CREATE TABLE jobs (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id        TEXT NOT NULL,
    region            TEXT NOT NULL,
    job_id            TEXT NOT NULL,
    status            TEXT NOT NULL,
    target_selection  TEXT NOT NULL,
    namespace_id      TEXT,
    targets           TEXT NOT NULL,
    spec              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    completed_at      INTEGER,
    UNIQUE (account_id, region, job_id)
);
CREATE INDEX jobs_by_status ON jobs (status);

-- One row per execution; status `WAITING` marks executions the rollout has not released.
-- Deleting a job removes its executions.
CREATE TABLE job_executions (
    account_id        TEXT NOT NULL,
    region            TEXT NOT NULL,
    job_id            TEXT NOT NULL,
    thing_name        TEXT NOT NULL,
    execution_number  INTEGER NOT NULL,
    status            TEXT NOT NULL,
    force_canceled    INTEGER NOT NULL,
    status_details    TEXT NOT NULL,
    queued_at         INTEGER,
    started_at        INTEGER,
    last_updated_at   INTEGER NOT NULL,
    version_number    INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, job_id, thing_name, execution_number),
    UNIQUE (account_id, region, thing_name, execution_number),
    FOREIGN KEY (account_id, region, job_id) REFERENCES jobs (account_id, region, job_id) ON DELETE CASCADE
);
CREATE INDEX job_executions_by_status ON job_executions (account_id, region, job_id, status);

-- The last execution number a thing was given, so numbers are never reused.
CREATE TABLE thing_execution_numbers (
    account_id  TEXT NOT NULL,
    region      TEXT NOT NULL,
    thing_name  TEXT NOT NULL,
    last_number INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, thing_name)
);

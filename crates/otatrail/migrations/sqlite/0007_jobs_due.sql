-- The job engine visits only IN_PROGRESS jobs that have something due, instead of every one of
-- them on every pass: an OTA update's job stays in progress until its devices answer, and tens
-- of thousands of them kept the engine (and the writer) busy for ever.
--
-- `due_at` is when the engine next has work for the job (milliseconds since the epoch; NULL:
-- nothing until something changes). The engine sets it after each pass (next rollout window,
-- oldest in-progress execution's timeout). What the engine cannot foresee makes a job due at
-- once (0), by the triggers below, in the same transaction as the change:
--  * any insert, change or removal of one of its executions (abort criteria, SNAPSHOT
--    completion, rollout rate increases and timeouts all depend on them);
--  * for CONTINUOUS jobs, a thing created or put in a group in the job's account and region
--    (it may be a new target).
-- Existing jobs start due, so the first pass after upgrading schedules them.
ALTER TABLE jobs ADD COLUMN due_at INTEGER DEFAULT 0;
-- (status, due_at): with the status first, SQLite seeks straight to the due IN_PROGRESS jobs in
-- due order; an index on due_at alone lost to jobs_by_status, which reads every such job.
CREATE INDEX jobs_due ON jobs (status, due_at);
CREATE INDEX jobs_continuous ON jobs (account_id, region) WHERE status = 'IN_PROGRESS' AND target_selection = 'CONTINUOUS';

CREATE TRIGGER job_due_on_execution_insert AFTER INSERT ON job_executions BEGIN
    UPDATE jobs SET due_at = 0
    WHERE account_id = NEW.account_id AND region = NEW.region AND job_id = NEW.job_id AND due_at IS NOT 0;
END;
CREATE TRIGGER job_due_on_execution_update AFTER UPDATE ON job_executions BEGIN
    UPDATE jobs SET due_at = 0
    WHERE account_id = NEW.account_id AND region = NEW.region AND job_id = NEW.job_id AND due_at IS NOT 0;
END;
CREATE TRIGGER job_due_on_execution_delete AFTER DELETE ON job_executions BEGIN
    UPDATE jobs SET due_at = 0
    WHERE account_id = OLD.account_id AND region = OLD.region AND job_id = OLD.job_id AND due_at IS NOT 0;
END;
CREATE TRIGGER continuous_jobs_due_on_thing_insert AFTER INSERT ON things BEGIN
    UPDATE jobs SET due_at = 0
    WHERE account_id = NEW.account_id AND region = NEW.region
      AND status = 'IN_PROGRESS' AND target_selection = 'CONTINUOUS' AND due_at IS NOT 0;
END;
CREATE TRIGGER continuous_jobs_due_on_group_member_insert AFTER INSERT ON thing_group_members BEGIN
    UPDATE jobs SET due_at = 0
    WHERE account_id = NEW.account_id AND region = NEW.region
      AND status = 'IN_PROGRESS' AND target_selection = 'CONTINUOUS' AND due_at IS NOT 0;
END;

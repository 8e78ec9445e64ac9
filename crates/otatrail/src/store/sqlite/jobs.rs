//! SQLite statements of IoT jobs and job executions; the
//! [`StateTx`](crate::store::StateTx) methods of [`super::SqliteTx`] call these.

use rusqlite::Connection;
use super::sql::{Row, query};

use super::{db_err, from_json, get, json, unique_violation};
use crate::domain::Scope;
use crate::domain::jobs::{ExecStatus, Job, JobExecution, JobFilter, JobStatus, TargetSelection};
use crate::domain::time::Millis;
use crate::store::{StoreError, StoreResult};

fn job_from_row(r: &Row) -> StoreResult<(i64, Job)> {
    let status: String = get(r, "status")?;
    let selection: String = get(r, "target_selection")?;
    Ok((
        get(r, "seq")?,
        Job {
            scope: Scope::new(get::<String>(r, "account_id")?, get::<String>(r, "region")?),
            job_id: get(r, "job_id")?,
            status: JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("job status {status}")))?,
            target_selection: TargetSelection::parse(&selection)
                .ok_or_else(|| StoreError::Corrupt(format!("target selection {selection}")))?,
            targets: from_json(&get::<String>(r, "targets")?)?,
            spec: from_json(&get::<String>(r, "spec")?)?,
            created_at: Millis(get(r, "created_at")?),
            updated_at: Millis(get(r, "updated_at")?),
            completed_at: get::<Option<i64>>(r, "completed_at")?.map(Millis),
        },
    ))
}

fn execution_from_row(r: &Row) -> StoreResult<JobExecution> {
    let status: String = get(r, "status")?;
    Ok(JobExecution {
        scope: Scope::new(get::<String>(r, "account_id")?, get::<String>(r, "region")?),
        job_id: get(r, "job_id")?,
        thing_name: get(r, "thing_name")?,
        execution_number: get(r, "execution_number")?,
        status: ExecStatus::from_stored(&status).ok_or_else(|| StoreError::Corrupt(format!("execution status {status}")))?,
        force_canceled: get(r, "force_canceled")?,
        status_details: from_json(&get::<String>(r, "status_details")?)?,
        queued_at: get::<Option<i64>>(r, "queued_at")?.map(Millis),
        started_at: get::<Option<i64>>(r, "started_at")?.map(Millis),
        last_updated_at: Millis(get(r, "last_updated_at")?),
        version_number: get(r, "version_number")?,
    })
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

pub(super) async fn insert_job(conn: &mut Connection, j: &Job) -> StoreResult<()> {
    query(
        "INSERT INTO jobs (account_id, region, job_id, status, target_selection, namespace_id, targets, spec, created_at, updated_at, completed_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&j.scope.account_id)
    .bind(&j.scope.region)
    .bind(&j.job_id)
    .bind(j.status.as_str())
    .bind(j.target_selection.as_str())
    .bind(&j.spec.namespace_id)
    .bind(json(&j.targets)?)
    .bind(json(&j.spec)?)
    .bind(j.created_at.0)
    .bind(j.updated_at.0)
    .bind(j.completed_at.map(|m| m.0))
    .execute(&mut *conn)
    .await
    .map_err(unique_violation)?;
    Ok(())
}

pub(super) async fn get_job(conn: &mut Connection, scope: &Scope, job_id: &str) -> StoreResult<Option<Job>> {
    let row = query("SELECT * FROM jobs WHERE account_id = ? AND region = ? AND job_id = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(job_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    row.as_ref().map(job_from_row).transpose().map(|o| o.map(|(_, j)| j))
}

pub(super) async fn update_job(conn: &mut Connection, j: &Job) -> StoreResult<()> {
    let r = query(
        "UPDATE jobs SET status = ?, spec = ?, updated_at = ?, completed_at = ? WHERE account_id = ? AND region = ? AND job_id = ?",
    )
    .bind(j.status.as_str())
    .bind(json(&j.spec)?)
    .bind(j.updated_at.0)
    .bind(j.completed_at.map(|m| m.0))
    .bind(&j.scope.account_id)
    .bind(&j.scope.region)
    .bind(&j.job_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("job {} vanished during update", j.job_id)));
    }
    Ok(())
}

pub(super) async fn delete_job(conn: &mut Connection, scope: &Scope, job_id: &str) -> StoreResult<bool> {
    // Executions go with the job (ON DELETE CASCADE); deleting them first keeps that true on
    // a connection without foreign keys too.
    query("DELETE FROM job_executions WHERE account_id = ? AND region = ? AND job_id = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(job_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    let r = query("DELETE FROM jobs WHERE account_id = ? AND region = ? AND job_id = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(job_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

pub(super) async fn list_jobs(
    conn: &mut Connection,
    scope: &Scope,
    f: &JobFilter,
    before_seq: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<(i64, Job)>> {
    let rows = query(
        "SELECT * FROM jobs WHERE account_id = ? AND region = ? \
         AND (? IS NULL OR status = ?) \
         AND (? IS NULL OR target_selection = ?) \
         AND (? IS NULL OR namespace_id = ?) \
         AND (? IS NULL OR EXISTS (SELECT 1 FROM json_each(jobs.targets) WHERE json_each.value = ?)) \
         AND (? IS NULL OR seq < ?) \
         ORDER BY seq DESC LIMIT ?",
    )
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(f.status.map(JobStatus::as_str))
    .bind(f.status.map(JobStatus::as_str))
    .bind(f.target_selection.map(TargetSelection::as_str))
    .bind(f.target_selection.map(TargetSelection::as_str))
    .bind(&f.namespace_id)
    .bind(&f.namespace_id)
    .bind(&f.target)
    .bind(&f.target)
    .bind(before_seq)
    .bind(before_seq)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(job_from_row).collect()
}

/// The engine's due jobs: a seek through `jobs_due` (the plan is checked by a test), never a
/// read of every IN_PROGRESS job.
pub(super) const DUE_JOBS: &str = "SELECT * FROM jobs WHERE status = 'IN_PROGRESS' AND due_at <= ? ORDER BY due_at, seq LIMIT ?";

pub(super) async fn due_jobs(
    conn: &mut Connection,
    now: Millis,
    limit: i64,
) -> StoreResult<Vec<Job>> {
    let rows = query(DUE_JOBS)
        .bind(now.0)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    rows.iter().map(|r| job_from_row(r).map(|(_, j)| j)).collect()
}

pub(super) async fn set_job_due(
    conn: &mut Connection,
    scope: &Scope,
    job_id: &str,
    due: Option<Millis>,
) -> StoreResult<()> {
    query("UPDATE jobs SET due_at = ? WHERE account_id = ? AND region = ? AND job_id = ?")
        .bind(due.map(|m| m.0))
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(job_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(super) async fn insert_execution(conn: &mut Connection, e: &JobExecution) -> StoreResult<()> {
    query(
        "INSERT INTO job_executions (account_id, region, job_id, thing_name, execution_number, status, force_canceled, \
         status_details, queued_at, started_at, last_updated_at, version_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&e.scope.account_id)
    .bind(&e.scope.region)
    .bind(&e.job_id)
    .bind(&e.thing_name)
    .bind(e.execution_number)
    .bind(e.status.as_str())
    .bind(e.force_canceled)
    .bind(json(&e.status_details)?)
    .bind(e.queued_at.map(|m| m.0))
    .bind(e.started_at.map(|m| m.0))
    .bind(e.last_updated_at.0)
    .bind(e.version_number)
    .execute(&mut *conn)
    .await
    .map_err(unique_violation)?;
    Ok(())
}

pub(super) async fn update_execution(conn: &mut Connection, e: &JobExecution) -> StoreResult<()> {
    let r = query(
        "UPDATE job_executions SET status = ?, force_canceled = ?, status_details = ?, queued_at = ?, started_at = ?, \
         last_updated_at = ?, version_number = ? \
         WHERE account_id = ? AND region = ? AND job_id = ? AND thing_name = ? AND execution_number = ?",
    )
    .bind(e.status.as_str())
    .bind(e.force_canceled)
    .bind(json(&e.status_details)?)
    .bind(e.queued_at.map(|m| m.0))
    .bind(e.started_at.map(|m| m.0))
    .bind(e.last_updated_at.0)
    .bind(e.version_number)
    .bind(&e.scope.account_id)
    .bind(&e.scope.region)
    .bind(&e.job_id)
    .bind(&e.thing_name)
    .bind(e.execution_number)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("job execution {} of {} vanished during update", e.execution_number, e.job_id)));
    }
    Ok(())
}

pub(super) async fn delete_execution(
    conn: &mut Connection,
    scope: &Scope,
    job_id: &str,
    thing: &str,
    number: i64,
) -> StoreResult<bool> {
    let r = query(
        "DELETE FROM job_executions WHERE account_id = ? AND region = ? AND job_id = ? AND thing_name = ? AND execution_number = ?",
    )
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(job_id)
    .bind(thing)
    .bind(number)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

pub(super) async fn get_execution(
    conn: &mut Connection,
    scope: &Scope,
    job_id: &str,
    thing: &str,
    number: Option<i64>,
) -> StoreResult<Option<JobExecution>> {
    let row = query(
        "SELECT * FROM job_executions WHERE account_id = ? AND region = ? AND job_id = ? AND thing_name = ? \
         AND (? IS NULL OR execution_number = ?) ORDER BY execution_number DESC LIMIT 1",
    )
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(job_id)
    .bind(thing)
    .bind(number)
    .bind(number)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    row.as_ref().map(execution_from_row).transpose()
}

pub(super) async fn list_executions(
    conn: &mut Connection,
    scope: &Scope,
    job_id: &str,
    statuses: &[ExecStatus],
    after_thing: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<JobExecution>> {
    if statuses.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT * FROM job_executions WHERE account_id = ? AND region = ? AND job_id = ? AND status IN ({}) \
         AND (? IS NULL OR thing_name > ?) ORDER BY thing_name, execution_number LIMIT ?",
        placeholders(statuses.len())
    );
    let mut q = query(sql).bind(&scope.account_id).bind(&scope.region).bind(job_id);
    for s in statuses {
        q = q.bind(s.as_str());
    }
    let rows = q.bind(after_thing).bind(after_thing).bind(limit).fetch_all(&mut *conn).await.map_err(db_err)?;
    rows.iter().map(execution_from_row).collect()
}

pub(super) async fn list_thing_executions(
    conn: &mut Connection,
    scope: &Scope,
    thing: &str,
    statuses: &[ExecStatus],
    job_id: Option<&str>,
    before_number: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<JobExecution>> {
    if statuses.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT * FROM job_executions WHERE account_id = ? AND region = ? AND thing_name = ? AND status IN ({}) \
         AND (? IS NULL OR job_id = ?) AND (? IS NULL OR execution_number < ?) ORDER BY execution_number DESC LIMIT ?",
        placeholders(statuses.len())
    );
    let mut q = query(sql).bind(&scope.account_id).bind(&scope.region).bind(thing);
    for s in statuses {
        q = q.bind(s.as_str());
    }
    let rows = q
        .bind(job_id)
        .bind(job_id)
        .bind(before_number)
        .bind(before_number)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    rows.iter().map(execution_from_row).collect()
}

pub(super) async fn count_executions(conn: &mut Connection, scope: &Scope, job_id: &str) -> StoreResult<Vec<(ExecStatus, i64)>> {
    let rows = query(
        "SELECT status, COUNT(*) AS n FROM job_executions WHERE account_id = ? AND region = ? AND job_id = ? GROUP BY status",
    )
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(job_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let s: String = get(r, "status")?;
            let status = ExecStatus::from_stored(&s).ok_or_else(|| StoreError::Corrupt(format!("execution status {s}")))?;
            Ok((status, get(r, "n")?))
        })
        .collect()
}

pub(super) async fn next_execution_number(conn: &mut Connection, scope: &Scope, thing: &str) -> StoreResult<i64> {
    let row = query(
        "INSERT INTO thing_execution_numbers (account_id, region, thing_name, last_number) VALUES (?, ?, ?, 1) \
         ON CONFLICT (account_id, region, thing_name) DO UPDATE SET last_number = last_number + 1 RETURNING last_number",
    )
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(thing)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    get(&row, "last_number")
}

//! The IoT Jobs control plane and the job engine.
//!
//! API operations (each recorded like every IoT call; mutating ones in their unit of work):
//! CreateJob, DescribeJob, ListJobs, GetJobDocument, UpdateJob, CancelJob, DeleteJob,
//! ListJobExecutionsForJob, ListJobExecutionsForThing, DescribeJobExecution,
//! CancelJobExecution, DeleteJobExecution.
//!
//! For other parts of otatrail:
//! - [`App::create_job_as_service`]: creates an already validated job
//!   ([`domain::jobs::ValidCreateJob`], e.g. `AFR_OTA-<id>` built by CreateOTAUpdate) on
//!   behalf of `call`, recording a `CreateJob` event in the same unit of work. Build the call
//!   with `Call::internal(principal, region, "iot.amazonaws.com", "CreateJob", false, now)`,
//!   the principal from `App::assume_role_as_service("iot.amazonaws.com", account, role_arn, …)`
//!   so the record carries the caller's role and `invokedBy`;
//! - [`App::delete_job_internal`]: deletes a job (with `force`, also one in progress) without
//!   a record of its own (the caller's operation is what is recorded);
//! - [`App::update_job_execution`]: a device's status update, for the Jobs data plane (not
//!   recorded: data-plane calls are not management events);
//! - [`App::jobs_tick`]: one engine pass (rollout, timeouts, abort criteria, completion,
//!   CONTINUOUS targets), run by [`App::spawn_job_engine`] and by tests with their own clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::domain::jobs::{
    self, Advance, CancelJobBody, CancelJobExecutionBody, Counts, CreateJobBody, ExecStatus, ExecutionPage, JOB_RESOURCE_TYPE, Job,
    JobExecution, JobPage, ListJobsRequest, UpdateJobBody, ValidCreateJob, job_arn,
};
use crate::domain::{Scope, ServiceError};
use crate::store;

use super::App;
use super::audit::Call;

/// Units of work the job and OTA engines have in flight at once.
pub(super) const ENGINE_CONCURRENCY: usize = 64;

/// How many due jobs one engine pass takes on; the rest wait for the next pass (a failing
/// job stays due, so a pass must not loop until none is).
const ENGINE_BATCH: i64 = 4096;

/// What one engine pass did, summed over jobs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    pub jobs: usize,
    pub added: usize,
    pub released: i64,
    pub timed_out: usize,
    pub aborted: usize,
    pub completed: usize,
}

impl App {
    /// Reads a `documentSource` object from the caller's buckets.
    async fn read_document_source(&self, call: &Call, source: &str) -> Result<String, ServiceError> {
        let (bucket, key) = jobs::parse_document_source(source)
            .ok_or_else(|| ServiceError::invalid_request(format!("The documentSource {source} is not an S3 object URL.")))?;
        let missing = || {
            ServiceError::invalid_request(format!(
                "The documentSource {source} does not name an object in this account's buckets (s3://{bucket}/{key})."
            ))
        };
        let meta = self.s3_head_object(&call.principal, &bucket, &key).await.map_err(|e| match e.code {
            "NoSuchBucket" | "NoSuchKey" | "AccessDenied" | "KeyTooLongError" => missing(),
            _ => e,
        })?;
        if meta.size > (jobs::MAX_DOCUMENT as u64) * 4 {
            return Err(ServiceError::invalid_request(format!(
                "The job document at {source} is larger than {} characters.",
                jobs::MAX_DOCUMENT
            )));
        }
        let mut bytes = Vec::with_capacity(meta.size as usize);
        if meta.size > 0 {
            for chunk in self.s3_read(&meta, 0, meta.size).await? {
                bytes.extend_from_slice(&chunk);
            }
        }
        let doc = String::from_utf8(bytes)
            .map_err(|_| ServiceError::invalid_request(format!("The job document at {source} is not UTF-8 text.")))?;
        jobs::validate_document("documentSource", &doc)?;
        Ok(doc)
    }

    pub async fn create_job(&self, call: &Arc<Call>, job_id: &str, body: &CreateJobBody) -> Result<Job, ServiceError> {
        let mut valid = jobs::validate_create_job(job_id, body)?;
        if let Some(source) = valid.document_source.clone() {
            valid.document = self.read_document_source(call, &source).await?;
        }
        self.create_job_as_service(call, valid).await
    }

    /// Creates a job that is already validated (its `document` filled in), recording
    /// `CreateJob` for `call` in the same unit of work. For CreateOTAUpdate, which builds
    /// job `AFR_OTA-<id>` and passes a `Call::internal` whose principal is the OTA update's
    /// role as assumed by `iot.amazonaws.com`.
    pub async fn create_job_as_service(&self, call: &Arc<Call>, job: ValidCreateJob) -> Result<Job, ServiceError> {
        jobs::validate_job_id(&job.job_id)?;
        jobs::validate_document("document", &job.document)?;
        let (call, now) = (call.clone(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let j = jobs::create_job(tx, &call.scope(), job, now).await?;
                call.record_success(tx, Some(j.summary_output()), vec![call.resource(j.arn(), JOB_RESOURCE_TYPE)]).await?;
                Ok(j)
            })
        })
        .await
    }

    pub async fn describe_job(&self, call: &Arc<Call>, job_id: &str) -> Result<(Job, Counts), ServiceError> {
        let (scope, id) = (call.scope(), job_id.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { jobs::describe_job(tx, &scope, &id).await })).await
    }

    /// GetJobDocument: the job and so its document.
    pub async fn get_job(&self, call: &Arc<Call>, job_id: &str) -> Result<Job, ServiceError> {
        let (scope, id) = (call.scope(), job_id.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { jobs::get_job(tx, &scope, &id).await })).await
    }

    pub async fn list_jobs(&self, call: &Arc<Call>, req: ListJobsRequest) -> Result<JobPage, ServiceError> {
        let scope = call.scope();
        store::read(&*self.store, move |tx| Box::pin(async move { jobs::list_jobs(tx, &scope, req).await })).await
    }

    pub async fn update_job(
        &self,
        call: &Arc<Call>,
        job_id: &str,
        body: UpdateJobBody,
        namespace_id: Option<String>,
    ) -> Result<Job, ServiceError> {
        let (call, id, now) = (call.clone(), job_id.to_string(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let j = jobs::update_job(tx, &call.scope(), &id, &body, namespace_id.as_deref(), now).await?;
                call.record_success(tx, None, vec![call.resource(j.arn(), JOB_RESOURCE_TYPE)]).await?;
                Ok(j)
            })
        })
        .await
    }

    pub async fn cancel_job(&self, call: &Arc<Call>, job_id: &str, body: CancelJobBody, force: bool) -> Result<Job, ServiceError> {
        let (call, id, now) = (call.clone(), job_id.to_string(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let j = jobs::cancel_job(tx, &call.scope(), &id, &body, force, now).await?;
                call.record_success(tx, Some(j.summary_output()), vec![call.resource(j.arn(), JOB_RESOURCE_TYPE)]).await?;
                Ok(j)
            })
        })
        .await
    }

    pub async fn delete_job(&self, call: &Arc<Call>, job_id: &str, force: bool, namespace_id: Option<&str>) -> Result<(), ServiceError> {
        jobs::validate_job_id(job_id)?;
        if let Some(n) = namespace_id {
            jobs::validate_namespace("namespaceId", n)?;
        }
        let (call, id) = (call.clone(), job_id.to_string());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let scope = call.scope();
                jobs::delete_job(tx, &scope, &id, force).await?;
                call.record_success(tx, None, vec![call.resource(job_arn(&scope, &id), JOB_RESOURCE_TYPE)]).await?;
                Ok(())
            })
        })
        .await
    }

    /// Deletes a job and its executions without a record of its own (for DeleteOTAUpdate,
    /// whose own call is recorded). Returns whether the job existed.
    pub async fn delete_job_internal(&self, scope: &Scope, job_id: &str, force: bool) -> Result<bool, ServiceError> {
        let (scope, id) = (scope.clone(), job_id.to_string());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                match jobs::delete_job(tx, &scope, &id, force).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.code == crate::domain::error::codes::RESOURCE_NOT_FOUND => Ok(false),
                    Err(e) => Err(e),
                }
            })
        })
        .await
    }

    pub async fn list_job_executions_for_job(
        &self,
        call: &Arc<Call>,
        job_id: &str,
        status: Option<String>,
        max_results: Option<i64>,
        next_token: Option<String>,
    ) -> Result<ExecutionPage, ServiceError> {
        let (scope, id) = (call.scope(), job_id.to_string());
        store::read(&*self.store, move |tx| {
            Box::pin(async move {
                jobs::list_executions_for_job(tx, &scope, &id, status.as_deref(), max_results, next_token.as_deref()).await
            })
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn list_job_executions_for_thing(
        &self,
        call: &Arc<Call>,
        thing: &str,
        status: Option<String>,
        job_id: Option<String>,
        namespace_id: Option<String>,
        max_results: Option<i64>,
        next_token: Option<String>,
    ) -> Result<ExecutionPage, ServiceError> {
        let (scope, thing) = (call.scope(), thing.to_string());
        store::read(&*self.store, move |tx| {
            Box::pin(async move {
                jobs::list_executions_for_thing(
                    tx,
                    &scope,
                    &thing,
                    status.as_deref(),
                    job_id.as_deref(),
                    namespace_id.as_deref(),
                    max_results,
                    next_token.as_deref(),
                )
                .await
            })
        })
        .await
    }

    /// DescribeJobExecution: the execution and its job's timeout configuration.
    pub async fn describe_job_execution(
        &self,
        call: &Arc<Call>,
        job_id: &str,
        thing: &str,
        execution_number: Option<i64>,
    ) -> Result<(JobExecution, Option<jobs::TimeoutConfig>), ServiceError> {
        let (scope, id, thing) = (call.scope(), job_id.to_string(), thing.to_string());
        store::read(&*self.store, move |tx| {
            Box::pin(async move {
                let e = jobs::get_execution(tx, &scope, &id, &thing, execution_number).await?;
                let timeout = tx.get_job(&scope, &id).await?.and_then(|j| j.spec.timeout);
                Ok((e, timeout))
            })
        })
        .await
    }

    pub async fn cancel_job_execution(
        &self,
        call: &Arc<Call>,
        job_id: &str,
        thing: &str,
        force: bool,
        body: CancelJobExecutionBody,
    ) -> Result<JobExecution, ServiceError> {
        let (call, id, thing, now) = (call.clone(), job_id.to_string(), thing.to_string(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let scope = call.scope();
                let e = jobs::cancel_execution(tx, &scope, &id, &thing, force, &body, now).await?;
                call.record_success(tx, None, vec![call.resource(job_arn(&scope, &id), JOB_RESOURCE_TYPE)]).await?;
                Ok(e)
            })
        })
        .await
    }

    pub async fn delete_job_execution(
        &self,
        call: &Arc<Call>,
        job_id: &str,
        thing: &str,
        execution_number: i64,
        force: bool,
        namespace_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        if let Some(n) = namespace_id {
            jobs::validate_namespace("namespaceId", n)?;
        }
        let (call, id, thing) = (call.clone(), job_id.to_string(), thing.to_string());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let scope = call.scope();
                jobs::delete_execution(tx, &scope, &id, &thing, execution_number, force).await?;
                call.record_success(tx, None, vec![call.resource(job_arn(&scope, &id), JOB_RESOURCE_TYPE)]).await?;
                Ok(())
            })
        })
        .await
    }

    /// A device's status update of its newest execution of `job_id` (the Jobs data plane's
    /// UpdateJobExecution): `new_status` must be IN_PROGRESS, SUCCEEDED, FAILED or REJECTED
    /// and a valid transition (`InvalidStateTransitionException` otherwise), `expected_version`
    /// must match (`VersionConflictException`); `status_details` are merged. Not recorded.
    pub async fn update_job_execution(
        &self,
        scope: &Scope,
        thing: &str,
        job_id: &str,
        new_status: ExecStatus,
        status_details: Option<BTreeMap<String, String>>,
        expected_version: Option<i64>,
    ) -> Result<JobExecution, ServiceError> {
        let (scope, thing, id, now) = (scope.clone(), thing.to_string(), job_id.to_string(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                jobs::update_execution(tx, &scope, &thing, &id, new_status, status_details.as_ref(), expected_version, now).await
            })
        })
        .await
    }

    /// One engine pass over the IN_PROGRESS jobs that are due (at most [`ENGINE_BATCH`] of
    /// them, the longest due first), each job in its own unit of work, several at once. Jobs
    /// with nothing due are not read: tens of thousands of OTA jobs waiting on their devices
    /// cost nothing.
    pub async fn jobs_tick(&self) -> Result<TickReport, ServiceError> {
        use futures::StreamExt;
        let now = self.clock.now();
        let active = store::read::<_, ServiceError, _>(&*self.store, move |tx| {
            Box::pin(async move { Ok(tx.due_jobs(now, ENGINE_BATCH).await?) })
        })
        .await?;
        let mut report = TickReport::default();
        // Jobs are independent units: sent together they share group commits, where one at a
        // time each paid its own commit and a pass over thousands of jobs kept the writer busy
        // for seconds.
        let mut outcomes = futures::stream::iter(active)
            .map(|job| {
                let now = self.clock.now();
                let (scope, id) = (job.scope.clone(), job.job_id.clone());
                async move {
                    let r: Result<Advance, ServiceError> = store::write(&*self.store, move |tx| {
                        Box::pin(async move {
                            // Re-read inside the unit: an API call may have changed it since.
                            let Some(mut job) = tx.get_job(&scope, &id).await? else { return Ok(Advance::default()) };
                            jobs::advance(tx, &mut job, now).await
                        })
                    })
                    .await;
                    (job, r)
                }
            })
            .buffer_unordered(ENGINE_CONCURRENCY);
        while let Some((job, r)) = outcomes.next().await {
            match r {
                Ok(a) => {
                    report.jobs += 1;
                    report.added += a.added;
                    report.released += a.released;
                    report.timed_out += a.timed_out;
                    report.aborted += a.aborted as usize;
                    report.completed += a.completed as usize;
                }
                Err(e) => tracing::warn!(job = %job.job_id, error = %e, "job engine pass failed for a job"),
            }
        }
        Ok(report)
    }

    /// Runs [`App::jobs_tick`] every `interval`.
    pub fn spawn_job_engine(self: &Arc<Self>, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = app.jobs_tick().await {
                    tracing::warn!(error = %e, "job engine pass failed");
                }
            }
        })
    }
}

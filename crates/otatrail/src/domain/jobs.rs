//! IoT Jobs (`aws-api.md` §8): jobs, their executions per target thing, and the rules of the
//! job engine. Every job lives in one [`Scope`] (account and region).
//!
//! Rules kept here, besides the model's constraints:
//! - a job's targets are thing and thing-group ARNs of its own scope that exist; a group
//!   reaches its things and its descendants' things, each thing once;
//! - an execution is created per reached thing. Until the rollout releases it, it *waits*
//!   ([`ExecStatus::Waiting`], never shown: listings, counts and lookups skip it); the
//!   rollout ([`RolloutState`]) releases `maximumPerMinute` executions per minute, or a rate
//!   that starts at `baseRatePerMinute` and grows by `incrementFactor` each time
//!   `rateIncreaseCriteria` is met (capped by `maximumPerMinute`, else 1000); without a rollout
//!   configuration every execution is queued at once;
//! - execution transitions ([`can_transition`]): terminal states are final; a device moves
//!   an execution to IN_PROGRESS, SUCCEEDED, FAILED or REJECTED; the service cancels, times
//!   out (IN_PROGRESS past `inProgressTimeoutInMinutes`) and removes;
//! - abort criteria ([`abort_triggered`]) cancel the job once at least
//!   `minNumberOfExecutedThings` executions finished and the failure share reaches
//!   `thresholdPercentage`; cancelling (also by CancelJob) cancels queued executions, and
//!   in-progress ones only when forced;
//! - a SNAPSHOT job is COMPLETED when no execution waits, is queued or in progress; a
//!   CONTINUOUS job also reaches things that join a target group later, and stays IN_PROGRESS.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::codes;
use super::streams::{Tag, validate_tags};
use super::things::{self, thing_arn, thing_group_arn};
use super::time::Millis;
use super::validate::{self, ID, NO_CONTROL};
use super::{Scope, ServiceError};
use crate::store::StateTx;

/// The CloudTrail resource type.
pub const JOB_RESOURCE_TYPE: &str = "AWS::IoT::Job";
pub const INVALID_STATE_TRANSITION: &str = "InvalidStateTransitionException";

pub const MAX_DOCUMENT: usize = 32768;
pub const MAX_DOCUMENT_SOURCE: usize = 1350;
pub const MAX_DESCRIPTION: usize = 2028;
pub const MAX_ROLLOUT_PER_MINUTE: i64 = 1000;
pub const MAX_TIMEOUT_MINUTES: i64 = 10080;
pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAX_PAGE_SIZE: i64 = 250;
const MINUTE_MS: i64 = 60_000;

static DETAILS_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9:_-]+$").unwrap());
static REASON_CODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[\p{Lu}\p{Nd}_]+$").unwrap());

// --------------------------------------------------------------------------------------
// Enums
// --------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    InProgress,
    Canceled,
    Completed,
    DeletionInProgress,
    Scheduled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] =
        [JobStatus::InProgress, JobStatus::Canceled, JobStatus::Completed, JobStatus::DeletionInProgress, JobStatus::Scheduled];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Completed => "COMPLETED",
            JobStatus::DeletionInProgress => "DELETION_IN_PROGRESS",
            JobStatus::Scheduled => "SCHEDULED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetSelection {
    Continuous,
    Snapshot,
}

impl TargetSelection {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSelection::Continuous => "CONTINUOUS",
            TargetSelection::Snapshot => "SNAPSHOT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CONTINUOUS" => Some(Self::Continuous),
            "SNAPSHOT" => Some(Self::Snapshot),
            _ => None,
        }
    }
}

/// `JobExecutionStatus`, plus the internal `Waiting` of executions the rollout has not
/// released yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExecStatus {
    Waiting,
    Queued,
    InProgress,
    Succeeded,
    Failed,
    TimedOut,
    Rejected,
    Removed,
    Canceled,
}

impl ExecStatus {
    /// The statuses the API shows.
    pub const VISIBLE: [ExecStatus; 8] = [
        ExecStatus::Queued,
        ExecStatus::InProgress,
        ExecStatus::Succeeded,
        ExecStatus::Failed,
        ExecStatus::TimedOut,
        ExecStatus::Rejected,
        ExecStatus::Removed,
        ExecStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Waiting => "WAITING",
            ExecStatus::Queued => "QUEUED",
            ExecStatus::InProgress => "IN_PROGRESS",
            ExecStatus::Succeeded => "SUCCEEDED",
            ExecStatus::Failed => "FAILED",
            ExecStatus::TimedOut => "TIMED_OUT",
            ExecStatus::Rejected => "REJECTED",
            ExecStatus::Removed => "REMOVED",
            ExecStatus::Canceled => "CANCELED",
        }
    }

    /// A stored status (`WAITING` included).
    pub fn from_stored(s: &str) -> Option<Self> {
        if s == "WAITING" { Some(ExecStatus::Waiting) } else { Self::parse(s) }
    }

    /// A `JobExecutionStatus` as a caller sends it (`WAITING` is not one).
    pub fn parse(s: &str) -> Option<Self> {
        Self::VISIBLE.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecStatus::Succeeded
                | ExecStatus::Failed
                | ExecStatus::TimedOut
                | ExecStatus::Rejected
                | ExecStatus::Removed
                | ExecStatus::Canceled
        )
    }

    /// The statuses a device may set (UpdateJobExecution).
    pub fn device_settable(self) -> bool {
        matches!(self, ExecStatus::InProgress | ExecStatus::Succeeded | ExecStatus::Failed | ExecStatus::Rejected)
    }
}

/// Whether an execution may move from `from` to `to`: terminal states are final; an
/// in-progress execution may be updated in place (IN_PROGRESS → IN_PROGRESS).
pub fn can_transition(from: ExecStatus, to: ExecStatus) -> bool {
    use ExecStatus::*;
    match from {
        Waiting => matches!(to, Queued | Canceled | Removed),
        Queued => matches!(to, InProgress | Succeeded | Failed | Rejected | Canceled | Removed),
        InProgress => matches!(to, InProgress | Succeeded | Failed | Rejected | TimedOut | Canceled | Removed),
        _ => false,
    }
}

fn enum_failure(field: &str, value: &str, set: &[&str]) -> ServiceError {
    ServiceError::invalid_request(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        set.join(", ")
    ))
}

pub fn parse_job_status(field: &str, s: &str) -> Result<JobStatus, ServiceError> {
    JobStatus::parse(s).ok_or_else(|| enum_failure(field, s, &JobStatus::ALL.map(JobStatus::as_str)))
}

pub fn parse_target_selection(field: &str, s: &str) -> Result<TargetSelection, ServiceError> {
    TargetSelection::parse(s).ok_or_else(|| enum_failure(field, s, &["CONTINUOUS", "SNAPSHOT"]))
}

pub fn parse_exec_status(field: &str, s: &str) -> Result<ExecStatus, ServiceError> {
    ExecStatus::parse(s).ok_or_else(|| enum_failure(field, s, &ExecStatus::VISIBLE.map(ExecStatus::as_str)))
}

// --------------------------------------------------------------------------------------
// Request shapes (model member names)
// --------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignedUrlConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_sec: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateIncreaseCriteria {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_notified_things: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_succeeded_things: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExponentialRolloutRate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_rate_per_minute: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub increment_factor: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_increase_criteria: Option<RateIncreaseCriteria>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionsRolloutConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_per_minute: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exponential_rate: Option<ExponentialRolloutRate>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortCriteria {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_percentage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_number_of_executed_things: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub criteria_list: Option<Vec<AbortCriteria>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_progress_timeout_in_minutes: Option<i64>,
}

/// The body members of CreateJob.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateJobBody {
    pub targets: Option<Vec<String>>,
    pub document_source: Option<String>,
    pub document: Option<String>,
    pub description: Option<String>,
    pub presigned_url_config: Option<PresignedUrlConfig>,
    pub target_selection: Option<String>,
    pub job_executions_rollout_config: Option<JobExecutionsRolloutConfig>,
    pub abort_config: Option<AbortConfig>,
    pub timeout_config: Option<TimeoutConfig>,
    pub tags: Option<Vec<Tag>>,
    pub namespace_id: Option<String>,
    pub job_template_arn: Option<String>,
    pub job_executions_retry_config: Option<Value>,
    pub document_parameters: Option<Value>,
    pub scheduling_config: Option<Value>,
    pub destination_package_versions: Option<Value>,
}

/// The body members of UpdateJob.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateJobBody {
    pub description: Option<String>,
    pub presigned_url_config: Option<PresignedUrlConfig>,
    pub job_executions_rollout_config: Option<JobExecutionsRolloutConfig>,
    pub abort_config: Option<AbortConfig>,
    pub timeout_config: Option<TimeoutConfig>,
    pub job_executions_retry_config: Option<Value>,
}

/// The body members of CancelJob.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelJobBody {
    pub reason_code: Option<String>,
    pub comment: Option<String>,
}

/// The body members of CancelJobExecution.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelJobExecutionBody {
    pub expected_version: Option<i64>,
    pub status_details: Option<BTreeMap<String, String>>,
}

// --------------------------------------------------------------------------------------
// Resources
// --------------------------------------------------------------------------------------

/// Where the rollout stands (kept with the job).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    /// Start of the current one-minute window (epoch ms).
    pub window_start: i64,
    pub released_in_window: i64,
    /// The current per-minute rate of an exponential rollout (0 before the first release).
    pub rate: i64,
    /// Executions released so far.
    pub notified: i64,
    /// `notified` and the succeeded count when the rate last grew.
    pub notified_at_increase: i64,
    pub succeeded_at_increase: i64,
}

/// What a job is besides its identity and status (stored as one JSON value).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    pub document: String,
    pub document_source: Option<String>,
    pub description: Option<String>,
    pub presigned_url_config: Option<PresignedUrlConfig>,
    pub rollout: Option<JobExecutionsRolloutConfig>,
    pub abort: Option<AbortConfig>,
    pub timeout: Option<TimeoutConfig>,
    pub tags: Vec<Tag>,
    pub namespace_id: Option<String>,
    pub force_canceled: bool,
    pub reason_code: Option<String>,
    pub comment: Option<String>,
    pub rollout_state: RolloutState,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub scope: Scope,
    pub job_id: String,
    pub status: JobStatus,
    pub target_selection: TargetSelection,
    /// Thing and thing-group ARNs, as given (duplicates removed).
    pub targets: Vec<String>,
    pub spec: JobSpec,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub completed_at: Option<Millis>,
}

pub fn job_arn(scope: &Scope, job_id: &str) -> String {
    scope.arn("iot", &format!("job/{job_id}"))
}

/// Executions per status, waiting ones apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub waiting: i64,
    pub queued: i64,
    pub in_progress: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub timed_out: i64,
    pub rejected: i64,
    pub removed: i64,
    pub canceled: i64,
}

impl Counts {
    pub fn from_pairs(pairs: &[(ExecStatus, i64)]) -> Self {
        let mut c = Counts::default();
        for (s, n) in pairs {
            let slot = match s {
                ExecStatus::Waiting => &mut c.waiting,
                ExecStatus::Queued => &mut c.queued,
                ExecStatus::InProgress => &mut c.in_progress,
                ExecStatus::Succeeded => &mut c.succeeded,
                ExecStatus::Failed => &mut c.failed,
                ExecStatus::TimedOut => &mut c.timed_out,
                ExecStatus::Rejected => &mut c.rejected,
                ExecStatus::Removed => &mut c.removed,
                ExecStatus::Canceled => &mut c.canceled,
            };
            *slot += n;
        }
        c
    }

    /// Executions that ran to an outcome (what abort criteria count).
    pub fn executed(&self) -> i64 {
        self.succeeded + self.failed + self.rejected + self.timed_out
    }

    /// Executions not yet in a terminal state.
    pub fn open(&self) -> i64 {
        self.waiting + self.queued + self.in_progress
    }

    /// `JobProcessDetails`.
    pub fn process_details(&self) -> Value {
        json!({
            "numberOfCanceledThings": self.canceled,
            "numberOfSucceededThings": self.succeeded,
            "numberOfFailedThings": self.failed,
            "numberOfRejectedThings": self.rejected,
            "numberOfQueuedThings": self.queued,
            "numberOfInProgressThings": self.in_progress,
            "numberOfRemovedThings": self.removed,
            "numberOfTimedOutThings": self.timed_out,
        })
    }
}

fn ts(m: Millis) -> Value {
    json!(m.as_epoch_seconds())
}

impl Job {
    pub fn arn(&self) -> String {
        job_arn(&self.scope, &self.job_id)
    }

    /// CreateJob's and CancelJob's output.
    pub fn summary_output(&self) -> Value {
        let mut v = json!({ "jobArn": self.arn(), "jobId": self.job_id });
        if let Some(d) = &self.spec.description {
            v["description"] = json!(d);
        }
        v
    }

    /// The `Job` shape of DescribeJob.
    pub fn description(&self, counts: &Counts) -> Value {
        let s = &self.spec;
        let mut v = json!({
            "jobArn": self.arn(),
            "jobId": self.job_id,
            "targetSelection": self.target_selection.as_str(),
            "status": self.status.as_str(),
            "forceCanceled": s.force_canceled,
            "targets": self.targets,
        });
        if let Some(r) = &s.reason_code {
            v["reasonCode"] = json!(r);
        }
        if let Some(c) = &s.comment {
            v["comment"] = json!(c);
        }
        if let Some(d) = &s.description {
            v["description"] = json!(d);
        }
        if let Some(p) = &s.presigned_url_config {
            v["presignedUrlConfig"] = json!(p);
        }
        if let Some(r) = &s.rollout {
            v["jobExecutionsRolloutConfig"] = json!(r);
        }
        if let Some(a) = &s.abort {
            v["abortConfig"] = json!(a);
        }
        v["createdAt"] = ts(self.created_at);
        v["lastUpdatedAt"] = ts(self.updated_at);
        if let Some(c) = self.completed_at {
            v["completedAt"] = ts(c);
        }
        v["jobProcessDetails"] = counts.process_details();
        if let Some(t) = &s.timeout {
            v["timeoutConfig"] = json!(t);
        }
        if let Some(n) = &s.namespace_id {
            v["namespaceId"] = json!(n);
        }
        v["isConcurrent"] = json!(false);
        v
    }

    /// `JobSummary`, an item of ListJobs.
    pub fn list_item(&self) -> Value {
        let mut v = json!({
            "jobArn": self.arn(),
            "jobId": self.job_id,
            "targetSelection": self.target_selection.as_str(),
            "status": self.status.as_str(),
            "createdAt": ts(self.created_at),
            "lastUpdatedAt": ts(self.updated_at),
        });
        if let Some(c) = self.completed_at {
            v["completedAt"] = ts(c);
        }
        v["isConcurrent"] = json!(false);
        v
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobExecution {
    pub scope: Scope,
    pub job_id: String,
    pub thing_name: String,
    /// Unique among a thing's executions.
    pub execution_number: i64,
    pub status: ExecStatus,
    pub force_canceled: bool,
    pub status_details: BTreeMap<String, String>,
    /// When the rollout released it (None while waiting).
    pub queued_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub last_updated_at: Millis,
    pub version_number: i64,
}

impl JobExecution {
    pub fn thing_arn(&self) -> String {
        thing_arn(&self.scope, &self.thing_name)
    }

    /// Seconds left before an in-progress execution times out.
    pub fn seconds_before_timeout(&self, timeout: Option<&TimeoutConfig>, now: Millis) -> Option<i64> {
        let minutes = timeout?.in_progress_timeout_in_minutes?;
        if self.status != ExecStatus::InProgress {
            return None;
        }
        let started = self.started_at?;
        Some(((started.0 + minutes * MINUTE_MS - now.0) / 1000).max(0))
    }

    /// The `JobExecution` shape of DescribeJobExecution.
    pub fn description(&self, timeout: Option<&TimeoutConfig>, now: Millis) -> Value {
        let mut v = json!({
            "jobId": self.job_id,
            "status": self.status.as_str(),
            "forceCanceled": self.force_canceled,
            "statusDetails": { "detailsMap": self.status_details },
            "thingArn": self.thing_arn(),
        });
        if let Some(q) = self.queued_at {
            v["queuedAt"] = ts(q);
        }
        if let Some(s) = self.started_at {
            v["startedAt"] = ts(s);
        }
        v["lastUpdatedAt"] = ts(self.last_updated_at);
        v["executionNumber"] = json!(self.execution_number);
        v["versionNumber"] = json!(self.version_number);
        if let Some(s) = self.seconds_before_timeout(timeout, now) {
            v["approximateSecondsBeforeTimedOut"] = json!(s);
        }
        v
    }

    /// `JobExecutionSummary`.
    pub fn summary(&self) -> Value {
        let mut v = json!({ "status": self.status.as_str() });
        if let Some(q) = self.queued_at {
            v["queuedAt"] = ts(q);
        }
        if let Some(s) = self.started_at {
            v["startedAt"] = ts(s);
        }
        v["lastUpdatedAt"] = ts(self.last_updated_at);
        v["executionNumber"] = json!(self.execution_number);
        v["retryAttempt"] = json!(0);
        v
    }
}

// --------------------------------------------------------------------------------------
// Validation
// --------------------------------------------------------------------------------------

fn required(field: &str) -> ServiceError {
    ServiceError::invalid_request(format!(
        "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
    ))
}

fn double_failure(field: &str, value: f64, constraint: &str) -> ServiceError {
    ServiceError::invalid_request(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

fn min_failure(field: &str, value: i64, min: i64) -> ServiceError {
    ServiceError::invalid_request(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must have value greater than or equal to {min}"
    ))
}

pub fn validate_job_id(id: &str) -> Result<(), ServiceError> {
    validate::length("jobId", id, 1, 64)?;
    validate::pattern("jobId", id, &ID, "[a-zA-Z0-9_-]+")
}

fn validate_text(field: &str, s: &str, max: usize) -> Result<(), ServiceError> {
    validate::length(field, s, 0, max)?;
    validate::pattern(field, s, &NO_CONTROL, "[^\\p{C}]+")
}

pub fn validate_namespace(field: &str, n: &str) -> Result<(), ServiceError> {
    validate::pattern(field, n, &ID, "[a-zA-Z0-9_-]+")
}

fn validate_presigned(p: &PresignedUrlConfig) -> Result<(), ServiceError> {
    if let Some(r) = &p.role_arn {
        validate::length("presignedUrlConfig.roleArn", r, 20, 2048)?;
    }
    if let Some(e) = p.expires_in_sec {
        validate::int_range("presignedUrlConfig.expiresInSec", e, 60, 3600)?;
    }
    Ok(())
}

pub fn validate_rollout(r: &JobExecutionsRolloutConfig) -> Result<(), ServiceError> {
    const F: &str = "jobExecutionsRolloutConfig";
    if let Some(m) = r.maximum_per_minute {
        validate::int_range(&format!("{F}.maximumPerMinute"), m, 1, MAX_ROLLOUT_PER_MINUTE)?;
    }
    if let Some(e) = &r.exponential_rate {
        let base = e.base_rate_per_minute.ok_or_else(|| required(&format!("{F}.exponentialRate.baseRatePerMinute")))?;
        validate::int_range(&format!("{F}.exponentialRate.baseRatePerMinute"), base, 1, MAX_ROLLOUT_PER_MINUTE)?;
        let f = e.increment_factor.ok_or_else(|| required(&format!("{F}.exponentialRate.incrementFactor")))?;
        let field = format!("{F}.exponentialRate.incrementFactor");
        if !(f >= 1.1) {
            return Err(double_failure(&field, f, "Member must have value greater than or equal to 1.1"));
        }
        if f > 5.0 {
            return Err(double_failure(&field, f, "Member must have value less than or equal to 5"));
        }
        let c = e
            .rate_increase_criteria
            .as_ref()
            .ok_or_else(|| required(&format!("{F}.exponentialRate.rateIncreaseCriteria")))?;
        for (name, v) in [("numberOfNotifiedThings", c.number_of_notified_things), ("numberOfSucceededThings", c.number_of_succeeded_things)] {
            if let Some(v) = v
                && v < 1
            {
                return Err(min_failure(&format!("{F}.exponentialRate.rateIncreaseCriteria.{name}"), v, 1));
            }
        }
        if c.number_of_notified_things.is_none() && c.number_of_succeeded_things.is_none() {
            return Err(ServiceError::invalid_request(
                "rateIncreaseCriteria must specify numberOfNotifiedThings or numberOfSucceededThings.",
            ));
        }
        if let Some(m) = r.maximum_per_minute
            && m < base
        {
            return Err(ServiceError::invalid_request(format!(
                "maximumPerMinute ({m}) must be at least exponentialRate.baseRatePerMinute ({base})."
            )));
        }
    }
    Ok(())
}

const FAILURE_TYPES: [&str; 4] = ["FAILED", "REJECTED", "TIMED_OUT", "ALL"];

pub fn validate_abort(a: &AbortConfig) -> Result<(), ServiceError> {
    let list = a.criteria_list.as_ref().ok_or_else(|| required("abortConfig.criteriaList"))?;
    validate::list_len("abortConfig.criteriaList", list.len(), 1, usize::MAX)?;
    let mut seen = BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        let f = |m: &str| format!("abortConfig.criteriaList.{}.member.{m}", i + 1);
        let ft = c.failure_type.as_deref().ok_or_else(|| required(&f("failureType")))?;
        if !FAILURE_TYPES.contains(&ft) {
            return Err(enum_failure(&f("failureType"), ft, &FAILURE_TYPES));
        }
        let action = c.action.as_deref().ok_or_else(|| required(&f("action")))?;
        if action != "CANCEL" {
            return Err(enum_failure(&f("action"), action, &["CANCEL"]));
        }
        let p = c.threshold_percentage.ok_or_else(|| required(&f("thresholdPercentage")))?;
        if !(p <= 100.0) {
            return Err(double_failure(&f("thresholdPercentage"), p, "Member must have value less than or equal to 100"));
        }
        if p < 0.0 {
            return Err(double_failure(&f("thresholdPercentage"), p, "Member must have value greater than or equal to 0"));
        }
        let m = c.min_number_of_executed_things.ok_or_else(|| required(&f("minNumberOfExecutedThings")))?;
        if m < 1 {
            return Err(min_failure(&f("minNumberOfExecutedThings"), m, 1));
        }
        if !seen.insert(ft) {
            return Err(ServiceError::invalid_request(format!(
                "abortConfig.criteriaList has more than one criteria for failureType {ft}."
            )));
        }
    }
    Ok(())
}

pub fn validate_timeout(t: &TimeoutConfig) -> Result<(), ServiceError> {
    if let Some(m) = t.in_progress_timeout_in_minutes {
        validate::int_range("timeoutConfig.inProgressTimeoutInMinutes", m, 1, MAX_TIMEOUT_MINUTES)?;
    }
    Ok(())
}

/// The job document: a JSON object of at most 32768 characters.
pub fn validate_document(field: &str, doc: &str) -> Result<(), ServiceError> {
    validate::length(field, doc, 0, MAX_DOCUMENT)?;
    match serde_json::from_str::<Value>(doc) {
        Ok(Value::Object(_)) => Ok(()),
        _ => Err(ServiceError::invalid_request("The job document must be a valid JSON object.")),
    }
}

/// `(bucket, key)` of a `documentSource` URL naming an S3 object:
/// `https://s3.amazonaws.com/bucket/key`, `https://s3.<region>.amazonaws.com/bucket/key`,
/// `https://bucket.s3.amazonaws.com/key` or `https://bucket.s3.<region>.amazonaws.com/key`.
pub fn parse_document_source(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let (host, path) = rest.split_once('/')?;
    let host = host.to_ascii_lowercase();
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned());
    let is_s3_host = |h: &str| h == "s3" || (h.starts_with("s3.") || h.starts_with("s3-")) && !h.contains('/');
    let base = host.strip_suffix(".amazonaws.com")?;
    let (bucket, key) = if is_s3_host(base) {
        let (b, k) = path.split_once('/')?;
        (decode(b)?, decode(k)?)
    } else {
        let (b, h) = base.split_once('.')?;
        if !is_s3_host(h) {
            return None;
        }
        (b.to_string(), decode(path)?)
    };
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

/// A CreateJob request that passed every model constraint. `document` holds the document
/// itself (read from `documentSource` by the app layer when that was given).
#[derive(Clone, Debug, PartialEq)]
pub struct ValidCreateJob {
    pub job_id: String,
    pub targets: Vec<String>,
    pub target_selection: TargetSelection,
    pub document: String,
    pub document_source: Option<String>,
    pub description: Option<String>,
    pub presigned_url_config: Option<PresignedUrlConfig>,
    pub rollout: Option<JobExecutionsRolloutConfig>,
    pub abort: Option<AbortConfig>,
    pub timeout: Option<TimeoutConfig>,
    pub tags: Vec<Tag>,
    pub namespace_id: Option<String>,
}

/// Checks a CreateJob request. With a `documentSource` the returned `document` is empty
/// until the app layer fills it in (and checks it with [`validate_document`]).
pub fn validate_create_job(job_id: &str, body: &CreateJobBody) -> Result<ValidCreateJob, ServiceError> {
    validate_job_id(job_id)?;
    let targets = body.targets.as_ref().ok_or_else(|| required("targets"))?;
    validate::list_len("targets", targets.len(), 1, usize::MAX)?;
    let mut unique: Vec<String> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        validate::length(&format!("targets.{}.member", i + 1), t, 0, 2048)?;
        if !unique.contains(t) {
            unique.push(t.clone());
        }
    }
    match (&body.document, &body.document_source) {
        (None, None) => {
            return Err(ServiceError::invalid_request("Either document or documentSource must be specified."));
        }
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid_request("Only one of document or documentSource can be specified."));
        }
        (Some(d), None) => validate_document("document", d)?,
        (None, Some(s)) => {
            validate::length("documentSource", s, 1, MAX_DOCUMENT_SOURCE)?;
            if parse_document_source(s).is_none() {
                return Err(ServiceError::invalid_request(format!(
                    "The documentSource {s} is not an S3 object URL (https://s3.amazonaws.com/<bucket>/<key> or https://<bucket>.s3.amazonaws.com/<key>)."
                )));
            }
        }
    }
    if let Some(d) = &body.description {
        validate_text("description", d, MAX_DESCRIPTION)?;
    }
    if let Some(p) = &body.presigned_url_config {
        validate_presigned(p)?;
    }
    let target_selection = match &body.target_selection {
        Some(s) => parse_target_selection("targetSelection", s)?,
        None => TargetSelection::Snapshot,
    };
    if let Some(r) = &body.job_executions_rollout_config {
        validate_rollout(r)?;
    }
    if let Some(a) = &body.abort_config {
        validate_abort(a)?;
    }
    if let Some(t) = &body.timeout_config {
        validate_timeout(t)?;
    }
    let tags = body.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    if let Some(n) = &body.namespace_id {
        validate_namespace("namespaceId", n)?;
    }
    if let Some(a) = &body.job_template_arn {
        validate::length("jobTemplateArn", a, 1, 1600)?;
    }
    for (name, given) in [
        ("jobTemplateArn", body.job_template_arn.is_some()),
        ("jobExecutionsRetryConfig", body.job_executions_retry_config.is_some()),
        ("documentParameters", body.document_parameters.is_some()),
        ("schedulingConfig", body.scheduling_config.is_some()),
        ("destinationPackageVersions", body.destination_package_versions.is_some()),
    ] {
        if given {
            return Err(ServiceError::invalid_request(format!("{name} is not supported by this server.")));
        }
    }
    Ok(ValidCreateJob {
        job_id: job_id.to_string(),
        targets: unique,
        target_selection,
        document: body.document.clone().unwrap_or_default(),
        document_source: body.document_source.clone(),
        description: body.description.clone(),
        presigned_url_config: body.presigned_url_config.clone(),
        rollout: body.job_executions_rollout_config.clone(),
        abort: body.abort_config.clone(),
        timeout: body.timeout_config.clone(),
        tags,
        namespace_id: body.namespace_id.clone(),
    })
}

pub fn validate_update_job(job_id: &str, body: &UpdateJobBody, namespace_id: Option<&str>) -> Result<(), ServiceError> {
    validate_job_id(job_id)?;
    if let Some(d) = &body.description {
        validate_text("description", d, MAX_DESCRIPTION)?;
    }
    if let Some(p) = &body.presigned_url_config {
        validate_presigned(p)?;
    }
    if let Some(r) = &body.job_executions_rollout_config {
        validate_rollout(r)?;
    }
    if let Some(a) = &body.abort_config {
        validate_abort(a)?;
    }
    if let Some(t) = &body.timeout_config {
        validate_timeout(t)?;
    }
    if let Some(n) = namespace_id {
        validate_namespace("namespaceId", n)?;
    }
    if body.job_executions_retry_config.is_some() {
        return Err(ServiceError::invalid_request("jobExecutionsRetryConfig is not supported by this server."));
    }
    Ok(())
}

pub fn validate_cancel_job(job_id: &str, body: &CancelJobBody) -> Result<(), ServiceError> {
    validate_job_id(job_id)?;
    if let Some(r) = &body.reason_code {
        validate::length("reasonCode", r, 0, 128)?;
        validate::pattern("reasonCode", r, &REASON_CODE, "[\\p{Upper}\\p{Digit}_]+")?;
    }
    if let Some(c) = &body.comment {
        validate_text("comment", c, MAX_DESCRIPTION)?;
    }
    Ok(())
}

/// `DetailsMap`: keys `[a-zA-Z0-9:_-]+` of 1..128 characters, values `[^\p{C}]+`.
pub fn validate_details(field: &str, m: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    for (k, v) in m {
        if k.is_empty() || k.chars().count() > 128 || !DETAILS_KEY.is_match(k) {
            return Err(ServiceError::invalid_request(format!(
                "1 validation error detected: Value '{k}' at '{field}' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length between 1 and 128, inclusive, Member must satisfy regular expression pattern: [a-zA-Z0-9:_-]+]"
            )));
        }
        if !NO_CONTROL.is_match(v) {
            return Err(ServiceError::invalid_request(format!(
                "1 validation error detected: Value '{}' at '{field}' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [^\\p{{C}}]+]",
                v.chars().take(256).collect::<String>()
            )));
        }
    }
    Ok(())
}

// --------------------------------------------------------------------------------------
// Rollout and abort math (pure)
// --------------------------------------------------------------------------------------

/// How many waiting executions may be released at `now`, moving the window and growing an
/// exponential rate as its criteria are met. `i64::MAX` without a rollout configuration.
pub fn rollout_budget(cfg: Option<&JobExecutionsRolloutConfig>, st: &mut RolloutState, now: Millis, succeeded: i64) -> i64 {
    let Some(cfg) = cfg.filter(|c| c.maximum_per_minute.is_some() || c.exponential_rate.is_some()) else {
        return i64::MAX;
    };
    let cap = cfg.maximum_per_minute.unwrap_or(MAX_ROLLOUT_PER_MINUTE);
    let rate = match &cfg.exponential_rate {
        Some(e) => {
            let base = e.base_rate_per_minute.unwrap_or(1).min(cap);
            if st.rate == 0 {
                st.rate = base;
            }
            let c = e.rate_increase_criteria.clone().unwrap_or_default();
            let by_notified = c.number_of_notified_things.is_some_and(|n| st.notified - st.notified_at_increase >= n);
            let by_succeeded = c.number_of_succeeded_things.is_some_and(|n| succeeded - st.succeeded_at_increase >= n);
            if (by_notified || by_succeeded) && st.rate < cap {
                let factor = e.increment_factor.unwrap_or(1.1);
                st.rate = ((st.rate as f64 * factor).ceil() as i64).clamp(st.rate + 1, cap);
                st.notified_at_increase = st.notified;
                st.succeeded_at_increase = succeeded;
            }
            st.rate
        }
        None => cap,
    };
    if st.window_start == 0 || now.0 - st.window_start >= MINUTE_MS {
        let elapsed = if st.window_start == 0 { 0 } else { (now.0 - st.window_start) / MINUTE_MS * MINUTE_MS };
        st.window_start = if st.window_start == 0 { now.0 } else { st.window_start + elapsed };
        st.released_in_window = 0;
    }
    (rate - st.released_in_window).max(0)
}

impl RolloutState {
    pub fn note_released(&mut self, n: i64) {
        self.released_in_window += n;
        self.notified += n;
    }
}

/// The first criteria of `cfg` that the counts meet, if any.
pub fn abort_triggered<'a>(cfg: &'a AbortConfig, c: &Counts) -> Option<&'a AbortCriteria> {
    let executed = c.executed();
    cfg.criteria_list.as_deref().unwrap_or_default().iter().find(|cr| {
        let failures = match cr.failure_type.as_deref() {
            Some("FAILED") => c.failed,
            Some("REJECTED") => c.rejected,
            Some("TIMED_OUT") => c.timed_out,
            Some("ALL") => c.failed + c.rejected + c.timed_out,
            _ => return false,
        };
        let min = cr.min_number_of_executed_things.unwrap_or(1);
        let threshold = cr.threshold_percentage.unwrap_or(100.0);
        executed >= min && executed > 0 && (failures as f64) * 100.0 / (executed as f64) >= threshold
    })
}

// --------------------------------------------------------------------------------------
// Errors
// --------------------------------------------------------------------------------------

fn job_not_found(id: &str) -> ServiceError {
    ServiceError::not_found(format!("Job {id} cannot be found."))
}

fn execution_not_found(job_id: &str, thing: &str) -> ServiceError {
    ServiceError::not_found(format!("Job execution of job {job_id} on thing {thing} cannot be found."))
}

fn transition_error(e: &JobExecution, to: ExecStatus) -> ServiceError {
    ServiceError::new(
        INVALID_STATE_TRANSITION,
        format!(
            "The job execution of job {} on thing {} is in status {} and cannot move to {}.",
            e.job_id,
            e.thing_name,
            e.status.as_str(),
            to.as_str()
        ),
    )
}

fn version_conflict(e: &JobExecution, expected: i64) -> ServiceError {
    ServiceError::new(
        codes::VERSION_CONFLICT,
        format!(
            "The version of the job execution of job {} on thing {} is {}, which does not match the expected version {expected}.",
            e.job_id, e.thing_name, e.version_number
        ),
    )
}

// --------------------------------------------------------------------------------------
// Operations on a StateTx
// --------------------------------------------------------------------------------------

/// Every thing name the targets reach, each once, by name. Targets of another scope, or
/// that are neither thing nor thing-group ARNs, are refused; missing ones are not found.
pub async fn resolve_targets(tx: &mut dyn StateTx, scope: &Scope, targets: &[String]) -> Result<Vec<String>, ServiceError> {
    let mut out = BTreeSet::new();
    for t in targets {
        if let Some(name) = things::thing_name_from_arn(scope, t) {
            if !things::thing_exists(tx, scope, &name).await? {
                return Err(ServiceError::not_found(format!("Thing {name} cannot be found.")));
            }
            out.insert(name);
        } else if let Some(group) = things::thing_group_name_from_arn(scope, t) {
            out.extend(things::things_in_group_recursive(tx, scope, &group).await?);
        } else {
            return Err(ServiceError::invalid_request(format!(
                "Target {t} is not the ARN of a thing or thing group in account {} and region {}.",
                scope.account_id, scope.region
            )));
        }
    }
    Ok(out.into_iter().collect())
}

async fn counts(tx: &mut dyn StateTx, scope: &Scope, job_id: &str) -> Result<Counts, ServiceError> {
    Ok(Counts::from_pairs(&tx.count_job_executions(scope, job_id).await?))
}

/// Every execution of a job in one of `statuses`, by thing name.
async fn all_executions(
    tx: &mut dyn StateTx,
    scope: &Scope,
    job_id: &str,
    statuses: &[ExecStatus],
    limit: Option<i64>,
) -> Result<Vec<JobExecution>, ServiceError> {
    const BATCH: i64 = 1000;
    let mut out: Vec<JobExecution> = Vec::new();
    loop {
        let want = limit.map(|l| (l - out.len() as i64).min(BATCH)).unwrap_or(BATCH);
        if want <= 0 {
            return Ok(out);
        }
        let after = out.last().map(|e| e.thing_name.clone());
        let batch = tx.list_job_executions(scope, job_id, statuses, after.as_deref(), want).await?;
        let done = (batch.len() as i64) < want;
        out.extend(batch);
        if done {
            return Ok(out);
        }
    }
}

/// Creates waiting executions for reached things that have none in this job yet.
async fn add_executions(tx: &mut dyn StateTx, job: &Job, names: &[String], now: Millis) -> Result<usize, ServiceError> {
    let existing: BTreeSet<String> = all_executions(tx, &job.scope, &job.job_id, &ALL_STATUSES, None)
        .await?
        .into_iter()
        .map(|e| e.thing_name)
        .collect();
    let mut added = 0;
    for name in names.iter().filter(|n| !existing.contains(*n)) {
        let number = tx.next_execution_number(&job.scope, name).await?;
        tx.insert_job_execution(&JobExecution {
            scope: job.scope.clone(),
            job_id: job.job_id.clone(),
            thing_name: name.clone(),
            execution_number: number,
            status: ExecStatus::Waiting,
            force_canceled: false,
            status_details: BTreeMap::new(),
            queued_at: None,
            started_at: None,
            last_updated_at: now,
            version_number: 1,
        })
        .await?;
        added += 1;
    }
    Ok(added)
}

const ALL_STATUSES: [ExecStatus; 9] = [
    ExecStatus::Waiting,
    ExecStatus::Queued,
    ExecStatus::InProgress,
    ExecStatus::Succeeded,
    ExecStatus::Failed,
    ExecStatus::TimedOut,
    ExecStatus::Rejected,
    ExecStatus::Removed,
    ExecStatus::Canceled,
];

/// Creates a job with an execution per reached thing, then releases what the rollout allows.
pub async fn create_job(tx: &mut dyn StateTx, scope: &Scope, req: ValidCreateJob, now: Millis) -> Result<Job, ServiceError> {
    if tx.get_job(scope, &req.job_id).await?.is_some() {
        return Err(ServiceError::new(codes::RESOURCE_ALREADY_EXISTS, format!("Job {} already exists.", req.job_id))
            .with_member("resourceId", req.job_id.clone())
            .with_member("resourceArn", job_arn(scope, &req.job_id)));
    }
    let names = resolve_targets(tx, scope, &req.targets).await?;
    let mut job = Job {
        scope: scope.clone(),
        job_id: req.job_id,
        status: JobStatus::InProgress,
        target_selection: req.target_selection,
        targets: req.targets,
        spec: JobSpec {
            document: req.document,
            document_source: req.document_source,
            description: req.description,
            presigned_url_config: req.presigned_url_config,
            rollout: req.rollout,
            abort: req.abort,
            timeout: req.timeout,
            tags: req.tags,
            namespace_id: req.namespace_id,
            ..Default::default()
        },
        created_at: now,
        updated_at: now,
        completed_at: None,
    };
    tx.insert_job(&job).await?;
    add_executions(tx, &job, &names, now).await?;
    release(tx, &mut job, now).await?;
    tx.update_job(&job).await?;
    // Nothing runs yet, so no timeout is pending.
    let c = counts(tx, scope, &job.job_id).await?;
    tx.set_job_due(scope, &job.job_id, next_due(&job, &c, None, now)).await?;
    Ok(job)
}

/// When the engine next has work for an IN_PROGRESS job if nothing changes meanwhile: at
/// once for a SNAPSHOT job with nothing open (it completes), the next rollout window while
/// executions wait, the timeout of the in-progress execution that started first. Changes to
/// executions and (CONTINUOUS) to the registry make a job due earlier by themselves (the
/// store's contract, [`StateTx::due_jobs`]), so abort criteria and completion need no polling.
/// `c`: the job's counts now; `first_started`: when its oldest in-progress execution started.
fn next_due(job: &Job, c: &Counts, first_started: Option<Millis>, now: Millis) -> Option<Millis> {
    let completes = (job.target_selection == TargetSelection::Snapshot && c.open() == 0).then_some(now);
    // Executions still wait only when this window's budget is spent.
    let start = job.spec.rollout_state.window_start;
    let window = (c.waiting > 0).then(|| if start == 0 { now } else { Millis(start + MINUTE_MS) });
    let timeout = job
        .spec
        .timeout
        .as_ref()
        .and_then(|t| t.in_progress_timeout_in_minutes)
        .zip(first_started)
        .map(|(minutes, s)| Millis(s.0 + minutes * MINUTE_MS));
    [completes, window, timeout].into_iter().flatten().min()
}

/// Queues as many waiting executions as the rollout allows now.
async fn release(tx: &mut dyn StateTx, job: &mut Job, now: Millis) -> Result<i64, ServiceError> {
    let c = counts(tx, &job.scope, &job.job_id).await?;
    if c.waiting == 0 {
        return Ok(0);
    }
    let budget = rollout_budget(job.spec.rollout.as_ref(), &mut job.spec.rollout_state, now, c.succeeded);
    if budget <= 0 {
        return Ok(0);
    }
    let waiting = all_executions(tx, &job.scope, &job.job_id, &[ExecStatus::Waiting], Some(budget.min(c.waiting))).await?;
    let n = waiting.len() as i64;
    for mut e in waiting {
        e.status = ExecStatus::Queued;
        e.queued_at = Some(now);
        e.last_updated_at = now;
        tx.update_job_execution(&e).await?;
    }
    job.spec.rollout_state.note_released(n);
    Ok(n)
}

/// What one engine pass did to a job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advance {
    pub added: usize,
    pub released: i64,
    pub timed_out: usize,
    pub aborted: bool,
    pub completed: bool,
}

/// One engine pass over an IN_PROGRESS job: CONTINUOUS targets reconciled, in-progress
/// timeouts, abort criteria, rollout release, SNAPSHOT completion. Saves the job.
pub async fn advance(tx: &mut dyn StateTx, job: &mut Job, now: Millis) -> Result<Advance, ServiceError> {
    let mut out = Advance::default();
    if job.status != JobStatus::InProgress {
        return Ok(out);
    }
    if job.target_selection == TargetSelection::Continuous {
        // A target group deleted since creation reaches nothing any more.
        let mut names = BTreeSet::new();
        for t in job.targets.clone() {
            if let Some(n) = things::thing_name_from_arn(&job.scope, &t) {
                if things::thing_exists(tx, &job.scope, &n).await? {
                    names.insert(n);
                }
            } else if let Some(g) = things::thing_group_name_from_arn(&job.scope, &t)
                && things::thing_group_exists(tx, &job.scope, &g).await?
            {
                names.extend(things::things_in_group_recursive(tx, &job.scope, &g).await?);
            }
        }
        out.added = add_executions(tx, job, &names.into_iter().collect::<Vec<_>>(), now).await?;
    }
    // When the oldest execution still in progress started, for the next timeout.
    let mut first_started: Option<Millis> = None;
    if let Some(minutes) = job.spec.timeout.as_ref().and_then(|t| t.in_progress_timeout_in_minutes) {
        for mut e in all_executions(tx, &job.scope, &job.job_id, &[ExecStatus::InProgress], None).await? {
            if e.started_at.is_some_and(|s| s.0 + minutes * MINUTE_MS <= now.0) {
                e.status = ExecStatus::TimedOut;
                e.last_updated_at = now;
                e.version_number += 1;
                tx.update_job_execution(&e).await?;
                out.timed_out += 1;
            } else if let Some(s) = e.started_at {
                first_started = Some(first_started.map_or(s, |f| f.min(s)));
            }
        }
    }
    if let Some(abort) = job.spec.abort.clone() {
        let c = counts(tx, &job.scope, &job.job_id).await?;
        if let Some(cr) = abort_triggered(&abort, &c) {
            let comment = format!(
                "Canceled by abort criteria: failureType {} reached {}% of at least {} executed things.",
                cr.failure_type.as_deref().unwrap_or(""),
                cr.threshold_percentage.unwrap_or(0.0),
                cr.min_number_of_executed_things.unwrap_or(1)
            );
            cancel_effects(tx, job, false, None, Some(comment), now).await?;
            out.aborted = true;
            tx.update_job(job).await?;
            return Ok(out);
        }
    }
    out.released = release(tx, job, now).await?;
    let c = counts(tx, &job.scope, &job.job_id).await?;
    if job.target_selection == TargetSelection::Snapshot && c.open() == 0 {
        job.status = JobStatus::Completed;
        job.completed_at = Some(now);
        job.updated_at = now;
        out.completed = true;
    }
    if out.added > 0 || out.timed_out > 0 {
        job.updated_at = now;
    }
    tx.update_job(job).await?;
    if !out.completed {
        tx.set_job_due(&job.scope, &job.job_id, next_due(job, &c, first_started, now)).await?;
    }
    Ok(out)
}

/// Cancels a job: its waiting and queued executions are canceled, in-progress ones too when
/// `force`.
async fn cancel_effects(
    tx: &mut dyn StateTx,
    job: &mut Job,
    force: bool,
    reason_code: Option<String>,
    comment: Option<String>,
    now: Millis,
) -> Result<(), ServiceError> {
    let mut which = vec![ExecStatus::Waiting, ExecStatus::Queued];
    if force {
        which.push(ExecStatus::InProgress);
    }
    for mut e in all_executions(tx, &job.scope, &job.job_id, &which, None).await? {
        if e.status == ExecStatus::Waiting {
            // Never released: the thing never heard of it.
            tx.delete_job_execution(&job.scope, &job.job_id, &e.thing_name, e.execution_number).await?;
            continue;
        }
        e.force_canceled = e.status == ExecStatus::InProgress;
        e.status = ExecStatus::Canceled;
        e.last_updated_at = now;
        e.version_number += 1;
        tx.update_job_execution(&e).await?;
    }
    job.status = JobStatus::Canceled;
    job.spec.force_canceled = job.spec.force_canceled || force;
    if reason_code.is_some() {
        job.spec.reason_code = reason_code;
    }
    if comment.is_some() {
        job.spec.comment = comment;
    }
    job.updated_at = now;
    job.completed_at.get_or_insert(now);
    Ok(())
}

pub async fn get_job(tx: &mut dyn StateTx, scope: &Scope, job_id: &str) -> Result<Job, ServiceError> {
    validate_job_id(job_id)?;
    tx.get_job(scope, job_id).await?.ok_or_else(|| job_not_found(job_id))
}

/// DescribeJob: the job and its execution counts.
pub async fn describe_job(tx: &mut dyn StateTx, scope: &Scope, job_id: &str) -> Result<(Job, Counts), ServiceError> {
    let job = get_job(tx, scope, job_id).await?;
    let c = counts(tx, scope, job_id).await?;
    Ok((job, c))
}

pub async fn update_job(
    tx: &mut dyn StateTx,
    scope: &Scope,
    job_id: &str,
    body: &UpdateJobBody,
    namespace_id: Option<&str>,
    now: Millis,
) -> Result<Job, ServiceError> {
    validate_update_job(job_id, body, namespace_id)?;
    let mut job = get_job(tx, scope, job_id).await?;
    if job.status != JobStatus::InProgress && job.status != JobStatus::Scheduled {
        return Err(ServiceError::invalid_request(format!(
            "Job {job_id} is in status {} and cannot be updated.",
            job.status.as_str()
        )));
    }
    let s = &mut job.spec;
    if let Some(d) = &body.description {
        s.description = Some(d.clone());
    }
    if let Some(p) = &body.presigned_url_config {
        s.presigned_url_config = Some(p.clone());
    }
    if let Some(r) = &body.job_executions_rollout_config {
        s.rollout = Some(r.clone());
    }
    if let Some(a) = &body.abort_config {
        s.abort = Some(a.clone());
    }
    if let Some(t) = &body.timeout_config {
        s.timeout = Some(t.clone());
    }
    job.updated_at = now;
    tx.update_job(&job).await?;
    Ok(job)
}

/// CancelJob. Cancelling a canceled job again succeeds (and with `force` also cancels its
/// in-progress executions); a completed job cannot be canceled.
pub async fn cancel_job(
    tx: &mut dyn StateTx,
    scope: &Scope,
    job_id: &str,
    body: &CancelJobBody,
    force: bool,
    now: Millis,
) -> Result<Job, ServiceError> {
    validate_cancel_job(job_id, body)?;
    let mut job = get_job(tx, scope, job_id).await?;
    match job.status {
        JobStatus::Completed | JobStatus::DeletionInProgress => {
            return Err(ServiceError::invalid_request(format!(
                "Job {job_id} is in status {} and cannot be canceled.",
                job.status.as_str()
            )));
        }
        JobStatus::Canceled if !force || job.spec.force_canceled => return Ok(job),
        _ => {}
    }
    cancel_effects(tx, &mut job, force, body.reason_code.clone(), body.comment.clone(), now).await?;
    tx.update_job(&job).await?;
    Ok(job)
}

/// DeleteJob: a job that is not COMPLETED or CANCELED, or that has in-progress executions,
/// is deleted only with `force`. Removes the job and its executions; returns it.
pub async fn delete_job(tx: &mut dyn StateTx, scope: &Scope, job_id: &str, force: bool) -> Result<Job, ServiceError> {
    let job = get_job(tx, scope, job_id).await?;
    if !force {
        if !matches!(job.status, JobStatus::Completed | JobStatus::Canceled) {
            return Err(ServiceError::new(
                INVALID_STATE_TRANSITION,
                format!("Job {job_id} is in status {}; set force to delete it.", job.status.as_str()),
            ));
        }
        if counts(tx, scope, job_id).await?.in_progress > 0 {
            return Err(ServiceError::new(
                INVALID_STATE_TRANSITION,
                format!("Job {job_id} has executions in progress; set force to delete it."),
            ));
        }
    }
    tx.delete_job(scope, job_id).await?;
    Ok(job)
}

/// Where a listing resumes, tagged with the listing it belongs to.
fn encode_token(kind: &str, after: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{after}"))
}

fn decode_token(kind: &str, token: Option<&str>) -> Result<Option<String>, ServiceError> {
    let Some(t) = token.filter(|t| !t.is_empty()) else { return Ok(None) };
    let bad = || ServiceError::invalid_request("The nextToken is not valid.");
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(t).map_err(|_| bad())?).map_err(|_| bad())?;
    match raw.split_once(':') {
        Some((k, after)) if k == kind && !after.is_empty() => Ok(Some(after.to_string())),
        _ => Err(bad()),
    }
}

fn page_size(max_results: Option<i64>) -> Result<i64, ServiceError> {
    let limit = max_results.unwrap_or(DEFAULT_PAGE_SIZE);
    validate::int_range("maxResults", limit, 1, MAX_PAGE_SIZE)?;
    Ok(limit)
}

/// ListJobs' filters as the store applies them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub target_selection: Option<TargetSelection>,
    /// Jobs with this target ARN.
    pub target: Option<String>,
    pub namespace_id: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ListJobsRequest {
    pub status: Option<String>,
    pub target_selection: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub thing_group_name: Option<String>,
    pub thing_group_id: Option<String>,
    pub namespace_id: Option<String>,
}

pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next_token: Option<String>,
}

/// ListJobs: newest first.
pub async fn list_jobs(tx: &mut dyn StateTx, scope: &Scope, req: ListJobsRequest) -> Result<JobPage, ServiceError> {
    let mut filter = JobFilter::default();
    if let Some(s) = &req.status {
        filter.status = Some(parse_job_status("status", s)?);
    }
    if let Some(s) = &req.target_selection {
        filter.target_selection = Some(parse_target_selection("targetSelection", s)?);
    }
    let limit = page_size(req.max_results)?;
    if let Some(n) = &req.namespace_id {
        validate_namespace("namespaceId", n)?;
        filter.namespace_id = Some(n.clone());
    }
    if let Some(g) = &req.thing_group_name {
        things::validate_thing_group_name(g)?;
        filter.target = Some(thing_group_arn(scope, g));
    }
    if let Some(id) = &req.thing_group_id {
        validate::length("thingGroupId", id, 1, 128)?;
        let group = tx
            .list_thing_groups(scope)
            .await?
            .into_iter()
            .find(|g| &g.group_id == id)
            .ok_or_else(|| ServiceError::not_found(format!("Thing group with id {id} cannot be found.")))?;
        let arn = thing_group_arn(scope, &group.name);
        if filter.target.as_ref().is_some_and(|t| *t != arn) {
            return Ok(JobPage { jobs: vec![], next_token: None });
        }
        filter.target = Some(arn);
    }
    let before = decode_token("j1", req.next_token.as_deref())?
        .map(|s| s.parse::<i64>().map_err(|_| ServiceError::invalid_request("The nextToken is not valid.")))
        .transpose()?;
    let mut rows = tx.list_jobs(scope, &filter, before, limit + 1).await?;
    let next_token = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|(seq, _)| encode_token("j1", &seq.to_string()))
    } else {
        None
    };
    Ok(JobPage { jobs: rows.into_iter().map(|(_, j)| j).collect(), next_token })
}

pub struct ExecutionPage {
    pub executions: Vec<JobExecution>,
    pub next_token: Option<String>,
}

fn statuses_for(status: Option<&str>) -> Result<Vec<ExecStatus>, ServiceError> {
    Ok(match status {
        Some(s) => vec![parse_exec_status("status", s)?],
        None => ExecStatus::VISIBLE.to_vec(),
    })
}

/// ListJobExecutionsForJob: by thing name.
pub async fn list_executions_for_job(
    tx: &mut dyn StateTx,
    scope: &Scope,
    job_id: &str,
    status: Option<&str>,
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> Result<ExecutionPage, ServiceError> {
    validate_job_id(job_id)?;
    let statuses = statuses_for(status)?;
    let limit = page_size(max_results)?;
    let after = decode_token("x1", next_token)?;
    get_job(tx, scope, job_id).await?;
    let mut rows = tx.list_job_executions(scope, job_id, &statuses, after.as_deref(), limit + 1).await?;
    let next_token = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|e| encode_token("x1", &e.thing_name))
    } else {
        None
    };
    Ok(ExecutionPage { executions: rows, next_token })
}

/// ListJobExecutionsForThing: newest execution first.
#[allow(clippy::too_many_arguments)]
pub async fn list_executions_for_thing(
    tx: &mut dyn StateTx,
    scope: &Scope,
    thing: &str,
    status: Option<&str>,
    job_id: Option<&str>,
    namespace_id: Option<&str>,
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> Result<ExecutionPage, ServiceError> {
    things::validate_thing_name(thing)?;
    let statuses = statuses_for(status)?;
    if let Some(n) = namespace_id {
        validate_namespace("namespaceId", n)?;
    }
    if let Some(j) = job_id {
        validate_job_id(j)?;
    }
    let limit = page_size(max_results)?;
    let before = decode_token("t1", next_token)?
        .map(|s| s.parse::<i64>().map_err(|_| ServiceError::invalid_request("The nextToken is not valid.")))
        .transpose()?;
    let mut rows = tx.list_thing_job_executions(scope, thing, &statuses, job_id, before, limit + 1).await?;
    let next_token = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|e| encode_token("t1", &e.execution_number.to_string()))
    } else {
        None
    };
    Ok(ExecutionPage { executions: rows, next_token })
}

/// The execution of a job on a thing (the newest, or `execution_number`); waiting ones are
/// not found.
pub async fn get_execution(
    tx: &mut dyn StateTx,
    scope: &Scope,
    job_id: &str,
    thing: &str,
    execution_number: Option<i64>,
) -> Result<JobExecution, ServiceError> {
    validate_job_id(job_id)?;
    things::validate_thing_name(thing)?;
    tx.get_job_execution(scope, job_id, thing, execution_number)
        .await?
        .filter(|e| e.status != ExecStatus::Waiting)
        .ok_or_else(|| execution_not_found(job_id, thing))
}

/// CancelJobExecution: a queued execution is canceled; an in-progress one only with `force`.
#[allow(clippy::too_many_arguments)]
pub async fn cancel_execution(
    tx: &mut dyn StateTx,
    scope: &Scope,
    job_id: &str,
    thing: &str,
    force: bool,
    body: &CancelJobExecutionBody,
    now: Millis,
) -> Result<JobExecution, ServiceError> {
    if let Some(d) = &body.status_details {
        validate_details("statusDetails", d)?;
    }
    let mut e = get_execution(tx, scope, job_id, thing, None).await?;
    if let Some(v) = body.expected_version
        && v != e.version_number
    {
        return Err(version_conflict(&e, v));
    }
    if !can_transition(e.status, ExecStatus::Canceled) {
        return Err(transition_error(&e, ExecStatus::Canceled));
    }
    if e.status == ExecStatus::InProgress && !force {
        return Err(ServiceError::new(
            INVALID_STATE_TRANSITION,
            format!("The job execution of job {job_id} on thing {thing} is IN_PROGRESS; set force to cancel it."),
        ));
    }
    e.force_canceled = e.status == ExecStatus::InProgress;
    e.status = ExecStatus::Canceled;
    if let Some(d) = &body.status_details {
        e.status_details.extend(d.clone());
    }
    e.last_updated_at = now;
    e.version_number += 1;
    tx.update_job_execution(&e).await?;
    touch_job(tx, scope, job_id, now).await?;
    Ok(e)
}

async fn touch_job(tx: &mut dyn StateTx, scope: &Scope, job_id: &str, now: Millis) -> Result<(), ServiceError> {
    if let Some(mut job) = tx.get_job(scope, job_id).await? {
        job.updated_at = now;
        tx.update_job(&job).await?;
    }
    Ok(())
}

/// DeleteJobExecution: only a terminal execution, or with `force` an in-progress one.
pub async fn delete_execution(
    tx: &mut dyn StateTx,
    scope: &Scope,
    job_id: &str,
    thing: &str,
    execution_number: i64,
    force: bool,
) -> Result<JobExecution, ServiceError> {
    let e = get_execution(tx, scope, job_id, thing, Some(execution_number)).await?;
    let allowed = e.status.is_terminal() || (force && e.status == ExecStatus::InProgress);
    if !allowed {
        let how = if e.status == ExecStatus::InProgress { "; set force to delete it" } else { "" };
        return Err(ServiceError::new(
            INVALID_STATE_TRANSITION,
            format!(
                "The job execution {execution_number} of job {job_id} on thing {thing} is in status {} and cannot be deleted{how}.",
                e.status.as_str()
            ),
        ));
    }
    tx.delete_job_execution(scope, job_id, thing, execution_number).await?;
    Ok(e)
}

/// A device's status update (the Jobs data plane's UpdateJobExecution): validated as AWS
/// does, `statusDetails` merged, `versionNumber` bumped, `startedAt` set on the first
/// IN_PROGRESS.
pub async fn update_execution(
    tx: &mut dyn StateTx,
    scope: &Scope,
    thing: &str,
    job_id: &str,
    new_status: ExecStatus,
    status_details: Option<&BTreeMap<String, String>>,
    expected_version: Option<i64>,
    now: Millis,
) -> Result<JobExecution, ServiceError> {
    if let Some(d) = status_details {
        validate_details("statusDetails", d)?;
    }
    if !new_status.device_settable() {
        return Err(ServiceError::invalid_request(format!(
            "A device cannot set a job execution to {}; use IN_PROGRESS, SUCCEEDED, FAILED or REJECTED.",
            new_status.as_str()
        )));
    }
    let mut e = get_execution(tx, scope, job_id, thing, None).await?;
    if let Some(v) = expected_version
        && v != e.version_number
    {
        return Err(version_conflict(&e, v));
    }
    if !can_transition(e.status, new_status) {
        return Err(transition_error(&e, new_status));
    }
    if e.status == ExecStatus::Queued {
        e.started_at = Some(now);
    }
    e.status = new_status;
    if let Some(d) = status_details {
        e.status_details.extend(d.clone());
    }
    e.last_updated_at = now;
    e.version_number += 1;
    tx.update_job_execution(&e).await?;
    touch_job(tx, scope, job_id, now).await?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(targets: &[&str]) -> CreateJobBody {
        CreateJobBody {
            targets: Some(targets.iter().map(|s| s.to_string()).collect()),
            document: Some(r#"{"operation":"x"}"#.into()),
            ..Default::default()
        }
    }

    #[test]
    fn create_job_validation() {
        let t = "arn:aws:iot:us-east-1:123456789012:thing/t";
        assert!(validate_create_job("j-1_a", &body(&[t])).is_ok());
        let e = validate_create_job(&"j".repeat(65), &body(&[t])).unwrap_err();
        assert!(e.message.contains("at 'jobId'"), "{}", e.message);
        assert!(validate_create_job("bad id", &body(&[t])).is_err());
        assert!(validate_create_job("j", &body(&[])).unwrap_err().message.contains("'targets'"));
        let mut b = body(&[t, t]);
        assert_eq!(validate_create_job("j", &b).unwrap().targets.len(), 1);
        b.document = None;
        assert!(validate_create_job("j", &b).unwrap_err().message.contains("Either document"));
        b.document_source = Some("https://s3.amazonaws.com/bkt/dir/job.json".into());
        assert!(validate_create_job("j", &b).is_ok());
        b.document = Some("{}".into());
        assert!(validate_create_job("j", &b).unwrap_err().message.contains("Only one"));
        let mut b = body(&[t]);
        b.document = Some("not json".into());
        assert!(validate_create_job("j", &b).is_err());
        b.document = Some(format!("{{\"a\":\"{}\"}}", "x".repeat(32768)));
        assert!(validate_create_job("j", &b).unwrap_err().message.contains("length between 0 and 32768"));
        let mut b = body(&[t]);
        b.target_selection = Some("SOMETIMES".into());
        assert!(validate_create_job("j", &b).unwrap_err().message.contains("enum value set: [CONTINUOUS, SNAPSHOT]"));
        let mut b = body(&[t]);
        b.description = Some("x".repeat(2029));
        assert!(validate_create_job("j", &b).is_err());
        let mut b = body(&[t]);
        b.job_template_arn = Some("arn:aws:iot:us-east-1:123456789012:jobtemplate/x".into());
        assert!(validate_create_job("j", &b).unwrap_err().message.contains("not supported"));
    }

    #[test]
    fn nested_config_validation() {
        let ok = JobExecutionsRolloutConfig {
            maximum_per_minute: Some(10),
            exponential_rate: Some(ExponentialRolloutRate {
                base_rate_per_minute: Some(2),
                increment_factor: Some(1.5),
                rate_increase_criteria: Some(RateIncreaseCriteria { number_of_notified_things: Some(2), number_of_succeeded_things: None }),
            }),
        };
        assert!(validate_rollout(&ok).is_ok());
        let mut r = ok.clone();
        r.maximum_per_minute = Some(1001);
        assert!(validate_rollout(&r).unwrap_err().message.contains("maximumPerMinute"));
        let mut r = ok.clone();
        r.exponential_rate.as_mut().unwrap().increment_factor = Some(5.5);
        assert!(validate_rollout(&r).unwrap_err().message.contains("incrementFactor"));
        let mut r = ok.clone();
        r.exponential_rate.as_mut().unwrap().rate_increase_criteria = None;
        assert!(validate_rollout(&r).unwrap_err().message.contains("Value null at 'jobExecutionsRolloutConfig.exponentialRate.rateIncreaseCriteria'"));
        let crit = |ft: &str, p: f64, m: i64| AbortCriteria {
            failure_type: Some(ft.into()),
            action: Some("CANCEL".into()),
            threshold_percentage: Some(p),
            min_number_of_executed_things: Some(m),
        };
        assert!(validate_abort(&AbortConfig { criteria_list: Some(vec![crit("FAILED", 50.0, 2)]) }).is_ok());
        assert!(validate_abort(&AbortConfig { criteria_list: Some(vec![]) }).is_err());
        assert!(validate_abort(&AbortConfig { criteria_list: Some(vec![crit("BROKEN", 50.0, 2)]) }).is_err());
        assert!(validate_abort(&AbortConfig { criteria_list: Some(vec![crit("ALL", 100.5, 2)]) }).is_err());
        assert!(validate_abort(&AbortConfig { criteria_list: Some(vec![crit("ALL", 10.0, 0)]) }).is_err());
        assert!(validate_abort(&AbortConfig { criteria_list: Some(vec![crit("ALL", 10.0, 1), crit("ALL", 20.0, 1)]) }).is_err());
        assert!(validate_timeout(&TimeoutConfig { in_progress_timeout_in_minutes: Some(10081) }).is_err());
        assert!(validate_timeout(&TimeoutConfig { in_progress_timeout_in_minutes: Some(1) }).is_ok());
        let mut d = BTreeMap::new();
        d.insert("bad key".to_string(), "v".to_string());
        assert!(validate_details("statusDetails", &d).is_err());
        let c = CancelJobBody { reason_code: Some("lower".into()), comment: None };
        assert!(validate_cancel_job("j", &c).is_err());
        let c = CancelJobBody { reason_code: Some("TOO_MANY_2".into()), comment: Some("ok".into()) };
        assert!(validate_cancel_job("j", &c).is_ok());
    }

    #[test]
    fn transitions() {
        use ExecStatus::*;
        assert!(can_transition(Queued, InProgress));
        assert!(can_transition(Queued, Succeeded));
        assert!(can_transition(Queued, Canceled));
        assert!(can_transition(InProgress, InProgress));
        assert!(can_transition(InProgress, TimedOut));
        assert!(!can_transition(Queued, TimedOut));
        assert!(!can_transition(Waiting, InProgress));
        for t in [Succeeded, Failed, TimedOut, Rejected, Removed, Canceled] {
            assert!(t.is_terminal());
            for to in ExecStatus::VISIBLE {
                assert!(!can_transition(t, to), "{t:?} -> {to:?}");
            }
        }
        assert!(!Canceled.device_settable() && !Queued.device_settable() && InProgress.device_settable());
        assert_eq!(ExecStatus::parse("WAITING"), None);
        assert_eq!(ExecStatus::from_stored("WAITING"), Some(Waiting));
    }

    #[test]
    fn fixed_rate_rollout() {
        let cfg = JobExecutionsRolloutConfig { maximum_per_minute: Some(3), exponential_rate: None };
        let mut st = RolloutState::default();
        assert_eq!(rollout_budget(Some(&cfg), &mut st, Millis(1_000), 0), 3);
        st.note_released(3);
        assert_eq!(rollout_budget(Some(&cfg), &mut st, Millis(30_000), 0), 0);
        assert_eq!(rollout_budget(Some(&cfg), &mut st, Millis(61_000), 0), 3);
        st.note_released(1);
        assert_eq!(rollout_budget(Some(&cfg), &mut st, Millis(100_000), 0), 2);
        // Windows stay aligned to the first release.
        assert_eq!(rollout_budget(Some(&cfg), &mut st, Millis(181_500), 0), 3);
        assert_eq!(st.window_start, 181_000);
        assert_eq!(rollout_budget(None, &mut RolloutState::default(), Millis(1), 0), i64::MAX);
    }

    #[test]
    fn exponential_rollout() {
        let cfg = JobExecutionsRolloutConfig {
            maximum_per_minute: Some(10),
            exponential_rate: Some(ExponentialRolloutRate {
                base_rate_per_minute: Some(2),
                increment_factor: Some(2.0),
                rate_increase_criteria: Some(RateIncreaseCriteria { number_of_notified_things: Some(2), number_of_succeeded_things: None }),
            }),
        };
        let mut st = RolloutState::default();
        let mut t = 0;
        let mut rates = vec![];
        for _ in 0..5 {
            t += 60_000;
            let n = rollout_budget(Some(&cfg), &mut st, Millis(t), 0);
            rates.push(n);
            st.note_released(n);
        }
        assert_eq!(rates, [2, 4, 8, 10, 10]);
        // Increase by succeeded things.
        let cfg = JobExecutionsRolloutConfig {
            maximum_per_minute: None,
            exponential_rate: Some(ExponentialRolloutRate {
                base_rate_per_minute: Some(1),
                increment_factor: Some(1.5),
                rate_increase_criteria: Some(RateIncreaseCriteria { number_of_notified_things: None, number_of_succeeded_things: Some(1) }),
            }),
        };
        let mut st = RolloutState::default();
        assert_eq!(rollout_budget(Some(&cfg), &mut st, Millis(1), 0), 1);
        st.note_released(1);
        assert_eq!(rollout_budget(Some(&cfg), &mut st, Millis(60_001), 0), 1);
        st.note_released(1);
        assert_eq!(rollout_budget(Some(&cfg), &mut st, Millis(120_001), 1), 2);
    }

    #[test]
    fn abort_math() {
        let cfg = AbortConfig {
            criteria_list: Some(vec![AbortCriteria {
                failure_type: Some("ALL".into()),
                action: Some("CANCEL".into()),
                threshold_percentage: Some(50.0),
                min_number_of_executed_things: Some(4),
            }]),
        };
        let c = Counts { succeeded: 1, failed: 2, ..Default::default() };
        assert!(abort_triggered(&cfg, &c).is_none(), "too few executed");
        let c = Counts { succeeded: 2, failed: 1, rejected: 1, ..Default::default() };
        assert!(abort_triggered(&cfg, &c).is_some());
        let c = Counts { succeeded: 3, timed_out: 1, queued: 100, ..Default::default() };
        assert!(abort_triggered(&cfg, &c).is_none());
        let only_failed = AbortConfig {
            criteria_list: Some(vec![AbortCriteria { failure_type: Some("FAILED".into()), ..cfg.criteria_list.clone().unwrap()[0].clone() }]),
        };
        let c = Counts { succeeded: 2, rejected: 2, ..Default::default() };
        assert!(abort_triggered(&only_failed, &c).is_none());
    }

    #[test]
    fn document_sources() {
        let p = |s: &str| parse_document_source(s);
        assert_eq!(p("https://s3.amazonaws.com/b/k/j.json"), Some(("b".into(), "k/j.json".into())));
        assert_eq!(p("https://s3.us-east-1.amazonaws.com/b/k"), Some(("b".into(), "k".into())));
        assert_eq!(p("https://b.s3.amazonaws.com/a%20b"), Some(("b".into(), "a b".into())));
        assert_eq!(p("https://b.s3.eu-west-1.amazonaws.com/k"), Some(("b".into(), "k".into())));
        assert_eq!(p("https://example.com/b/k"), None);
        assert_eq!(p("https://s3.amazonaws.com/b"), None);
        assert_eq!(p("s3://b/k"), None);
    }

    #[test]
    fn outputs() {
        let scope = Scope::new("123456789012", "us-east-1");
        let job = Job {
            scope: scope.clone(),
            job_id: "j".into(),
            status: JobStatus::InProgress,
            target_selection: TargetSelection::Snapshot,
            targets: vec!["arn:aws:iot:us-east-1:123456789012:thing/t".into()],
            spec: JobSpec { document: "{}".into(), description: Some("d".into()), ..Default::default() },
            created_at: Millis(1500),
            updated_at: Millis(2500),
            completed_at: None,
        };
        let d = job.description(&Counts { queued: 1, waiting: 5, ..Default::default() });
        assert_eq!(d["jobArn"], "arn:aws:iot:us-east-1:123456789012:job/j");
        assert_eq!(d["createdAt"], json!(1.5));
        assert_eq!(d["jobProcessDetails"]["numberOfQueuedThings"], 1);
        assert!(d.get("completedAt").is_none());
        assert_eq!(job.summary_output()["description"], "d");
        let e = JobExecution {
            scope,
            job_id: "j".into(),
            thing_name: "t".into(),
            execution_number: 3,
            status: ExecStatus::InProgress,
            force_canceled: false,
            status_details: BTreeMap::new(),
            queued_at: Some(Millis(1000)),
            started_at: Some(Millis(2000)),
            last_updated_at: Millis(2000),
            version_number: 2,
        };
        let t = TimeoutConfig { in_progress_timeout_in_minutes: Some(1) };
        let d = e.description(Some(&t), Millis(32_000));
        assert_eq!(d["approximateSecondsBeforeTimedOut"], 30);
        assert_eq!(d["statusDetails"], json!({"detailsMap": {}}));
        assert_eq!(e.summary()["retryAttempt"], 0);
    }
}

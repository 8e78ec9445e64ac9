//! AWS IoT Jobs control plane, rest-json: the job routes of [`super::iot`] (which dispatches
//! them here as `IotOperation::Job`), their members and outputs.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::Incoming;
use super::call::{CallContext, OpMeta};
use super::iot::{Q, body, listing, query_bool, query_int, typed_query_members};
use crate::domain::ServiceError;
use crate::domain::jobs::{
    CancelJobBody, CancelJobExecutionBody, CreateJobBody, JOB_RESOURCE_TYPE, Job, ListJobsRequest, UpdateJobBody, job_arn,
};
use crate::domain::things::{THING_RESOURCE_TYPE, thing_arn};

/// The job operations, with their path members.
#[derive(Debug, PartialEq, Eq)]
pub enum JobOperation {
    CreateJob { job_id: String },
    DescribeJob { job_id: String },
    UpdateJob { job_id: String },
    DeleteJob { job_id: String },
    ListJobs,
    GetJobDocument { job_id: String },
    CancelJob { job_id: String },
    ListJobExecutionsForJob { job_id: String },
    ListJobExecutionsForThing { thing_name: String },
    DescribeJobExecution { thing_name: String, job_id: String },
    CancelJobExecution { thing_name: String, job_id: String },
    /// The execution number as sent (it must parse as a long).
    DeleteJobExecution { thing_name: String, job_id: String, execution_number: String },
}

pub fn route(method: &http::Method, s: &[&str]) -> Option<JobOperation> {
    use http::Method as M;
    let o = |s: &&str| s.to_string();
    Some(match (method, s) {
        (&M::GET, ["jobs"]) => JobOperation::ListJobs,
        (&M::PUT, ["jobs", id]) => JobOperation::CreateJob { job_id: o(id) },
        (&M::GET, ["jobs", id]) => JobOperation::DescribeJob { job_id: o(id) },
        (&M::PATCH, ["jobs", id]) => JobOperation::UpdateJob { job_id: o(id) },
        (&M::DELETE, ["jobs", id]) => JobOperation::DeleteJob { job_id: o(id) },
        (&M::GET, ["jobs", id, "job-document"]) => JobOperation::GetJobDocument { job_id: o(id) },
        (&M::PUT, ["jobs", id, "cancel"]) => JobOperation::CancelJob { job_id: o(id) },
        (&M::GET, ["jobs", id, "things"]) => JobOperation::ListJobExecutionsForJob { job_id: o(id) },
        (&M::GET, ["things", t, "jobs"]) => JobOperation::ListJobExecutionsForThing { thing_name: o(t) },
        (&M::GET, ["things", t, "jobs", id]) => JobOperation::DescribeJobExecution { thing_name: o(t), job_id: o(id) },
        (&M::PUT, ["things", t, "jobs", id, "cancel"]) => JobOperation::CancelJobExecution { thing_name: o(t), job_id: o(id) },
        (&M::DELETE, ["things", t, "jobs", id, "executionNumber", n]) => {
            JobOperation::DeleteJobExecution { thing_name: o(t), job_id: o(id), execution_number: o(n) }
        }
        _ => return None,
    })
}

impl JobOperation {
    pub fn meta(&self) -> OpMeta {
        match self {
            JobOperation::CreateJob { .. } => OpMeta::write("CreateJob"),
            JobOperation::DescribeJob { .. } => OpMeta::read("DescribeJob"),
            JobOperation::UpdateJob { .. } => OpMeta::write("UpdateJob"),
            JobOperation::DeleteJob { .. } => OpMeta::write("DeleteJob"),
            JobOperation::ListJobs => OpMeta::read("ListJobs"),
            JobOperation::GetJobDocument { .. } => OpMeta::read("GetJobDocument"),
            JobOperation::CancelJob { .. } => OpMeta::write("CancelJob"),
            JobOperation::ListJobExecutionsForJob { .. } => OpMeta::read("ListJobExecutionsForJob"),
            JobOperation::ListJobExecutionsForThing { .. } => OpMeta::read("ListJobExecutionsForThing"),
            JobOperation::DescribeJobExecution { .. } => OpMeta::read("DescribeJobExecution"),
            JobOperation::CancelJobExecution { .. } => OpMeta::write("CancelJobExecution"),
            JobOperation::DeleteJobExecution { .. } => OpMeta::write("DeleteJobExecution"),
        }
    }

    /// The path and query members by their model names.
    pub fn request_members(&self, m: &mut Map<String, Value>, q: &HashMap<String, String>) {
        match self {
            JobOperation::CreateJob { job_id } | JobOperation::DescribeJob { job_id } | JobOperation::GetJobDocument { job_id } => {
                m.insert("jobId".into(), json!(job_id));
                typed_query_members(m, q, &[("beforeSubstitution", Q::Bool)]);
            }
            JobOperation::UpdateJob { job_id } => {
                m.insert("jobId".into(), json!(job_id));
                typed_query_members(m, q, &[("namespaceId", Q::Str)]);
            }
            JobOperation::DeleteJob { job_id } => {
                m.insert("jobId".into(), json!(job_id));
                typed_query_members(m, q, &[("force", Q::Bool), ("namespaceId", Q::Str)]);
            }
            JobOperation::CancelJob { job_id } => {
                m.insert("jobId".into(), json!(job_id));
                typed_query_members(m, q, &[("force", Q::Bool)]);
            }
            JobOperation::ListJobs => typed_query_members(
                m,
                q,
                &[
                    ("status", Q::Str),
                    ("targetSelection", Q::Str),
                    ("maxResults", Q::Int),
                    ("nextToken", Q::Str),
                    ("thingGroupName", Q::Str),
                    ("thingGroupId", Q::Str),
                    ("namespaceId", Q::Str),
                ],
            ),
            JobOperation::ListJobExecutionsForJob { job_id } => {
                m.insert("jobId".into(), json!(job_id));
                typed_query_members(m, q, &[("status", Q::Str), ("maxResults", Q::Int), ("nextToken", Q::Str)]);
            }
            JobOperation::ListJobExecutionsForThing { thing_name } => {
                m.insert("thingName".into(), json!(thing_name));
                typed_query_members(
                    m,
                    q,
                    &[("status", Q::Str), ("namespaceId", Q::Str), ("maxResults", Q::Int), ("nextToken", Q::Str), ("jobId", Q::Str)],
                );
            }
            JobOperation::DescribeJobExecution { thing_name, job_id } => {
                m.insert("jobId".into(), json!(job_id));
                m.insert("thingName".into(), json!(thing_name));
                typed_query_members(m, q, &[("executionNumber", Q::Int)]);
            }
            JobOperation::CancelJobExecution { thing_name, job_id } => {
                m.insert("jobId".into(), json!(job_id));
                m.insert("thingName".into(), json!(thing_name));
                typed_query_members(m, q, &[("force", Q::Bool)]);
            }
            JobOperation::DeleteJobExecution { thing_name, job_id, execution_number } => {
                m.insert("jobId".into(), json!(job_id));
                m.insert("thingName".into(), json!(thing_name));
                let n = execution_number.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(execution_number));
                m.insert("executionNumber".into(), n);
                typed_query_members(m, q, &[("force", Q::Bool), ("namespaceId", Q::Str)]);
            }
        }
    }
}

/// A job request with its query and body members decoded (see [`super::iot::IotRequest`]).
// Built once per request and matched at once: boxing the bodies would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum JobRequest {
    CreateJob { job_id: String, body: CreateJobBody },
    DescribeJob { job_id: String },
    GetJobDocument { job_id: String },
    UpdateJob { job_id: String, body: UpdateJobBody, namespace_id: Option<String> },
    DeleteJob { job_id: String, force: bool, namespace_id: Option<String> },
    CancelJob { job_id: String, body: CancelJobBody, force: bool },
    ListJobs(ListJobsRequest),
    ListJobExecutionsForJob { job_id: String, status: Option<String>, max_results: Option<i64>, next_token: Option<String> },
    ListJobExecutionsForThing {
        thing_name: String,
        status: Option<String>,
        job_id: Option<String>,
        namespace_id: Option<String>,
        max_results: Option<i64>,
        next_token: Option<String>,
    },
    DescribeJobExecution { thing_name: String, job_id: String, execution_number: Option<i64> },
    CancelJobExecution { thing_name: String, job_id: String, force: bool, body: CancelJobExecutionBody },
    DeleteJobExecution { thing_name: String, job_id: String, execution_number: i64, force: bool, namespace_id: Option<String> },
}

/// The query and body members of a routed job operation, checked for their wire types.
pub fn decode(op: JobOperation, incoming: &Incoming, q: &HashMap<String, String>) -> Result<JobRequest, ServiceError> {
    // Checked first for every job operation, as before the decoding was split out.
    let force = query_bool(q, "force")?.unwrap_or(false);
    let namespace_id = || q.get("namespaceId").cloned();
    Ok(match op {
        JobOperation::CreateJob { job_id } => JobRequest::CreateJob { job_id, body: body(incoming)? },
        JobOperation::DescribeJob { job_id } => {
            query_bool(q, "beforeSubstitution")?;
            JobRequest::DescribeJob { job_id }
        }
        JobOperation::GetJobDocument { job_id } => {
            query_bool(q, "beforeSubstitution")?;
            JobRequest::GetJobDocument { job_id }
        }
        JobOperation::UpdateJob { job_id } => JobRequest::UpdateJob { job_id, body: body(incoming)?, namespace_id: namespace_id() },
        JobOperation::DeleteJob { job_id } => JobRequest::DeleteJob { job_id, force, namespace_id: namespace_id() },
        JobOperation::CancelJob { job_id } => JobRequest::CancelJob { job_id, body: body(incoming)?, force },
        JobOperation::ListJobs => JobRequest::ListJobs(ListJobsRequest {
            status: q.get("status").cloned(),
            target_selection: q.get("targetSelection").cloned(),
            max_results: query_int(q, "maxResults")?,
            next_token: q.get("nextToken").cloned(),
            thing_group_name: q.get("thingGroupName").cloned(),
            thing_group_id: q.get("thingGroupId").cloned(),
            namespace_id: namespace_id(),
        }),
        JobOperation::ListJobExecutionsForJob { job_id } => JobRequest::ListJobExecutionsForJob {
            job_id,
            status: q.get("status").cloned(),
            max_results: query_int(q, "maxResults")?,
            next_token: q.get("nextToken").cloned(),
        },
        JobOperation::ListJobExecutionsForThing { thing_name } => JobRequest::ListJobExecutionsForThing {
            thing_name,
            status: q.get("status").cloned(),
            job_id: q.get("jobId").cloned(),
            namespace_id: namespace_id(),
            max_results: query_int(q, "maxResults")?,
            next_token: q.get("nextToken").cloned(),
        },
        JobOperation::DescribeJobExecution { thing_name, job_id } => {
            JobRequest::DescribeJobExecution { thing_name, job_id, execution_number: query_int(q, "executionNumber")? }
        }
        JobOperation::CancelJobExecution { thing_name, job_id } => {
            JobRequest::CancelJobExecution { thing_name, job_id, force, body: body(incoming)? }
        }
        JobOperation::DeleteJobExecution { thing_name, job_id, execution_number } => {
            let n = execution_number.parse::<i64>().map_err(|_| {
                ServiceError::invalid_request(format!("executionNumber must be an integer, got '{execution_number}'."))
            })?;
            JobRequest::DeleteJobExecution { thing_name, job_id, execution_number: n, force, namespace_id: namespace_id() }
        }
    })
}

pub async fn handle(ctx: &mut CallContext<'_>, req: JobRequest, call: std::sync::Arc<crate::app::audit::Call>) -> Result<Value, ServiceError> {
    let app = ctx.app;
    let scope = call.scope();
    Ok(match req {
        JobRequest::CreateJob { job_id, body: b } => app.create_job(&call, &job_id, &b).await?.summary_output(),
        JobRequest::DescribeJob { job_id } => {
            let (job, counts) = app.describe_job(&call, &job_id).await?;
            ctx.resources.push(call.resource(job.arn(), JOB_RESOURCE_TYPE));
            let mut out = json!({ "job": job.description(&counts) });
            if let Some(s) = &job.spec.document_source {
                out["documentSource"] = json!(s);
            }
            out
        }
        JobRequest::GetJobDocument { job_id } => {
            let job = app.get_job(&call, &job_id).await?;
            ctx.resources.push(call.resource(job.arn(), JOB_RESOURCE_TYPE));
            json!({ "document": job.spec.document })
        }
        JobRequest::UpdateJob { job_id, body: b, namespace_id } => {
            app.update_job(&call, &job_id, b, namespace_id).await?;
            json!({})
        }
        JobRequest::DeleteJob { job_id, force, namespace_id } => {
            app.delete_job(&call, &job_id, force, namespace_id.as_deref()).await?;
            json!({})
        }
        JobRequest::CancelJob { job_id, body: b, force } => app.cancel_job(&call, &job_id, b, force).await?.summary_output(),
        JobRequest::ListJobs(req) => {
            let page = app.list_jobs(&call, req).await?;
            listing("jobs", page.jobs.iter().map(Job::list_item).collect(), page.next_token)
        }
        JobRequest::ListJobExecutionsForJob { job_id, status, max_results, next_token } => {
            let page = app.list_job_executions_for_job(&call, &job_id, status, max_results, next_token).await?;
            ctx.resources.push(call.resource(job_arn(&scope, &job_id), JOB_RESOURCE_TYPE));
            let items = page
                .executions
                .iter()
                .map(|e| json!({ "thingArn": e.thing_arn(), "jobExecutionSummary": e.summary() }))
                .collect();
            listing("executionSummaries", items, page.next_token)
        }
        JobRequest::ListJobExecutionsForThing { thing_name, status, job_id, namespace_id, max_results, next_token } => {
            let page = app
                .list_job_executions_for_thing(&call, &thing_name, status, job_id, namespace_id, max_results, next_token)
                .await?;
            ctx.resources.push(call.resource(thing_arn(&scope, &thing_name), THING_RESOURCE_TYPE));
            let items = page.executions.iter().map(|e| json!({ "jobId": e.job_id, "jobExecutionSummary": e.summary() })).collect();
            listing("executionSummaries", items, page.next_token)
        }
        JobRequest::DescribeJobExecution { thing_name, job_id, execution_number } => {
            let (e, timeout) = app.describe_job_execution(&call, &job_id, &thing_name, execution_number).await?;
            ctx.resources.push(call.resource(job_arn(&scope, &job_id), JOB_RESOURCE_TYPE));
            json!({ "execution": e.description(timeout.as_ref(), app.clock.now()) })
        }
        JobRequest::CancelJobExecution { thing_name, job_id, force, body: b } => {
            app.cancel_job_execution(&call, &job_id, &thing_name, force, b).await?;
            json!({})
        }
        JobRequest::DeleteJobExecution { thing_name, job_id, execution_number, force, namespace_id } => {
            app.delete_job_execution(&call, &job_id, &thing_name, execution_number, force, namespace_id.as_deref()).await?;
            json!({})
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |m: http::Method, p: &str| {
            let segs = super::super::iot::segments(p).unwrap();
            let s: Vec<&str> = segs.iter().map(String::as_str).collect();
            route(&m, &s)
        };
        assert_eq!(r(http::Method::PUT, "/jobs/j1"), Some(JobOperation::CreateJob { job_id: "j1".into() }));
        assert_eq!(r(http::Method::PUT, "/jobs/j1/cancel"), Some(JobOperation::CancelJob { job_id: "j1".into() }));
        assert_eq!(
            r(http::Method::GET, "/things/a%3Ab/jobs"),
            Some(JobOperation::ListJobExecutionsForThing { thing_name: "a:b".into() })
        );
        assert_eq!(
            r(http::Method::DELETE, "/things/t/jobs/j/executionNumber/7"),
            Some(JobOperation::DeleteJobExecution { thing_name: "t".into(), job_id: "j".into(), execution_number: "7".into() })
        );
        assert_eq!(r(http::Method::POST, "/jobs/j1"), None);
        assert_eq!(r(http::Method::GET, "/things/t/jobs/j/extra"), None);
    }
}

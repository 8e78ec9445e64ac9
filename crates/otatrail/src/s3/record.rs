//! CloudTrail records of S3 bucket-level management calls (`s3.amazonaws.com`): CreateBucket,
//! DeleteBucket, bucket policy and lifecycle. Object reads and writes are data events and are
//! never recorded.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use serde_json::Value;

use crate::app::App;
use crate::app::audit::Call;
use crate::domain::audit::{CallInfo, Outcome};
use crate::domain::{Principal, ServiceError};

/// A recorded S3 call: mutating calls record in their unit of work, the rest here.
pub fn call<T>(app: &App, req: &s3s::S3Request<T>, principal: Principal, name: &str, read_only: bool, params: Value) -> Arc<Call> {
    let source_ip = req
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let region = req.region.as_ref().map(|r| r.as_str().to_string()).unwrap_or_else(|| app.default_region.clone());
    Arc::new(Call {
        info: CallInfo {
            request_id: uuid::Uuid::new_v4().simple().to_string()[..16].to_ascii_uppercase(),
            event_time: app.clock.now(),
            region,
            event_source: "s3.amazonaws.com".into(),
            event_name: name.to_string(),
            read_only,
            source_ip,
            user_agent: req.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string),
            request_parameters: Some(params),
            api_version: None,
            tls: None,
            keep_response_elements: false,
        },
        principal,
    })
}

/// Records what the unit of work did not (failures, reads) and gives the result back. A record
/// that cannot be written turns the outcome into an error.
pub async fn finish<T>(app: &App, call: &Call, mutating: bool, result: Result<T, ServiceError>) -> Result<T, ServiceError> {
    let event = match &result {
        Ok(_) if mutating => return result,
        Ok(_) => call.event(Outcome::Success { response_elements: None }, vec![]),
        Err(e) => call.event(Outcome::Failure { code: e.code, message: &e.message }, vec![]),
    };
    app.record(event).await.map_err(|_| ServiceError::unavailable())?;
    result
}

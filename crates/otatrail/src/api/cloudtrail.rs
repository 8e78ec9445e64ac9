//! CloudTrail, json 1.1: `POST /` with `X-Amz-Target: <prefix>.<Operation>`.

use axum::response::Response;

use super::call::CallContext;
use crate::domain::ServiceError;
use crate::domain::error::codes;

pub const TARGET_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";

pub async fn handle(ctx: &mut CallContext<'_>) -> Result<Response, ServiceError> {
    let incoming = ctx.incoming;
    let target = incoming.header("x-amz-target").unwrap_or_default();
    if incoming.method != http::Method::POST || incoming.raw_path != "/" {
        return Err(ServiceError::new(codes::UNKNOWN_OPERATION, "CloudTrail operations are POST / with an X-Amz-Target header."));
    }
    let Some(operation) = target.strip_prefix(TARGET_PREFIX) else {
        return Err(ServiceError::new(
            codes::UNKNOWN_OPERATION,
            format!("'{target}' is not a CloudTrail operation; X-Amz-Target must start with {TARGET_PREFIX}"),
        ));
    };
    // The trail operations arrive with the audit trail; until then every target is unknown.
    Err(ServiceError::new(codes::UNKNOWN_OPERATION, format!("Operation {operation} is not supported.")))
}

//! AWS IoT OTA updates, rest-json: the `/otaUpdates` routes of [`super::iot`] (dispatched
//! here as `IotOperation::Ota`), their members and outputs.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Incoming;
use super::call::{CallContext, OpMeta};
use super::iot::{Q, body, listing, query_bool, query_int, typed_query_members};
use crate::app::audit::Call;
use crate::domain::ServiceError;
use crate::domain::ota::{CreateOtaUpdateBody, DeleteRequest, OtaUpdate, RESOURCE_TYPE};

#[derive(Debug, PartialEq, Eq)]
pub enum OtaOperation {
    CreateOtaUpdate { ota_update_id: String },
    GetOtaUpdate { ota_update_id: String },
    ListOtaUpdates,
    DeleteOtaUpdate { ota_update_id: String },
}

pub fn route(method: &http::Method, s: &[&str]) -> Option<OtaOperation> {
    use http::Method as M;
    let o = |s: &&str| s.to_string();
    Some(match (method, s) {
        (&M::GET, ["otaUpdates"]) => OtaOperation::ListOtaUpdates,
        (&M::POST, ["otaUpdates", id]) => OtaOperation::CreateOtaUpdate { ota_update_id: o(id) },
        (&M::GET, ["otaUpdates", id]) => OtaOperation::GetOtaUpdate { ota_update_id: o(id) },
        (&M::DELETE, ["otaUpdates", id]) => OtaOperation::DeleteOtaUpdate { ota_update_id: o(id) },
        _ => return None,
    })
}

impl OtaOperation {
    pub fn meta(&self) -> OpMeta {
        match self {
            OtaOperation::CreateOtaUpdate { .. } => OpMeta::write("CreateOTAUpdate"),
            OtaOperation::GetOtaUpdate { .. } => OpMeta::read("GetOTAUpdate"),
            OtaOperation::ListOtaUpdates => OpMeta::read("ListOTAUpdates"),
            OtaOperation::DeleteOtaUpdate { .. } => OpMeta::write("DeleteOTAUpdate"),
        }
    }

    pub fn request_members(&self, m: &mut Map<String, Value>, q: &HashMap<String, String>) {
        match self {
            OtaOperation::CreateOtaUpdate { ota_update_id } | OtaOperation::GetOtaUpdate { ota_update_id } => {
                m.insert("otaUpdateId".into(), json!(ota_update_id));
            }
            OtaOperation::DeleteOtaUpdate { ota_update_id } => {
                m.insert("otaUpdateId".into(), json!(ota_update_id));
                typed_query_members(m, q, &[("deleteStream", Q::Bool), ("forceDeleteAWSJob", Q::Bool)]);
            }
            OtaOperation::ListOtaUpdates => {
                typed_query_members(m, q, &[("maxResults", Q::Int), ("nextToken", Q::Str), ("otaUpdateStatus", Q::Str)])
            }
        }
    }
}

/// An OTA update request with its query and body members decoded.
// Built once per request and matched at once: boxing the bodies would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum OtaRequest {
    CreateOtaUpdate { ota_update_id: String, body: CreateOtaUpdateBody },
    GetOtaUpdate { ota_update_id: String },
    ListOtaUpdates { status: Option<String>, max_results: Option<i64>, next_token: Option<String> },
    DeleteOtaUpdate { ota_update_id: String, request: DeleteRequest },
}

/// The query and body members of a routed OTA update operation, checked for their wire types.
pub fn decode(op: OtaOperation, incoming: &Incoming, q: &HashMap<String, String>) -> Result<OtaRequest, ServiceError> {
    Ok(match op {
        OtaOperation::CreateOtaUpdate { ota_update_id } => OtaRequest::CreateOtaUpdate { ota_update_id, body: body(incoming)? },
        OtaOperation::GetOtaUpdate { ota_update_id } => OtaRequest::GetOtaUpdate { ota_update_id },
        OtaOperation::ListOtaUpdates => OtaRequest::ListOtaUpdates {
            status: q.get("otaUpdateStatus").cloned(),
            max_results: query_int(q, "maxResults")?,
            next_token: q.get("nextToken").cloned(),
        },
        OtaOperation::DeleteOtaUpdate { ota_update_id } => OtaRequest::DeleteOtaUpdate {
            ota_update_id,
            request: DeleteRequest {
                delete_stream: query_bool(q, "deleteStream")?.unwrap_or(false),
                force_delete_aws_job: query_bool(q, "forceDeleteAWSJob")?.unwrap_or(false),
            },
        },
    })
}

pub async fn handle(ctx: &mut CallContext<'_>, req: OtaRequest, call: Arc<Call>) -> Result<Value, ServiceError> {
    let app = ctx.app;
    Ok(match req {
        OtaRequest::CreateOtaUpdate { ota_update_id, body: b } => app.create_ota_update(&call, &ota_update_id, &b).await?.created(),
        OtaRequest::GetOtaUpdate { ota_update_id } => {
            let u = app.get_ota_update(&call, &ota_update_id).await?;
            ctx.resources.push(call.resource(u.arn(), RESOURCE_TYPE));
            json!({ "otaUpdateInfo": u.info() })
        }
        OtaRequest::ListOtaUpdates { status, max_results, next_token } => {
            let page = app.list_ota_updates(&call, status, max_results, next_token).await?;
            listing("otaUpdates", page.updates.iter().map(OtaUpdate::summary).collect(), page.next_token)
        }
        OtaRequest::DeleteOtaUpdate { ota_update_id, request } => {
            app.delete_ota_update(&call, &ota_update_id, request).await?;
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
        assert_eq!(r(http::Method::POST, "/otaUpdates/u1"), Some(OtaOperation::CreateOtaUpdate { ota_update_id: "u1".into() }));
        assert_eq!(r(http::Method::GET, "/otaUpdates"), Some(OtaOperation::ListOtaUpdates));
        assert_eq!(r(http::Method::DELETE, "/otaUpdates/u1"), Some(OtaOperation::DeleteOtaUpdate { ota_update_id: "u1".into() }));
        assert_eq!(r(http::Method::PUT, "/otaUpdates/u1"), None);
    }
}

//! AWS IoT OTA updates, rest-json: the `/otaUpdates` routes of [`super::iot`] (dispatched
//! here as `IotOperation::Ota`), their members and outputs.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

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

pub async fn handle(ctx: &mut CallContext<'_>, op: OtaOperation, q: &HashMap<String, String>, call: Arc<Call>) -> Result<Value, ServiceError> {
    let (app, incoming) = (ctx.app, ctx.incoming);
    Ok(match op {
        OtaOperation::CreateOtaUpdate { ota_update_id } => {
            let b: CreateOtaUpdateBody = body(incoming)?;
            app.create_ota_update(&call, &ota_update_id, &b).await?.created()
        }
        OtaOperation::GetOtaUpdate { ota_update_id } => {
            let u = app.get_ota_update(&call, &ota_update_id).await?;
            ctx.resources.push(call.resource(u.arn(), RESOURCE_TYPE));
            json!({ "otaUpdateInfo": u.info() })
        }
        OtaOperation::ListOtaUpdates => {
            let page = app
                .list_ota_updates(&call, q.get("otaUpdateStatus").cloned(), query_int(q, "maxResults")?, q.get("nextToken").cloned())
                .await?;
            listing("otaUpdates", page.updates.iter().map(OtaUpdate::summary).collect(), page.next_token)
        }
        OtaOperation::DeleteOtaUpdate { ota_update_id } => {
            let req = DeleteRequest {
                delete_stream: query_bool(q, "deleteStream")?.unwrap_or(false),
                force_delete_aws_job: query_bool(q, "forceDeleteAWSJob")?.unwrap_or(false),
            };
            app.delete_ota_update(&call, &ota_update_id, req).await?;
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

//! CloudTrail, json 1.1: `POST /` with `X-Amz-Target: <prefix>.<Operation>` and a JSON body
//! whose members are PascalCase (`aws-api.md` §10).

use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::call::{CallContext, OpMeta};
use super::json_response;
use crate::domain::ServiceError;
use crate::domain::error::codes;
use crate::domain::history::LookupInput;
use crate::domain::time::Millis;

pub const TARGET_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

pub fn meta(operation: &str) -> Option<OpMeta> {
    Some(match operation {
        "LookupEvents" => OpMeta::read("LookupEvents"),
        _ => return None,
    })
}

/// The operation named by `X-Amz-Target`.
pub fn operation(incoming: &super::Incoming) -> Result<&str, ServiceError> {
    let target = incoming.header("x-amz-target").unwrap_or_default();
    if incoming.method != http::Method::POST || incoming.raw_path != "/" {
        return Err(ServiceError::new(codes::UNKNOWN_OPERATION, "CloudTrail operations are POST / with an X-Amz-Target header."));
    }
    target.strip_prefix(TARGET_PREFIX).ok_or_else(|| {
        ServiceError::new(
            codes::UNKNOWN_OPERATION,
            format!("'{target}' is not a CloudTrail operation; X-Amz-Target must start with {TARGET_PREFIX}"),
        )
    })
}

fn serialization(e: serde_json::Error) -> ServiceError {
    ServiceError::new("SerializationException", format!("The request body does not match the operation's input: {e}"))
}

/// A botocore timestamp: epoch seconds as an integer or a float.
fn millis(v: &Option<f64>) -> Option<Millis> {
    v.map(|s| Millis((s * 1000.0).round() as i64))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct LookupAttribute {
    attribute_key: Option<String>,
    attribute_value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct LookupEventsRequest {
    #[serde(default)]
    lookup_attributes: Vec<LookupAttribute>,
    start_time: Option<f64>,
    end_time: Option<f64>,
    event_category: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub async fn handle(ctx: &mut CallContext<'_>) -> Result<Response, ServiceError> {
    let (app, incoming) = (ctx.app, ctx.incoming);
    let op = operation(incoming)?;
    let meta = meta(op).ok_or_else(|| ServiceError::new(codes::UNKNOWN_OPERATION, format!("Operation {op} is not supported.")))?;
    let body: Value = if incoming.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&incoming.body)
            .map_err(|e| ServiceError::new("SerializationException", format!("The request body is not valid JSON: {e}")))?
    };
    let call = ctx.start(meta, Some(body.clone()).filter(|b| b.as_object().is_some_and(|m| !m.is_empty())));
    let out = match op {
        "LookupEvents" => {
            let req: LookupEventsRequest = serde_json::from_value(body).map_err(serialization)?;
            let mut attributes = Vec::new();
            for a in req.lookup_attributes {
                match (a.attribute_key, a.attribute_value) {
                    (Some(k), Some(v)) => attributes.push((k, v)),
                    _ => {
                        return Err(ServiceError::new(
                            "InvalidLookupAttributesException",
                            "Each lookup attribute needs an AttributeKey and an AttributeValue.",
                        ));
                    }
                }
            }
            let input = LookupInput {
                attributes,
                start: millis(&req.start_time),
                end: millis(&req.end_time),
                event_category: req.event_category,
                max_results: req.max_results,
                next_token: req.next_token,
            };
            let page = app.lookup_events(&call, input).await?;
            let events: Vec<Value> = page
                .events
                .iter()
                .map(|e| {
                    json!({
                        "EventId": e.event_id,
                        "EventName": e.event_name,
                        "ReadOnly": e.read_only.to_string(),
                        "AccessKeyId": e.access_key_id,
                        "EventTime": e.event_time.0 / 1000,
                        "EventSource": e.event_source,
                        "Username": e.username,
                        "Resources": e.resources.iter().map(|(t, n)| json!({"ResourceType": t, "ResourceName": n})).collect::<Vec<_>>(),
                        "CloudTrailEvent": e.record,
                    })
                })
                .collect();
            let mut out = json!({ "Events": events });
            if let Some(t) = page.next_token {
                out["NextToken"] = json!(t);
            }
            out
        }
        _ => unreachable!("meta() names only handled operations"),
    };
    Ok(json_response(&out, CONTENT_TYPE))
}

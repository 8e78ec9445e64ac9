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
use crate::app::trails::{TrailSettings, trail_json};
use crate::domain::time::Millis;
use crate::domain::trails::{AdvancedEventSelector, EventSelector, Trail};

pub const TARGET_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

pub fn meta(operation: &str) -> Option<OpMeta> {
    const WRITES: &[&str] = &["CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging", "PutEventSelectors"];
    const READS: &[&str] =
        &["LookupEvents", "DescribeTrails", "GetTrail", "ListTrails", "GetTrailStatus", "GetEventSelectors", "ListPublicKeys"];
    WRITES
        .iter()
        .find(|o| **o == operation)
        .map(|o| OpMeta::write(o))
        .or_else(|| READS.iter().find(|o| **o == operation).map(|o| OpMeta::read(o)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TagDto {
    key: String,
    value: Option<String>,
}

/// CreateTrail and UpdateTrail members.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TrailRequest {
    name: Option<String>,
    s3_bucket_name: Option<String>,
    s3_key_prefix: Option<String>,
    sns_topic_name: Option<String>,
    include_global_service_events: Option<bool>,
    is_multi_region_trail: Option<bool>,
    enable_log_file_validation: Option<bool>,
    cloud_watch_logs_log_group_arn: Option<String>,
    cloud_watch_logs_role_arn: Option<String>,
    kms_key_id: Option<String>,
    is_organization_trail: Option<bool>,
    #[serde(default)]
    tags_list: Vec<TagDto>,
}

impl TrailRequest {
    fn settings(self) -> Result<TrailSettings, ServiceError> {
        if self.kms_key_id.is_some() {
            return Err(ServiceError::new("UnsupportedOperationException", "KMS encryption of log files is not available in otatrail; objects are encrypted at rest with SSE (AES256)."));
        }
        if self.cloud_watch_logs_log_group_arn.is_some() || self.cloud_watch_logs_role_arn.is_some() {
            return Err(ServiceError::new("UnsupportedOperationException", "CloudWatch Logs delivery is not available in otatrail."));
        }
        if self.tags_list.len() > 50 {
            return Err(ServiceError::new("TagsLimitExceededException", "A trail can have at most 50 tags."));
        }
        Ok(TrailSettings {
            s3_bucket: self.s3_bucket_name,
            s3_key_prefix: self.s3_key_prefix,
            include_global_service_events: self.include_global_service_events,
            multi_region: self.is_multi_region_trail,
            log_file_validation: self.enable_log_file_validation,
            is_organization_trail: self.is_organization_trail,
            sns_topic: self.sns_topic_name,
            tags: self.tags_list.into_iter().map(|t| (t.key, t.value.unwrap_or_default())).collect(),
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListPublicKeysRequest {
    start_time: Option<f64>,
    end_time: Option<f64>,
    next_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct NameRequest {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct DescribeTrailsRequest {
    #[serde(rename = "trailNameList")]
    trail_name_list: Option<Vec<String>>,
    #[serde(rename = "includeShadowTrails")]
    include_shadow_trails: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct SelectorsRequest {
    trail_name: Option<String>,
    event_selectors: Option<Vec<EventSelector>>,
    advanced_event_selectors: Option<Vec<AdvancedEventSelector>>,
}

fn required_name(n: Option<String>) -> Result<String, ServiceError> {
    n.filter(|n| !n.is_empty()).ok_or_else(|| ServiceError::new("TrailNotProvidedException", "A trail name or ARN is required."))
}

fn epoch(t: Option<Millis>) -> Value {
    t.map(|t| json!(t.as_epoch_seconds())).unwrap_or(Value::Null)
}

/// The `Trail` shape of GetTrail and DescribeTrails.
fn trail_shape(t: &Trail) -> Value {
    let mut v = trail_json(t);
    v["HomeRegion"] = json!(t.home_region);
    v["HasCustomEventSelectors"] = json!(t.event_selectors.is_some() || t.advanced_event_selectors.is_some());
    v["HasInsightSelectors"] = json!(false);
    v
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

/// A CloudTrail request whose operation is named and whose body parsed as JSON: what is known
/// before the call is recorded.
pub struct Targeted<'a> {
    pub operation: &'a str,
    pub meta: OpMeta,
    pub body: Value,
}

/// `X-Amz-Target` to a supported operation, and the body as JSON (`{}` when empty).
pub fn target(incoming: &super::Incoming) -> Result<Targeted<'_>, ServiceError> {
    let op = operation(incoming)?;
    let meta = meta(op).ok_or_else(|| ServiceError::new(codes::UNKNOWN_OPERATION, format!("Operation {op} is not supported.")))?;
    let body: Value = if incoming.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&incoming.body)
            .map_err(|e| ServiceError::new("SerializationException", format!("The request body is not valid JSON: {e}")))?
    };
    Ok(Targeted { operation: op, meta, body })
}

/// A CloudTrail request with its members decoded: everything the handler needs before it calls
/// the application layer.
pub enum CloudTrailRequest {
    LookupEvents(LookupInput),
    CreateTrail { name: String, settings: TrailSettings },
    UpdateTrail { name: String, settings: TrailSettings },
    DeleteTrail { name: String },
    StartLogging { name: String },
    StopLogging { name: String },
    ListPublicKeys { start: Option<Millis>, end: Option<Millis> },
    GetTrail { name: String },
    DescribeTrails { include_shadow: bool, names: Option<Vec<String>> },
    ListTrails,
    GetTrailStatus { name: String },
    GetEventSelectors { trail_name: String },
    PutEventSelectors {
        trail_name: String,
        event_selectors: Option<Vec<EventSelector>>,
        advanced_event_selectors: Option<Vec<AdvancedEventSelector>>,
    },
}

/// The whole decoding of a request: [`target`], then [`Targeted::decode`]. Pure (no I/O); the
/// fuzz targets drive it.
pub fn decode(incoming: &super::Incoming) -> Result<CloudTrailRequest, ServiceError> {
    target(incoming)?.decode()
}

impl Targeted<'_> {
    /// The operation's members, decoded from the JSON body and checked as far as this layer
    /// checks them.
    pub fn decode(self) -> Result<CloudTrailRequest, ServiceError> {
        let body = self.body;
        Ok(match self.operation {
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
                CloudTrailRequest::LookupEvents(LookupInput {
                    attributes,
                    start: millis(&req.start_time),
                    end: millis(&req.end_time),
                    event_category: req.event_category,
                    max_results: req.max_results,
                    next_token: req.next_token,
                })
            }
            op @ ("CreateTrail" | "UpdateTrail") => {
                let req: TrailRequest = serde_json::from_value(body).map_err(serialization)?;
                let name = required_name(req.name.clone())?;
                let settings = req.settings()?;
                if op == "CreateTrail" {
                    CloudTrailRequest::CreateTrail { name, settings }
                } else {
                    CloudTrailRequest::UpdateTrail { name, settings }
                }
            }
            op @ ("DeleteTrail" | "StartLogging" | "StopLogging") => {
                let req: NameRequest = serde_json::from_value(body).map_err(serialization)?;
                let name = required_name(req.name)?;
                match op {
                    "DeleteTrail" => CloudTrailRequest::DeleteTrail { name },
                    "StartLogging" => CloudTrailRequest::StartLogging { name },
                    _ => CloudTrailRequest::StopLogging { name },
                }
            }
            "ListPublicKeys" => {
                let req: ListPublicKeysRequest = serde_json::from_value(body).map_err(serialization)?;
                if req.next_token.as_deref().is_some_and(|t| !t.is_empty()) {
                    // Every key fits in one page, so no token is ever issued.
                    return Err(ServiceError::new("InvalidTokenException", "The NextToken is not valid."));
                }
                let (start, end) = (millis(&req.start_time), millis(&req.end_time));
                if let (Some(s), Some(e)) = (start, end)
                    && s > e
                {
                    return Err(ServiceError::new("InvalidTimeRangeException", "StartTime must not be after EndTime."));
                }
                CloudTrailRequest::ListPublicKeys { start, end }
            }
            "GetTrail" => {
                let req: NameRequest = serde_json::from_value(body).map_err(serialization)?;
                CloudTrailRequest::GetTrail { name: required_name(req.name)? }
            }
            "DescribeTrails" => {
                let req: DescribeTrailsRequest = serde_json::from_value(body).map_err(serialization)?;
                CloudTrailRequest::DescribeTrails {
                    include_shadow: req.include_shadow_trails.unwrap_or(true),
                    names: req.trail_name_list.filter(|n| !n.is_empty()),
                }
            }
            "ListTrails" => CloudTrailRequest::ListTrails,
            "GetTrailStatus" => {
                let req: NameRequest = serde_json::from_value(body).map_err(serialization)?;
                CloudTrailRequest::GetTrailStatus { name: required_name(req.name)? }
            }
            "GetEventSelectors" => {
                let req: SelectorsRequest = serde_json::from_value(body).map_err(serialization)?;
                CloudTrailRequest::GetEventSelectors { trail_name: required_name(req.trail_name)? }
            }
            "PutEventSelectors" => {
                let req: SelectorsRequest = serde_json::from_value(body).map_err(serialization)?;
                CloudTrailRequest::PutEventSelectors {
                    trail_name: required_name(req.trail_name)?,
                    event_selectors: req.event_selectors,
                    advanced_event_selectors: req.advanced_event_selectors,
                }
            }
            op => return Err(ServiceError::new(codes::UNKNOWN_OPERATION, format!("Operation {op} is not supported."))),
        })
    }
}

pub async fn handle(ctx: &mut CallContext<'_>) -> Result<Response, ServiceError> {
    let (app, incoming) = (ctx.app, ctx.incoming);
    let targeted = target(incoming)?;
    let call = ctx.start(targeted.meta, Some(targeted.body.clone()).filter(|b| b.as_object().is_some_and(|m| !m.is_empty())));
    // Members that do not decode fail the named (and so recorded) operation.
    let out = match targeted.decode()? {
        CloudTrailRequest::LookupEvents(input) => {
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
        CloudTrailRequest::CreateTrail { name, settings } => trail_json(&app.create_trail(&call, &name, settings).await?),
        CloudTrailRequest::UpdateTrail { name, settings } => trail_json(&app.update_trail(&call, &name, settings).await?),
        CloudTrailRequest::DeleteTrail { name } => {
            app.delete_trail(&call, &name).await?;
            json!({})
        }
        CloudTrailRequest::StartLogging { name } => {
            app.set_logging(&call, &name, true).await?;
            json!({})
        }
        CloudTrailRequest::StopLogging { name } => {
            app.set_logging(&call, &name, false).await?;
            json!({})
        }
        CloudTrailRequest::ListPublicKeys { start, end } => {
            use base64::Engine;
            let keys = app.signing_keys(&call.info.region).await?;
            let (start, end) = (start.unwrap_or(Millis(i64::MIN)), end.unwrap_or(Millis(i64::MAX)));
            let list: Vec<Value> = keys
                .iter()
                .filter(|k| k.overlaps(start, end))
                .map(|k| {
                    json!({
                        "Value": base64::engine::general_purpose::STANDARD.encode(&k.public_der),
                        "ValidityStartTime": k.valid_from.0 / 1000,
                        "ValidityEndTime": k.valid_to.0 / 1000,
                        "Fingerprint": k.fingerprint,
                    })
                })
                .collect();
            json!({ "PublicKeyList": list })
        }
        CloudTrailRequest::GetTrail { name } => {
            let (t, _) = app.get_trail(&call, &name).await?;
            ctx.resources.push(call.resource(t.arn(), "AWS::CloudTrail::Trail"));
            json!({ "Trail": trail_shape(&t) })
        }
        CloudTrailRequest::DescribeTrails { include_shadow, names } => {
            let mut trails = app.trails_in_region(&call).await?;
            trails.retain(|(_, shadow)| include_shadow || !shadow);
            if let Some(names) = names {
                trails.retain(|(t, _)| names.iter().any(|n| n == &t.name || n == &t.arn()));
            }
            json!({ "trailList": trails.iter().map(|(t, _)| trail_shape(t)).collect::<Vec<_>>() })
        }
        CloudTrailRequest::ListTrails => {
            let trails = app.trails_in_region(&call).await?;
            json!({ "Trails": trails.iter().map(|(t, _)| json!({"TrailARN": t.arn(), "Name": t.name, "HomeRegion": t.home_region})).collect::<Vec<_>>() })
        }
        CloudTrailRequest::GetTrailStatus { name } => {
            let (t, _) = app.get_trail(&call, &name).await?;
            let mut v = json!({
                "IsLogging": t.is_logging,
                "LatestDeliveryTime": epoch(t.latest_delivery_time),
                "StartLoggingTime": epoch(t.start_logging_time),
                "StopLoggingTime": epoch(t.stop_logging_time),
                "LatestDeliveryAttemptTime": t.latest_delivery_attempt.map(crate::domain::audit::event_time_text).unwrap_or_default(),
                "LatestDeliveryAttemptSucceeded": t.latest_delivery_time.map(crate::domain::audit::event_time_text).unwrap_or_default(),
                "TimeLoggingStarted": t.start_logging_time.map(crate::domain::audit::event_time_text).unwrap_or_default(),
                "TimeLoggingStopped": t.stop_logging_time.map(crate::domain::audit::event_time_text).unwrap_or_default(),
            });
            if let Some(e) = &t.latest_delivery_error {
                v["LatestDeliveryError"] = json!(e);
            }
            if t.latest_digest_time.is_some() {
                v["LatestDigestDeliveryTime"] = epoch(t.latest_digest_time);
            }
            if let Some(e) = &t.latest_digest_error {
                v["LatestDigestDeliveryError"] = json!(e);
            }
            if t.sns_topic_arn.is_some() {
                v["LatestNotificationTime"] = epoch(t.latest_notification_time);
                v["LatestNotificationAttemptSucceeded"] =
                    json!(t.latest_notification_time.map(crate::domain::audit::event_time_text).unwrap_or_default());
            }
            if let Some(e) = &t.latest_notification_error {
                v["LatestNotificationError"] = json!(e);
            }
            v
        }
        CloudTrailRequest::GetEventSelectors { trail_name } => {
            let (t, _) = app.get_trail(&call, &trail_name).await?;
            let mut v = json!({ "TrailARN": t.arn() });
            match (&t.event_selectors, &t.advanced_event_selectors) {
                (_, Some(a)) => v["AdvancedEventSelectors"] = serde_json::to_value(a).unwrap_or_default(),
                (Some(b), None) => v["EventSelectors"] = serde_json::to_value(b).unwrap_or_default(),
                (None, None) => v["EventSelectors"] = serde_json::to_value(vec![EventSelector::default()]).unwrap_or_default(),
            }
            v
        }
        CloudTrailRequest::PutEventSelectors { trail_name, event_selectors, advanced_event_selectors } => {
            let t = app.put_event_selectors(&call, &trail_name, event_selectors, advanced_event_selectors).await?;
            let mut v = json!({ "TrailARN": t.arn() });
            if let Some(b) = &t.event_selectors {
                v["EventSelectors"] = serde_json::to_value(b).unwrap_or_default();
            }
            if let Some(a) = &t.advanced_event_selectors {
                v["AdvancedEventSelectors"] = serde_json::to_value(a).unwrap_or_default();
            }
            v
        }
    };
    Ok(json_response(&out, CONTENT_TYPE))
}

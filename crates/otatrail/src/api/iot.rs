//! AWS IoT, rest-json: routes on method and percent-decoded path segments, members from the
//! path, the query string and a JSON body.

use std::collections::HashMap;

use axum::response::Response;
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::call::{CallContext, OpMeta};
use super::{Incoming, json_response};
use crate::domain::ServiceError;
use crate::domain::error::codes;
use crate::domain::streams::{CreateStreamBody, ListRequest, RESOURCE_TYPE, Stream, UpdateStreamBody};

const CONTENT_TYPE: &str = "application/json";

/// The IoT operations this server answers, with their path members.
#[derive(Debug, PartialEq, Eq)]
pub enum IotOperation {
    CreateStream { stream_id: String },
    DescribeStream { stream_id: String },
    UpdateStream { stream_id: String },
    DeleteStream { stream_id: String },
    ListStreams,
}

/// Splits the raw path into percent-decoded segments. Splitting happens before decoding, so
/// an encoded `/` (`%2F`) stays inside its segment.
pub fn segments(raw_path: &str) -> Option<Vec<String>> {
    let trimmed = raw_path.strip_prefix('/')?;
    if trimmed.is_empty() {
        return Some(Vec::new());
    }
    trimmed.split('/').map(|s| percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())).collect()
}

pub fn route(method: &http::Method, segs: &[String]) -> Option<IotOperation> {
    use http::Method as M;
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    Some(match (method, s.as_slice()) {
        (&M::GET, ["streams"]) => IotOperation::ListStreams,
        (&M::POST, ["streams", id]) => IotOperation::CreateStream { stream_id: id.to_string() },
        (&M::GET, ["streams", id]) => IotOperation::DescribeStream { stream_id: id.to_string() },
        (&M::PUT, ["streams", id]) => IotOperation::UpdateStream { stream_id: id.to_string() },
        (&M::DELETE, ["streams", id]) => IotOperation::DeleteStream { stream_id: id.to_string() },
        _ => return None,
    })
}

pub fn unknown_operation(incoming: &Incoming) -> ServiceError {
    ServiceError::new(
        codes::UNKNOWN_OPERATION,
        format!("No operation matches {} {}", incoming.method, incoming.raw_path),
    )
}

fn body<T: DeserializeOwned + Default>(incoming: &Incoming) -> Result<T, ServiceError> {
    if incoming.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&incoming.body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() { "is not valid JSON" } else { "does not match the operation's input" };
        ServiceError::invalid_request(format!("The request body {what}: {e}"))
    })
}

fn query_params(incoming: &Incoming) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(incoming.raw_query.as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

fn query_int(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ServiceError> {
    q.get(name)
        .map(|v| v.parse::<i64>().map_err(|_| ServiceError::invalid_request(format!("{name} must be an integer, got '{v}'."))))
        .transpose()
}

fn query_bool(q: &HashMap<String, String>, name: &str) -> Result<Option<bool>, ServiceError> {
    q.get(name)
        .map(|v| match v.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ServiceError::invalid_request(format!("{name} must be true or false, got '{v}'."))),
        })
        .transpose()
}

impl IotOperation {
    /// How the operation is recorded.
    pub fn meta(&self) -> OpMeta {
        match self {
            IotOperation::CreateStream { .. } => OpMeta::write("CreateStream"),
            IotOperation::DescribeStream { .. } => OpMeta::read("DescribeStream"),
            IotOperation::UpdateStream { .. } => OpMeta::write("UpdateStream"),
            IotOperation::DeleteStream { .. } => OpMeta::write("DeleteStream"),
            IotOperation::ListStreams => OpMeta::read("ListStreams"),
        }
    }

    /// The path and query members by their model names.
    fn request_members(&self, q: &HashMap<String, String>) -> Map<String, Value> {
        let mut m = Map::new();
        match self {
            IotOperation::CreateStream { stream_id }
            | IotOperation::DescribeStream { stream_id }
            | IotOperation::UpdateStream { stream_id }
            | IotOperation::DeleteStream { stream_id } => {
                m.insert("streamId".into(), json!(stream_id));
            }
            IotOperation::ListStreams => {
                // The wire name of `ascendingOrder` is `isAscendingOrder`.
                for (wire, model) in [("maxResults", "maxResults"), ("nextToken", "nextToken"), ("isAscendingOrder", "ascendingOrder")] {
                    if let Some(v) = q.get(wire) {
                        let value = v.parse::<i64>().map(Value::from).or_else(|_| v.parse::<bool>().map(Value::from)).unwrap_or(json!(v));
                        m.insert(model.into(), value);
                    }
                }
            }
        }
        m
    }
}

/// `requestParameters`: path and query members, then the body's members as sent.
fn request_parameters(op: &IotOperation, incoming: &Incoming, q: &HashMap<String, String>) -> Option<Value> {
    let mut m = op.request_members(q);
    if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&incoming.body) {
        m.extend(body);
    }
    if m.is_empty() { None } else { Some(Value::Object(m)) }
}

pub async fn handle(ctx: &mut CallContext<'_>) -> Result<Response, ServiceError> {
    let (app, incoming) = (ctx.app, ctx.incoming);
    let segs = segments(&incoming.raw_path).ok_or_else(|| unknown_operation(incoming))?;
    let op = route(&incoming.method, &segs).ok_or_else(|| unknown_operation(incoming))?;
    let q = query_params(incoming);
    let call = ctx.start(op.meta(), request_parameters(&op, incoming, &q));
    let out = match op {
        IotOperation::CreateStream { stream_id } => {
            let b: CreateStreamBody = body(incoming)?;
            app.create_stream(&call, &stream_id, &b).await?.summary()
        }
        IotOperation::DescribeStream { stream_id } => {
            let s = app.describe_stream(&call, &stream_id).await?;
            ctx.resources.push(call.resource(s.arn(), RESOURCE_TYPE));
            json!({ "streamInfo": s.info() })
        }
        IotOperation::UpdateStream { stream_id } => {
            let b: UpdateStreamBody = body(incoming)?;
            app.update_stream(&call, &stream_id, &b).await?.summary()
        }
        IotOperation::DeleteStream { stream_id } => {
            app.delete_stream(&call, &stream_id).await?;
            json!({})
        }
        IotOperation::ListStreams => {
            let req = ListRequest {
                max_results: query_int(&q, "maxResults")?,
                next_token: q.get("nextToken").cloned(),
                ascending: query_bool(&q, "isAscendingOrder")?.unwrap_or(false),
            };
            let page = app.list_streams(&call, req).await?;
            let mut out = json!({ "streams": page.streams.iter().map(Stream::summary).collect::<Vec<_>>() });
            if let Some(t) = page.next_token {
                out["nextToken"] = Value::String(t);
            }
            out
        }
    };
    Ok(json_response(&out, CONTENT_TYPE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decode_after_splitting() {
        assert_eq!(segments("/streams/a%3Ab").unwrap(), ["streams", "a:b"]);
        assert_eq!(segments("/streams/a%2Fb").unwrap(), ["streams", "a/b"]);
        assert_eq!(segments("/streams/bad%20id").unwrap(), ["streams", "bad id"]);
        assert_eq!(segments("/").unwrap(), Vec::<String>::new());
        assert!(segments("/streams/%FF").is_none());
    }

    #[test]
    fn routes() {
        let segs = |p: &str| segments(p).unwrap();
        assert_eq!(route(&http::Method::GET, &segs("/streams")), Some(IotOperation::ListStreams));
        assert_eq!(
            route(&http::Method::POST, &segs("/streams/s1")),
            Some(IotOperation::CreateStream { stream_id: "s1".into() })
        );
        assert_eq!(route(&http::Method::PATCH, &segs("/streams/s1")), None);
        assert_eq!(route(&http::Method::GET, &segs("/streams/s1/extra")), None);
    }
}

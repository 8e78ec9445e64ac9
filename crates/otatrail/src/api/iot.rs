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
use crate::domain::things::{
    CreateThingBody, CreateThingGroupBody, ListGroupThingsRequest, ListGroupsRequest, ListThingsRequest, MembershipBody,
    THING_GROUP_RESOURCE_TYPE, THING_RESOURCE_TYPE, Thing, UpdateThingBody, UpdateThingGroupBody, group_name_and_arn,
    thing_arn, thing_group_arn,
};

const CONTENT_TYPE: &str = "application/json";

/// The IoT operations this server answers, with their path members.
#[derive(Debug, PartialEq, Eq)]
pub enum IotOperation {
    CreateStream { stream_id: String },
    DescribeStream { stream_id: String },
    UpdateStream { stream_id: String },
    DeleteStream { stream_id: String },
    ListStreams,
    CreateThing { thing_name: String },
    DescribeThing { thing_name: String },
    UpdateThing { thing_name: String },
    DeleteThing { thing_name: String },
    ListThings,
    ListThingGroupsForThing { thing_name: String },
    CreateThingGroup { thing_group_name: String },
    DescribeThingGroup { thing_group_name: String },
    UpdateThingGroup { thing_group_name: String },
    DeleteThingGroup { thing_group_name: String },
    ListThingGroups,
    AddThingToThingGroup,
    RemoveThingFromThingGroup,
    ListThingsInThingGroup { thing_group_name: String },
    /// IoT Jobs control plane (`api::iot_jobs`).
    Job(super::iot_jobs::JobOperation),
    /// OTA updates (`api::iot_ota`).
    Ota(super::iot_ota::OtaOperation),
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
        (&M::GET, ["things"]) => IotOperation::ListThings,
        (&M::POST, ["things", n]) => IotOperation::CreateThing { thing_name: n.to_string() },
        (&M::GET, ["things", n]) => IotOperation::DescribeThing { thing_name: n.to_string() },
        (&M::PATCH, ["things", n]) => IotOperation::UpdateThing { thing_name: n.to_string() },
        (&M::DELETE, ["things", n]) => IotOperation::DeleteThing { thing_name: n.to_string() },
        (&M::GET, ["things", n, "thing-groups"]) => IotOperation::ListThingGroupsForThing { thing_name: n.to_string() },
        (&M::GET, ["thing-groups"]) => IotOperation::ListThingGroups,
        (&M::PUT, ["thing-groups", "addThingToThingGroup"]) => IotOperation::AddThingToThingGroup,
        (&M::PUT, ["thing-groups", "removeThingFromThingGroup"]) => IotOperation::RemoveThingFromThingGroup,
        (&M::POST, ["thing-groups", n]) => IotOperation::CreateThingGroup { thing_group_name: n.to_string() },
        (&M::GET, ["thing-groups", n]) => IotOperation::DescribeThingGroup { thing_group_name: n.to_string() },
        (&M::PATCH, ["thing-groups", n]) => IotOperation::UpdateThingGroup { thing_group_name: n.to_string() },
        (&M::DELETE, ["thing-groups", n]) => IotOperation::DeleteThingGroup { thing_group_name: n.to_string() },
        (&M::GET, ["thing-groups", n, "things"]) => IotOperation::ListThingsInThingGroup { thing_group_name: n.to_string() },
        _ => {
            return super::iot_jobs::route(method, s.as_slice())
                .map(IotOperation::Job)
                .or_else(|| super::iot_ota::route(method, s.as_slice()).map(IotOperation::Ota));
        }
    })
}

pub fn unknown_operation(incoming: &Incoming) -> ServiceError {
    ServiceError::new(
        codes::UNKNOWN_OPERATION,
        format!("No operation matches {} {}", incoming.method, incoming.raw_path),
    )
}

pub(super) fn body<T: DeserializeOwned + Default>(incoming: &Incoming) -> Result<T, ServiceError> {
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

pub(super) fn query_int(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ServiceError> {
    q.get(name)
        .map(|v| v.parse::<i64>().map_err(|_| ServiceError::invalid_request(format!("{name} must be an integer, got '{v}'."))))
        .transpose()
}

pub(super) fn query_bool(q: &HashMap<String, String>, name: &str) -> Result<Option<bool>, ServiceError> {
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
            IotOperation::CreateThing { .. } => OpMeta::write("CreateThing"),
            IotOperation::DescribeThing { .. } => OpMeta::read("DescribeThing"),
            IotOperation::UpdateThing { .. } => OpMeta::write("UpdateThing"),
            IotOperation::DeleteThing { .. } => OpMeta::write("DeleteThing"),
            IotOperation::ListThings => OpMeta::read("ListThings"),
            IotOperation::ListThingGroupsForThing { .. } => OpMeta::read("ListThingGroupsForThing"),
            IotOperation::CreateThingGroup { .. } => OpMeta::write("CreateThingGroup"),
            IotOperation::DescribeThingGroup { .. } => OpMeta::read("DescribeThingGroup"),
            IotOperation::UpdateThingGroup { .. } => OpMeta::write("UpdateThingGroup"),
            IotOperation::DeleteThingGroup { .. } => OpMeta::write("DeleteThingGroup"),
            IotOperation::ListThingGroups => OpMeta::read("ListThingGroups"),
            IotOperation::AddThingToThingGroup => OpMeta::write("AddThingToThingGroup"),
            IotOperation::RemoveThingFromThingGroup => OpMeta::write("RemoveThingFromThingGroup"),
            IotOperation::ListThingsInThingGroup { .. } => OpMeta::read("ListThingsInThingGroup"),
            IotOperation::Job(op) => op.meta(),
            IotOperation::Ota(op) => op.meta(),
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
            IotOperation::CreateThing { thing_name }
            | IotOperation::DescribeThing { thing_name }
            | IotOperation::UpdateThing { thing_name } => {
                m.insert("thingName".into(), json!(thing_name));
            }
            IotOperation::DeleteThing { thing_name } => {
                m.insert("thingName".into(), json!(thing_name));
                typed_query_members(&mut m, q, &[("expectedVersion", Q::Int)]);
            }
            IotOperation::ListThings => typed_query_members(
                &mut m,
                q,
                &[
                    ("nextToken", Q::Str),
                    ("maxResults", Q::Int),
                    ("attributeName", Q::Str),
                    ("attributeValue", Q::Str),
                    ("thingTypeName", Q::Str),
                    ("usePrefixAttributeValue", Q::Bool),
                ],
            ),
            IotOperation::ListThingGroupsForThing { thing_name } => {
                m.insert("thingName".into(), json!(thing_name));
                typed_query_members(&mut m, q, &[("nextToken", Q::Str), ("maxResults", Q::Int)]);
            }
            IotOperation::CreateThingGroup { thing_group_name }
            | IotOperation::DescribeThingGroup { thing_group_name }
            | IotOperation::UpdateThingGroup { thing_group_name } => {
                m.insert("thingGroupName".into(), json!(thing_group_name));
            }
            IotOperation::DeleteThingGroup { thing_group_name } => {
                m.insert("thingGroupName".into(), json!(thing_group_name));
                typed_query_members(&mut m, q, &[("expectedVersion", Q::Int)]);
            }
            IotOperation::ListThingGroups => typed_query_members(
                &mut m,
                q,
                &[
                    ("nextToken", Q::Str),
                    ("maxResults", Q::Int),
                    ("parentGroup", Q::Str),
                    ("namePrefixFilter", Q::Str),
                    ("recursive", Q::Bool),
                ],
            ),
            IotOperation::AddThingToThingGroup | IotOperation::RemoveThingFromThingGroup => {}
            IotOperation::ListThingsInThingGroup { thing_group_name } => {
                m.insert("thingGroupName".into(), json!(thing_group_name));
                typed_query_members(&mut m, q, &[("recursive", Q::Bool), ("nextToken", Q::Str), ("maxResults", Q::Int)]);
            }
            IotOperation::Job(op) => op.request_members(&mut m, q),
            IotOperation::Ota(op) => op.request_members(&mut m, q),
        }
        m
    }
}

/// How a query-string member is typed in the model.
#[derive(Clone, Copy)]
pub(super) enum Q {
    Str,
    Int,
    Bool,
}

/// Query members (wire name = model name) as typed values; a value that does not parse as
/// its type is kept as the string sent.
pub(super) fn typed_query_members(m: &mut Map<String, Value>, q: &HashMap<String, String>, members: &[(&str, Q)]) {
    for (name, kind) in members {
        let Some(v) = q.get(*name) else { continue };
        let value = match kind {
            Q::Str => None,
            Q::Int => v.parse::<i64>().ok().map(Value::from),
            Q::Bool => v.parse::<bool>().ok().map(Value::from),
        };
        m.insert((*name).into(), value.unwrap_or_else(|| json!(v)));
    }
}

/// `{"<key>": [...], "nextToken"?: ...}`, the shape of every IoT listing.
pub(super) fn listing(key: &str, items: Vec<Value>, next_token: Option<String>) -> Value {
    let mut out = json!({ key: items });
    if let Some(t) = next_token {
        out["nextToken"] = Value::String(t);
    }
    out
}

/// `requestParameters`: path and query members, then the body's members as sent.
pub(crate) fn request_parameters(op: &IotOperation, incoming: &Incoming, q: &HashMap<String, String>) -> Option<Value> {
    let mut m = op.request_members(q);
    if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&incoming.body) {
        m.extend(body);
    }
    if m.is_empty() { None } else { Some(Value::Object(m)) }
}

/// A request routed to an operation, with its query string parsed: what is known before the
/// call is recorded (a request that does not route is not recorded).
pub struct Routed {
    pub op: IotOperation,
    pub query: HashMap<String, String>,
}

/// Method and path to an operation (`UnknownOperationException` otherwise).
pub fn route_request(incoming: &Incoming) -> Result<Routed, ServiceError> {
    let segs = segments(&incoming.raw_path).ok_or_else(|| unknown_operation(incoming))?;
    let op = route(&incoming.method, &segs).ok_or_else(|| unknown_operation(incoming))?;
    Ok(Routed { op, query: query_params(incoming) })
}

/// An IoT request with its path, query and body members decoded: everything the handler needs
/// before it calls the application layer.
// Built once per request and matched at once: boxing the bodies would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum IotRequest {
    CreateStream { stream_id: String, body: CreateStreamBody },
    DescribeStream { stream_id: String },
    UpdateStream { stream_id: String, body: UpdateStreamBody },
    DeleteStream { stream_id: String },
    ListStreams(ListRequest),
    CreateThing { thing_name: String, body: CreateThingBody },
    DescribeThing { thing_name: String },
    UpdateThing { thing_name: String, body: UpdateThingBody },
    DeleteThing { thing_name: String, expected_version: Option<i64> },
    ListThings(ListThingsRequest),
    ListThingGroupsForThing { thing_name: String, max_results: Option<i64>, next_token: Option<String> },
    CreateThingGroup { thing_group_name: String, body: CreateThingGroupBody },
    DescribeThingGroup { thing_group_name: String },
    UpdateThingGroup { thing_group_name: String, body: UpdateThingGroupBody },
    DeleteThingGroup { thing_group_name: String, expected_version: Option<i64> },
    ListThingGroups(ListGroupsRequest),
    /// AddThingToThingGroup (`add`) and RemoveThingFromThingGroup.
    ThingGroupMembership { add: bool, body: MembershipBody },
    ListThingsInThingGroup { thing_group_name: String, request: ListGroupThingsRequest },
    Job(super::iot_jobs::JobRequest),
    Ota(super::iot_ota::OtaRequest),
}

/// The whole decoding of a request, routing included: [`route_request`], then
/// [`Routed::decode`]. Pure (no I/O); the fuzz targets drive it.
pub fn decode(incoming: &Incoming) -> Result<IotRequest, ServiceError> {
    route_request(incoming)?.decode(incoming)
}

impl Routed {
    /// The query and body members of the routed operation, checked for their wire types.
    pub fn decode(self, incoming: &Incoming) -> Result<IotRequest, ServiceError> {
        let q = &self.query;
        Ok(match self.op {
            IotOperation::CreateStream { stream_id } => IotRequest::CreateStream { stream_id, body: body(incoming)? },
            IotOperation::DescribeStream { stream_id } => IotRequest::DescribeStream { stream_id },
            IotOperation::UpdateStream { stream_id } => IotRequest::UpdateStream { stream_id, body: body(incoming)? },
            IotOperation::DeleteStream { stream_id } => IotRequest::DeleteStream { stream_id },
            IotOperation::ListStreams => IotRequest::ListStreams(ListRequest {
                max_results: query_int(q, "maxResults")?,
                next_token: q.get("nextToken").cloned(),
                ascending: query_bool(q, "isAscendingOrder")?.unwrap_or(false),
            }),
            IotOperation::CreateThing { thing_name } => IotRequest::CreateThing { thing_name, body: body(incoming)? },
            IotOperation::DescribeThing { thing_name } => IotRequest::DescribeThing { thing_name },
            IotOperation::UpdateThing { thing_name } => IotRequest::UpdateThing { thing_name, body: body(incoming)? },
            IotOperation::DeleteThing { thing_name } => {
                IotRequest::DeleteThing { thing_name, expected_version: query_int(q, "expectedVersion")? }
            }
            IotOperation::ListThings => IotRequest::ListThings(ListThingsRequest {
                max_results: query_int(q, "maxResults")?,
                next_token: q.get("nextToken").cloned(),
                attribute_name: q.get("attributeName").cloned(),
                attribute_value: q.get("attributeValue").cloned(),
                use_prefix_attribute_value: query_bool(q, "usePrefixAttributeValue")?,
                thing_type_name: q.get("thingTypeName").cloned(),
            }),
            IotOperation::ListThingGroupsForThing { thing_name } => IotRequest::ListThingGroupsForThing {
                thing_name,
                max_results: query_int(q, "maxResults")?,
                next_token: q.get("nextToken").cloned(),
            },
            IotOperation::CreateThingGroup { thing_group_name } => IotRequest::CreateThingGroup { thing_group_name, body: body(incoming)? },
            IotOperation::DescribeThingGroup { thing_group_name } => IotRequest::DescribeThingGroup { thing_group_name },
            IotOperation::UpdateThingGroup { thing_group_name } => IotRequest::UpdateThingGroup { thing_group_name, body: body(incoming)? },
            IotOperation::DeleteThingGroup { thing_group_name } => {
                IotRequest::DeleteThingGroup { thing_group_name, expected_version: query_int(q, "expectedVersion")? }
            }
            IotOperation::ListThingGroups => IotRequest::ListThingGroups(ListGroupsRequest {
                max_results: query_int(q, "maxResults")?,
                next_token: q.get("nextToken").cloned(),
                parent_group: q.get("parentGroup").cloned(),
                name_prefix_filter: q.get("namePrefixFilter").cloned(),
                recursive: query_bool(q, "recursive")?,
            }),
            IotOperation::AddThingToThingGroup => IotRequest::ThingGroupMembership { add: true, body: body(incoming)? },
            IotOperation::RemoveThingFromThingGroup => IotRequest::ThingGroupMembership { add: false, body: body(incoming)? },
            IotOperation::ListThingsInThingGroup { thing_group_name } => IotRequest::ListThingsInThingGroup {
                thing_group_name,
                request: ListGroupThingsRequest {
                    max_results: query_int(q, "maxResults")?,
                    next_token: q.get("nextToken").cloned(),
                    recursive: query_bool(q, "recursive")?.unwrap_or(false),
                },
            },
            IotOperation::Job(op) => IotRequest::Job(super::iot_jobs::decode(op, incoming, q)?),
            IotOperation::Ota(op) => IotRequest::Ota(super::iot_ota::decode(op, incoming, q)?),
        })
    }
}

pub async fn handle(ctx: &mut CallContext<'_>) -> Result<Response, ServiceError> {
    let (app, incoming) = (ctx.app, ctx.incoming);
    let routed = route_request(incoming)?;
    let call = ctx.start(routed.op.meta(), request_parameters(&routed.op, incoming, &routed.query));
    // Members that do not decode fail the named (and so recorded) operation.
    let out = match routed.decode(incoming)? {
        IotRequest::CreateStream { stream_id, body: b } => app.create_stream(&call, &stream_id, &b).await?.summary(),
        IotRequest::DescribeStream { stream_id } => {
            let s = app.describe_stream(&call, &stream_id).await?;
            ctx.resources.push(call.resource(s.arn(), RESOURCE_TYPE));
            json!({ "streamInfo": s.info() })
        }
        IotRequest::UpdateStream { stream_id, body: b } => app.update_stream(&call, &stream_id, &b).await?.summary(),
        IotRequest::DeleteStream { stream_id } => {
            app.delete_stream(&call, &stream_id).await?;
            json!({})
        }
        IotRequest::ListStreams(req) => {
            let page = app.list_streams(&call, req).await?;
            let mut out = json!({ "streams": page.streams.iter().map(Stream::summary).collect::<Vec<_>>() });
            if let Some(t) = page.next_token {
                out["nextToken"] = Value::String(t);
            }
            out
        }
        IotRequest::CreateThing { thing_name, body: b } => app.create_thing(&call, &thing_name, &b).await?.created(),
        IotRequest::DescribeThing { thing_name } => {
            let t = app.describe_thing(&call, &thing_name).await?;
            ctx.resources.push(call.resource(t.arn(), THING_RESOURCE_TYPE));
            t.description()
        }
        IotRequest::UpdateThing { thing_name, body: b } => {
            app.update_thing(&call, &thing_name, &b).await?;
            json!({})
        }
        IotRequest::DeleteThing { thing_name, expected_version } => {
            app.delete_thing(&call, &thing_name, expected_version).await?;
            json!({})
        }
        IotRequest::ListThings(req) => {
            let page = app.list_things(&call, req).await?;
            listing("things", page.things.iter().map(Thing::list_item).collect(), page.next_token)
        }
        IotRequest::ListThingGroupsForThing { thing_name, max_results, next_token } => {
            let page = app.list_thing_groups_for_thing(&call, &thing_name, max_results, next_token).await?;
            let scope = call.scope();
            ctx.resources.push(call.resource(thing_arn(&scope, &thing_name), THING_RESOURCE_TYPE));
            listing("thingGroups", page.names.iter().map(|n| group_name_and_arn(&scope, n)).collect(), page.next_token)
        }
        IotRequest::CreateThingGroup { thing_group_name, body: b } => app.create_thing_group(&call, &thing_group_name, &b).await?.created(),
        IotRequest::DescribeThingGroup { thing_group_name } => {
            let g = app.describe_thing_group(&call, &thing_group_name).await?;
            ctx.resources.push(call.resource(g.group.arn(), THING_GROUP_RESOURCE_TYPE));
            g.description()
        }
        IotRequest::UpdateThingGroup { thing_group_name, body: b } => {
            json!({ "version": app.update_thing_group(&call, &thing_group_name, &b).await?.version })
        }
        IotRequest::DeleteThingGroup { thing_group_name, expected_version } => {
            app.delete_thing_group(&call, &thing_group_name, expected_version).await?;
            json!({})
        }
        IotRequest::ListThingGroups(req) => {
            let page = app.list_thing_groups(&call, req).await?;
            let scope = call.scope();
            listing("thingGroups", page.groups.iter().map(|n| group_name_and_arn(&scope, n)).collect(), page.next_token)
        }
        IotRequest::ThingGroupMembership { add, body: b } => {
            app.change_thing_group_membership(&call, &b, add).await?;
            json!({})
        }
        IotRequest::ListThingsInThingGroup { thing_group_name, request } => {
            let page = app.list_things_in_thing_group(&call, &thing_group_name, request).await?;
            let scope = call.scope();
            ctx.resources.push(call.resource(thing_group_arn(&scope, &thing_group_name), THING_GROUP_RESOURCE_TYPE));
            listing("things", page.names.into_iter().map(Value::String).collect(), page.next_token)
        }
        IotRequest::Job(req) => super::iot_jobs::handle(ctx, req, call.clone()).await?,
        IotRequest::Ota(req) => super::iot_ota::handle(ctx, req, call.clone()).await?,
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
        assert_eq!(
            route(&http::Method::PATCH, &segs("/things/a%3Ab")),
            Some(IotOperation::UpdateThing { thing_name: "a:b".into() })
        );
        assert_eq!(
            route(&http::Method::GET, &segs("/things/t1/thing-groups")),
            Some(IotOperation::ListThingGroupsForThing { thing_name: "t1".into() })
        );
        assert_eq!(route(&http::Method::PUT, &segs("/thing-groups/addThingToThingGroup")), Some(IotOperation::AddThingToThingGroup));
        assert_eq!(
            route(&http::Method::POST, &segs("/thing-groups/addThingToThingGroup")),
            Some(IotOperation::CreateThingGroup { thing_group_name: "addThingToThingGroup".into() })
        );
        assert_eq!(
            route(&http::Method::GET, &segs("/thing-groups/g/things")),
            Some(IotOperation::ListThingsInThingGroup { thing_group_name: "g".into() })
        );
        assert_eq!(route(&http::Method::PUT, &segs("/things/t1")), None);
        assert_eq!(route(&http::Method::GET, &segs("/streams/s1/extra")), None);
    }
}

//! The API layer: the only code that knows wire formats.
//!
//! Every request on the main port goes through [`handle`]: it is given a request ID, its body
//! is read (bounded), it is authenticated into a [`auth::VerifiedRequest`], and the service
//! of its credential scope routes it to a protocol module, which turns it into a typed
//! operation for the application layer. Errors become responses in [`error`] alone.

pub mod auth;
pub mod call;
pub mod cloudtrail;
pub mod error;
pub mod iam;
pub mod iot;
pub mod iot_jobs;
pub mod iot_ota;
pub mod query;
pub mod sns;
pub mod sts;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, Method};
use otatrail_sigv4::Verifier;

use crate::app::App;
use crate::domain::ServiceError;
use query::QueryService;

pub const HEALTH_PATH: &str = "/_otatrail/health";

/// Shared by every request of the main port.
pub struct ApiState {
    pub app: Arc<App>,
    pub verifier: Verifier,
}

/// The wire protocol a response must use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    RestJson,
    AwsJson11,
    Query(QueryService),
}

/// A request with its body read, as protocol modules see it.
pub struct Incoming {
    pub method: Method,
    /// The path as received, still percent-encoded.
    pub raw_path: String,
    /// The query string as received, without `?`.
    pub raw_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub source: SocketAddr,
    pub request_id: String,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn protocol_for_service(service: &str) -> Option<Protocol> {
    match service {
        "iot" | "iot-jobs-data" => Some(Protocol::RestJson),
        "cloudtrail" => Some(Protocol::AwsJson11),
        "sts" => Some(Protocol::Query(QueryService::Sts)),
        "iam" => Some(Protocol::Query(QueryService::Iam)),
        "sns" => Some(Protocol::Query(QueryService::Sns)),
        _ => None,
    }
}

/// The protocol to answer in before (or without) a verified service: the claimed signing
/// service, else what the request looks like.
fn guess_protocol(incoming: &Incoming) -> Protocol {
    apparent_protocol(&incoming.headers, &incoming.raw_query)
}

/// The protocol an unauthenticated answer uses: the service of the claimed credential scope,
/// else what the request looks like. Also used by the server for answers it gives before a
/// request reaches [`handle`] (a body that did not arrive in time).
pub(crate) fn apparent_protocol(headers: &http::HeaderMap, raw_query: &str) -> Protocol {
    let claimed = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| otatrail_sigv4::parse_authorization(v).ok())
        .map(|a| a.credential.service);
    if let Some(p) = claimed.as_deref().and_then(protocol_for_service) {
        return p;
    }
    if headers.contains_key("x-amz-target") {
        return Protocol::AwsJson11;
    }
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form || raw_query.contains("Action=") {
        return Protocol::Query(QueryService::Sts);
    }
    Protocol::RestJson
}

fn with_request_id(mut r: Response, request_id: &str) -> Response {
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-RequestId", v);
    }
    r
}

/// The main port's single entry point.
pub async fn handle(State(state): State<Arc<ApiState>>, ConnectInfo(source): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    if req.uri().path() == HEALTH_PATH && req.method() == Method::GET {
        return with_request_id(Response::new(Body::from("ok\n")), &request_id);
    }
    let (parts, body) = req.into_parts();
    let mut incoming = Incoming {
        method: parts.method,
        raw_path: parts.uri.path().to_string(),
        raw_query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts.headers,
        body: Bytes::new(),
        source,
        request_id: request_id.clone(),
    };
    // SNS's unsigned URLs (SubscribeURL, UnsubscribeURL, SigningCertURL).
    if let Some(r) = sns::anonymous(&state.app, &incoming).await {
        let r = with_request_id(r, &request_id);
        tracing::info!(
            request_id = %request_id,
            method = %incoming.method,
            path = %incoming.raw_path,
            service = "sns",
            principal = "anonymous",
            status = r.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            source = %incoming.source,
            "request"
        );
        return r;
    }
    let limit = state.app.max_body_bytes;
    let declared_too_large = incoming
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64);
    let body = if declared_too_large { Err(()) } else { axum::body::to_bytes(body, limit).await.map_err(|_| ()) };
    let (response, service, principal) = match body {
        Err(()) => {
            let err = ServiceError::new(
                "RequestEntityTooLargeException",
                format!("The request body exceeds the limit of {limit} bytes."),
            );
            (error::render(guess_protocol(&incoming), &err, &request_id), None, None)
        }
        Ok(b) => {
            incoming.body = b;
            match auth::authenticate(&state.app, &state.verifier, &incoming).await {
                Err(failure) => {
                    let protocol = guess_protocol(&incoming);
                    tracing::info!(request_id = %request_id, failure = ?failure_kind(&failure), "authentication failed");
                    let err = error::auth_error(protocol, &failure);
                    // Attempts with an existing key are recorded in its account, so that
                    // guessing and replay show up in the trail.
                    let err = match record_auth_failure(&state.app, &incoming, &failure, &err).await {
                        Ok(()) => err,
                        Err(e) => e,
                    };
                    (error::render(protocol, &err, &request_id), None, None)
                }
                Ok(verified) => {
                    let service = verified.service.clone();
                    let principal = verified.principal.arn.clone();
                    let r = dispatch(&state.app, &incoming, &verified).await;
                    (r, Some(service), Some(principal))
                }
            }
        }
    };
    let response = with_request_id(response, &request_id);
    tracing::info!(
        request_id = %request_id,
        method = %incoming.method,
        path = %incoming.raw_path,
        service = service.as_deref().unwrap_or("-"),
        principal = principal.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        source = %incoming.source,
        "request"
    );
    response
}

/// The operation a request names, found without trusting it (for failed authentication).
fn identify(incoming: &Incoming, service: &str) -> Option<call::OpMeta> {
    match service {
        "iot" => iot::segments(&incoming.raw_path).and_then(|s| iot::route(&incoming.method, &s)).map(|op| op.meta()),
        "sts" => query::parse(QueryService::Sts, incoming).ok().and_then(|p| sts::meta(&p.action)),
        "iam" => query::parse(QueryService::Iam, incoming).ok().and_then(|p| iam::meta(&p.action)),
        "sns" => query::parse(QueryService::Sns, incoming).ok().and_then(|p| sns::meta(&p.action)),
        "cloudtrail" => cloudtrail::operation(incoming).ok().and_then(cloudtrail::meta),
        _ => None,
    }
}

async fn record_auth_failure(
    app: &App,
    incoming: &Incoming,
    failure: &auth::AuthFailure,
    err: &ServiceError,
) -> Result<(), ServiceError> {
    use crate::domain::audit::{Actor, Outcome};
    let Some(key) = failure.known_key() else { return Ok(()) };
    let Some(meta) = identify(incoming, &key.service) else { return Ok(()) };
    let (source, api_version) = event_source(&key.service);
    let info = call::call_info(app, incoming, &key.region, source, meta, None, api_version);
    let actor = Actor::Unknown { account_id: &key.account_id, access_key_id: &key.access_key_id };
    // Only the first paragraph: the canonical request that follows may hold a session token.
    let message = err.message.split("\n\n").next().unwrap_or_default();
    let event = info.finish(&actor, Outcome::Failure { code: err.code, message }, vec![]);
    app.record(event).await.map_err(|e| {
        tracing::error!(error = %e, "could not record a failed authentication");
        ServiceError::unavailable()
    })
}

/// A log-safe label of a failure (no secrets, no canonical strings).
fn failure_kind(f: &auth::AuthFailure) -> &'static str {
    use auth::AuthFailure::*;
    match f {
        Missing => "missing",
        Incomplete(_) => "incomplete",
        UnknownKey { .. } => "unknown-key",
        InactiveKey { .. } => "inactive-key",
        InvalidToken { .. } => "invalid-token",
        ExpiredToken { .. } => "expired-token",
        Signature { .. } => "signature",
        UnknownService { .. } => "unknown-service",
        InvalidRegion { .. } => "invalid-region",
        Internal => "internal",
    }
}

/// The CloudTrail `eventSource` and API version of a signing service.
fn event_source(service: &str) -> (&'static str, Option<&'static str>) {
    match service {
        "iot" => ("iot.amazonaws.com", None),
        "iot-jobs-data" => ("iot-jobs-data.amazonaws.com", None),
        "cloudtrail" => ("cloudtrail.amazonaws.com", Some("2013-11-01")),
        "sts" => ("sts.amazonaws.com", Some("2011-06-15")),
        "iam" => ("iam.amazonaws.com", Some("2010-05-08")),
        "sns" => ("sns.amazonaws.com", Some("2010-03-31")),
        _ => ("unknown", None),
    }
}

async fn dispatch(app: &App, incoming: &Incoming, verified: &auth::VerifiedRequest) -> Response {
    let protocol = protocol_for_service(&verified.service).unwrap_or(Protocol::RestJson);
    let (source, api_version) = event_source(&verified.service);
    let mut ctx = call::CallContext::new(app, incoming, verified, source, api_version);
    let result = match verified.service.as_str() {
        "iot" => iot::handle(&mut ctx).await,
        "cloudtrail" => cloudtrail::handle(&mut ctx).await,
        "sts" => sts::handle(&mut ctx).await,
        "iam" => iam::handle(&mut ctx).await,
        "sns" => sns::handle(&mut ctx).await,
        _ => Err(iot::unknown_operation(incoming)),
    };
    call::finish(ctx, result).await.unwrap_or_else(|e| error::render(protocol, &e, &incoming.request_id))
}

/// A 200 JSON response.
pub fn json_response(value: &serde_json::Value, content_type: &'static str) -> Response {
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Body::from(value.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

//! Fuzz entry points for the request-facing parsers: one function per target, taking raw bytes.
//! The same functions serve `tests/hostile_input.rs` (proptest, briefly, in `cargo test`) and the
//! cargo-fuzz targets in `fuzz/` (for as long as one likes), so both check the same invariants.
//!
//! Every entry point splits its bytes into fields with [`Fields`] (deterministically: a selector
//! byte, then fields each prefixed by a little-endian `u16` length, clamped to what is left,
//! then the rest), builds what the server would have built from such a request, and drives the
//! same code the server runs, up to (not including) any storage call. Besides "no panic" they
//! assert what must hold of every answer:
//! - an error is an AWS-style [`ServiceError`] with a well-formed code and a message, and it
//!   renders in the request's protocol with an error status;
//! - a decoded value satisfies the constraints the decoder promises (re-checked where cheap),
//!   and round trips hold (a signed request verifies, a re-encoded path routes the same way,
//!   lifecycle rules survive storage, continuation tokens name their key).
//!
//! The `*_input` builders are the inverse of the field splitting; tests and seed corpora use
//! them to write structured inputs.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use otatrail_sigv4 as sigv4;

use crate::api::auth::{self, AuthFailure};
use crate::api::query::{QueryParams, QueryService};
use crate::api::{Incoming, Protocol, cloudtrail, error, iam, iot, sns, sts};
use crate::domain::ServiceError;

// ---------------------------------------------------------------------------------------------
// Input splitting

/// Reads fuzz bytes as a selector byte, length-prefixed fields and a rest. Missing bytes read
/// as zeros and empty fields, so every input means something.
pub struct Fields<'a> {
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A field: a little-endian `u16` length, then that many bytes (fewer if the input ends).
    pub fn field(&mut self) -> &'a [u8] {
        let len = usize::from(u16::from_le_bytes([self.byte(), self.byte()]));
        let (f, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        f
    }

    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Writes what [`Fields`] reads: `selector`, each field (at most 65,535 bytes), then `rest`.
pub fn encode(selector: u8, fields: &[&[u8]], rest: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    for f in fields {
        let f = &f[..f.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(f.len() as u16).to_le_bytes());
        out.extend_from_slice(f);
    }
    out.extend_from_slice(rest);
    out
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Shared invariants

/// An AWS error code: non-empty ASCII letters and digits (S3's `.` aside), starting uppercase.
fn assert_code(code: &str) {
    assert!(!code.is_empty(), "empty error code");
    assert!(code.as_bytes()[0].is_ascii_uppercase(), "error code {code:?} does not start uppercase");
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'), "malformed error code {code:?}");
}

/// An error as every protocol module must produce it, rendered as the client would get it.
fn assert_service_error(e: &ServiceError, protocol: Protocol) {
    assert_code(e.code);
    assert!(!e.message.is_empty(), "{} has no message", e.code);
    for (name, _) in &e.members {
        assert!(!name.is_empty(), "{} has an unnamed member", e.code);
    }
    let r = error::render(protocol, e, "fuzz-request-id");
    assert!(r.status().as_u16() >= 400, "{} rendered with status {}", e.code, r.status());
}

/// The request the server would have built: the path and query as a valid URI splits them
/// (what cannot be a URI never reaches the server, so it becomes `/`).
fn incoming(method: &[u8], path_and_query: &str, headers: HeaderMap, body: &[u8]) -> Incoming {
    let method = Method::from_bytes(method).unwrap_or(Method::GET);
    let (raw_path, raw_query) = match http::uri::PathAndQuery::try_from(path_and_query) {
        Ok(pq) if pq.path().starts_with('/') => (pq.path().to_string(), pq.query().unwrap_or_default().to_string()),
        _ => ("/".to_string(), String::new()),
    };
    Incoming {
        method,
        raw_path,
        raw_query,
        headers,
        body: Bytes::copy_from_slice(body),
        source: SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)),
        request_id: "fuzz-request-id".into(),
    }
}

/// `path?query`, or just the path when the query is empty.
fn path_and_query(path: &str, query: &str) -> String {
    if query.is_empty() { path.to_string() } else { format!("{path}?{query}") }
}

/// Headers from `name: value` lines; lines that are not a valid header are skipped, as hyper
/// would refuse them.
fn header_lines(block: &[u8], into: &mut HeaderMap) {
    for line in block.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            into.append(n, v);
        }
    }
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.insert(name, v);
    }
}

// ---------------------------------------------------------------------------------------------
// SigV4

/// The secret every fuzzed request is checked against.
pub const FUZZ_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub const FUZZ_ACCESS_KEY: &str = "AKIDFUZZEXAMPLE";

/// Fields: selector, `Authorization`, `X-Amz-Date`, method, path, query, header lines,
/// `X-Amz-Security-Token`; the rest is the body.
#[allow(clippy::too_many_arguments)]
pub fn sigv4_input(
    selector: u8,
    authorization: &str,
    amz_date: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &str,
    token: &str,
    body: &[u8],
) -> Vec<u8> {
    encode(
        selector,
        &[authorization.as_bytes(), amz_date.as_bytes(), method.as_bytes(), path.as_bytes(), query.as_bytes(), headers.as_bytes(), token.as_bytes()],
        body,
    )
}

/// SigV4 as the main port runs it: `parse_authorization`, `parse_amz_date`,
/// `canonical_query_string`, the port's own pre-lookup checks (`api::auth::authorization`), the
/// canonical request it builds, `Verifier::verify` on the fuzzed request, the mapping of each
/// failure to an AWS error; and the round trip: the fuzzed request, signed by `sign_request`,
/// verifies. (Presigned query-string authentication is not accepted on the main port, only on
/// the S3 port, where `s3s` verifies it; `canonical_query_string` is driven with
/// `X-Amz-Signature` excluded, as a presigned check would.)
pub fn sigv4(data: &[u8]) {
    let mut f = Fields::new(data);
    let selector = f.byte();
    let authorization = f.field();
    let amz_date = f.field();
    let method = f.field();
    let path = lossy(f.field());
    let query = lossy(f.field());
    let header_block = f.field();
    let token = f.field();
    let body = f.rest();

    // 1. The Authorization header alone.
    let auth_text = lossy(authorization);
    let parsed = sigv4::parse_authorization(&auth_text);
    match &parsed {
        Ok(a) => check_authorization(a),
        Err(e) => assert!(!e.message().is_empty()),
    }

    // 2. X-Amz-Date alone: what parses formats back to the same instant.
    let date_text = lossy(amz_date);
    if let Some(t) = sigv4::parse_amz_date(date_text.trim()) {
        let formatted = sigv4::format_amz_date(t);
        assert_eq!(sigv4::parse_amz_date(&formatted), Some(t), "{date_text:?} → {formatted:?}");
    }

    // 3. The canonical query string: strictly encoded, sorted, idempotent.
    let excluded = ["X-Amz-Signature"];
    let canonical_query = sigv4::canonical_query_string(&query, &excluded);
    check_canonical_query(&canonical_query);
    assert_eq!(sigv4::canonical_query_string(&canonical_query, &excluded), canonical_query, "not idempotent for {query:?}");

    // 4. The request as the port sees it.
    let mut headers = HeaderMap::new();
    header_lines(header_block, &mut headers);
    set_header(&mut headers, "authorization", authorization);
    set_header(&mut headers, "x-amz-date", amz_date);
    set_header(&mut headers, "x-amz-security-token", token);
    let incoming = incoming(method, &path_and_query(&path, &query), headers, body);
    let protocol = crate::api::apparent_protocol(&incoming.headers, &incoming.raw_query);
    let now = match sigv4::parse_amz_date(date_text.trim()) {
        // Mostly within the allowed skew, so the check goes on to the signature. (A server
        // clock is never near the ends of the calendar, where the skew window would overflow.)
        Some(t) if selector & 1 == 0 && (1000..=9000).contains(&t.year()) => t + time::Duration::minutes(i64::from(selector >> 4)),
        _ => fuzz_now(selector),
    };
    match auth::authorization(&incoming) {
        Ok(a) => {
            assert!(auth::SERVICES.contains(&a.credential.service.as_str()));
            assert!(auth::is_region(&a.credential.region));
            check_authorization(&a);
            let request = auth::canonical_request(&incoming);
            let expect = sigv4::Expectations { now, service: None, region: None, uri_encoding: sigv4::UriEncoding::Double };
            match sigv4::Verifier::new().verify(&a, &request, FUZZ_SECRET, &expect) {
                Ok(v) => {
                    assert_eq!(v.credential, a.credential);
                    assert_eq!(v.signed_headers, a.signed_headers);
                    assert!(v.signed_headers.iter().all(|h| request.header(h).is_some()));
                }
                Err(e) => {
                    let known = auth::KnownKey {
                        access_key_id: a.credential.access_key_id.clone(),
                        account_id: "123456789012".into(),
                        region: a.credential.region.clone(),
                        service: a.credential.service.clone(),
                    };
                    let failure = AuthFailure::Signature { key: known, error: e };
                    assert_service_error(&error::auth_error(protocol, &failure), protocol);
                }
            }
        }
        Err(failure) => assert_service_error(&error::auth_error(protocol, &failure), protocol),
    }

    // 5. Round trip: signed by the client code, verified by the server code.
    sign_and_verify(selector, &incoming, token, now);
}

fn check_authorization(a: &sigv4::AuthorizationHeader) {
    assert_eq!(a.signature.len(), 64);
    assert!(a.signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(!a.signed_headers.is_empty());
    assert!(a.signed_headers.iter().all(|h| !h.is_empty() && *h == h.to_ascii_lowercase()));
    let c = &a.credential;
    for part in [&c.access_key_id, &c.date, &c.region, &c.service] {
        assert!(!part.is_empty() && !part.contains('/'));
    }
    assert!(c.date.len() == 8 && c.date.bytes().all(|b| b.is_ascii_digit()));
    // What parsed prints back to a header that parses the same; unless a component begins or
    // ends with whitespace, which the parser trims from a component's edges (and which the port
    // never sees: it takes the header only when it is visible ASCII).
    let edged = |s: &str| s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace);
    if a.signed_headers.iter().any(|h| edged(h)) || [&c.access_key_id, &c.service].iter().any(|s| edged(s)) {
        return;
    }
    let again = format!(
        "{} Credential={}/{}, SignedHeaders={}, Signature={}",
        sigv4::ALGORITHM,
        c.access_key_id,
        c.scope(),
        a.signed_headers.join(";"),
        a.signature
    );
    assert_eq!(sigv4::parse_authorization(&again).as_ref(), Ok(a), "{again:?}");
}

fn check_canonical_query(q: &str) {
    assert!(
        q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%=&".contains(&b)),
        "canonical query {q:?} is not strictly encoded"
    );
    let pairs: Vec<&str> = if q.is_empty() { Vec::new() } else { q.split('&').collect() };
    let split: Vec<(&str, &str)> = pairs.iter().map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
    assert!(split.windows(2).all(|w| w[0] <= w[1]), "canonical query {q:?} is not sorted");
    assert!(split.iter().all(|(k, _)| *k != "X-Amz-Signature"));
}

/// 2020-01-01 plus up to ~8.5 years, from the selector.
fn fuzz_now(selector: u8) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_577_836_800 + i64::from(selector) * 1_048_576).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Headers a signing client sets itself; a request that also sends them its own way is not a
/// round-trip case.
const SIGNER_HEADERS: &[&str] = &["authorization", "x-amz-date", "x-amz-security-token", "host"];

fn sign_and_verify(selector: u8, base: &Incoming, token: &[u8], now: time::OffsetDateTime) {
    let services = auth::SERVICES;
    let service = services[usize::from(selector >> 1) % services.len()];
    let region = ["us-east-1", "eu-west-3", "ap-southeast-2", "us-gov-west-1"][usize::from(selector >> 5) % 4];
    let token = std::str::from_utf8(token).ok().filter(|t| !t.is_empty() && HeaderValue::from_str(t).is_ok());
    let extra: Vec<(String, String)> = base
        .headers
        .iter()
        .filter(|(k, _)| !SIGNER_HEADERS.contains(&k.as_str()))
        .filter_map(|(k, v)| std::str::from_utf8(v.as_bytes()).ok().map(|v| (k.as_str().to_string(), v.to_string())))
        .collect();
    let extra_refs: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let host = "otatrail.test:4566";
    let req = sigv4::SignableRequest {
        method: base.method.as_str(),
        host,
        path: &base.raw_path,
        query: &base.raw_query,
        headers: &extra_refs,
        body: &base.body,
    };
    let creds = sigv4::Credentials {
        access_key_id: FUZZ_ACCESS_KEY.into(),
        secret_access_key: FUZZ_SECRET.into(),
        session_token: token.map(str::to_string),
    };
    let added = sigv4::sign_request(&req, &creds, region, service, now);
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static(host));
    for (k, v) in &extra {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            headers.append(n, v);
        }
    }
    for (k, v) in &added {
        headers.insert(*k, HeaderValue::from_str(v).expect("the signer writes valid header values"));
    }
    let signed = Incoming { headers, ..clone_incoming(base) };
    let a = auth::authorization(&signed).unwrap_or_else(|f| panic!("a signed request's Authorization is refused: {f:?}"));
    assert_eq!(a.credential.service, service);
    assert_eq!(a.credential.region, region);
    let request = auth::canonical_request(&signed);
    let expect = sigv4::Expectations { now, service: Some(service), region: Some(region), uri_encoding: sigv4::UriEncoding::Double };
    if let Err(e) = sigv4::Verifier::new().verify(&a, &request, FUZZ_SECRET, &expect) {
        panic!("a request signed by sign_request does not verify: {}", e.message());
    }
    let wrong = sigv4::Verifier::new().verify(&a, &request, "not-the-secret", &expect);
    assert!(matches!(wrong, Err(sigv4::SigV4Error::SignatureMismatch { .. })));
}

fn clone_incoming(i: &Incoming) -> Incoming {
    Incoming {
        method: i.method.clone(),
        raw_path: i.raw_path.clone(),
        raw_query: i.raw_query.clone(),
        headers: i.headers.clone(),
        body: i.body.clone(),
        source: i.source,
        request_id: i.request_id.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// IoT, rest-json

/// Fields: method, path, query; the rest is the body. The selector is unused (kept so every
/// target's input starts the same way).
pub fn rest_json_input(method: &str, path: &str, query: &str, body: &[u8]) -> Vec<u8> {
    encode(0, &[method.as_bytes(), path.as_bytes(), query.as_bytes()], body)
}

/// The IoT rest-json decoding: `iot::route_request` (method and percent-decoded path segments
/// to an operation), the recorded request parameters, `Routed::decode` (query and JSON body
/// members), then the domain's own pure checks of the decoded request.
pub fn rest_json(data: &[u8]) {
    let mut f = Fields::new(data);
    let _selector = f.byte();
    let method = f.field();
    let path = lossy(f.field());
    let query = lossy(f.field());
    let body = f.rest();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let incoming = incoming(method, &path_and_query(&path, &query), headers, body);
    let p = Protocol::RestJson;

    let routed = match iot::route_request(&incoming) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e.code, crate::domain::error::codes::UNKNOWN_OPERATION);
            return assert_service_error(&e, p);
        }
    };
    let meta = routed.op.meta();
    assert!(!meta.name.is_empty());
    // The route depends on the decoded segments only: re-encoding them routes the same way.
    let segs = iot::segments(&incoming.raw_path).expect("a routed path has segments");
    let reencoded = format!("/{}", segs.iter().map(|s| sigv4::uri_encode(s, false)).collect::<Vec<_>>().join("/"));
    let again = iot::segments(&reencoded).and_then(|s| iot::route(&incoming.method, &s));
    assert_eq!(again.as_ref(), Some(&routed.op), "{reencoded:?} routes differently");
    if let Some(v) = iot::request_parameters(&routed.op, &incoming, &routed.query) {
        assert!(v.is_object());
    }
    match routed.decode(&incoming) {
        Ok(req) => {
            if let Err(e) = validate_iot(&req) {
                assert_service_error(&e, p);
            }
        }
        Err(e) => assert_service_error(&e, p),
    }
}

/// What the application layer checks first, with the domain's pure validators.
fn validate_iot(req: &iot::IotRequest) -> Result<(), ServiceError> {
    use crate::api::iot::IotRequest as R;
    use crate::api::iot_jobs::JobRequest as J;
    use crate::api::iot_ota::OtaRequest as O;
    use crate::domain::{jobs, ota, streams, things};
    match req {
        R::CreateStream { stream_id, body } => streams::validate_create(stream_id, body).map(drop),
        R::UpdateStream { stream_id, body } => streams::validate_update(stream_id, body).map(drop),
        R::DescribeStream { stream_id } | R::DeleteStream { stream_id } => streams::validate_stream_id(stream_id),
        R::ListStreams(_) | R::ListThings(_) | R::ListThingGroups(_) => Ok(()),
        R::CreateThing { thing_name, body } => things::validate_create_thing(thing_name, body).map(drop),
        R::UpdateThing { thing_name, body } => things::validate_update_thing(thing_name, body).map(drop),
        R::DescribeThing { thing_name } | R::DeleteThing { thing_name, .. } | R::ListThingGroupsForThing { thing_name, .. } => {
            things::validate_thing_name(thing_name)
        }
        R::CreateThingGroup { thing_group_name, body } => things::validate_create_group(thing_group_name, body).map(drop),
        R::UpdateThingGroup { thing_group_name, body } => things::validate_update_group(thing_group_name, body).map(drop),
        R::DescribeThingGroup { thing_group_name }
        | R::DeleteThingGroup { thing_group_name, .. }
        | R::ListThingsInThingGroup { thing_group_name, .. } => things::validate_thing_group_name(thing_group_name),
        R::ThingGroupMembership { body, .. } => {
            things::validate_membership(&crate::domain::Scope::new("123456789012", "us-east-1"), body).map(drop)
        }
        R::Job(J::CreateJob { job_id, body }) => jobs::validate_create_job(job_id, body).map(drop),
        R::Job(J::UpdateJob { job_id, body, namespace_id }) => jobs::validate_update_job(job_id, body, namespace_id.as_deref()),
        R::Job(J::CancelJob { job_id, body, .. }) => jobs::validate_cancel_job(job_id, body),
        R::Job(
            J::DescribeJob { job_id }
            | J::GetJobDocument { job_id }
            | J::DeleteJob { job_id, .. }
            | J::ListJobExecutionsForJob { job_id, .. }
            | J::DescribeJobExecution { job_id, .. }
            | J::CancelJobExecution { job_id, .. }
            | J::DeleteJobExecution { job_id, .. },
        ) => jobs::validate_job_id(job_id),
        R::Job(J::ListJobs(_) | J::ListJobExecutionsForThing { .. }) => Ok(()),
        R::Ota(O::CreateOtaUpdate { ota_update_id, body }) => ota::validate_create(ota_update_id, body).map(drop),
        R::Ota(O::GetOtaUpdate { .. } | O::ListOtaUpdates { .. } | O::DeleteOtaUpdate { .. }) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// CloudTrail, json 1.1

/// Fields: method, path, `X-Amz-Target`; the rest is the body. Selector bit 0 puts the
/// CloudTrail target prefix before the target field (so mutations spend their time on the
/// operation name); bit 1 drops the content type.
pub fn json_1_1_input(prefixed: bool, method: &str, path: &str, target: &str, body: &[u8]) -> Vec<u8> {
    encode(u8::from(prefixed), &[method.as_bytes(), path.as_bytes(), target.as_bytes()], body)
}

/// CloudTrail's json 1.1 decoding: `X-Amz-Target` dispatch (`cloudtrail::target`), the JSON
/// body, `Targeted::decode` into the operation's members, then the domain's pure checks
/// (LookupEvents validation, trail names, prefixes, event selectors).
pub fn json_1_1(data: &[u8]) {
    let mut f = Fields::new(data);
    let selector = f.byte();
    let method = f.field();
    let path = lossy(f.field());
    let target_field = f.field();
    let body = f.rest();
    let mut target = Vec::new();
    if selector & 1 == 1 {
        target.extend_from_slice(cloudtrail::TARGET_PREFIX.as_bytes());
    }
    target.extend_from_slice(target_field);
    let mut headers = HeaderMap::new();
    set_header(&mut headers, "x-amz-target", &target);
    if selector & 2 == 0 {
        headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
    }
    let incoming = incoming(method, &path, headers, body);
    let p = Protocol::AwsJson11;
    assert_eq!(crate::api::apparent_protocol(&incoming.headers, &incoming.raw_query) == p, incoming.headers.contains_key("x-amz-target"));

    // What failed authentication uses to name the operation.
    if let Ok(op) = cloudtrail::operation(&incoming) {
        let _ = cloudtrail::meta(op);
    }
    let targeted = match cloudtrail::target(&incoming) {
        Ok(t) => t,
        Err(e) => return assert_service_error(&e, p),
    };
    assert_eq!(cloudtrail::meta(targeted.operation), Some(targeted.meta));
    match targeted.decode() {
        Ok(req) => {
            if let Err(e) = validate_cloudtrail(req) {
                assert_service_error(&e, p);
            }
        }
        Err(e) => assert_service_error(&e, p),
    }
}

fn validate_cloudtrail(req: cloudtrail::CloudTrailRequest) -> Result<(), ServiceError> {
    use crate::domain::{history, trails};
    use cloudtrail::CloudTrailRequest as C;
    match req {
        C::LookupEvents(input) => history::validate(input).map(drop),
        C::CreateTrail { name, settings } | C::UpdateTrail { name, settings } => {
            assert!(!name.is_empty());
            trails::validate_name(&name)?;
            match settings.s3_key_prefix.as_deref() {
                Some(p) => trails::validate_prefix(p),
                None => Ok(()),
            }
        }
        C::DeleteTrail { name } | C::StartLogging { name } | C::StopLogging { name } | C::GetTrail { name } | C::GetTrailStatus { name } => {
            assert!(!name.is_empty());
            Ok(())
        }
        C::GetEventSelectors { trail_name } => {
            assert!(!trail_name.is_empty());
            Ok(())
        }
        C::PutEventSelectors { trail_name, event_selectors, advanced_event_selectors } => {
            assert!(!trail_name.is_empty());
            trails::validate_selectors(&event_selectors, &advanced_event_selectors)
        }
        C::ListPublicKeys { start, end } => {
            if let (Some(s), Some(e)) = (start, end) {
                assert!(s <= e);
            }
            Ok(())
        }
        C::DescribeTrails { names, .. } => {
            assert!(names.is_none_or(|n| !n.is_empty()));
            Ok(())
        }
        C::ListTrails => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// STS, IAM, SNS: the query protocol

/// Fields: method, query string; the rest is the body. Selector: bits 0–1 the service (STS,
/// IAM, SNS), bit 2 no form content type.
pub fn query_input(service: QueryService, form: bool, method: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let s = match service {
        QueryService::Sts => 0,
        QueryService::Iam => 1,
        QueryService::Sns => 2,
    };
    encode(s | if form { 0 } else { 4 }, &[method.as_bytes(), query.as_bytes()], body)
}

/// The query protocol: `query::parse` (query string, then a form body), the action's
/// recording (`meta`, request parameters as CloudTrail shows them) and the action's parameter
/// decoding (`sts::decode`, `iam::decode`, `sns::decode`), plus the SNS ARN parsers the
/// unsigned SubscribeURL/UnsubscribeURL requests reach.
pub fn query(data: &[u8]) {
    let mut f = Fields::new(data);
    let selector = f.byte();
    let method = f.field();
    let query = lossy(f.field());
    let body = f.rest();
    let service = match selector & 3 {
        0 => QueryService::Sts,
        1 => QueryService::Iam,
        _ => QueryService::Sns,
    };
    let mut headers = HeaderMap::new();
    if selector & 4 == 0 {
        headers.insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"));
    }
    let incoming = incoming(method, &path_and_query("/", &query), headers, body);
    let p = Protocol::Query(service);

    let params = match crate::api::query::parse(service, &incoming) {
        Ok(params) => params,
        Err(e) => {
            assert!(matches!(e.code, "MissingAction" | "InvalidAction"), "{}", e.code);
            return assert_service_error(&e, p);
        }
    };
    assert!(!params.params.contains_key("Action") && !params.params.contains_key("Version"));
    // The SNS ARN parsers face unsigned requests; give them every parameter value.
    for v in params.params.values().chain([&params.action]) {
        if let Ok(t) = crate::domain::sns::TopicArn::parse(v) {
            assert!(!t.region.is_empty() && !t.account_id.is_empty());
        }
        let _ = crate::domain::sns::subscription_topic(v);
        let _ = crate::domain::sns::mask_endpoint(v);
    }
    let (recorded, decoded) = match service {
        QueryService::Sts => (sts::meta(&params.action), sts::decode(&params).map(drop)),
        QueryService::Iam => (iam::meta(&params.action), iam::decode(&params).map(|r| check_iam(&params, r))),
        QueryService::Sns => (sns::meta(&params.action), sns::decode(&params).map(drop)),
    };
    let request_parameters = match service {
        QueryService::Sts => sts::request_parameters(&params),
        QueryService::Iam => iam::request_parameters(&params),
        QueryService::Sns => sns::request_parameters(&params),
    };
    if let Some(v) = request_parameters {
        assert!(v.as_object().is_some_and(|m| !m.is_empty()));
        if service == QueryService::Sns {
            // Confirmation tokens are never recorded.
            assert!(v.get("token").is_none());
        }
    }
    match decoded {
        Ok(()) => {
            let publish = service == QueryService::Sns && params.action == "Publish";
            assert!(recorded.is_some() || publish, "{} decoded but is not an operation", params.action);
        }
        Err(e) => assert_service_error(&e, p),
    }
}

fn check_iam(p: &QueryParams, r: iam::IamRequest<'_>) {
    use iam::IamRequest as I;
    match r {
        I::UntagUser { tag_keys, .. } | I::UntagRole { tag_keys, .. } => {
            for (i, k) in tag_keys.iter().enumerate() {
                assert_eq!(p.get(&format!("TagKeys.member.{}", i + 1)), Some(k.as_str()));
            }
        }
        I::CreateUser { tags, .. } | I::CreateRole { tags, .. } | I::TagUser { tags, .. } | I::TagRole { tags, .. } => {
            assert_eq!(tags.len(), p.structs("Tags").len());
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// S3: the parsing otatrail does itself

/// Fields: bucket policy, principal ARN, action, bucket name, key, lifecycle XML,
/// CompleteMultipartUpload XML, `Range`, `If-Match`, `If-None-Match`, `If-Modified-Since`,
/// `If-Unmodified-Since`, `x-amz-copy-source`, continuation token, part number (8 bytes LE),
/// object size (8 bytes LE). No rest.
pub struct S3Input<'a> {
    pub policy: &'a [u8],
    pub principal_arn: &'a [u8],
    pub action: &'a [u8],
    pub bucket: &'a [u8],
    pub key: &'a [u8],
    pub lifecycle_xml: &'a [u8],
    pub complete_xml: &'a [u8],
    pub range: &'a [u8],
    pub if_match: &'a [u8],
    pub if_none_match: &'a [u8],
    pub if_modified_since: &'a [u8],
    pub if_unmodified_since: &'a [u8],
    pub copy_source: &'a [u8],
    pub continuation_token: &'a [u8],
    pub part_number: i64,
    pub size: u64,
}

impl S3Input<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let (n, s) = (self.part_number.to_le_bytes(), self.size.to_le_bytes());
        encode(
            0,
            &[
                self.policy,
                self.principal_arn,
                self.action,
                self.bucket,
                self.key,
                self.lifecycle_xml,
                self.complete_xml,
                self.range,
                self.if_match,
                self.if_none_match,
                self.if_modified_since,
                self.if_unmodified_since,
                self.copy_source,
                self.continuation_token,
                &n,
                &s,
            ],
            &[],
        )
    }
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    u64::from_le_bytes(a)
}

/// What the S3 port parses itself rather than leaving to `s3s`: bucket policies (parse and
/// evaluation, also as IAM trust policies), bucket names and keys, part numbers and the
/// CompleteMultipartUpload part list, lifecycle rules (from `s3s`'s XML DTO into the stored
/// form and back), GetObject ranges and `Content-Range`, conditional headers, copy sources,
/// ListObjectsV2 continuation tokens, URL-encoded keys, and the ServiceError → S3Error mapping.
/// `s3s`'s own request routing is not driven: its service needs an `App` (SQLite state and a
/// blob directory) for authentication; its XML deserializers are driven directly instead.
pub fn s3_request(data: &[u8]) {
    use crate::app::buckets::{check_key, check_part_list, check_part_number};
    use crate::domain::buckets::is_valid_bucket_name;
    use crate::s3::ops;
    use s3s::dto;
    use s3s::xml::Deserialize as _;

    let mut f = Fields::new(data);
    let _selector = f.byte();
    let policy = lossy(f.field());
    let principal_arn = lossy(f.field());
    let action = lossy(f.field());
    let bucket = lossy(f.field());
    let key = lossy(f.field());
    let lifecycle_xml = f.field();
    let complete_xml = f.field();
    let range = f.field();
    let if_match = f.field();
    let if_none_match = f.field();
    let if_modified_since = f.field();
    let if_unmodified_since = f.field();
    let copy_source = lossy(f.field());
    let token = lossy(f.field());
    let part_number = le_u64(f.field()) as i64;
    let size = le_u64(f.field());

    // Names and keys.
    if is_valid_bucket_name(&bucket) {
        assert!((3..=63).contains(&bucket.len()));
        assert!(bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'));
    }
    match check_key(&key) {
        Ok(()) => assert!((1..=1024).contains(&key.len())),
        Err(e) => assert_s3_error(&e),
    }
    match check_part_number(part_number) {
        Ok(()) => assert!((1..=10_000).contains(&part_number)),
        Err(e) => assert_s3_error(&e),
    }

    // Bucket policy: parsed as PutBucketPolicy does, evaluated as every cross-account call does.
    let parsed = crate::domain::policy::parse(&policy, false);
    if let Err(e) = &parsed {
        assert_code(e.code);
    }
    let who = crate::domain::Principal::iam_user("210987654321", "AIDAFUZZ", "fuzz", "/", FUZZ_ACCESS_KEY);
    let who = crate::domain::Principal { arn: if principal_arn.is_empty() { who.arn.clone() } else { principal_arn.clone() }, ..who };
    let b = crate::domain::buckets::Bucket {
        name: bucket.clone(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        created_at: crate::domain::time::Millis(0),
        policy: Some(policy.clone()),
        lifecycle: None,
    };
    let object_key = (!key.is_empty()).then_some(key.as_str());
    let allowed = crate::app::buckets::policy_allows(&b, &who, &action, object_key);
    assert!(!allowed || parsed.is_ok(), "a policy that does not parse granted access");
    if let Err(e) = crate::domain::policy::parse(&policy, true) {
        assert_code(e.code);
    }

    // Lifecycle configuration: s3s's DTO → stored rules → JSON → rules → DTO, losslessly.
    let mut d = s3s::xml::Deserializer::new(lifecycle_xml);
    if let Ok(config) = dto::BucketLifecycleConfiguration::deserialize(&mut d) {
        let rules: Vec<_> = config.rules.iter().map(ops::lifecycle_rule).collect();
        let text = serde_json::to_string(&rules).expect("lifecycle rules serialize");
        let stored: Vec<crate::domain::buckets::LifecycleRule> = serde_json::from_str(&text).expect("stored rules parse");
        assert_eq!(stored, rules);
        for r in &rules {
            assert_eq!(&ops::lifecycle_rule(&ops::to_dto_rule(r)), r);
            let _ = r.action(&key, part_number, "STANDARD");
        }
    }

    // CompleteMultipartUpload's part list.
    let mut d = s3s::xml::Deserializer::new(complete_xml);
    if let Ok(upload) = dto::CompletedMultipartUpload::deserialize(&mut d) {
        let parts = ops::completed_parts(Some(upload));
        match check_part_list(&parts) {
            Ok(()) => assert!(!parts.is_empty() && parts.windows(2).all(|w| w[0].0 < w[1].0)),
            Err(e) => assert_s3_error(&e),
        }
    }

    // GetObject's Range.
    if let Ok(r) = std::str::from_utf8(range).map_err(drop).and_then(|r| dto::Range::parse(r).map_err(drop)) {
        // Sizes from 0 to 2^40, so ranges both fit and do not.
        let size = size % (1 << 40);
        match ops::byte_range(Some(&r), size) {
            Ok((rg, cr)) => {
                assert!(rg.start <= rg.end && rg.end <= size, "{rg:?} of {size}");
                assert!(cr.is_some_and(|c| c.ends_with(&format!("/{size}"))));
            }
            Err(e) => assert_eq!(e.code(), &s3s::S3ErrorCode::InvalidRange),
        }
    }

    // Conditional headers on a read.
    let meta = crate::domain::buckets::ObjectMeta {
        bucket: bucket.clone(),
        key: key.clone(),
        size,
        etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
        content_type: None,
        metadata: Default::default(),
        last_modified: crate::domain::time::Millis((size % (4_102_444_800_000)) as i64),
        storage_class: "STANDARD".into(),
        blobs: Vec::new(),
    };
    let etag_cond = |b: &[u8]| dto::ETagCondition::parse_http_header(b).ok();
    let date = |b: &[u8]| std::str::from_utf8(b).ok().and_then(|s| dto::Timestamp::parse(dto::TimestampFormat::HttpDate, s).ok());
    let (im, inm, ims, ius) = (etag_cond(if_match), etag_cond(if_none_match), date(if_modified_since), date(if_unmodified_since));
    if let Err(e) = ops::check_preconditions(&meta, im.as_ref(), inm.as_ref(), ims.as_ref(), ius.as_ref()) {
        assert!(matches!(e.code(), s3s::S3ErrorCode::PreconditionFailed | s3s::S3ErrorCode::NotModified), "{:?}", e.code());
    }

    // CopyObject's source: only bucket/key sources are served.
    if let Ok(dto::CopySource::Bucket { bucket, key, .. }) = dto::CopySource::parse(&copy_source) {
        let _ = is_valid_bucket_name(&bucket);
        if let Err(e) = check_key(&key) {
            assert_s3_error(&e);
        }
    }

    // ListObjectsV2's continuation token, both ways.
    match ops::continuation_key(&token) {
        Ok(k) => assert_eq!(ops::continuation_key(&ops::continuation_token(&k)).ok().as_ref(), Some(&k)),
        Err(e) => assert_eq!(e.code(), &s3s::S3ErrorCode::InvalidArgument),
    }
    assert_eq!(ops::continuation_key(&ops::continuation_token(&key)).ok().as_ref(), Some(&key));

    // Keys in listings with encoding-type=url: ASCII, and they decode back.
    let encoded = ops::encode_key(&key, true);
    assert!(encoded.is_ascii());
    assert_eq!(percent_encoding::percent_decode_str(&encoded).decode_utf8().ok().as_deref(), Some(key.as_str()));

    // Domain errors in S3's vocabulary: every one gets a status.
    for code in ["NoSuchBucket", "InvalidPart", "KeyTooLongError", "MalformedPolicy", "ServiceUnavailableException", "InvalidRequestException"] {
        let e = ops::s3_err(ServiceError::new(code, key.clone()));
        assert!(e.status_code().is_some() || e.code().status_code().is_some(), "{code} has no status");
    }
}

fn assert_s3_error(e: &ServiceError) {
    assert_code(e.code);
    assert!(!e.message.is_empty());
}

// ---------------------------------------------------------------------------------------------

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every entry point, by the name of its cargo-fuzz target.
pub const TARGETS: &[(&str, Target)] = &[
    ("sigv4", sigv4),
    ("rest_json", rest_json),
    ("json_1_1", json_1_1),
    ("query", query),
    ("s3_request", s3_request),
];

/// The parameters `p` would decode into, for tests that build [`QueryParams`] directly.
pub fn query_params(action: &str, params: &[(&str, &str)]) -> QueryParams {
    QueryParams { action: action.into(), params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>() }
}

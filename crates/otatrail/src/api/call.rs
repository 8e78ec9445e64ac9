//! Turning a request into a recorded [`Call`]: protocol modules name the operation and its
//! request parameters as soon as they know them ([`CallContext::start`]); [`finish`] then
//! records every outcome the application layer did not record itself.

use std::sync::Arc;

use serde_json::Value;

use super::Incoming;
use super::auth::VerifiedRequest;
use crate::app::App;
use crate::app::audit::Call;
use crate::domain::ServiceError;
use crate::domain::audit::{CallInfo, Outcome, Resource};

/// How an operation is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpMeta {
    pub name: &'static str,
    pub read_only: bool,
    /// The application layer appends the success record in the unit of work that changes
    /// state; other outcomes are recorded by [`finish`].
    pub records_in_tx: bool,
    /// Keep responseElements although read-only (STS credential calls).
    pub keep_response_elements: bool,
}

impl OpMeta {
    pub const fn read(name: &'static str) -> Self {
        Self { name, read_only: true, records_in_tx: false, keep_response_elements: false }
    }

    pub const fn write(name: &'static str) -> Self {
        Self { name, read_only: false, records_in_tx: true, keep_response_elements: false }
    }
}

pub struct CallContext<'a> {
    pub app: &'a App,
    pub incoming: &'a Incoming,
    pub verified: &'a VerifiedRequest,
    pub event_source: &'static str,
    pub api_version: Option<&'static str>,
    started: Option<(Arc<Call>, OpMeta)>,
    /// Set by a read-only operation whose record keeps response elements.
    pub response_elements: Option<Value>,
    pub resources: Vec<Resource>,
}

impl<'a> CallContext<'a> {
    pub fn new(
        app: &'a App,
        incoming: &'a Incoming,
        verified: &'a VerifiedRequest,
        event_source: &'static str,
        api_version: Option<&'static str>,
    ) -> Self {
        Self { app, incoming, verified, event_source, api_version, started: None, response_elements: None, resources: Vec::new() }
    }

    /// Names the operation; from here on the call is recorded whatever happens.
    pub fn start(&mut self, meta: OpMeta, request_parameters: Option<Value>) -> Arc<Call> {
        let call = Arc::new(Call {
            info: call_info(self.app, self.incoming, &self.verified.region, self.event_source, meta, request_parameters, self.api_version),
            principal: self.verified.principal.clone(),
        });
        self.started = Some((call.clone(), meta));
        call
    }
}

pub fn call_info(
    app: &App,
    incoming: &Incoming,
    region: &str,
    event_source: &str,
    meta: OpMeta,
    request_parameters: Option<Value>,
    api_version: Option<&'static str>,
) -> CallInfo {
    CallInfo {
        request_id: incoming.request_id.clone(),
        event_time: app.clock.now(),
        region: region.to_string(),
        event_source: event_source.to_string(),
        event_name: meta.name.to_string(),
        read_only: meta.read_only,
        source_ip: client_ip(app, incoming),
        user_agent: incoming.header("user-agent").map(str::to_string),
        request_parameters,
        api_version: api_version.map(str::to_string),
        tls: None,
        keep_response_elements: meta.keep_response_elements,
    }
}

/// The caller's address: the peer, or, when the peer is a configured trusted proxy, the
/// client address it reports in `X-Forwarded-For` (the right-most address not itself a
/// trusted proxy, so a client cannot forge its own entry).
pub fn client_ip(app: &App, incoming: &Incoming) -> String {
    let peer = incoming.source.ip();
    if !app.trusted_proxies.contains(&peer) {
        return peer.to_string();
    }
    let Some(xff) = incoming.header("x-forwarded-for") else { return peer.to_string() };
    xff.split(',')
        .rev()
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .find(|ip| !app.trusted_proxies.contains(ip))
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| peer.to_string())
}

/// Records what the application layer did not. An outcome whose record cannot be made
/// durable is not reported as a success: the client gets ServiceUnavailable instead.
pub async fn finish<T>(ctx: CallContext<'_>, result: Result<T, ServiceError>) -> Result<T, ServiceError> {
    let Some((call, meta)) = ctx.started else { return result };
    let event = match &result {
        Ok(_) if meta.records_in_tx => return result,
        Ok(_) => call.event(Outcome::Success { response_elements: ctx.response_elements }, ctx.resources),
        Err(e) => call.event(Outcome::Failure { code: e.code, message: &e.message }, ctx.resources),
    };
    match ctx.app.record(event).await {
        Ok(()) => result,
        Err(e) => {
            tracing::error!(request_id = %call.info.request_id, error = %e, "could not record the call; answering ServiceUnavailable");
            Err(ServiceError::unavailable())
        }
    }
}

/// Query parameters as CloudTrail shows them: lowerCamel names, `X.member.N[.Y]` lists as
/// arrays (of objects), numbers for the given numeric members.
pub fn query_request_parameters(params: &std::collections::HashMap<String, String>, numeric: &[&str]) -> Option<Value> {
    use serde_json::Map;
    fn lower_first(s: &str) -> String {
        let mut c = s.chars();
        c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
    }
    let mut out = Map::new();
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    for k in keys {
        let v = &params[k];
        let parts: Vec<&str> = k.split('.').collect();
        match parts.as_slice() {
            [name] => {
                let value = if numeric.contains(name) {
                    v.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(v.clone()))
                } else {
                    Value::String(v.clone())
                };
                out.insert(lower_first(name), value);
            }
            [name, "member", idx, rest @ ..] => {
                let Ok(i) = idx.parse::<usize>() else { continue };
                // Found by fuzzing (tests/hostile_input.rs): `member.0` underflowed `i - 1` (a
                // panic), and a huge N padded the list with N nulls (a caller-chosen allocation
                // that could exhaust memory). Members are numbered from 1, and a list cannot have
                // more members than the request has parameters; any other index is recorded as
                // the flat parameter it is.
                if i == 0 || i > params.len() {
                    out.insert(lower_first(k), Value::String(v.clone()));
                    continue;
                }
                let list = out.entry(lower_first(name)).or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = list else { continue };
                while items.len() < i {
                    items.push(Value::Null);
                }
                let slot = &mut items[i - 1];
                if rest.is_empty() {
                    *slot = Value::String(v.clone());
                } else {
                    if !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    if let Value::Object(m) = slot {
                        m.insert(lower_first(&rest.join(".")), Value::String(v.clone()));
                    }
                }
            }
            _ => {
                out.insert(lower_first(k), Value::String(v.clone()));
            }
        }
    }
    if out.is_empty() { None } else { Some(Value::Object(out)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_become_cloudtrail_shapes() {
        let p = std::collections::HashMap::from([
            ("RoleArn".to_string(), "arn:aws:iam::1:role/r".to_string()),
            ("DurationSeconds".to_string(), "900".to_string()),
            ("Tags.member.1.Key".to_string(), "k".to_string()),
            ("Tags.member.1.Value".to_string(), "v".to_string()),
            ("TagKeys.member.1".to_string(), "a".to_string()),
        ]);
        let v = query_request_parameters(&p, &["DurationSeconds"]).unwrap();
        assert_eq!(v["roleArn"], "arn:aws:iam::1:role/r");
        assert_eq!(v["durationSeconds"], 900);
        assert_eq!(v["tags"][0]["key"], "k");
        assert_eq!(v["tagKeys"][0], "a");
    }

    #[test]
    fn member_indexes_out_of_range_are_flat() {
        let p = std::collections::HashMap::from([
            ("Tags.member.0.Key".to_string(), "k".to_string()),
            ("TagKeys.member.4000000000".to_string(), "a".to_string()),
        ]);
        let v = query_request_parameters(&p, &[]).unwrap();
        assert_eq!(v["tags.member.0.Key"], "k");
        assert_eq!(v["tagKeys.member.4000000000"], "a");
        assert!(v.get("tags").is_none() && v.get("tagKeys").is_none());
    }
}

//! CloudTrail records (`cloudtrail.md` §2): what one control-plane call looked like to an
//! auditor. A record is rendered to its JSON text once, when it is made; that text is what
//! the store keeps, LookupEvents returns and log files carry, so every reader sees the same
//! bytes.

use serde_json::{Map, Value, json};

use super::principal::{IdentityType, Principal};
use super::time::Millis;

pub const EVENT_VERSION: &str = "1.11";
/// Longest `userAgent`, `errorCode` and `errorMessage` kept, as CloudTrail truncates them.
const MAX_SHORT_FIELD: usize = 1024;
/// `requestParameters` and `responseElements` larger than this are left out.
const MAX_ELEMENTS: usize = 100 * 1024;

/// Who made the call, as far as the record is concerned.
#[derive(Clone, Debug)]
pub enum Actor {
    Principal(Principal),
    /// A request that named an existing access key but failed authentication.
    Unknown { account_id: String, access_key_id: String },
    /// An unsigned request that acts on `account_id`'s resource, as SNS allows for the
    /// SubscribeURL and UnsubscribeURL of its messages (`userIdentity` of an anonymous caller).
    Anonymous { account_id: String },
}

impl Actor {
    pub fn account_id(&self) -> &str {
        match self {
            Actor::Principal(p) => &p.account_id,
            Actor::Unknown { account_id, .. } | Actor::Anonymous { account_id } => account_id,
        }
    }

    pub fn access_key_id(&self) -> &str {
        match self {
            Actor::Principal(p) => &p.access_key_id,
            Actor::Unknown { access_key_id, .. } => access_key_id,
            Actor::Anonymous { .. } => "",
        }
    }

    /// The `Username` LookupEvents matches: the user, role-session or federated name.
    pub fn username(&self) -> Option<String> {
        match self {
            Actor::Principal(p) => match p.identity_type {
                IdentityType::Root => Some("root".into()),
                IdentityType::IAMUser | IdentityType::FederatedUser => p.user_name.clone(),
                IdentityType::AssumedRole => p.arn.rsplit('/').next().map(str::to_string),
            },
            Actor::Unknown { .. } | Actor::Anonymous { .. } => None,
        }
    }

    /// The `userIdentity` element.
    pub fn user_identity(&self) -> Value {
        let p = match self {
            Actor::Unknown { account_id, access_key_id } => {
                return json!({"type": "Unknown", "principalId": "", "accountId": account_id, "accessKeyId": access_key_id});
            }
            Actor::Anonymous { .. } => return json!({"type": "AWSAccount", "principalId": "", "accountId": "anonymous"}),
            Actor::Principal(p) => p,
        };
        let mut m = Map::new();
        m.insert("type".into(), json!(p.identity_type.as_str()));
        m.insert("principalId".into(), json!(p.principal_id));
        m.insert("arn".into(), json!(p.arn));
        m.insert("accountId".into(), json!(p.account_id));
        m.insert("accessKeyId".into(), json!(p.access_key_id));
        match p.identity_type {
            IdentityType::IAMUser | IdentityType::FederatedUser => {
                if let Some(u) = &p.user_name {
                    m.insert("userName".into(), json!(u));
                }
            }
            IdentityType::Root | IdentityType::AssumedRole => {}
        }
        if let Some(s) = &p.session {
            let mut ctx = Map::new();
            if let Some(i) = &s.session_issuer {
                ctx.insert("sessionIssuer".into(), serde_json::to_value(i).unwrap_or(Value::Null));
            }
            ctx.insert("webIdFederationData".into(), json!({}));
            ctx.insert(
                "attributes".into(),
                json!({"creationDate": s.creation_date, "mfaAuthenticated": s.mfa_authenticated.to_string()}),
            );
            if let Some(si) = &s.source_identity {
                ctx.insert("sourceIdentity".into(), json!(si));
            }
            m.insert("sessionContext".into(), Value::Object(ctx));
        }
        if let Some(by) = &p.invoked_by {
            m.insert("invokedBy".into(), json!(by));
        }
        Value::Object(m)
    }
}

/// A resource a call touched (`resources[]`, and LookupEvents' ResourceType/ResourceName).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub arn: String,
    pub account_id: String,
    /// e.g. `AWS::IoT::Stream`
    pub resource_type: String,
}

/// `tlsDetails`, for calls that came over TLS.
#[derive(Clone, Debug)]
pub struct TlsDetails {
    pub tls_version: String,
    pub cipher_suite: String,
    pub client_provided_host_header: String,
}

/// Everything known about a call before its outcome.
#[derive(Clone, Debug)]
pub struct CallInfo {
    pub request_id: String,
    pub event_time: Millis,
    pub region: String,
    pub event_source: String,
    pub event_name: String,
    pub read_only: bool,
    pub source_ip: String,
    pub user_agent: Option<String>,
    pub request_parameters: Option<Value>,
    pub api_version: Option<String>,
    pub tls: Option<TlsDetails>,
    /// Keep `responseElements` although the call is read-only (STS credential calls, which
    /// CloudTrail records with the credentials they issued, less the secrets).
    pub keep_response_elements: bool,
}

/// A finished record, ready to store.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub event_id: String,
    pub event_time: Millis,
    pub recipient_account_id: String,
    pub region: String,
    pub event_source: String,
    pub event_name: String,
    pub read_only: bool,
    pub username: Option<String>,
    pub access_key_id: String,
    pub resources: Vec<Resource>,
    /// The CloudTrail record, as JSON text.
    pub record: String,
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn bounded(v: &Option<Value>) -> Value {
    match v {
        Some(v) if v.to_string().len() <= MAX_ELEMENTS => v.clone(),
        _ => Value::Null,
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, whole seconds: fractions break CloudTrail consumers.
pub fn event_time_text(t: Millis) -> String {
    let dt = t.to_offset_datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// The outcome of a call, as the record states it.
pub enum Outcome<'a> {
    Success { response_elements: Option<Value> },
    Failure { code: &'a str, message: &'a str },
}

impl CallInfo {
    /// Builds the record. `response_elements` is dropped for read-only calls, as CloudTrail does.
    pub fn finish(&self, actor: &Actor, outcome: Outcome<'_>, resources: Vec<Resource>) -> AuditEvent {
        let event_id = super::ids::time_ordered_id();
        let mut r = Map::new();
        r.insert("eventVersion".into(), json!(EVENT_VERSION));
        r.insert("userIdentity".into(), actor.user_identity());
        r.insert("eventTime".into(), json!(event_time_text(self.event_time)));
        r.insert("eventSource".into(), json!(self.event_source));
        r.insert("eventName".into(), json!(self.event_name));
        r.insert("awsRegion".into(), json!(self.region));
        r.insert("sourceIPAddress".into(), json!(self.source_ip));
        if let Some(ua) = &self.user_agent {
            r.insert("userAgent".into(), json!(truncate(ua, MAX_SHORT_FIELD)));
        }
        let response_elements = match outcome {
            Outcome::Failure { code, message } => {
                r.insert("errorCode".into(), json!(truncate(code, MAX_SHORT_FIELD)));
                r.insert("errorMessage".into(), json!(truncate(message, MAX_SHORT_FIELD)));
                None
            }
            Outcome::Success { response_elements } => {
                response_elements.filter(|_| !self.read_only || self.keep_response_elements)
            }
        };
        r.insert("requestParameters".into(), bounded(&self.request_parameters));
        r.insert("responseElements".into(), bounded(&response_elements));
        r.insert("requestID".into(), json!(self.request_id));
        r.insert("eventID".into(), json!(event_id));
        r.insert("readOnly".into(), json!(self.read_only));
        if !resources.is_empty() {
            r.insert(
                "resources".into(),
                Value::Array(
                    resources
                        .iter()
                        .map(|x| json!({"accountId": x.account_id, "type": x.resource_type, "ARN": x.arn}))
                        .collect(),
                ),
            );
        }
        r.insert("eventType".into(), json!("AwsApiCall"));
        if let Some(v) = &self.api_version {
            r.insert("apiVersion".into(), json!(v));
        }
        r.insert("managementEvent".into(), json!(true));
        r.insert("recipientAccountId".into(), json!(actor.account_id()));
        r.insert("eventCategory".into(), json!("Management"));
        if let Some(t) = &self.tls {
            r.insert(
                "tlsDetails".into(),
                json!({"tlsVersion": t.tls_version, "cipherSuite": t.cipher_suite, "clientProvidedHostHeader": t.client_provided_host_header}),
            );
        }
        AuditEvent {
            event_id,
            // Whole seconds, as the record shows it, so time filters agree with what is seen.
            event_time: Millis(self.event_time.0.div_euclid(1000) * 1000),
            recipient_account_id: actor.account_id().to_string(),
            region: self.region.clone(),
            event_source: self.event_source.clone(),
            event_name: self.event_name.clone(),
            read_only: self.read_only,
            username: actor.username(),
            access_key_id: actor.access_key_id().to_string(),
            resources,
            record: Value::Object(r).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(read_only: bool) -> CallInfo {
        CallInfo {
            request_id: "req-1".into(),
            event_time: Millis(1_700_000_000_999),
            region: "us-east-1".into(),
            event_source: "iot.amazonaws.com".into(),
            event_name: "CreateStream".into(),
            read_only,
            source_ip: "127.0.0.1".into(),
            user_agent: Some("aws-cli/1.46".into()),
            request_parameters: Some(json!({"streamId": "s1"})),
            api_version: None,
            tls: None,
            keep_response_elements: false,
        }
    }

    #[test]
    fn records_have_whole_second_times_and_identity() {
        let actor = Actor::Principal(Principal::iam_user("111122223333", "AIDAX", "alice", "/", "AKIAX"));
        let e = call(false).finish(&actor, Outcome::Success { response_elements: Some(json!({"streamVersion": 1})) }, vec![]);
        let v: Value = serde_json::from_str(&e.record).unwrap();
        assert_eq!(v["eventTime"], "2023-11-14T22:13:20Z");
        assert_eq!(v["userIdentity"]["type"], "IAMUser");
        assert_eq!(v["userIdentity"]["userName"], "alice");
        assert_eq!(v["responseElements"]["streamVersion"], 1);
        assert_eq!(v["requestID"], "req-1");
        assert_eq!(v["eventID"], e.event_id);
        assert_eq!(e.username.as_deref(), Some("alice"));
        assert!(v.get("errorCode").is_none());
    }

    #[test]
    fn read_only_and_failed_calls_have_no_response_elements() {
        let actor = Actor::Principal(Principal::root("111122223333", "AKIAX"));
        let e = call(true).finish(&actor, Outcome::Success { response_elements: Some(json!({"x": 1})) }, vec![]);
        let v: Value = serde_json::from_str(&e.record).unwrap();
        assert!(v["responseElements"].is_null());
        let e = call(false).finish(&actor, Outcome::Failure { code: "InvalidRequestException", message: "no" }, vec![]);
        let v: Value = serde_json::from_str(&e.record).unwrap();
        assert!(v["responseElements"].is_null());
        assert_eq!(v["errorCode"], "InvalidRequestException");
    }

    #[test]
    fn unknown_actor_keeps_the_presented_key() {
        let actor = Actor::Unknown { account_id: "111122223333".into(), access_key_id: "AKIAX".into() };
        let e = call(true).finish(&actor, Outcome::Failure { code: "InvalidSignatureException", message: "bad" }, vec![]);
        let v: Value = serde_json::from_str(&e.record).unwrap();
        assert_eq!(v["userIdentity"]["type"], "Unknown");
        assert_eq!(v["userIdentity"]["accessKeyId"], "AKIAX");
        assert_eq!(v["recipientAccountId"], "111122223333");
    }
}

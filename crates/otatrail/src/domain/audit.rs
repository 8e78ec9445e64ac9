//! CloudTrail records (`cloudtrail.md` §2): what one control-plane call looked like to an
//! auditor. A record is rendered to its JSON text once, when it is made; that text is what
//! the store keeps, LookupEvents returns and log files carry, so every reader sees the same
//! bytes.

use serde_json::Value;

use super::principal::{IdentityType, Principal};
use super::time::Millis;

pub const EVENT_VERSION: &str = "1.11";
/// Longest `userAgent`, `errorCode` and `errorMessage` kept, as CloudTrail truncates them.
const MAX_SHORT_FIELD: usize = 1024;
/// `requestParameters` and `responseElements` larger than this are left out.
const MAX_ELEMENTS: usize = 100 * 1024;

/// Who made the call, as far as the record is concerned. Borrowed: a record is rendered
/// while the call's principal is at hand, and copying it for every record showed up in
/// profiles of the writer.
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    Principal(&'a Principal),
    /// A request that named an existing access key but failed authentication.
    Unknown { account_id: &'a str, access_key_id: &'a str },
    /// An unsigned request that acts on `account_id`'s resource, as SNS allows for the
    /// SubscribeURL and UnsubscribeURL of its messages (`userIdentity` of an anonymous caller).
    Anonymous { account_id: &'a str },
}

impl Actor<'_> {
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

    /// Writes the `userIdentity` element.
    fn write_user_identity(&self, m: &mut ObjectWriter<'_>) {
        let p = match self {
            Actor::Unknown { account_id, access_key_id } => {
                m.member("type", "Unknown");
                m.member("principalId", "");
                m.member("accountId", account_id);
                m.member("accessKeyId", access_key_id);
                return;
            }
            Actor::Anonymous { .. } => {
                m.member("type", "AWSAccount");
                m.member("principalId", "");
                m.member("accountId", "anonymous");
                return;
            }
            Actor::Principal(p) => p,
        };
        m.member("type", p.identity_type.as_str());
        m.member("principalId", &p.principal_id);
        m.member("arn", &p.arn);
        m.member("accountId", &p.account_id);
        m.member("accessKeyId", &p.access_key_id);
        match p.identity_type {
            IdentityType::IAMUser | IdentityType::FederatedUser => {
                if let Some(u) = &p.user_name {
                    m.member("userName", u);
                }
            }
            IdentityType::Root | IdentityType::AssumedRole => {}
        }
        if let Some(s) = &p.session {
            m.object("sessionContext", |ctx| {
                if let Some(i) = &s.session_issuer {
                    ctx.member("sessionIssuer", i);
                }
                ctx.object("webIdFederationData", |_| {});
                ctx.object("attributes", |a| {
                    a.member("creationDate", &s.creation_date);
                    a.member("mfaAuthenticated", if s.mfa_authenticated { "true" } else { "false" });
                });
                if let Some(si) = &s.source_identity {
                    ctx.member("sourceIdentity", si);
                }
            });
        }
        if let Some(by) = &p.invoked_by {
            m.member("invokedBy", by);
        }
    }
}

/// Writes a JSON object's members, in the order given, straight into the record's text: a
/// record used to be built as a `serde_json::Value` map first (a few dozen allocations, its
/// parameters serialized twice to measure them), a tenth of the writer thread's time.
struct ObjectWriter<'b> {
    out: &'b mut Vec<u8>,
    empty: bool,
}

impl<'b> ObjectWriter<'b> {
    fn open(out: &'b mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    fn close(self) {
        self.out.push(b'}');
    }

    /// `key` is one of the record's member names: plain ASCII, nothing to escape.
    fn key(&mut self, key: &'static str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn member<T: serde::Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        self.key(key);
        write_json(self.out, value);
    }

    fn object(&mut self, key: &'static str, members: impl FnOnce(&mut ObjectWriter<'_>)) {
        self.key(key);
        let mut inner = ObjectWriter::open(self.out);
        members(&mut inner);
        inner.close();
    }

    /// `requestParameters` / `responseElements`: `null` when absent or larger than
    /// [`MAX_ELEMENTS`] once written, as CloudTrail leaves out oversized elements.
    fn bounded(&mut self, key: &'static str, value: Option<&Value>) {
        self.key(key);
        let start = self.out.len();
        match value {
            Some(v) => write_json(self.out, v),
            None => self.out.extend_from_slice(b"null"),
        }
        if self.out.len() - start > MAX_ELEMENTS {
            self.out.truncate(start);
            self.out.extend_from_slice(b"null");
        }
    }
}

/// Serializing into memory fails only for maps whose keys are not strings, which no record
/// holds; should one ever, the member becomes `null` rather than broken JSON.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
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

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
    pub fn finish(&self, actor: &Actor<'_>, outcome: Outcome<'_>, resources: Vec<Resource>) -> AuditEvent {
        let event_id = super::ids::time_ordered_id();
        let mut out = Vec::with_capacity(1024);
        let mut r = ObjectWriter::open(&mut out);
        r.member("eventVersion", EVENT_VERSION);
        r.object("userIdentity", |m| actor.write_user_identity(m));
        r.member("eventTime", &event_time_text(self.event_time));
        r.member("eventSource", &self.event_source);
        r.member("eventName", &self.event_name);
        r.member("awsRegion", &self.region);
        r.member("sourceIPAddress", &self.source_ip);
        if let Some(ua) = &self.user_agent {
            r.member("userAgent", truncate(ua, MAX_SHORT_FIELD));
        }
        let response_elements = match outcome {
            Outcome::Failure { code, message } => {
                r.member("errorCode", truncate(code, MAX_SHORT_FIELD));
                r.member("errorMessage", truncate(message, MAX_SHORT_FIELD));
                None
            }
            Outcome::Success { response_elements } => {
                response_elements.filter(|_| !self.read_only || self.keep_response_elements)
            }
        };
        r.bounded("requestParameters", self.request_parameters.as_ref());
        r.bounded("responseElements", response_elements.as_ref());
        r.member("requestID", &self.request_id);
        r.member("eventID", &event_id);
        r.member("readOnly", &self.read_only);
        if !resources.is_empty() {
            r.key("resources");
            r.out.push(b'[');
            for (i, x) in resources.iter().enumerate() {
                if i > 0 {
                    r.out.push(b',');
                }
                let mut o = ObjectWriter::open(r.out);
                o.member("accountId", &x.account_id);
                o.member("type", &x.resource_type);
                o.member("ARN", &x.arn);
                o.close();
            }
            r.out.push(b']');
        }
        r.member("eventType", "AwsApiCall");
        if let Some(v) = &self.api_version {
            r.member("apiVersion", v);
        }
        r.member("managementEvent", &true);
        r.member("recipientAccountId", actor.account_id());
        r.member("eventCategory", "Management");
        if let Some(t) = &self.tls {
            r.object("tlsDetails", |o| {
                o.member("tlsVersion", &t.tls_version);
                o.member("cipherSuite", &t.cipher_suite);
                o.member("clientProvidedHostHeader", &t.client_provided_host_header);
            });
        }
        r.close();
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
            // serde_json writes UTF-8 from UTF-8 input; the lossy path is never taken.
            record: String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The record as it was built before it was written straight to text (a
    /// `serde_json::Value` map with `preserve_order`): the byte-for-byte oracle of `finish`.
    fn reference_record(info: &CallInfo, actor: &Actor<'_>, outcome: Outcome<'_>, resources: &[Resource], event_id: &str) -> String {
        use serde_json::{Map, json};
        let identity = match actor {
            Actor::Unknown { account_id, access_key_id } => {
                json!({"type": "Unknown", "principalId": "", "accountId": account_id, "accessKeyId": access_key_id})
            }
            Actor::Anonymous { .. } => json!({"type": "AWSAccount", "principalId": "", "accountId": "anonymous"}),
            Actor::Principal(p) => {
                let mut m = Map::new();
                m.insert("type".into(), json!(p.identity_type.as_str()));
                m.insert("principalId".into(), json!(p.principal_id));
                m.insert("arn".into(), json!(p.arn));
                m.insert("accountId".into(), json!(p.account_id));
                m.insert("accessKeyId".into(), json!(p.access_key_id));
                if matches!(p.identity_type, IdentityType::IAMUser | IdentityType::FederatedUser) {
                    if let Some(u) = &p.user_name {
                        m.insert("userName".into(), json!(u));
                    }
                }
                if let Some(s) = &p.session {
                    let mut ctx = Map::new();
                    if let Some(i) = &s.session_issuer {
                        ctx.insert("sessionIssuer".into(), serde_json::to_value(i).unwrap());
                    }
                    ctx.insert("webIdFederationData".into(), json!({}));
                    ctx.insert("attributes".into(), json!({"creationDate": s.creation_date, "mfaAuthenticated": s.mfa_authenticated.to_string()}));
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
        };
        let bounded = |v: &Option<Value>| match v {
            Some(v) if v.to_string().len() <= MAX_ELEMENTS => v.clone(),
            _ => Value::Null,
        };
        let mut r = Map::new();
        r.insert("eventVersion".into(), json!(EVENT_VERSION));
        r.insert("userIdentity".into(), identity);
        r.insert("eventTime".into(), json!(event_time_text(info.event_time)));
        r.insert("eventSource".into(), json!(info.event_source));
        r.insert("eventName".into(), json!(info.event_name));
        r.insert("awsRegion".into(), json!(info.region));
        r.insert("sourceIPAddress".into(), json!(info.source_ip));
        if let Some(ua) = &info.user_agent {
            r.insert("userAgent".into(), json!(truncate(ua, MAX_SHORT_FIELD)));
        }
        let response_elements = match outcome {
            Outcome::Failure { code, message } => {
                r.insert("errorCode".into(), json!(truncate(code, MAX_SHORT_FIELD)));
                r.insert("errorMessage".into(), json!(truncate(message, MAX_SHORT_FIELD)));
                None
            }
            Outcome::Success { response_elements } => response_elements.filter(|_| !info.read_only || info.keep_response_elements),
        };
        r.insert("requestParameters".into(), bounded(&info.request_parameters));
        r.insert("responseElements".into(), bounded(&response_elements));
        r.insert("requestID".into(), json!(info.request_id));
        r.insert("eventID".into(), json!(event_id));
        r.insert("readOnly".into(), json!(info.read_only));
        if !resources.is_empty() {
            r.insert(
                "resources".into(),
                Value::Array(resources.iter().map(|x| json!({"accountId": x.account_id, "type": x.resource_type, "ARN": x.arn})).collect()),
            );
        }
        r.insert("eventType".into(), json!("AwsApiCall"));
        if let Some(v) = &info.api_version {
            r.insert("apiVersion".into(), json!(v));
        }
        r.insert("managementEvent".into(), json!(true));
        r.insert("recipientAccountId".into(), json!(actor.account_id()));
        r.insert("eventCategory".into(), json!("Management"));
        if let Some(t) = &info.tls {
            r.insert(
                "tlsDetails".into(),
                json!({"tlsVersion": t.tls_version, "cipherSuite": t.cipher_suite, "clientProvidedHostHeader": t.client_provided_host_header}),
            );
        }
        Value::Object(r).to_string()
    }

    fn assumed_role() -> Principal {
        use super::super::principal::{SessionContext, SessionIssuer};
        Principal {
            identity_type: IdentityType::AssumedRole,
            principal_id: "AROAX:sess\"ion".into(),
            arn: "arn:aws:sts::111122223333:assumed-role/r/sess".into(),
            account_id: "111122223333".into(),
            access_key_id: "ASIAX".into(),
            user_name: None,
            session: Some(SessionContext {
                session_issuer: Some(SessionIssuer {
                    issuer_type: "Role".into(),
                    principal_id: "AROAX".into(),
                    arn: "arn:aws:iam::111122223333:role/r".into(),
                    account_id: "111122223333".into(),
                    user_name: "r".into(),
                }),
                creation_date: "2023-11-14T22:00:00Z".into(),
                mfa_authenticated: true,
                source_identity: Some("alice".into()),
            }),
            invoked_by: Some("iot.amazonaws.com".into()),
        }
    }

    #[test]
    fn records_are_written_exactly_as_the_value_map_built_them() {
        let root = Principal::root("111122223333", "AKIAROOT");
        let alice = Principal::iam_user("111122223333", "AIDAX", "al\u{e9}ice \\ \"q\"", "/", "AKIAX");
        let role = assumed_role();
        let mut federated = role.clone();
        federated.identity_type = IdentityType::FederatedUser;
        federated.user_name = Some("fed".into());
        federated.session.as_mut().unwrap().session_issuer = None;
        federated.session.as_mut().unwrap().source_identity = None;
        let actors = [
            Actor::Principal(&root),
            Actor::Principal(&alice),
            Actor::Principal(&role),
            Actor::Principal(&federated),
            Actor::Unknown { account_id: "111122223333", access_key_id: "AKIAX" },
            Actor::Anonymous { account_id: "111122223333" },
        ];
        let big = json!({"blob": "x".repeat(MAX_ELEMENTS)});
        let just_fits = json!({"b": "y".repeat(MAX_ELEMENTS - 10)});
        let mut infos = vec![call(false), call(true)];
        let mut full = call(false);
        full.user_agent = Some(format!("{}\u{e9}", "u".repeat(MAX_SHORT_FIELD - 1)));
        full.api_version = Some("2013-11-01".into());
        full.tls = Some(TlsDetails { tls_version: "TLSv1.3".into(), cipher_suite: "TLS_AES_128_GCM_SHA256".into(), client_provided_host_header: "h\u{0}".into() });
        full.request_parameters = Some(big.clone());
        infos.push(full);
        let mut sts = call(true);
        sts.keep_response_elements = true;
        sts.user_agent = None;
        sts.request_parameters = Some(just_fits.clone());
        infos.push(sts);
        let resources = vec![
            Resource { arn: "arn:aws:iot:us-east-1:111122223333:stream/s1".into(), account_id: "111122223333".into(), resource_type: "AWS::IoT::Stream".into() },
            Resource { arn: "arn:aws:iot:us-east-1:111122223333:thing/t\"1".into(), account_id: "111122223333".into(), resource_type: "AWS::IoT::Thing".into() },
        ];
        let long_message = "m\u{e9}".repeat(MAX_SHORT_FIELD);
        let mut checked = 0;
        for info in &infos {
            for actor in &actors {
                for resources in [vec![], resources.clone()] {
                    let outcomes: Vec<Box<dyn Fn() -> Outcome<'static>>> = vec![
                        Box::new(|| Outcome::Success { response_elements: None }),
                        Box::new(|| Outcome::Success { response_elements: Some(json!({"streamVersion": 1, "n": [1, "two", null]})) }),
                        Box::new(|| Outcome::Success { response_elements: Some(json!({"blob": "z".repeat(MAX_ELEMENTS)})) }),
                        Box::new(|| Outcome::Failure { code: "ResourceNotFoundException", message: "no \"such\" stream\n" }),
                    ];
                    for outcome in &outcomes {
                        let e = info.finish(actor, outcome(), resources.clone());
                        let want = reference_record(info, actor, outcome(), &resources, &e.event_id);
                        assert_eq!(e.record, want);
                        checked += 1;
                    }
                    let e = info.finish(actor, Outcome::Failure { code: "X", message: &long_message }, resources.clone());
                    assert_eq!(e.record, reference_record(info, actor, Outcome::Failure { code: "X", message: &long_message }, &resources, &e.event_id));
                }
            }
        }
        assert_eq!(checked, 4 * 6 * 2 * 4);
    }

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
        let alice = Principal::iam_user("111122223333", "AIDAX", "alice", "/", "AKIAX");
        let actor = Actor::Principal(&alice);
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
        let root = Principal::root("111122223333", "AKIAX");
        let actor = Actor::Principal(&root);
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
        let actor = Actor::Unknown { account_id: "111122223333", access_key_id: "AKIAX" };
        let e = call(true).finish(&actor, Outcome::Failure { code: "InvalidSignatureException", message: "bad" }, vec![]);
        let v: Value = serde_json::from_str(&e.record).unwrap();
        assert_eq!(v["userIdentity"]["type"], "Unknown");
        assert_eq!(v["userIdentity"]["accessKeyId"], "AKIAX");
        assert_eq!(v["recipientAccountId"], "111122223333");
    }
}

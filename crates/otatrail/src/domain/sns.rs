//! SNS as CloudTrail trails use it: topics, HTTP/S subscriptions, and the signed JSON messages
//! SNS posts to subscriber endpoints (`SubscriptionConfirmation`, `Notification`), with the
//! retry schedule of their deliveries. No I/O: the application layer stores and sends.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::ServiceError;
use super::policy::{self, Caller, PolicyDocument};
use super::time::Millis;

/// SNS error codes (botocore's sns model) and the statuses `api::error` gives them.
pub mod codes {
    /// 400
    pub const INVALID_PARAMETER: &str = "InvalidParameter";
    /// 404
    pub const NOT_FOUND: &str = "NotFound";
    /// 403
    pub const AUTHORIZATION_ERROR: &str = "AuthorizationError";
    /// 500
    pub const INTERNAL_ERROR: &str = "InternalError";
}

/// `Invalid parameter: {what}`, SNS's wording.
pub fn invalid(what: impl std::fmt::Display) -> ServiceError {
    ServiceError::new(codes::INVALID_PARAMETER, format!("Invalid parameter: {what}"))
}

pub fn topic_not_found() -> ServiceError {
    ServiceError::new(codes::NOT_FOUND, "Topic does not exist")
}

pub fn subscription_not_found() -> ServiceError {
    ServiceError::new(codes::NOT_FOUND, "Subscription does not exist")
}

pub fn not_authorized(who: &str, action: &str, resource: &str) -> ServiceError {
    ServiceError::new(
        codes::AUTHORIZATION_ERROR,
        format!("User: {who} is not authorized to perform: SNS:{action} on resource: {resource} because no resource-based policy allows the SNS:{action} action"),
    )
}

/// Topics listed per ListTopics page, subscriptions per ListSubscriptions(ByTopic) page.
pub const PAGE_SIZE: i64 = 100;
/// Largest Publish message, in bytes (256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// How long a confirmation token stays valid (three days, as in SNS).
pub const TOKEN_VALIDITY_MS: i64 = 3 * 86_400_000;
/// What SNS answers instead of a subscription ARN until the endpoint confirms.
pub const PENDING_CONFIRMATION: &str = "PendingConfirmation";
/// Subscribe's answer for a pending subscription (without `ReturnSubscriptionArn`).
pub const PENDING_CONFIRMATION_SUBSCRIBE: &str = "pending confirmation";

/// A resource tag of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnsTag {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: String,
}

/// A standard topic of an account in a region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub account_id: String,
    pub region: String,
    pub name: String,
    /// Attributes set with CreateTopic or SetTopicAttributes (`DisplayName`, `Policy`,
    /// `DeliveryPolicy`, …); derived ones are computed when read.
    pub attributes: BTreeMap<String, String>,
    pub tags: Vec<SnsTag>,
    /// `SubscriptionsDeleted`: subscriptions removed from this topic so far.
    #[serde(default)]
    pub subscriptions_deleted: i64,
    pub created_at: Millis,
}

impl Topic {
    pub fn arn(&self) -> String {
        topic_arn(&self.region, &self.account_id, &self.name)
    }

    /// The topic's access policy: the one set, else SNS's default one.
    pub fn policy(&self) -> String {
        self.attributes.get("Policy").cloned().unwrap_or_else(|| default_policy(&self.arn(), &self.account_id))
    }

    /// Whether the topic policy allows `caller` the `SNS:<action>` on this topic. `context`
    /// keys are lowercase condition keys (`aws:sourcearn`, `aws:sourceaccount`, …).
    pub fn policy_allows(&self, caller: &Caller<'_>, action: &str, context: &HashMap<String, String>) -> bool {
        let Ok(doc) = policy::parse(&self.policy(), false) else { return false };
        doc.allows(caller, &format!("SNS:{action}"), Some(&self.arn()), context)
    }
}

pub fn topic_arn(region: &str, account_id: &str, name: &str) -> String {
    format!("arn:aws:sns:{region}:{account_id}:{name}")
}

static TOPIC_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_-]{1,256}$").unwrap());
static TOPIC_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws:sns:([a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}):(\d{12}):([A-Za-z0-9_-]{1,256})$").unwrap()
});
static SUBSCRIPTION_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(arn:aws:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}):[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        .unwrap()
});

pub fn check_topic_name(name: &str) -> Result<(), ServiceError> {
    if TOPIC_NAME.is_match(name) { Ok(()) } else { Err(invalid("Topic Name")) }
}

/// The parts of a topic ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicArn {
    pub region: String,
    pub account_id: String,
    pub name: String,
}

impl TopicArn {
    pub fn parse(arn: &str) -> Result<Self, ServiceError> {
        let c = TOPIC_ARN.captures(arn).ok_or_else(|| invalid("TopicArn"))?;
        Ok(Self { region: c[1].to_string(), account_id: c[2].to_string(), name: c[3].to_string() })
    }

    pub fn arn(&self) -> String {
        topic_arn(&self.region, &self.account_id, &self.name)
    }
}

/// The topic ARN a subscription ARN belongs to.
pub fn subscription_topic(subscription_arn: &str) -> Result<TopicArn, ServiceError> {
    let c = SUBSCRIPTION_ARN.captures(subscription_arn).ok_or_else(|| invalid("SubscriptionArn"))?;
    TopicArn::parse(&c[1]).map_err(|_| invalid("SubscriptionArn"))
}

pub fn new_subscription_arn(topic_arn: &str) -> String {
    format!("{topic_arn}:{}", uuid::Uuid::new_v4())
}

/// SNS's default topic policy: every principal of the owning account may manage, subscribe to
/// and publish to the topic.
pub fn default_policy(topic_arn: &str, account_id: &str) -> String {
    serde_json::json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": [
                "SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission", "SNS:RemovePermission",
                "SNS:DeleteTopic", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic", "SNS:Publish"
            ],
            "Resource": topic_arn,
            "Condition": {"StringEquals": {"AWS:SourceOwner": account_id}}
        }]
    })
    .to_string()
}

/// Checks a topic policy: a policy document (`domain::policy`) whose statements each name a
/// principal and only SNS actions.
pub fn check_topic_policy(doc: &str) -> Result<PolicyDocument, ServiceError> {
    let p = policy::parse(doc, false).map_err(|e| invalid(format!("Policy Error: {}", e.message)))?;
    for s in &p.statements {
        if s.principals.is_none() {
            return Err(invalid("Policy Error: every Statement needs a Principal"));
        }
        for a in s.actions.iter().chain(&s.not_actions) {
            if a != "*" && !a.to_ascii_lowercase().starts_with("sns:") {
                return Err(invalid("Policy statement action out of service scope!"));
            }
        }
    }
    Ok(p)
}

/// Checks a `DeliveryPolicy` document: a JSON object whose `http` part, when present, has the
/// shape SNS documents (retry numbers are non-negative integers, a known back-off function).
pub fn check_delivery_policy(doc: &str) -> Result<(), ServiceError> {
    use serde_json::Value;
    let bad = |why: &str| invalid(format!("DeliveryPolicy: {why}"));
    let v: Value = serde_json::from_str(doc).map_err(|_| bad("not valid JSON"))?;
    let Value::Object(m) = &v else { return Err(bad("must be a JSON object")) };
    let Some(http) = m.get("http") else { return Ok(()) };
    let Value::Object(http) = http else { return Err(bad("\"http\" must be an object")) };
    for (k, v) in http {
        match (k.as_str(), v) {
            ("defaultHealthyRetryPolicy", Value::Object(r)) => {
                for (rk, rv) in r {
                    match rk.as_str() {
                        "minDelayTarget" | "maxDelayTarget" | "numRetries" | "numNoDelayRetries" | "numMinDelayRetries"
                        | "numMaxDelayRetries" => {
                            if rv.as_u64().is_none() {
                                return Err(bad(&format!("{rk} must be a non-negative integer")));
                            }
                        }
                        "backoffFunction" => {
                            if !matches!(rv.as_str(), Some("linear" | "arithmetic" | "geometric" | "exponential")) {
                                return Err(bad("backoffFunction must be linear, arithmetic, geometric or exponential"));
                            }
                        }
                        other => return Err(bad(&format!("unknown retry policy field {other}"))),
                    }
                }
            }
            ("disableSubscriptionOverrides", Value::Bool(_)) => {}
            ("defaultThrottlePolicy" | "defaultRequestPolicy", Value::Object(_)) => {}
            (other, _) => return Err(bad(&format!("unexpected http field {other}"))),
        }
    }
    Ok(())
}

/// Checks one topic attribute as CreateTopic or SetTopicAttributes sets it. An empty value
/// removes an attribute (the topic falls back to the default).
pub fn check_topic_attribute(name: &str, value: &str) -> Result<(), ServiceError> {
    match name {
        "DisplayName" => {
            if value.chars().count() > 100 {
                return Err(invalid("DisplayName: at most 100 characters"));
            }
        }
        "Policy" if !value.is_empty() => {
            check_topic_policy(value)?;
        }
        "DeliveryPolicy" if !value.is_empty() => check_delivery_policy(value)?,
        "Policy" | "DeliveryPolicy" => {}
        "SignatureVersion" => {
            if !matches!(value, "" | "2") {
                return Err(invalid("SignatureVersion: otatrail signs messages with SignatureVersion 2 (SHA256withRSA) only"));
            }
        }
        "TracingConfig" => {
            if !matches!(value, "" | "PassThrough" | "Active") {
                return Err(invalid("TracingConfig"));
            }
        }
        "FifoTopic" => {
            if value.eq_ignore_ascii_case("true") {
                return Err(invalid("Attributes Reason: FIFO topics are not supported"));
            }
        }
        "KmsMasterKeyId" => return Err(invalid("Attributes Reason: KmsMasterKeyId: server-side encryption with KMS is not supported")),
        other => return Err(invalid(format!("AttributeName: unknown or read-only attribute {other}"))),
    }
    Ok(())
}

pub fn check_tags(tags: &[SnsTag]) -> Result<(), ServiceError> {
    if tags.len() > 50 {
        return Err(ServiceError::new("TagLimitExceeded", "Could not complete request: tag quota of per resource exceeded"));
    }
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(invalid("Tags: keys are 1 to 128 characters, values at most 256"));
        }
    }
    Ok(())
}

/// Subscription protocols SNS knows; otatrail delivers to `http` and `https` only.
const KNOWN_PROTOCOLS: &[&str] = &["http", "https", "email", "email-json", "sms", "sqs", "application", "lambda", "firehose"];

/// Checks a Subscribe request's protocol and endpoint.
pub fn check_subscription_target(protocol: &str, endpoint: Option<&str>) -> Result<String, ServiceError> {
    if !KNOWN_PROTOCOLS.contains(&protocol) {
        return Err(invalid(format!("Amazon SNS does not support this protocol string: {protocol}")));
    }
    if protocol != "http" && protocol != "https" {
        return Err(invalid(format!(
            "Protocol Reason: otatrail delivers to http and https endpoints only; the {protocol} protocol is not supported"
        )));
    }
    let endpoint = endpoint.filter(|e| !e.is_empty()).ok_or_else(|| invalid("Endpoint Reason: an http or https URL is required"))?;
    let uri: http::Uri = endpoint.parse().map_err(|_| invalid("Endpoint Reason: not a valid URL"))?;
    if uri.scheme_str() != Some(protocol) || uri.host().is_none_or(str::is_empty) {
        return Err(invalid("Endpoint must match the specified protocol"));
    }
    Ok(endpoint.to_string())
}

/// An endpoint URL as it may be shown or recorded: a password in it is masked.
pub fn mask_endpoint(endpoint: &str) -> String {
    let Some((scheme, rest)) = endpoint.split_once("://") else { return endpoint.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:****@{host}{tail}")
            } else {
                endpoint.to_string()
            }
        }
        None => endpoint.to_string(),
    }
}

/// A subscription of an HTTP/S endpoint to a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub arn: String,
    pub topic_arn: String,
    /// The account that subscribed.
    pub owner: String,
    /// The topic's region.
    pub region: String,
    pub protocol: String,
    pub endpoint: String,
    /// Hex SHA-256 of the latest confirmation token (the token itself is not kept).
    pub token_sha256: String,
    pub token_expires_at: Millis,
    pub confirmed: bool,
    /// Set by ConfirmSubscription: only signed requests of the owners may unsubscribe.
    pub authenticate_on_unsubscribe: bool,
    pub created_at: Millis,
}

impl Subscription {
    /// The ARN as listings show it (`PendingConfirmation` until confirmed).
    pub fn listed_arn(&self) -> &str {
        if self.confirmed { &self.arn } else { PENDING_CONFIRMATION }
    }
}

/// One message on its way to one endpoint: a row of the store until a 2xx answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Set by the store.
    pub id: i64,
    /// The topic's region and account.
    pub region: String,
    pub account_id: String,
    pub topic_arn: String,
    pub subscription_arn: String,
    pub endpoint: String,
    /// `SubscriptionConfirmation`, `Notification`, …
    pub message_type: String,
    pub message_id: String,
    /// The JSON message, sealed with the master key (it may hold a confirmation token).
    pub sealed_body: Vec<u8>,
    /// Failed attempts so far.
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub created_at: Millis,
}

/// A region's message-signing certificate (self-signed X.509, RSA-2048).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningCert {
    pub region: String,
    /// Lowercase hex MD5 of the certificate's DER: names `SimpleNotificationService-<fp>.pem`.
    pub fingerprint: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8 private key, sealed with the master key.
    pub sealed_private: Vec<u8>,
    pub created_at: Millis,
}

/// The certificate's file name under the server's SNS path.
pub fn cert_file_name(fingerprint: &str) -> String {
    format!("SimpleNotificationService-{fingerprint}.pem")
}

/// PEM text of a DER certificate.
pub fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// `2012-05-02T00:54:06.655Z`: SNS's message timestamp.
pub fn timestamp(t: Millis) -> String {
    let dt = t.to_offset_datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// The URLs of the server's main port that messages carry.
pub fn subscribe_url(public_url: &str, topic_arn: &str, token: &str) -> String {
    format!("{}/?Action=ConfirmSubscription&TopicArn={topic_arn}&Token={token}", public_url.trim_end_matches('/'))
}

pub fn unsubscribe_url(public_url: &str, subscription_arn: &str) -> String {
    format!("{}/?Action=Unsubscribe&SubscriptionArn={subscription_arn}", public_url.trim_end_matches('/'))
}

/// What kind of message, with the fields only that kind has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageKind {
    SubscriptionConfirmation { token: String, subscribe_url: String },
    UnsubscribeConfirmation { token: String, subscribe_url: String },
    Notification { subject: Option<String>, unsubscribe_url: String },
}

/// A message SNS posts to an HTTP/S endpoint, before its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub message_id: String,
    pub topic_arn: String,
    pub message: String,
    /// [`timestamp`] text.
    pub timestamp: String,
}

pub const SIGNATURE_VERSION: &str = "2";

impl Message {
    /// A topic's request to confirm a subscription.
    pub fn confirmation(topic_arn: &str, token: &str, public_url: &str, now: Millis) -> Self {
        Message {
            message: format!(
                "You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the subscription, visit the SubscribeURL included in this message."
            ),
            kind: MessageKind::SubscriptionConfirmation {
                token: token.to_string(),
                subscribe_url: subscribe_url(public_url, topic_arn, token),
            },
            message_id: uuid::Uuid::new_v4().to_string(),
            topic_arn: topic_arn.to_string(),
            timestamp: timestamp(now),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            MessageKind::SubscriptionConfirmation { .. } => "SubscriptionConfirmation",
            MessageKind::UnsubscribeConfirmation { .. } => "UnsubscribeConfirmation",
            MessageKind::Notification { .. } => "Notification",
        }
    }

    /// SNS's string to sign: each signed field's name and value, each followed by a newline,
    /// in SNS's documented order (Notification: Message, MessageId, Subject if any, Timestamp,
    /// TopicArn, Type; confirmations: Message, MessageId, SubscribeURL, Timestamp, Token,
    /// TopicArn, Type).
    pub fn string_to_sign(&self) -> String {
        let mut s = String::new();
        let mut field = |k: &str, v: &str| {
            s.push_str(k);
            s.push('\n');
            s.push_str(v);
            s.push('\n');
        };
        field("Message", &self.message);
        field("MessageId", &self.message_id);
        match &self.kind {
            MessageKind::Notification { subject, .. } => {
                if let Some(subject) = subject {
                    field("Subject", subject);
                }
                field("Timestamp", &self.timestamp);
            }
            MessageKind::SubscriptionConfirmation { token, subscribe_url }
            | MessageKind::UnsubscribeConfirmation { token, subscribe_url } => {
                field("SubscribeURL", subscribe_url);
                field("Timestamp", &self.timestamp);
                field("Token", token);
            }
        }
        field("TopicArn", &self.topic_arn);
        field("Type", self.type_name());
        s
    }

    /// The message body as SNS posts it (its field order and layout), with the base64
    /// signature of [`Self::string_to_sign`].
    pub fn to_json(&self, signature_b64: &str, signing_cert_url: &str) -> String {
        let mut fields: Vec<(&str, &str)> = vec![("Type", self.type_name()), ("MessageId", &self.message_id)];
        match &self.kind {
            MessageKind::SubscriptionConfirmation { token, subscribe_url }
            | MessageKind::UnsubscribeConfirmation { token, subscribe_url } => {
                fields.extend([
                    ("Token", token.as_str()),
                    ("TopicArn", &self.topic_arn),
                    ("Message", &self.message),
                    ("SubscribeURL", subscribe_url),
                    ("Timestamp", &self.timestamp),
                    ("SignatureVersion", SIGNATURE_VERSION),
                    ("Signature", signature_b64),
                    ("SigningCertURL", signing_cert_url),
                ]);
            }
            MessageKind::Notification { subject, unsubscribe_url } => {
                fields.push(("TopicArn", &self.topic_arn));
                if let Some(s) = subject {
                    fields.push(("Subject", s));
                }
                fields.extend([
                    ("Message", self.message.as_str()),
                    ("Timestamp", &self.timestamp),
                    ("SignatureVersion", SIGNATURE_VERSION),
                    ("Signature", signature_b64),
                    ("SigningCertURL", signing_cert_url),
                    ("UnsubscribeURL", unsubscribe_url),
                ]);
            }
        }
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("  \"{k}\" : {}", serde_json::Value::String((*v).to_string())))
            .collect();
        format!("{{\n{}\n}}", body.join(",\n"))
    }
}

/// Checks a Publish message and picks what HTTP/S endpoints get: the message, or with
/// `MessageStructure=json` the `http`/`https` member of the JSON object, else its `default`.
pub fn message_for_http(message: &str, structure: Option<&str>, protocol: &str) -> Result<String, ServiceError> {
    if message.is_empty() {
        return Err(invalid("Empty message"));
    }
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(invalid("Message too long"));
    }
    match structure {
        None | Some("") => Ok(message.to_string()),
        Some("json") => {
            let v: serde_json::Value = serde_json::from_str(message).map_err(|_| invalid("Message Structure - JSON message body failed to parse"))?;
            let default = v.get("default").and_then(|d| d.as_str()).ok_or_else(|| invalid("Message Structure - No default entry in JSON message body"))?;
            Ok(v.get(protocol).and_then(|d| d.as_str()).unwrap_or(default).to_string())
        }
        Some(_) => Err(invalid("MessageStructure")),
    }
}

/// Checks a Publish subject: at most 100 printable ASCII characters, no line breaks.
pub fn check_subject(subject: &str) -> Result<(), ServiceError> {
    if subject.is_empty() || subject.len() > 100 || !subject.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return Err(invalid("Subject"));
    }
    Ok(())
}

/// When a failed delivery is tried again: exponential back-off from `first_delay_ms`,
/// doubling up to `max_delay_ms`, until `give_up_after_ms` after the message was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_delay_ms: i64,
    pub max_delay_ms: i64,
    pub give_up_after_ms: i64,
}

/// SNS's own give-up time for AWS-managed endpoints: about 23 days.
pub const DEFAULT_GIVE_UP_SECONDS: i64 = 23 * 86_400;
pub const DEFAULT_MAX_DELAY_SECONDS: i64 = 60;

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { first_delay_ms: 1000, max_delay_ms: DEFAULT_MAX_DELAY_SECONDS * 1000, give_up_after_ms: DEFAULT_GIVE_UP_SECONDS * 1000 }
    }
}

impl RetryPolicy {
    /// The wait after the `failed`-th failed attempt (1 s, 2 s, 4 s, … up to the cap).
    pub fn delay_after(&self, failed: i64) -> i64 {
        let shift = (failed.max(1) - 1).min(40) as u32;
        self.first_delay_ms.saturating_mul(1i64 << shift).min(self.max_delay_ms).max(1)
    }

    /// When to try a delivery again after it failed once more, or `None` to give up.
    pub fn next_attempt(&self, created_at: Millis, failed: i64, now: Millis) -> Option<Millis> {
        let next = now.0 + self.delay_after(failed);
        if next - created_at.0 > self.give_up_after_ms { None } else { Some(Millis(next)) }
    }

    /// Attempts made after the first before giving up: `(retries, retries at the longest delay)`.
    pub fn retries(&self) -> (i64, i64) {
        let (mut elapsed, mut n, mut at_max) = (0i64, 0i64, 0i64);
        loop {
            let d = self.delay_after(n + 1);
            if d >= self.max_delay_ms {
                let rest = (self.give_up_after_ms - elapsed).max(0) / self.max_delay_ms;
                at_max += rest;
                return (n + rest, at_max);
            }
            if elapsed + d > self.give_up_after_ms {
                return (n, at_max);
            }
            elapsed += d;
            n += 1;
        }
    }

    /// `EffectiveDeliveryPolicy`, in SNS's layout, describing this schedule.
    pub fn effective_delivery_policy(&self) -> String {
        let (retries, at_max) = self.retries();
        serde_json::json!({
            "http": {
                "defaultHealthyRetryPolicy": {
                    "minDelayTarget": (self.first_delay_ms / 1000).max(1),
                    "maxDelayTarget": (self.max_delay_ms / 1000).max(1),
                    "numRetries": retries,
                    "numMaxDelayRetries": at_max,
                    "numNoDelayRetries": 0,
                    "numMinDelayRetries": 0,
                    "backoffFunction": "exponential"
                },
                "disableSubscriptionOverrides": false,
                "defaultRequestPolicy": {"headerContentType": "text/plain; charset=UTF-8"}
            }
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(subject: Option<&str>) -> Message {
        Message {
            kind: MessageKind::Notification {
                subject: subject.map(str::to_string),
                unsubscribe_url: "http://127.0.0.1:4566/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:111122223333:t:x".into(),
            },
            message_id: "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324".into(),
            topic_arn: "arn:aws:sns:us-east-1:111122223333:t".into(),
            message: "{\"s3Bucket\":\"b\",\"s3ObjectKey\":[\"k\"]}".into(),
            timestamp: "2012-05-02T00:54:06.655Z".into(),
        }
    }

    #[test]
    fn notification_string_to_sign_follows_sns_order() {
        assert_eq!(
            notification(Some("Hi")).string_to_sign(),
            "Message\n{\"s3Bucket\":\"b\",\"s3ObjectKey\":[\"k\"]}\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nSubject\nHi\n\
             Timestamp\n2012-05-02T00:54:06.655Z\nTopicArn\narn:aws:sns:us-east-1:111122223333:t\nType\nNotification\n"
        );
        // Without a subject, the Subject lines are absent (not empty).
        assert!(!notification(None).string_to_sign().contains("Subject"));
    }

    #[test]
    fn confirmation_string_to_sign_and_body() {
        let m = Message::confirmation("arn:aws:sns:us-east-1:111122223333:t", "ab12", "http://127.0.0.1:4566/", Millis(1_335_920_046_655));
        assert_eq!(m.timestamp, "2012-05-02T00:54:06.655Z");
        let url = "http://127.0.0.1:4566/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:111122223333:t&Token=ab12";
        assert_eq!(
            m.string_to_sign(),
            format!(
                "Message\n{}\nMessageId\n{}\nSubscribeURL\n{url}\nTimestamp\n2012-05-02T00:54:06.655Z\nToken\nab12\n\
                 TopicArn\narn:aws:sns:us-east-1:111122223333:t\nType\nSubscriptionConfirmation\n",
                m.message, m.message_id
            )
        );
        assert!(m.message.starts_with("You have chosen to subscribe to the topic arn:aws:sns:us-east-1:111122223333:t.\nTo confirm"));
        let body: serde_json::Value = serde_json::from_str(&m.to_json("c2ln", "http://x/cert.pem")).unwrap();
        assert_eq!(body["Type"], "SubscriptionConfirmation");
        assert_eq!(body["SubscribeURL"], url);
        assert_eq!(body["SignatureVersion"], "2");
        assert_eq!(body["Token"], "ab12");
    }

    /// What a subscriber does: rebuild the string to sign from the posted JSON, by the
    /// documented rules, and check the signature with the certificate's key.
    #[test]
    fn a_subscriber_verifies_the_signature_from_the_body() {
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
        use base64::Engine;
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        for m in [notification(Some("s")), notification(None)] {
            let mut sig = vec![0u8; pair.public_modulus_len()];
            pair.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), m.string_to_sign().as_bytes(), &mut sig).unwrap();
            let b64 = base64::engine::general_purpose::STANDARD.encode(&sig);
            let body: serde_json::Value = serde_json::from_str(&m.to_json(&b64, "http://x/c.pem")).unwrap();
            let mut rebuilt = String::new();
            for k in ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"] {
                if let Some(v) = body.get(k).and_then(|v| v.as_str()) {
                    rebuilt.push_str(&format!("{k}\n{v}\n"));
                }
            }
            let sig = base64::engine::general_purpose::STANDARD.decode(body["Signature"].as_str().unwrap()).unwrap();
            assert!(crate::domain::signing::verify(pair.public_key().as_ref(), rebuilt.as_bytes(), &sig));
            assert!(!crate::domain::signing::verify(pair.public_key().as_ref(), b"tampered", &sig));
        }
    }

    #[test]
    fn json_layout_is_snss() {
        let j = notification(None).to_json("sig", "http://c");
        assert!(j.starts_with("{\n  \"Type\" : \"Notification\",\n  \"MessageId\" : "), "{j}");
        assert!(!j.contains("Subject"));
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion", "Signature", "SigningCertURL", "UnsubscribeURL"]
        );
    }

    #[test]
    fn back_off_doubles_to_the_cap_then_gives_up() {
        let p = RetryPolicy { first_delay_ms: 1000, max_delay_ms: 60_000, give_up_after_ms: 3_600_000 };
        let delays: Vec<i64> = (1..=9).map(|n| p.delay_after(n)).collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
        assert_eq!(p.delay_after(10_000), 60_000);
        let t0 = Millis(1_000_000);
        assert_eq!(p.next_attempt(t0, 1, Millis(t0.0 + 10)), Some(Millis(t0.0 + 1010)));
        assert_eq!(p.next_attempt(t0, 50, Millis(t0.0 + 3_550_000)), None);
        assert!(p.next_attempt(t0, 50, Millis(t0.0 + 3_000_000)).is_some());
        // 1+2+…+32 = 63 s, then (3600-63)/60 = 58 more at the cap.
        assert_eq!(p.retries(), (6 + 58, 58));
        let d = RetryPolicy::default();
        assert!(d.retries().0 > 30_000, "{:?}", d.retries());
        let v: serde_json::Value = serde_json::from_str(&p.effective_delivery_policy()).unwrap();
        assert_eq!(v["http"]["defaultHealthyRetryPolicy"]["maxDelayTarget"], 60);
        assert_eq!(v["http"]["defaultHealthyRetryPolicy"]["backoffFunction"], "exponential");
    }

    #[test]
    fn names_arns_and_targets() {
        assert!(check_topic_name("ota-events_1").is_ok());
        assert_eq!(check_topic_name("a.fifo").unwrap_err().code, codes::INVALID_PARAMETER);
        assert!(check_topic_name("").is_err());
        let a = TopicArn::parse("arn:aws:sns:eu-west-1:111122223333:t").unwrap();
        assert_eq!((a.region.as_str(), a.account_id.as_str(), a.name.as_str()), ("eu-west-1", "111122223333", "t"));
        assert!(TopicArn::parse("arn:aws:sqs:eu-west-1:111122223333:t").is_err());
        let s = new_subscription_arn(&a.arn());
        assert_eq!(subscription_topic(&s).unwrap(), a);
        assert!(subscription_topic("PendingConfirmation").is_err());
        assert!(check_subscription_target("http", Some("http://127.0.0.1:9/x")).is_ok());
        assert!(check_subscription_target("https", Some("http://127.0.0.1:9/x")).is_err());
        let e = check_subscription_target("sqs", Some("arn:aws:sqs:us-east-1:1:q")).unwrap_err();
        assert!(e.message.contains("http and https"), "{}", e.message);
        assert!(check_subscription_target("carrier-pigeon", None).unwrap_err().message.contains("does not support this protocol"));
        assert!(check_subscription_target("http", None).is_err());
        assert_eq!(mask_endpoint("https://u:secret@h.example/p?q"), "https://u:****@h.example/p?q");
        assert_eq!(mask_endpoint("http://h:80/p@x"), "http://h:80/p@x");
    }

    #[test]
    fn topic_policies() {
        let arn = "arn:aws:sns:us-east-1:111122223333:t";
        let mut topic = Topic {
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            name: "t".into(),
            attributes: BTreeMap::new(),
            tags: vec![],
            subscriptions_deleted: 0,
            created_at: Millis(0),
        };
        check_topic_policy(&topic.policy()).unwrap();
        let ct = Caller::Service("cloudtrail.amazonaws.com");
        assert!(!topic.policy_allows(&ct, "Publish", &HashMap::new()));
        let doc = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"AWSCloudTrailSNSPolicy","Effect":"Allow","Principal":{{"Service":"cloudtrail.amazonaws.com"}},"Action":"SNS:Publish","Resource":"{arn}"}}]}}"#
        );
        check_topic_attribute("Policy", &doc).unwrap();
        topic.attributes.insert("Policy".into(), doc);
        assert!(topic.policy_allows(&ct, "Publish", &HashMap::new()));
        assert!(!topic.policy_allows(&ct, "DeleteTopic", &HashMap::new()));
        assert!(!topic.policy_allows(&Caller::Service("s3.amazonaws.com"), "Publish", &HashMap::new()));
        assert_eq!(check_topic_attribute("Policy", "{not json").unwrap_err().code, codes::INVALID_PARAMETER);
        let s3 = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}]}"#;
        assert!(check_topic_attribute("Policy", s3).unwrap_err().message.contains("out of service scope"));
        assert!(check_topic_attribute("DeliveryPolicy", r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":-1}}}"#).is_err());
        assert!(check_topic_attribute("DeliveryPolicy", r#"{"http":{"defaultHealthyRetryPolicy":{"numRetries":3,"backoffFunction":"linear"}}}"#).is_ok());
        assert!(check_topic_attribute("Owner", "x").is_err());
    }

    #[test]
    fn publish_checks() {
        assert_eq!(message_for_http("m", None, "http").unwrap(), "m");
        assert!(message_for_http("", None, "http").is_err());
        assert!(message_for_http(&"x".repeat(MAX_MESSAGE_BYTES + 1), None, "http").is_err());
        assert_eq!(message_for_http(r#"{"default":"d","https":"s"}"#, Some("json"), "https").unwrap(), "s");
        assert_eq!(message_for_http(r#"{"default":"d","https":"s"}"#, Some("json"), "http").unwrap(), "d");
        assert!(message_for_http(r#"{"http":"h"}"#, Some("json"), "http").is_err());
        assert!(check_subject("Log files").is_ok());
        assert!(check_subject("two\nlines").is_err());
        assert!(check_subject(&"s".repeat(101)).is_err());
        assert_eq!(pem_certificate(&[1, 2, 3]), "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n");
    }
}

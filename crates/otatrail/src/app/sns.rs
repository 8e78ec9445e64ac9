//! SNS: topics, HTTP/S subscriptions and publishing, as CloudTrail trails use them.
//!
//! A published message becomes one delivery row per confirmed subscription, committed before
//! Publish answers; a background worker ([`App::spawn_sns_deliverer`]) posts due rows
//! concurrently, removes a row on a 2xx answer and otherwise tries again with exponential
//! back-off, so a message survives an endpoint that is down and a server restart. Messages are
//! signed (SignatureVersion 2, SHA256withRSA) with a per-region RSA-2048 key from aws-lc-rs
//! whose self-signed certificate the main port serves at `SigningCertURL`.
//!
//! Topic management calls are recorded like every other call; Publish is a data event and is
//! not. Other parts of the server publish with [`App::sns_publish_as_service`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::audit::{Actor, CallInfo, Outcome, Resource};
use crate::domain::policy::Caller;
use crate::domain::sns::{
    self, Delivery, Message, MessageKind, PAGE_SIZE, RetryPolicy, SigningCert, SnsTag, Subscription, Topic, TopicArn, invalid,
};
use crate::domain::time::Millis;
use crate::domain::{Principal, ServiceError};
use crate::store::{self, StateTx, StoreError, StoreResult};

use super::App;
use super::audit::Call;

const TOPIC: &str = "AWS::SNS::Topic";
/// Deliveries claimed by one pass of the worker at most.
const CLAIM_BATCH: i64 = 64;
/// Deliveries in flight at once at most.
const CONCURRENCY: usize = 32;
/// A claimed delivery is not claimed again for this long (it is being sent); after a crash
/// it is tried again once this passes.
const LEASE_MS: i64 = 20_000;
/// The worker looks at the queue at least this often even when nothing woke it.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Path of the main port under which signing certificates are served, without authentication.
pub const CERT_PATH: &str = "/_otatrail/sns/";

/// One message on its way out, as a [`SnsTransport`] sends it.
pub struct Outbound<'a> {
    pub endpoint: &'a str,
    pub message_type: &'a str,
    pub message_id: &'a str,
    pub topic_arn: &'a str,
    pub subscription_arn: &'a str,
    pub body: &'a [u8],
}

/// Sends one SNS message to its endpoint (`crate::outbound::HttpTransport`; tests substitute
/// their own).
#[async_trait]
pub trait SnsTransport: Send + Sync + 'static {
    /// POSTs the message; the endpoint's HTTP status, or why there was no answer.
    async fn post(&self, message: &Outbound<'_>) -> Result<u16, String>;
}

/// SNS state shared by requests and the delivery worker.
pub struct SnsRuntime {
    pub retry: RetryPolicy,
    pub transport: Arc<dyn SnsTransport>,
    wake: tokio::sync::Notify,
    /// The main port's URL as subscribers reach it (SubscribeURL, UnsubscribeURL, SigningCertURL).
    public_url: RwLock<String>,
    /// Whether `public_url` was configured (then the listener's address does not replace it).
    configured_url: bool,
    signers: Mutex<HashMap<String, Arc<Signer>>>,
}

impl SnsRuntime {
    pub fn new(retry: RetryPolicy, configured_url: Option<String>, default_url: String, transport: Arc<dyn SnsTransport>) -> Self {
        Self {
            retry,
            transport,
            wake: tokio::sync::Notify::new(),
            configured_url: configured_url.is_some(),
            public_url: RwLock::new(configured_url.unwrap_or(default_url).trim_end_matches('/').to_string()),
            signers: Mutex::new(HashMap::new()),
        }
    }

    /// Tells the runtime where the main port listens (unless a public URL was configured).
    pub fn set_listen_url(&self, url: &str) {
        if !self.configured_url
            && let Ok(mut u) = self.public_url.write()
        {
            *u = url.trim_end_matches('/').to_string();
        }
    }

    pub fn public_url(&self) -> String {
        self.public_url.read().map(|u| u.clone()).unwrap_or_default()
    }

    /// Makes the worker look at the queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// A region's signing key, unsealed once and kept in memory.
struct Signer {
    fingerprint: String,
    key: KeyPair,
}

impl Signer {
    /// Base64 `SHA256withRSA` signature of the message's string to sign.
    fn sign(&self, m: &Message) -> Result<String, ServiceError> {
        use base64::Engine;
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), m.string_to_sign().as_bytes(), &mut sig)
            .map_err(|_| ServiceError::internal())?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sig))
    }
}

/// Who makes a call that SNS also accepts unsigned (ConfirmSubscription, Unsubscribe through
/// the URLs of its messages).
#[derive(Clone)]
pub enum Requester {
    Signed(Arc<Call>),
    /// An unsigned request, recorded as anonymous in the topic owner's account.
    Anonymous(Box<CallInfo>),
}

/// A page of a listing and the token of the next one.
pub struct SnsPage<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

fn encode_token(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_token(token: Option<&str>) -> Result<Option<String>, ServiceError> {
    use base64::Engine;
    token
        .filter(|t| !t.is_empty())
        .map(|t| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid("NextToken"))
        })
        .transpose()
}

fn paged<T>(mut items: Vec<T>, key: impl Fn(&T) -> &str) -> SnsPage<T> {
    let next_token = if items.len() as i64 > PAGE_SIZE {
        items.truncate(PAGE_SIZE as usize);
        items.last().map(|i| encode_token(key(i)))
    } else {
        None
    };
    SnsPage { items, next_token }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 64];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn topic_resource(topic_arn: &str, account_id: &str) -> Resource {
    Resource { arn: topic_arn.to_string(), account_id: account_id.to_string(), resource_type: TOPIC.to_string() }
}

/// A topic ARN of the request's region.
fn topic_arn_in(arn: &str, region: &str) -> Result<TopicArn, ServiceError> {
    let a = TopicArn::parse(arn)?;
    if a.region != region {
        return Err(invalid("TopicArn"));
    }
    Ok(a)
}

async fn get_topic(tx: &mut dyn StateTx, arn: &TopicArn) -> Result<Topic, ServiceError> {
    tx.get_sns_topic(&arn.account_id, &arn.region, &arn.name).await?.ok_or_else(sns::topic_not_found)
}

/// Whether `who` may perform `SNS:<action>` on the topic: its own account's principals always,
/// another account's when the topic policy allows it.
fn authorize(topic: &Topic, who: &Principal, action: &str) -> Result<(), ServiceError> {
    if topic.account_id == who.account_id {
        return Ok(());
    }
    let mut arns = vec![who.arn.clone()];
    if let Some(issuer) = who.session.as_ref().and_then(|s| s.session_issuer.as_ref()) {
        arns.push(issuer.arn.clone());
    }
    let context = HashMap::from([
        ("aws:principalaccount".to_string(), who.account_id.clone()),
        ("aws:principalarn".to_string(), who.arn.clone()),
    ]);
    if topic.policy_allows(&Caller::Aws { account_id: &who.account_id, arns }, action, &context) {
        Ok(())
    } else {
        Err(sns::not_authorized(&who.arn, action, &topic.arn()))
    }
}

/// The context a service principal's request carries for `aws:SourceAccount`/`aws:SourceArn`
/// conditions (and SNS's `AWS:SourceOwner`).
fn service_context(source_account: Option<&str>, source_arn: Option<&str>) -> HashMap<String, String> {
    let mut c = HashMap::new();
    if let Some(a) = source_account {
        c.insert("aws:sourceaccount".to_string(), a.to_string());
        c.insert("aws:sourceowner".to_string(), a.to_string());
    }
    if let Some(a) = source_arn {
        c.insert("aws:sourcearn".to_string(), a.to_string());
    }
    c
}

fn seal_context(message_id: &str, subscription_arn: &str) -> String {
    format!("sns-delivery:{message_id}:{subscription_arn}")
}

async fn record(tx: &mut dyn StateTx, who: &Requester, account_id: &str, response: Option<Value>, resources: Vec<Resource>) -> StoreResult<()> {
    match who {
        Requester::Signed(call) => call.record_success(tx, response, resources).await,
        Requester::Anonymous(info) => {
            let actor = Actor::Anonymous { account_id };
            tx.append_event(&info.finish(&actor, Outcome::Success { response_elements: response }, resources)).await?;
            Ok(())
        }
    }
}

/// The attributes GetTopicAttributes returns, in SNS's order.
fn topic_attributes(topic: &Topic, confirmed: i64, pending: i64, retry: &RetryPolicy) -> Vec<(String, String)> {
    let mut out = vec![
        ("Policy".to_string(), topic.policy()),
        ("Owner".to_string(), topic.account_id.clone()),
        ("SubscriptionsPending".to_string(), pending.to_string()),
        ("TopicArn".to_string(), topic.arn()),
        ("EffectiveDeliveryPolicy".to_string(), retry.effective_delivery_policy()),
        ("SubscriptionsConfirmed".to_string(), confirmed.to_string()),
        ("DisplayName".to_string(), topic.attributes.get("DisplayName").cloned().unwrap_or_default()),
        ("SubscriptionsDeleted".to_string(), topic.subscriptions_deleted.to_string()),
        ("SignatureVersion".to_string(), sns::SIGNATURE_VERSION.to_string()),
    ];
    for k in ["DeliveryPolicy", "TracingConfig"] {
        if let Some(v) = topic.attributes.get(k) {
            out.push((k.to_string(), v.clone()));
        }
    }
    out
}

/// A signed notification body for each protocol, sharing one MessageId and Timestamp.
#[derive(Clone)]
struct Notification {
    message_id: String,
    /// `(protocol, message, signature)`.
    signed: Vec<(&'static str, Message, String)>,
    cert_url: String,
    public_url: String,
}

impl Notification {
    fn body(&self, protocol: &str, subscription_arn: &str) -> Option<String> {
        let (_, m, sig) = self.signed.iter().find(|(p, _, _)| *p == protocol)?;
        let mut m = m.clone();
        if let MessageKind::Notification { unsubscribe_url, .. } = &mut m.kind {
            *unsubscribe_url = sns::unsubscribe_url(&self.public_url, subscription_arn);
        }
        Some(m.to_json(sig, &self.cert_url))
    }
}

impl App {
    // ----- signing certificates -----------------------------------------------------------

    fn cert_url(&self, fingerprint: &str) -> String {
        format!("{}{CERT_PATH}{}", self.sns.public_url(), sns::cert_file_name(fingerprint))
    }

    /// The region's signer, creating its key and certificate the first time.
    async fn sns_signer(&self, region: &str) -> Result<Arc<Signer>, ServiceError> {
        if let Some(s) = self.sns.signers.lock().ok().and_then(|m| m.get(region).cloned()) {
            return Ok(s);
        }
        let r = region.to_string();
        let existing = store::read::<_, StoreError, _>(&*self.store, move |tx| Box::pin(async move { tx.sns_signing_cert(&r).await })).await?;
        let cert = match existing {
            Some(c) => c,
            None => {
                let fresh = self.new_signing_cert(region)?;
                store::write::<_, StoreError, _>(&*self.store, move |tx| {
                    Box::pin(async move {
                        // Another request may have made the region's certificate meanwhile.
                        if let Some(c) = tx.sns_signing_cert(&fresh.region).await? {
                            return Ok(c);
                        }
                        tx.insert_sns_signing_cert(&fresh).await?;
                        Ok(fresh)
                    })
                })
                .await?
            }
        };
        let pkcs8 = self.master.open(&cert_seal_context(&cert), &cert.sealed_private).map_err(|e| {
            tracing::error!(error = %e, region = %cert.region, "cannot open the SNS signing key");
            ServiceError::internal()
        })?;
        let key = KeyPair::from_pkcs8(&pkcs8).map_err(|_| ServiceError::internal())?;
        let signer = Arc::new(Signer { fingerprint: cert.fingerprint.clone(), key });
        if let Ok(mut m) = self.sns.signers.lock() {
            m.insert(region.to_string(), signer.clone());
        }
        Ok(signer)
    }

    /// An RSA-2048 key from aws-lc-rs and its self-signed certificate (rcgen, signed through
    /// aws-lc-rs), the private key sealed with the master key.
    fn new_signing_cert(&self, region: &str) -> Result<SigningCert, ServiceError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, region, "{what}");
            ServiceError::internal()
        };
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|e| fail("cannot generate an RSA key", &e))?;
        let pkcs8 = pair.as_der().map_err(|e| fail("cannot encode the RSA key", &e))?;
        let signing = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref()),
            &rcgen::PKCS_RSA_SHA256,
        )
        .map_err(|e| fail("rcgen cannot use the RSA key", &e))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("certificate parameters", &e))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("sns.{region}.otatrail"));
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "otatrail");
        let now = self.clock.now().to_offset_datetime();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(30 * 365);
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params.self_signed(&signing).map_err(|e| fail("cannot sign the certificate", &e))?;
        let cert_der = cert.der().to_vec();
        let mut c = SigningCert {
            region: region.to_string(),
            fingerprint: crate::domain::signing::fingerprint(&cert_der),
            cert_der,
            sealed_private: Vec::new(),
            created_at: self.clock.now(),
        };
        c.sealed_private = self.master.seal(&cert_seal_context(&c), pkcs8.as_ref());
        Ok(c)
    }

    /// The PEM certificate a `SigningCertURL` names, by fingerprint.
    pub async fn sns_certificate_pem(&self, fingerprint: &str) -> Result<Option<String>, ServiceError> {
        let fp = fingerprint.to_string();
        let cert = store::read::<_, StoreError, _>(&*self.store, move |tx| {
            Box::pin(async move { tx.sns_signing_cert_by_fingerprint(&fp).await })
        })
        .await?;
        Ok(cert.map(|c| sns::pem_certificate(&c.cert_der)))
    }

    // ----- topics ------------------------------------------------------------------------

    /// CreateTopic: idempotent by name (same attributes and tags answer the same topic).
    pub async fn sns_create_topic(&self, call: &Arc<Call>, name: &str, attributes: Vec<(String, String)>, tags: Vec<SnsTag>) -> Result<Topic, ServiceError> {
        sns::check_topic_name(name)?;
        for (k, v) in &attributes {
            sns::check_topic_attribute(k, v)?;
        }
        sns::check_tags(&tags)?;
        let scope = call.scope();
        let topic = Topic {
            account_id: scope.account_id,
            region: scope.region,
            name: name.to_string(),
            attributes: attributes.into_iter().filter(|(_, v)| !v.is_empty()).collect::<BTreeMap<_, _>>(),
            tags,
            subscriptions_deleted: 0,
            created_at: self.clock.now(),
        };
        let call = call.clone();
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let arn = topic.arn();
                let resources = vec![topic_resource(&arn, &topic.account_id)];
                let result = match tx.get_sns_topic(&topic.account_id, &topic.region, &topic.name).await? {
                    Some(existing) => {
                        if topic.attributes.iter().any(|(k, v)| existing.attributes.get(k) != Some(v)) {
                            return Err(invalid("Attributes Reason: Topic already exists with different attributes"));
                        }
                        if !topic.tags.is_empty() && topic.tags != existing.tags {
                            return Err(invalid("Tags Reason: Topic already exists with different tags"));
                        }
                        existing
                    }
                    None => {
                        tx.insert_sns_topic(&topic).await?;
                        topic
                    }
                };
                call.record_success(tx, Some(json!({"topicArn": arn})), resources).await?;
                Ok(result)
            })
        })
        .await
    }

    /// DeleteTopic: removes the topic, its subscriptions and undelivered messages. Deleting a
    /// topic that does not exist is not an error (SNS documents the call as idempotent).
    pub async fn sns_delete_topic(&self, call: &Arc<Call>, topic_arn: &str) -> Result<(), ServiceError> {
        let arn = topic_arn_in(topic_arn, &call.info.region)?;
        let call = call.clone();
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                if let Some(topic) = tx.get_sns_topic(&arn.account_id, &arn.region, &arn.name).await? {
                    authorize(&topic, &call.principal, "DeleteTopic")?;
                    tx.delete_sns_topic(&arn.account_id, &arn.region, &arn.name).await?;
                }
                call.record_success(tx, None, vec![topic_resource(&arn.arn(), &arn.account_id)]).await?;
                Ok(())
            })
        })
        .await
    }

    /// ListTopics: the caller's topics in the region, 100 per page.
    pub async fn sns_list_topics(&self, call: &Arc<Call>, next_token: Option<&str>) -> Result<SnsPage<Topic>, ServiceError> {
        let after = decode_token(next_token)?;
        let scope = call.scope();
        let topics = store::read::<_, StoreError, _>(&*self.store, move |tx| {
            Box::pin(async move { tx.list_sns_topics(&scope.account_id, &scope.region, after.as_deref(), PAGE_SIZE + 1).await })
        })
        .await?;
        Ok(paged(topics, |t| &t.name))
    }

    /// GetTopicAttributes, with the derived ones (Owner, counts, EffectiveDeliveryPolicy, the
    /// default Policy when none was set).
    pub async fn sns_get_topic_attributes(&self, call: &Arc<Call>, topic_arn: &str) -> Result<Vec<(String, String)>, ServiceError> {
        let arn = topic_arn_in(topic_arn, &call.info.region)?;
        let who = call.principal.clone();
        let retry = self.sns.retry;
        store::read(&*self.store, move |tx| {
            Box::pin(async move {
                let topic = get_topic(tx, &arn).await?;
                authorize(&topic, &who, "GetTopicAttributes")?;
                let (confirmed, pending) = tx.count_sns_subscriptions(&topic.arn()).await?;
                Ok(topic_attributes(&topic, confirmed, pending, &retry))
            })
        })
        .await
    }

    /// SetTopicAttributes: `DisplayName`, `Policy` (a policy document of SNS actions),
    /// `DeliveryPolicy`, `SignatureVersion` (2), `TracingConfig`. An empty value removes the
    /// attribute.
    pub async fn sns_set_topic_attributes(&self, call: &Arc<Call>, topic_arn: &str, name: &str, value: Option<&str>) -> Result<(), ServiceError> {
        let arn = topic_arn_in(topic_arn, &call.info.region)?;
        let value = value.unwrap_or_default().to_string();
        sns::check_topic_attribute(name, &value)?;
        let (name, call) = (name.to_string(), call.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let mut topic = get_topic(tx, &arn).await?;
                authorize(&topic, &call.principal, "SetTopicAttributes")?;
                if value.is_empty() {
                    topic.attributes.remove(&name);
                } else {
                    topic.attributes.insert(name, value);
                }
                tx.update_sns_topic(&topic).await?;
                call.record_success(tx, None, vec![topic_resource(&topic.arn(), &topic.account_id)]).await?;
                Ok(())
            })
        })
        .await
    }

    // ----- subscriptions -----------------------------------------------------------------

    /// Subscribe an `http`/`https` endpoint. The endpoint is sent a SubscriptionConfirmation;
    /// until it confirms, the answer is `pending confirmation` (or, with `return_arn`, the
    /// subscription's ARN). Subscribing a confirmed endpoint again answers its ARN.
    pub async fn sns_subscribe(
        &self,
        call: &Arc<Call>,
        topic_arn: &str,
        protocol: &str,
        endpoint: Option<&str>,
        attributes: Vec<(String, String)>,
        return_arn: bool,
    ) -> Result<String, ServiceError> {
        let arn = topic_arn_in(topic_arn, &call.info.region)?;
        let endpoint = sns::check_subscription_target(protocol, endpoint)?;
        for (k, v) in &attributes {
            if !(k == "RawMessageDelivery" && v.eq_ignore_ascii_case("false")) {
                return Err(invalid(format!("Attributes Reason: the subscription attribute {k} is not supported")));
            }
        }
        let signer = self.sns_signer(&arn.region).await?;
        let now = self.clock.now();
        let token = new_token();
        let confirmation = Message::confirmation(&arn.arn(), &token, &self.sns.public_url(), now);
        let body = confirmation.to_json(&signer.sign(&confirmation)?, &self.cert_url(&signer.fingerprint));
        let (call, master, protocol) = (call.clone(), self.master.clone(), protocol.to_string());
        let token_sha256 = sha256_hex(&token);
        let (answer, queued) = store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let topic = get_topic(tx, &arn).await?;
                authorize(&topic, &call.principal, "Subscribe")?;
                let topic_arn = topic.arn();
                let mut queued = false;
                let sub = match tx.find_sns_subscription(&topic_arn, &protocol, &endpoint).await? {
                    Some(s) if s.confirmed => s,
                    found => {
                        let sub = match found {
                            // Pending: a new confirmation message, with a new token.
                            Some(mut s) => {
                                s.token_sha256 = token_sha256;
                                s.token_expires_at = Millis(now.0 + sns::TOKEN_VALIDITY_MS);
                                tx.update_sns_subscription(&s).await?;
                                s
                            }
                            None => {
                                let s = Subscription {
                                    arn: sns::new_subscription_arn(&topic_arn),
                                    topic_arn: topic_arn.clone(),
                                    owner: call.principal.account_id.clone(),
                                    region: topic.region.clone(),
                                    protocol: protocol.clone(),
                                    endpoint: endpoint.clone(),
                                    token_sha256,
                                    token_expires_at: Millis(now.0 + sns::TOKEN_VALIDITY_MS),
                                    confirmed: false,
                                    authenticate_on_unsubscribe: false,
                                    created_at: now,
                                };
                                tx.insert_sns_subscription(&s).await?;
                                s
                            }
                        };
                        tx.insert_sns_delivery(&Delivery {
                            id: 0,
                            region: topic.region.clone(),
                            account_id: topic.account_id.clone(),
                            topic_arn: topic_arn.clone(),
                            subscription_arn: sub.arn.clone(),
                            endpoint: sub.endpoint.clone(),
                            message_type: confirmation.type_name().to_string(),
                            sealed_body: master.seal(&seal_context(&confirmation.message_id, &sub.arn), body.as_bytes()),
                            message_id: confirmation.message_id.clone(),
                            attempts: 0,
                            next_attempt_at: now,
                            created_at: now,
                        })
                        .await?;
                        queued = true;
                        sub
                    }
                };
                let answer = if sub.confirmed || return_arn { sub.arn.clone() } else { sns::PENDING_CONFIRMATION_SUBSCRIBE.to_string() };
                call.record_success(tx, Some(json!({"subscriptionArn": answer})), vec![topic_resource(&topic_arn, &topic.account_id)])
                    .await?;
                Ok::<_, ServiceError>((answer, queued))
            })
        })
        .await?;
        if queued {
            self.sns.wake();
        }
        Ok(answer)
    }

    /// ConfirmSubscription with the token of a SubscriptionConfirmation (signed, or unsigned
    /// through the message's SubscribeURL). Confirming again answers the same ARN.
    pub async fn sns_confirm_subscription(
        &self,
        who: Requester,
        topic_arn: &str,
        token: &str,
        authenticate_on_unsubscribe: Option<bool>,
    ) -> Result<String, ServiceError> {
        let arn = match &who {
            Requester::Signed(call) => topic_arn_in(topic_arn, &call.info.region)?,
            Requester::Anonymous(_) => TopicArn::parse(topic_arn)?,
        };
        if token.is_empty() || token.len() > 2048 {
            return Err(invalid("Token"));
        }
        let token_sha256 = sha256_hex(token);
        let now = self.clock.now();
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let topic = get_topic(tx, &arn).await?;
                let topic_arn = topic.arn();
                let mut sub = tx.find_sns_subscription_by_token(&topic_arn, &token_sha256).await?.ok_or_else(|| invalid("Token"))?;
                if !sub.confirmed && sub.token_expires_at < now {
                    return Err(invalid("Token"));
                }
                sub.confirmed = true;
                if let Some(a) = authenticate_on_unsubscribe {
                    sub.authenticate_on_unsubscribe = a;
                }
                tx.update_sns_subscription(&sub).await?;
                record(tx, &who, &topic.account_id, Some(json!({"subscriptionArn": sub.arn})), vec![topic_resource(&topic_arn, &topic.account_id)])
                    .await?;
                Ok(sub.arn)
            })
        })
        .await
    }

    /// Unsubscribe: by the subscription's or the topic's owner, or unsigned through a
    /// message's UnsubscribeURL unless the subscription was confirmed with
    /// `AuthenticateOnUnsubscribe`.
    pub async fn sns_unsubscribe(&self, who: Requester, subscription_arn: &str) -> Result<(), ServiceError> {
        let topic_arn = sns::subscription_topic(subscription_arn)?;
        if let Requester::Signed(call) = &who
            && topic_arn.region != call.info.region
        {
            return Err(invalid("SubscriptionArn"));
        }
        let arn = subscription_arn.to_string();
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let sub = tx.get_sns_subscription(&arn).await?.ok_or_else(sns::subscription_not_found)?;
                match &who {
                    Requester::Signed(call) => {
                        let p = &call.principal;
                        if p.account_id != sub.owner && p.account_id != topic_arn.account_id {
                            return Err(sns::not_authorized(&p.arn, "Unsubscribe", &arn));
                        }
                    }
                    Requester::Anonymous(_) if sub.authenticate_on_unsubscribe => {
                        return Err(ServiceError::new(
                            sns::codes::AUTHORIZATION_ERROR,
                            "This subscription requires an authenticated request to unsubscribe.",
                        ));
                    }
                    Requester::Anonymous(_) => {}
                }
                tx.delete_sns_subscription(&arn).await?;
                if let Some(mut topic) = tx.get_sns_topic(&topic_arn.account_id, &topic_arn.region, &topic_arn.name).await? {
                    topic.subscriptions_deleted += 1;
                    tx.update_sns_topic(&topic).await?;
                }
                record(tx, &who, &topic_arn.account_id, None, vec![topic_resource(&topic_arn.arn(), &topic_arn.account_id)]).await?;
                Ok(())
            })
        })
        .await
    }

    /// ListSubscriptionsByTopic, 100 per page.
    pub async fn sns_list_subscriptions_by_topic(&self, call: &Arc<Call>, topic_arn: &str, next_token: Option<&str>) -> Result<SnsPage<Subscription>, ServiceError> {
        let arn = topic_arn_in(topic_arn, &call.info.region)?;
        let after = decode_token(next_token)?;
        let who = call.principal.clone();
        let subs = store::read(&*self.store, move |tx| {
            Box::pin(async move {
                let topic = get_topic(tx, &arn).await?;
                authorize(&topic, &who, "ListSubscriptionsByTopic")?;
                Ok::<_, ServiceError>(tx.list_sns_subscriptions_by_topic(&topic.arn(), after.as_deref(), PAGE_SIZE + 1).await?)
            })
        })
        .await?;
        Ok(paged(subs, |s| &s.arn))
    }

    /// ListSubscriptions: the subscriptions the caller's account made in the region.
    pub async fn sns_list_subscriptions(&self, call: &Arc<Call>, next_token: Option<&str>) -> Result<SnsPage<Subscription>, ServiceError> {
        let after = decode_token(next_token)?;
        let scope = call.scope();
        let subs = store::read::<_, StoreError, _>(&*self.store, move |tx| {
            Box::pin(async move { tx.list_sns_subscriptions_by_owner(&scope.account_id, &scope.region, after.as_deref(), PAGE_SIZE + 1).await })
        })
        .await?;
        Ok(paged(subs, |s| &s.arn))
    }

    // ----- publishing --------------------------------------------------------------------

    /// Publish (a data event: not recorded). `message_structure` `json` picks each protocol's
    /// member of a JSON message. Returns the MessageId.
    pub async fn sns_publish(
        &self,
        call: &Arc<Call>,
        topic_arn: &str,
        message: &str,
        subject: Option<&str>,
        message_structure: Option<&str>,
    ) -> Result<String, ServiceError> {
        let arn = topic_arn_in(topic_arn, &call.info.region)?;
        let who = call.principal.clone();
        self.publish(arn, message, subject, message_structure, move |topic| authorize(topic, &who, "Publish")).await
    }

    /// Publishes to a topic on behalf of an AWS service (e.g. `cloudtrail.amazonaws.com`
    /// telling of delivered log files): the topic — named by ARN, in any account and region —
    /// must exist (`NotFound`) and its policy must allow the service principal `SNS:Publish`
    /// with `aws:SourceAccount` = `source_account` (`AuthorizationError` otherwise). Returns
    /// the MessageId; the message is delivered to every confirmed subscription, with retries.
    pub async fn sns_publish_as_service(
        &self,
        topic_arn: &str,
        service: &str,
        source_account: &str,
        message: String,
        subject: Option<String>,
    ) -> Result<String, ServiceError> {
        self.sns_publish_as_service_from(topic_arn, service, source_account, None, message, subject).await
    }

    /// [`Self::sns_publish_as_service`], with the `aws:SourceArn` the service acts for (a trail's
    /// ARN), which topic policies often require in a condition.
    pub async fn sns_publish_as_service_from(
        &self,
        topic_arn: &str,
        service: &str,
        source_account: &str,
        source_arn: Option<&str>,
        message: String,
        subject: Option<String>,
    ) -> Result<String, ServiceError> {
        let arn = TopicArn::parse(topic_arn)?;
        let context = service_context(Some(source_account), source_arn);
        let service = service.to_string();
        self.publish(arn, &message, subject.as_deref(), None, move |topic| {
            if topic.policy_allows(&Caller::Service(&service), "Publish", &context) {
                Ok(())
            } else {
                Err(sns::not_authorized(&service, "Publish", &topic.arn()))
            }
        })
        .await
    }

    /// Whether the topic (by ARN) allows the service principal `SNS:Publish`; `NotFound` when
    /// there is no such topic. Conditions on `aws:SourceAccount`/`aws:SourceArn` do not hold
    /// here; see [`Self::sns_topic_allows_service_from`].
    pub async fn sns_topic_allows_service(&self, topic_arn: &str, service: &str) -> Result<bool, ServiceError> {
        self.sns_topic_allows_service_from(topic_arn, service, None, None).await
    }

    /// [`Self::sns_topic_allows_service`] for a request carrying `aws:SourceAccount` and
    /// `aws:SourceArn` (e.g. the trail's account and ARN).
    pub async fn sns_topic_allows_service_from(
        &self,
        topic_arn: &str,
        service: &str,
        source_account: Option<&str>,
        source_arn: Option<&str>,
    ) -> Result<bool, ServiceError> {
        let arn = TopicArn::parse(topic_arn)?;
        let topic = store::read(&*self.store, move |tx| Box::pin(async move { get_topic(tx, &arn).await })).await?;
        Ok(topic.policy_allows(&Caller::Service(service), "Publish", &service_context(source_account, source_arn)))
    }

    /// The topic named by `name_or_arn`: a topic name of `account` in `region`, or a topic ARN
    /// (of any account and region). `NotFound` when it does not exist, `InvalidParameter` when
    /// it is neither a valid name nor a topic ARN.
    pub async fn sns_resolve_topic(&self, account: &str, region: &str, name_or_arn: &str) -> Result<Topic, ServiceError> {
        let arn = if name_or_arn.starts_with("arn:") {
            TopicArn::parse(name_or_arn)?
        } else {
            sns::check_topic_name(name_or_arn)?;
            TopicArn { region: region.to_string(), account_id: account.to_string(), name: name_or_arn.to_string() }
        };
        store::read(&*self.store, move |tx| Box::pin(async move { get_topic(tx, &arn).await })).await
    }

    async fn publish(
        &self,
        arn: TopicArn,
        message: &str,
        subject: Option<&str>,
        structure: Option<&str>,
        allowed: impl FnOnce(&Topic) -> Result<(), ServiceError> + Clone + Send + 'static,
    ) -> Result<String, ServiceError> {
        if let Some(s) = subject {
            sns::check_subject(s)?;
        }
        let signer = self.sns_signer(&arn.region).await?;
        let now = self.clock.now();
        let message_id = uuid::Uuid::new_v4().to_string();
        let public_url = self.sns.public_url();
        let mut signed = Vec::new();
        for protocol in ["http", "https"] {
            let m = Message {
                kind: MessageKind::Notification { subject: subject.map(str::to_string), unsubscribe_url: String::new() },
                message_id: message_id.clone(),
                topic_arn: arn.arn(),
                message: sns::message_for_http(message, structure, protocol)?,
                timestamp: sns::timestamp(now),
            };
            let sig = signer.sign(&m)?;
            signed.push((protocol, m, sig));
        }
        let n = Notification { message_id: message_id.clone(), signed, cert_url: self.cert_url(&signer.fingerprint), public_url };
        let master = self.master.clone();
        let queued = store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let topic = get_topic(tx, &arn).await?;
                allowed(&topic)?;
                let topic_arn = topic.arn();
                let mut queued = 0usize;
                let mut after: Option<String> = None;
                loop {
                    let batch = tx.list_sns_subscriptions_by_topic(&topic_arn, after.as_deref(), 500).await?;
                    for sub in batch.iter().filter(|s| s.confirmed) {
                        let Some(body) = n.body(&sub.protocol, &sub.arn) else { continue };
                        tx.insert_sns_delivery(&Delivery {
                            id: 0,
                            region: topic.region.clone(),
                            account_id: topic.account_id.clone(),
                            topic_arn: topic_arn.clone(),
                            subscription_arn: sub.arn.clone(),
                            endpoint: sub.endpoint.clone(),
                            message_type: "Notification".to_string(),
                            message_id: n.message_id.clone(),
                            sealed_body: master.seal(&seal_context(&n.message_id, &sub.arn), body.as_bytes()),
                            attempts: 0,
                            next_attempt_at: now,
                            created_at: now,
                        })
                        .await?;
                        queued += 1;
                    }
                    if batch.len() < 500 {
                        break;
                    }
                    after = batch.last().map(|s| s.arn.clone());
                }
                Ok::<_, ServiceError>(queued)
            })
        })
        .await?;
        if queued > 0 {
            self.sns.wake();
        }
        Ok(message_id)
    }

    // ----- delivery ----------------------------------------------------------------------

    /// Claims the deliveries due now (leasing them so no other pass takes them while they are
    /// sent).
    async fn sns_claim_due(&self, limit: i64) -> Result<Vec<Delivery>, ServiceError> {
        let now = self.clock.now();
        store::write::<_, StoreError, _>(&*self.store, move |tx| {
            Box::pin(async move {
                let due = tx.due_sns_deliveries(now, limit).await?;
                for d in &due {
                    tx.reschedule_sns_delivery(d.id, d.attempts, Millis(now.0 + LEASE_MS)).await?;
                }
                Ok(due)
            })
        })
        .await
        .map_err(ServiceError::from)
    }

    /// Sends one delivery and records the outcome: removed after a 2xx answer, else tried
    /// again after the back-off (or dropped once the retry period is over).
    async fn sns_attempt(&self, d: Delivery) {
        let body = match self.master.open(&seal_context(&d.message_id, &d.subscription_arn), &d.sealed_body) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, subscription = %d.subscription_arn, message_id = %d.message_id, "SNS delivery cannot be opened; dropped");
                self.sns_finish(d.id, None).await;
                return;
            }
        };
        let outbound = Outbound {
            endpoint: &d.endpoint,
            message_type: &d.message_type,
            message_id: &d.message_id,
            topic_arn: &d.topic_arn,
            subscription_arn: &d.subscription_arn,
            body: &body,
        };
        let outcome = self.sns.transport.post(&outbound).await;
        if let Ok(status) = outcome
            && (200..300).contains(&status)
        {
            tracing::debug!(subscription = %d.subscription_arn, message_id = %d.message_id, kind = %d.message_type, "SNS message delivered");
            self.sns_finish(d.id, None).await;
            return;
        }
        let failed = d.attempts + 1;
        let why = match &outcome {
            Ok(status) => format!("HTTP {status}"),
            Err(e) => e.clone(),
        };
        match self.sns.retry.next_attempt(d.created_at, failed, self.clock.now()) {
            Some(next) => {
                tracing::info!(subscription = %d.subscription_arn, message_id = %d.message_id, attempt = failed, error = %why, "SNS delivery failed; will retry");
                self.sns_finish(d.id, Some((failed, next))).await;
            }
            None => {
                tracing::warn!(subscription = %d.subscription_arn, message_id = %d.message_id, attempts = failed, error = %why, "SNS delivery failed for the whole retry period; dropped");
                self.sns_finish(d.id, None).await;
            }
        }
    }

    /// Removes a delivery (`None`) or reschedules it; wakes the worker to look again.
    async fn sns_finish(&self, id: i64, reschedule: Option<(i64, Millis)>) {
        let r = store::write::<_, StoreError, _>(&*self.store, move |tx| {
            Box::pin(async move {
                match reschedule {
                    None => tx.delete_sns_delivery(id).await,
                    Some((attempts, next)) => tx.reschedule_sns_delivery(id, attempts, next).await,
                }
            })
        })
        .await;
        if let Err(e) = r {
            // The lease runs out and the delivery is tried again.
            tracing::warn!(error = %e, "could not record an SNS delivery outcome");
        }
        self.sns.wake();
    }

    /// One pass of the worker, for tests: sends every due delivery and waits for the outcomes.
    /// Returns how many were attempted.
    pub async fn sns_deliver_once(&self) -> Result<usize, ServiceError> {
        let due = self.sns_claim_due(CLAIM_BATCH).await?;
        let n = due.len();
        futures::future::join_all(due.into_iter().map(|d| self.sns_attempt(d))).await;
        Ok(n)
    }

    /// Removes pending subscriptions whose confirmation token expired (three days).
    async fn sns_expire_pending(&self) {
        let now = self.clock.now();
        let r = store::write::<_, StoreError, _>(&*self.store, move |tx| Box::pin(async move { tx.delete_expired_sns_subscriptions(now).await })).await;
        match r {
            Ok(gone) if !gone.is_empty() => tracing::info!(removed = gone.len(), "removed SNS subscriptions never confirmed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove expired SNS subscriptions"),
        }
    }

    /// The delivery worker: sends due deliveries (up to 32 at once), woken when a delivery is
    /// queued or finished and at the next due time.
    pub fn spawn_sns_deliverer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
            let mut last_expiry = tokio::time::Instant::now();
            app.sns_expire_pending().await;
            loop {
                if last_expiry.elapsed() >= Duration::from_secs(3600) {
                    app.sns_expire_pending().await;
                    last_expiry = tokio::time::Instant::now();
                }
                let claimed = match app.sns_claim_due(CLAIM_BATCH).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "SNS delivery pass failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let full = claimed.len() as i64 == CLAIM_BATCH;
                for d in claimed {
                    let Ok(permit) = permits.clone().acquire_owned().await else { return };
                    let app = app.clone();
                    tokio::spawn(async move {
                        app.sns_attempt(d).await;
                        drop(permit);
                    });
                }
                if full {
                    continue;
                }
                let next = store::read::<_, StoreError, _>(&*app.store, |tx| Box::pin(async move { tx.next_sns_delivery_at().await })).await;
                let wait = match next {
                    Ok(Some(t)) => Duration::from_millis((t.0 - app.clock.now().0).clamp(0, MAX_IDLE.as_millis() as i64) as u64),
                    Ok(None) => MAX_IDLE,
                    Err(_) => Duration::from_secs(1),
                };
                if wait.is_zero() {
                    continue;
                }
                tokio::select! {
                    _ = app.sns.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}

fn cert_seal_context(c: &SigningCert) -> String {
    format!("sns-signing-key:{}:{}", c.region, c.fingerprint)
}

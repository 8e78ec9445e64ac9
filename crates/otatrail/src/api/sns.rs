//! SNS over the query protocol (botocore's sns model, API version 2010-03-31): maps as
//! `Attributes.entry.N.key`/`.value`, lists as `Tags.member.N.Key`, XML results with
//! `<entry><key/><value/></entry>` maps. Also the unsigned GET requests SNS answers: the
//! SubscribeURL and UnsubscribeURL of its messages, and the signing certificates they name.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use serde_json::{Map, Value};

use super::call::{self, CallContext, OpMeta};
use super::query::{self, QueryParams, QueryService, element};
use super::{Incoming, Protocol};
use crate::app::App;
use crate::app::audit::Call;
use crate::app::sns::{CERT_PATH, Requester, SnsPage};
use crate::domain::ServiceError;
use crate::domain::sns::{self, SnsTag, Subscription, TopicArn, codes, invalid};

const SERVICE: QueryService = QueryService::Sns;
const EVENT_SOURCE: &str = "sns.amazonaws.com";

/// SNS actions this server records, with how. Publish is answered but, as a data event,
/// never recorded.
pub fn meta(action: &str) -> Option<OpMeta> {
    const WRITES: &[&str] = &["CreateTopic", "DeleteTopic", "SetTopicAttributes", "Subscribe", "ConfirmSubscription", "Unsubscribe"];
    const READS: &[&str] = &["ListTopics", "GetTopicAttributes", "ListSubscriptionsByTopic", "ListSubscriptions"];
    WRITES
        .iter()
        .find(|a| **a == action)
        .map(|a| OpMeta::write(a))
        .or_else(|| READS.iter().find(|a| **a == action).map(|a| OpMeta::read(a)))
}

/// SNS's own codes for the server's generic failures.
fn sns_error(mut e: ServiceError) -> ServiceError {
    if e.code == crate::domain::error::codes::INTERNAL_FAILURE {
        e.code = codes::INTERNAL_ERROR;
    }
    e
}

pub async fn handle(ctx: &mut CallContext<'_>) -> Result<Response, ServiceError> {
    operation(ctx).await.map_err(sns_error)
}

/// An SNS request with its parameters decoded (borrowed from the [`QueryParams`]): everything
/// the handler needs before it calls the application layer.
pub enum SnsRequest<'a> {
    Publish { topic_arn: &'a str, message: &'a str, subject: Option<&'a str>, message_structure: Option<&'a str> },
    CreateTopic { name: &'a str, attributes: Vec<(String, String)>, tags: Vec<SnsTag> },
    DeleteTopic { topic_arn: &'a str },
    ListTopics { next_token: Option<&'a str> },
    GetTopicAttributes { topic_arn: &'a str },
    SetTopicAttributes { topic_arn: &'a str, attribute_name: &'a str, attribute_value: Option<&'a str> },
    Subscribe {
        topic_arn: &'a str,
        protocol: &'a str,
        endpoint: Option<&'a str>,
        attributes: Vec<(String, String)>,
        return_subscription_arn: bool,
    },
    ConfirmSubscription { topic_arn: &'a str, token: &'a str, authenticate_on_unsubscribe: Option<bool> },
    Unsubscribe { subscription_arn: &'a str },
    ListSubscriptionsByTopic { topic_arn: &'a str, next_token: Option<&'a str> },
    ListSubscriptions { next_token: Option<&'a str> },
}

/// The parameters of `p`'s action (`InvalidAction` for one this server does not answer). Pure
/// (no I/O); the fuzz targets drive it.
pub fn decode(p: &QueryParams) -> Result<SnsRequest<'_>, ServiceError> {
    Ok(match p.action.as_str() {
        "Publish" => {
            if p.get("TargetArn").is_some() || p.get("PhoneNumber").is_some() {
                return Err(invalid("otatrail publishes to topics only (TopicArn); TargetArn and PhoneNumber are not supported"));
            }
            let topic_arn = p.get("TopicArn").ok_or_else(|| invalid("TopicArn or TargetArn Reason: no value for required parameter"))?;
            let message = p.get("Message").ok_or_else(|| invalid("Message Reason: no value for required parameter"))?;
            // MessageAttributes are accepted and not delivered.
            SnsRequest::Publish { topic_arn, message, subject: p.get("Subject"), message_structure: p.get("MessageStructure") }
        }
        "CreateTopic" => {
            let tags = tags(p)?;
            SnsRequest::CreateTopic { name: required(p, "Name")?, attributes: map(p, "Attributes"), tags }
        }
        "DeleteTopic" => SnsRequest::DeleteTopic { topic_arn: required(p, "TopicArn")? },
        "ListTopics" => SnsRequest::ListTopics { next_token: p.get("NextToken") },
        "GetTopicAttributes" => SnsRequest::GetTopicAttributes { topic_arn: required(p, "TopicArn")? },
        "SetTopicAttributes" => SnsRequest::SetTopicAttributes {
            topic_arn: required(p, "TopicArn")?,
            attribute_name: required(p, "AttributeName")?,
            attribute_value: p.get("AttributeValue"),
        },
        "Subscribe" => SnsRequest::Subscribe {
            topic_arn: required(p, "TopicArn")?,
            protocol: required(p, "Protocol")?,
            endpoint: p.get("Endpoint"),
            attributes: map(p, "Attributes"),
            return_subscription_arn: boolean(p, "ReturnSubscriptionArn")?.unwrap_or(false),
        },
        "ConfirmSubscription" => SnsRequest::ConfirmSubscription {
            topic_arn: required(p, "TopicArn")?,
            token: required(p, "Token")?,
            authenticate_on_unsubscribe: boolean(p, "AuthenticateOnUnsubscribe")?,
        },
        "Unsubscribe" => SnsRequest::Unsubscribe { subscription_arn: required(p, "SubscriptionArn")? },
        "ListSubscriptionsByTopic" => {
            SnsRequest::ListSubscriptionsByTopic { topic_arn: required(p, "TopicArn")?, next_token: p.get("NextToken") }
        }
        "ListSubscriptions" => SnsRequest::ListSubscriptions { next_token: p.get("NextToken") },
        other => return Err(query::unknown_action(SERVICE, other)),
    })
}

async fn operation(ctx: &mut CallContext<'_>) -> Result<Response, ServiceError> {
    let (app, incoming) = (ctx.app, ctx.incoming);
    let p = query::parse(SERVICE, incoming)?;
    if p.action == "Publish" {
        // A data event: no record.
        let info = call::call_info(app, incoming, &ctx.verified.region, EVENT_SOURCE, OpMeta::read("Publish"), None, ctx.api_version);
        let call = Arc::new(Call { info, principal: ctx.verified.principal.clone() });
        let SnsRequest::Publish { topic_arn, message, subject, message_structure } = decode(&p)? else {
            return Err(query::unknown_action(SERVICE, &p.action));
        };
        let id = app.sns_publish(&call, topic_arn, message, subject, message_structure).await?;
        return Ok(query::response(SERVICE, "Publish", &element("MessageId", &id), &incoming.request_id));
    }
    let Some(op) = meta(&p.action) else { return Err(query::unknown_action(SERVICE, &p.action)) };
    let call = ctx.start(op, request_parameters(&p));
    let caller = &call;
    let action = p.action.as_str();
    let result = match decode(&p)? {
        // Answered above, before the call is named.
        SnsRequest::Publish { .. } => return Err(query::unknown_action(SERVICE, action)),
        SnsRequest::CreateTopic { name, attributes, tags } => {
            let t = app.sns_create_topic(caller, name, attributes, tags).await?;
            element("TopicArn", &t.arn())
        }
        SnsRequest::DeleteTopic { topic_arn } => {
            app.sns_delete_topic(caller, topic_arn).await?;
            String::new()
        }
        SnsRequest::ListTopics { next_token } => {
            let page = app.sns_list_topics(caller, next_token).await?;
            let members: String = page.items.iter().map(|t| format!("<member>{}</member>", element("TopicArn", &t.arn()))).collect();
            format!("<Topics>{members}</Topics>{}", next_token_xml(&page))
        }
        SnsRequest::GetTopicAttributes { topic_arn } => {
            let attrs = app.sns_get_topic_attributes(caller, topic_arn).await?;
            ctx.resources.push(topic_resource(topic_arn));
            let entries: String =
                attrs.iter().map(|(k, v)| format!("<entry>{}{}</entry>", element("key", k), element("value", v))).collect();
            format!("<Attributes>{entries}</Attributes>")
        }
        SnsRequest::SetTopicAttributes { topic_arn, attribute_name, attribute_value } => {
            app.sns_set_topic_attributes(caller, topic_arn, attribute_name, attribute_value).await?;
            String::new()
        }
        SnsRequest::Subscribe { topic_arn, protocol, endpoint, attributes, return_subscription_arn } => {
            let arn = app.sns_subscribe(caller, topic_arn, protocol, endpoint, attributes, return_subscription_arn).await?;
            element("SubscriptionArn", &arn)
        }
        SnsRequest::ConfirmSubscription { topic_arn, token, authenticate_on_unsubscribe } => {
            let arn = app
                .sns_confirm_subscription(Requester::Signed(call.clone()), topic_arn, token, authenticate_on_unsubscribe)
                .await?;
            element("SubscriptionArn", &arn)
        }
        SnsRequest::Unsubscribe { subscription_arn } => {
            app.sns_unsubscribe(Requester::Signed(call.clone()), subscription_arn).await?;
            String::new()
        }
        SnsRequest::ListSubscriptionsByTopic { topic_arn, next_token } => {
            let page = app.sns_list_subscriptions_by_topic(caller, topic_arn, next_token).await?;
            ctx.resources.push(topic_resource(topic_arn));
            subscriptions_xml(&page)
        }
        SnsRequest::ListSubscriptions { next_token } => subscriptions_xml(&app.sns_list_subscriptions(caller, next_token).await?),
    };
    Ok(query::response(SERVICE, action, &result, &incoming.request_id))
}

fn topic_resource(arn: &str) -> crate::domain::audit::Resource {
    let account_id = TopicArn::parse(arn).map(|a| a.account_id).unwrap_or_default();
    crate::domain::audit::Resource { arn: arn.to_string(), account_id, resource_type: "AWS::SNS::Topic".into() }
}

fn required<'a>(p: &'a QueryParams, name: &str) -> Result<&'a str, ServiceError> {
    p.get(name).ok_or_else(|| invalid(format!("{name} Reason: no value for required parameter")))
}

fn boolean(p: &QueryParams, name: &str) -> Result<Option<bool>, ServiceError> {
    p.get(name)
        .map(|v| match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid(format!("{name} must be true or false"))),
        })
        .transpose()
}

/// `Name.entry.N.key` / `Name.entry.N.value`, in order.
fn map(p: &QueryParams, name: &str) -> Vec<(String, String)> {
    (1..)
        .map_while(|i| {
            let key = p.get(&format!("{name}.entry.{i}.key"))?;
            Some((key.to_string(), p.get(&format!("{name}.entry.{i}.value")).unwrap_or_default().to_string()))
        })
        .collect()
}

/// `Tags.member.N.Key` / `Tags.member.N.Value`.
fn tags(p: &QueryParams) -> Result<Vec<SnsTag>, ServiceError> {
    p.structs("Tags")
        .into_iter()
        .map(|m| match (m.get("Key"), m.get("Value")) {
            (Some(k), Some(v)) => Ok(SnsTag { key: k.clone(), value: v.clone() }),
            _ => Err(invalid("Tags Reason: each tag needs a Key and a Value")),
        })
        .collect()
}

/// The request as CloudTrail shows it: lowerCamel names, maps as objects, tags as a list,
/// endpoint passwords masked, and never the confirmation token.
pub fn request_parameters(p: &QueryParams) -> Option<Value> {
    fn lower_first(s: &str) -> String {
        let mut c = s.chars();
        c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
    }
    let mut out = Map::new();
    let mut keys: Vec<&String> = p.params.keys().filter(|k| !k.contains('.')).collect();
    keys.sort();
    for k in keys {
        let v = &p.params[k];
        let value = match k.as_str() {
            "Token" => continue,
            "Endpoint" => Value::String(sns::mask_endpoint(v)),
            "ReturnSubscriptionArn" | "AuthenticateOnUnsubscribe" => {
                v.parse::<bool>().map(Value::Bool).unwrap_or_else(|_| Value::String(v.clone()))
            }
            _ => Value::String(v.clone()),
        };
        out.insert(lower_first(k), value);
    }
    let attrs = map(p, "Attributes");
    if !attrs.is_empty() {
        out.insert("attributes".into(), Value::Object(attrs.into_iter().map(|(k, v)| (k, Value::String(v))).collect()));
    }
    let tags: Vec<Value> = p
        .structs("Tags")
        .into_iter()
        .map(|m| serde_json::json!({"key": m.get("Key"), "value": m.get("Value")}))
        .collect();
    if !tags.is_empty() {
        out.insert("tags".into(), Value::Array(tags));
    }
    if out.is_empty() { None } else { Some(Value::Object(out)) }
}

fn next_token_xml<T>(page: &SnsPage<T>) -> String {
    page.next_token.as_deref().map(|t| element("NextToken", t)).unwrap_or_default()
}

fn subscriptions_xml(page: &SnsPage<Subscription>) -> String {
    let members: String = page
        .items
        .iter()
        .map(|s| {
            format!(
                "<member>{}{}{}{}{}</member>",
                element("TopicArn", &s.topic_arn),
                element("Protocol", &s.protocol),
                element("SubscriptionArn", s.listed_arn()),
                element("Owner", &s.owner),
                element("Endpoint", &sns::mask_endpoint(&s.endpoint)),
            )
        })
        .collect();
    format!("<Subscriptions>{members}</Subscriptions>{}", next_token_xml(page))
}

/// The unsigned GET requests SNS answers on its endpoint, or `None` when `incoming` is not one:
/// `/?Action=ConfirmSubscription&TopicArn=…&Token=…` (a message's SubscribeURL),
/// `/?Action=Unsubscribe&SubscriptionArn=…` (UnsubscribeURL) and the signing certificates
/// under [`CERT_PATH`].
pub async fn anonymous(app: &App, incoming: &Incoming) -> Option<Response> {
    if incoming.method != http::Method::GET || incoming.headers.contains_key(http::header::AUTHORIZATION) {
        return None;
    }
    if let Some(file) = incoming.raw_path.strip_prefix(CERT_PATH) {
        return Some(certificate(app, file).await);
    }
    if incoming.raw_path != "/" {
        return None;
    }
    let params: HashMap<String, String> = form_urlencoded::parse(incoming.raw_query.as_bytes()).into_owned().collect();
    if params.keys().any(|k| k.starts_with("X-Amz-")) {
        return None; // presigned: goes through authentication
    }
    let action = params.get("Action")?.as_str();
    if !matches!(action, "ConfirmSubscription" | "Unsubscribe") {
        return None;
    }
    let get = |k: &str| params.get(k).map(String::as_str).ok_or_else(|| invalid(format!("{k} Reason: no value for required parameter")));
    let info = |region: &str| {
        let recorded: HashMap<String, String> =
            params.iter().filter(|(k, _)| !matches!(k.as_str(), "Action" | "Version")).map(|(k, v)| (k.clone(), v.clone())).collect();
        let p = QueryParams { action: action.to_string(), params: recorded };
        call::call_info(app, incoming, region, EVENT_SOURCE, OpMeta::write(if action == "Unsubscribe" { "Unsubscribe" } else { "ConfirmSubscription" }), request_parameters(&p), Some(SERVICE.version()))
    };
    let result = async {
        match action {
            "ConfirmSubscription" => {
                let topic = get("TopicArn")?;
                let region = TopicArn::parse(topic)?.region;
                let auth = match params.get("AuthenticateOnUnsubscribe").map(|v| v.to_ascii_lowercase()) {
                    None => None,
                    Some(v) if v == "true" => Some(true),
                    Some(v) if v == "false" => Some(false),
                    Some(_) => return Err(invalid("AuthenticateOnUnsubscribe must be true or false")),
                };
                let arn = app.sns_confirm_subscription(Requester::Anonymous(Box::new(info(&region))), topic, get("Token")?, auth).await?;
                Ok(element("SubscriptionArn", &arn))
            }
            _ => {
                let sub = get("SubscriptionArn")?;
                let region = sns::subscription_topic(sub)?.region;
                app.sns_unsubscribe(Requester::Anonymous(Box::new(info(&region))), sub).await?;
                Ok(String::new())
            }
        }
    }
    .await;
    Some(match result {
        Ok(xml) => query::response(SERVICE, action, &xml, &incoming.request_id),
        Err(e) => super::error::render(Protocol::Query(SERVICE), &sns_error(e), &incoming.request_id),
    })
}

async fn certificate(app: &App, file: &str) -> Response {
    let fingerprint = file
        .strip_prefix("SimpleNotificationService-")
        .and_then(|f| f.strip_suffix(".pem"))
        .filter(|f| f.len() == 32 && f.bytes().all(|b| b.is_ascii_hexdigit()));
    let pem = match fingerprint {
        Some(fp) => app.sns_certificate_pem(fp).await,
        None => Ok(None),
    };
    let (status, content_type, body) = match pem {
        Ok(Some(pem)) => (200, "application/x-pem-file", pem),
        Ok(None) => (404, "text/plain", "Not Found\n".to_string()),
        Err(_) => (500, "text/plain", "Internal Server Error\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

//! The AWS query protocol (STS, IAM, SNS): form-encoded parameters in, XML out.

use std::collections::HashMap;

use axum::body::Body;
use axum::response::Response;

use super::Incoming;
use crate::domain::ServiceError;

/// A query-protocol service, with its XML namespace and API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryService {
    Sts,
    Iam,
    Sns,
}

impl QueryService {
    pub fn xmlns(self) -> &'static str {
        match self {
            QueryService::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
            QueryService::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
            QueryService::Sns => "http://sns.amazonaws.com/doc/2010-03-31/",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            QueryService::Sts => "2011-06-15",
            QueryService::Iam => "2010-05-08",
            QueryService::Sns => "2010-03-31",
        }
    }
}

/// The request's parameters: the query string, then a form body (which wins).
pub struct QueryParams {
    pub action: String,
    pub params: HashMap<String, String>,
}

pub fn parse(service: QueryService, incoming: &Incoming) -> Result<QueryParams, ServiceError> {
    let mut params: HashMap<String, String> = form_urlencoded::parse(incoming.raw_query.as_bytes()).into_owned().collect();
    let is_form = incoming
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form || (!incoming.body.is_empty() && incoming.method == http::Method::POST) {
        params.extend(form_urlencoded::parse(&incoming.body).into_owned());
    }
    let action = params
        .remove("Action")
        .ok_or_else(|| ServiceError::new("MissingAction", "Missing Action"))?;
    if let Some(v) = params.remove("Version")
        && v != service.version()
    {
        return Err(ServiceError::new(
            "InvalidAction",
            format!("Could not find operation {action} for version {v}"),
        ));
    }
    Ok(QueryParams { action, params })
}

impl QueryParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// `Name.member.1`, `Name.member.2`, … in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        (1..).map_while(|i| self.params.get(&format!("{name}.member.{i}")).cloned()).collect()
    }

    /// `Name.member.N.Field` structures, in order.
    pub fn structs(&self, name: &str) -> Vec<HashMap<String, String>> {
        let mut out = Vec::new();
        for i in 1.. {
            let prefix = format!("{name}.member.{i}.");
            let fields: HashMap<String, String> = self
                .params
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|f| (f.to_string(), v.clone())))
                .collect();
            if fields.is_empty() {
                break;
            }
            out.push(fields);
        }
        out
    }
}

pub fn unknown_action(service: QueryService, action: &str) -> ServiceError {
    ServiceError::new("InvalidAction", format!("Could not find operation {action} for version {}", service.version()))
}

/// `<{action}Response xmlns=…><{action}Result>{result}</{action}Result><ResponseMetadata>…`
pub fn response(service: QueryService, action: &str, result_xml: &str, request_id: &str) -> Response {
    let xml = format!(
        "<{action}Response xmlns=\"{}\"><{action}Result>{result_xml}</{action}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        service.xmlns(),
        xml_escape(request_id)
    );
    Response::builder()
        .status(200)
        .header("x-amzn-RequestId", request_id)
        .header(http::header::CONTENT_TYPE, "text/xml")
        .body(Body::from(xml))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `<Name>value</Name>`, escaped.
pub fn element(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", xml_escape(value))
}

/// Percent-encodes everything but the unreserved characters (IAM returns policy documents so).
pub fn url_encode(s: &str) -> String {
    otatrail_sigv4::uri_encode(s, false)
}

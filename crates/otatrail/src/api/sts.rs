//! STS over the query protocol.

use axum::response::Response;

use super::call::{CallContext, OpMeta, query_request_parameters};
use super::query::{self, QueryParams, QueryService, element};
use crate::app::sts::{AssumeRoleRequest, TemporaryCredentials, iso8601};
use crate::domain::ServiceError;
use crate::domain::iam::VALIDATION_ERROR;

const SERVICE: QueryService = QueryService::Sts;

/// STS actions, with how each is recorded. The credential calls are read-only, as in
/// CloudTrail, but store the credentials they issue, so they record in that unit of work and
/// keep their response elements (less secrets).
pub fn meta(action: &str) -> Option<OpMeta> {
    let issuing = |name| OpMeta { name, read_only: true, records_in_tx: true, keep_response_elements: true };
    Some(match action {
        "GetCallerIdentity" => OpMeta::read("GetCallerIdentity"),
        "GetSessionToken" => issuing("GetSessionToken"),
        "GetFederationToken" => issuing("GetFederationToken"),
        "AssumeRole" => issuing("AssumeRole"),
        _ => return None,
    })
}

/// An STS request with its parameters decoded: everything the handler needs before it calls
/// the application layer.
pub enum StsRequest<'a> {
    GetCallerIdentity,
    GetSessionToken { duration_seconds: Option<i64> },
    GetFederationToken { name: &'a str, duration_seconds: Option<i64>, policy: Option<&'a str> },
    AssumeRole(AssumeRoleRequest),
}

/// The parameters of `p`'s action (`InvalidAction` for one STS does not answer). Pure (no I/O);
/// the fuzz targets drive it.
pub fn decode(p: &QueryParams) -> Result<StsRequest<'_>, ServiceError> {
    Ok(match p.action.as_str() {
        "GetCallerIdentity" => StsRequest::GetCallerIdentity,
        "GetSessionToken" => StsRequest::GetSessionToken { duration_seconds: int(p, "DurationSeconds")? },
        "GetFederationToken" => StsRequest::GetFederationToken {
            name: required(p, "Name")?,
            duration_seconds: int(p, "DurationSeconds")?,
            policy: p.get("Policy"),
        },
        "AssumeRole" => StsRequest::AssumeRole(AssumeRoleRequest {
            role_arn: required(p, "RoleArn")?.to_string(),
            session_name: required(p, "RoleSessionName")?.to_string(),
            duration_seconds: int(p, "DurationSeconds")?,
            source_identity: p.get("SourceIdentity").map(str::to_string),
            external_id: p.get("ExternalId").map(str::to_string),
            tags: super::iam::tags(p)?,
        }),
        other => return Err(query::unknown_action(SERVICE, other)),
    })
}

/// How STS request parameters are recorded.
pub fn request_parameters(p: &QueryParams) -> Option<serde_json::Value> {
    query_request_parameters(&p.params, &["DurationSeconds"])
}

pub async fn handle(ctx: &mut CallContext<'_>) -> Result<Response, ServiceError> {
    let (app, incoming) = (ctx.app, ctx.incoming);
    let p = query::parse(SERVICE, incoming)?;
    let Some(op) = meta(&p.action) else { return Err(query::unknown_action(SERVICE, &p.action)) };
    let call = ctx.start(op, request_parameters(&p));
    let caller = &call;
    let xml = match decode(&p)? {
        StsRequest::GetCallerIdentity => {
            let who = &call.principal;
            format!("{}{}{}", element("Arn", &who.arn), element("UserId", &who.principal_id), element("Account", &who.account_id))
        }
        StsRequest::GetSessionToken { duration_seconds } => credentials_xml(&app.sts_get_session_token(caller, duration_seconds).await?),
        StsRequest::GetFederationToken { name, duration_seconds, policy } => {
            let c = app.sts_get_federation_token(caller, name, duration_seconds, policy).await?;
            format!(
                "{}<FederatedUser>{}{}</FederatedUser><PackedPolicySize>0</PackedPolicySize>",
                credentials_xml(&c),
                element("FederatedUserId", &c.principal.principal_id),
                element("Arn", &c.principal.arn)
            )
        }
        StsRequest::AssumeRole(req) => {
            let c = app.sts_assume_role(caller, req).await?;
            let source = c
                .principal
                .session
                .as_ref()
                .and_then(|s| s.source_identity.as_deref())
                .map(|s| element("SourceIdentity", s))
                .unwrap_or_default();
            format!(
                "{}<AssumedRoleUser>{}{}</AssumedRoleUser><PackedPolicySize>0</PackedPolicySize>{source}",
                credentials_xml(&c),
                element("AssumedRoleId", &c.principal.principal_id),
                element("Arn", &c.principal.arn)
            )
        }
    };
    Ok(query::response(SERVICE, &p.action, &xml, &incoming.request_id))
}

fn credentials_xml(c: &TemporaryCredentials) -> String {
    format!(
        "<Credentials>{}{}{}{}</Credentials>",
        element("AccessKeyId", &c.access_key_id),
        element("SecretAccessKey", c.secret.expose()),
        element("SessionToken", &c.session_token),
        element("Expiration", &iso8601(c.expiration)),
    )
}

fn required<'a>(p: &'a QueryParams, name: &str) -> Result<&'a str, ServiceError> {
    p.get(name).ok_or_else(|| ServiceError::new(VALIDATION_ERROR, format!("The parameter {name} is required.")))
}

fn int(p: &QueryParams, name: &str) -> Result<Option<i64>, ServiceError> {
    p.get(name)
        .map(|v| v.parse().map_err(|_| ServiceError::new(VALIDATION_ERROR, format!("{name} must be an integer, got '{v}'."))))
        .transpose()
}

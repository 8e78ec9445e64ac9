//! STS over the query protocol.

use axum::response::Response;

use super::Incoming;
use super::auth::VerifiedRequest;
use super::query::{self, QueryParams, QueryService, element};
use crate::app::App;
use crate::app::sts::{AssumeRoleRequest, TemporaryCredentials, iso8601};
use crate::domain::ServiceError;
use crate::domain::iam::VALIDATION_ERROR;

const SERVICE: QueryService = QueryService::Sts;

pub async fn handle(app: &App, incoming: &Incoming, v: &VerifiedRequest) -> Result<Response, ServiceError> {
    let p = query::parse(SERVICE, incoming)?;
    let caller = &v.principal;
    let xml = match p.action.as_str() {
        "GetCallerIdentity" => format!(
            "{}{}{}",
            element("Arn", &caller.arn),
            element("UserId", &caller.principal_id),
            element("Account", &caller.account_id)
        ),
        "GetSessionToken" => credentials_xml(&app.sts_get_session_token(caller, int(&p, "DurationSeconds")?).await?),
        "GetFederationToken" => {
            let name = required(&p, "Name")?;
            let c = app.sts_get_federation_token(caller, name, int(&p, "DurationSeconds")?, p.get("Policy")).await?;
            format!(
                "{}<FederatedUser>{}{}</FederatedUser><PackedPolicySize>0</PackedPolicySize>",
                credentials_xml(&c),
                element("FederatedUserId", &c.principal.principal_id),
                element("Arn", &c.principal.arn)
            )
        }
        "AssumeRole" => {
            let req = AssumeRoleRequest {
                role_arn: required(&p, "RoleArn")?.to_string(),
                session_name: required(&p, "RoleSessionName")?.to_string(),
                duration_seconds: int(&p, "DurationSeconds")?,
                source_identity: p.get("SourceIdentity").map(str::to_string),
                external_id: p.get("ExternalId").map(str::to_string),
                tags: super::iam::tags(&p)?,
            };
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
        other => return Err(query::unknown_action(SERVICE, other)),
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

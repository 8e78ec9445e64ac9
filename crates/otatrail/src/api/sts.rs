//! STS over the query protocol.

use axum::response::Response;

use super::Incoming;
use super::auth::VerifiedRequest;
use super::query::{self, QueryService, element};
use crate::app::App;
use crate::domain::ServiceError;

const SERVICE: QueryService = QueryService::Sts;

pub async fn handle(_app: &App, incoming: &Incoming, v: &VerifiedRequest) -> Result<Response, ServiceError> {
    let params = query::parse(SERVICE, incoming)?;
    match params.action.as_str() {
        "GetCallerIdentity" => {
            let p = &v.principal;
            let xml = format!(
                "{}{}{}",
                element("Arn", &p.arn),
                element("UserId", &p.principal_id),
                element("Account", &p.account_id)
            );
            Ok(query::response(SERVICE, "GetCallerIdentity", &xml, &incoming.request_id))
        }
        other => Err(query::unknown_action(SERVICE, other)),
    }
}

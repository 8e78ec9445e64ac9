//! IAM over the query protocol. Its actions arrive with the identities issue; until then
//! every action is unknown, answered in IAM's own error format.

use axum::response::Response;

use super::Incoming;
use super::auth::VerifiedRequest;
use super::query::{self, QueryService};
use crate::app::App;
use crate::domain::ServiceError;

const SERVICE: QueryService = QueryService::Iam;

pub async fn handle(_app: &App, incoming: &Incoming, _v: &VerifiedRequest) -> Result<Response, ServiceError> {
    let params = query::parse(SERVICE, incoming)?;
    Err(query::unknown_action(SERVICE, &params.action))
}

//! The one place where errors become HTTP responses, per protocol (`aws-api.md` §2):
//! - rest-json: status, `x-amzn-ErrorType` header, body `{"message", …members}`;
//! - json 1.1: status, body `{"__type", "message"}` (the header is ignored by clients);
//! - query: status, `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::{Map, Value};

use super::Protocol;
use super::auth::AuthFailure;
use super::query::xml_escape;
use crate::domain::ServiceError;
use crate::domain::error::codes;
use otatrail_sigv4::SigV4Error;

/// HTTP status of an error code. IoT's odd ones (LimitExceeded 410, Throttling 400) come
/// from its model.
fn status(protocol: Protocol, code: &str) -> StatusCode {
    let s = match code {
        "ResourceNotFoundException" => 404,
        "ResourceAlreadyExistsException" | "DeleteConflictException" | "VersionConflictException"
        | "InvalidStateTransitionException" | "ConflictException" => 409,
        "LimitExceededException" => 410,
        "UnauthorizedException" => 401,
        "InternalFailureException" | "InternalFailure" | "ServiceFailure" => 500,
        "ServiceUnavailableException" | "ServiceUnavailable" => 503,
        "MissingAuthenticationTokenException" | "MissingAuthenticationToken" | "UnrecognizedClientException"
        | "InvalidSignatureException" | "InvalidClientTokenId" | "SignatureDoesNotMatch"
        | "ExpiredTokenException" | "ExpiredToken" | "AccessDeniedException" | "AccessDenied" => 403,
        "RequestEntityTooLargeException" | "RequestEntityTooLarge" => 413,
        // IAM and STS (query protocol).
        "NoSuchEntity" => 404,
        "EntityAlreadyExists" | "DeleteConflict" | "LimitExceeded" | "ConcurrentModification" => 409,
        "UnknownOperationException" if protocol == Protocol::RestJson => 404,
        "TrailNotFoundException" | "TrailNotProvidedException" => 404,
        "InsufficientS3BucketPolicyException" | "InsufficientSnsTopicPolicyException" => 403,
        // SNS (query protocol).
        "NotFound" => 404,
        "AuthorizationError" | "TopicLimitExceeded" | "SubscriptionLimitExceeded" | "InvalidSecurity" => 403,
        "InternalError" => 500,
        "Throttled" => 429,
        _ => 400,
    };
    StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST)
}

/// The query protocol's names for the server's generic failures: AWS's common errors of query
/// APIs (IAM, STS) are `InternalFailure` (500) and `ServiceUnavailable` (503); the
/// `…Exception` names are those of the rest-json and json 1.1 models. (SNS maps its own first.)
fn query_code(code: &'static str) -> &'static str {
    match code {
        codes::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        codes::INTERNAL_FAILURE => "InternalFailure",
        c => c,
    }
}

pub fn render(protocol: Protocol, err: &ServiceError, request_id: &str) -> Response {
    let status = status(protocol, err.code);
    let builder = Response::builder().status(status).header("x-amzn-RequestId", request_id);
    let built = match protocol {
        Protocol::RestJson => {
            let mut body = Map::new();
            body.insert("message".into(), Value::String(err.message.clone()));
            for (k, v) in &err.members {
                body.insert((*k).into(), Value::String(v.clone()));
            }
            builder
                .header("x-amzn-ErrorType", err.code)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(Value::Object(body).to_string()))
        }
        Protocol::AwsJson11 => {
            let mut body = Map::new();
            body.insert("__type".into(), Value::String(err.code.into()));
            body.insert("message".into(), Value::String(err.message.clone()));
            for (k, v) in &err.members {
                body.insert((*k).into(), Value::String(v.clone()));
            }
            builder
                .header(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")
                .body(Body::from(Value::Object(body).to_string()))
        }
        Protocol::Query(service) => {
            let kind = if status.is_server_error() { "Receiver" } else { "Sender" };
            let xml = format!(
                "<ErrorResponse xmlns=\"{}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                service.xmlns(),
                xml_escape(query_code(err.code)),
                xml_escape(&err.message),
                xml_escape(request_id)
            );
            builder.header(http::header::CONTENT_TYPE, "text/xml").body(Body::from(xml))
        }
    };
    built.unwrap_or_else(|_| Response::new(Body::empty()))
}

/// What AWS answers for each authentication failure, in the protocol's own vocabulary.
pub fn auth_error(protocol: Protocol, failure: &AuthFailure) -> ServiceError {
    let query = matches!(protocol, Protocol::Query(_));
    let pick = |json: &'static str, q: &'static str| if query { q } else { json };
    let invalid_token = "The security token included in the request is invalid.";
    match failure {
        AuthFailure::Missing => ServiceError::new(
            pick("MissingAuthenticationTokenException", "MissingAuthenticationToken"),
            if query { "Request is missing Authentication Token" } else { "Missing Authentication Token" },
        ),
        AuthFailure::Incomplete(m) => {
            ServiceError::new(pick("IncompleteSignatureException", "IncompleteSignature"), m.clone())
        }
        AuthFailure::UnknownKey { .. } => {
            ServiceError::new(pick("UnrecognizedClientException", "InvalidClientTokenId"), invalid_token)
        }
        AuthFailure::InactiveKey { .. } => ServiceError::new(
            pick("UnrecognizedClientException", "InvalidClientTokenId"),
            "The security token included in the request is invalid: the access key is inactive.",
        ),
        AuthFailure::InvalidToken { .. } => {
            ServiceError::new(pick("UnrecognizedClientException", "InvalidClientTokenId"), invalid_token)
        }
        AuthFailure::ExpiredToken { .. } => ServiceError::new(
            pick("ExpiredTokenException", "ExpiredToken"),
            "The security token included in the request is expired",
        ),
        AuthFailure::Signature { error, .. } => {
            let code = match error {
                SigV4Error::IncompleteSignature(_) => pick("IncompleteSignatureException", "IncompleteSignature"),
                _ => pick("InvalidSignatureException", "SignatureDoesNotMatch"),
            };
            ServiceError::new(code, error.message())
        }
        AuthFailure::UnknownService { service } => ServiceError::new(
            pick("InvalidSignatureException", "SignatureDoesNotMatch"),
            format!(
                "Credential should be scoped to correct service: this endpoint serves {}, not '{service}'.",
                super::auth::SERVICES.join(", ")
            ),
        ),
        AuthFailure::InvalidRegion { region } => ServiceError::new(
            pick("InvalidSignatureException", "SignatureDoesNotMatch"),
            format!("Credential should be scoped to a valid region, not '{region}'."),
        ),
        AuthFailure::Internal => ServiceError::internal(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::query::QueryService;

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn generic_failures_use_each_protocols_names() {
        // A full disk answers ServiceUnavailable: in IAM's and STS's words on the query protocol…
        for service in [QueryService::Iam, QueryService::Sts] {
            let r = render(Protocol::Query(service), &ServiceError::unavailable(), "rid");
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            let b = body(r).await;
            assert!(b.contains("<Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>The service"), "{b}");
        }
        let r = render(Protocol::Query(QueryService::Iam), &ServiceError::internal(), "rid");
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body(r).await.contains("<Code>InternalFailure</Code>"));
        // …and in the models' words on rest-json.
        let r = render(Protocol::RestJson, &ServiceError::unavailable(), "rid");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["x-amzn-ErrorType"], "ServiceUnavailableException");
    }
}

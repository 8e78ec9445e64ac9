//! Authentication: turns a signed request into a [`VerifiedRequest`] (the principal, and the
//! region and service it signed for), or says why it cannot.

use otatrail_sigv4::{self as sigv4, CanonicalRequest, Expectations, SigV4Error, UriEncoding, Verifier};
use std::sync::LazyLock;
use subtle::ConstantTimeEq;

use super::Incoming;
use crate::app::App;
use crate::domain::Principal;
use crate::domain::identity::KeyStatus;

/// The services this port answers, by their SigV4 signing names.
pub const SERVICES: &[&str] = &["iot", "iot-jobs-data", "cloudtrail", "sts", "iam", "sns"];

#[derive(Clone, Debug)]
pub struct VerifiedRequest {
    pub principal: Principal,
    /// The region of the credential scope: it selects the region's state.
    pub region: String,
    /// The service of the credential scope: it routes the request.
    pub service: String,
}

/// Why a request was not authenticated. `access_key_id` is kept when the request named one,
/// so that failed attempts can be attributed.
#[derive(Clone, Debug)]
pub enum AuthFailure {
    Missing,
    Incomplete(String),
    UnknownKey { access_key_id: String },
    InactiveKey { key: KnownKey },
    /// Temporary credentials without their session token, or with another one.
    InvalidToken { key: KnownKey },
    ExpiredToken { key: KnownKey },
    Signature { key: KnownKey, error: SigV4Error },
    UnknownService { service: String },
    InvalidRegion { region: String },
    Internal,
}

/// An existing access key named by a request that failed authentication, and where the
/// request claimed to go: enough to record the attempt in the key's account.
#[derive(Clone, Debug)]
pub struct KnownKey {
    pub access_key_id: String,
    pub account_id: String,
    pub region: String,
    pub service: String,
}

impl AuthFailure {
    /// The existing key this failure is about, if any.
    pub fn known_key(&self) -> Option<&KnownKey> {
        match self {
            AuthFailure::InactiveKey { key }
            | AuthFailure::InvalidToken { key }
            | AuthFailure::ExpiredToken { key }
            | AuthFailure::Signature { key, .. } => Some(key),
            _ => None,
        }
    }
}

static REGION: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$").unwrap());

pub fn is_region(s: &str) -> bool {
    REGION.is_match(s)
}

/// The request's `Authorization` header, parsed and checked for a service and region this
/// port answers: everything [`authenticate`] decides before it looks the key up (no I/O).
// `AuthFailure` is large (it carries the SigV4 diagnostics), as `authenticate`'s is.
#[allow(clippy::result_large_err)]
pub fn authorization(incoming: &Incoming) -> Result<sigv4::AuthorizationHeader, AuthFailure> {
    let Some(value) = incoming.headers.get(http::header::AUTHORIZATION) else {
        return Err(AuthFailure::Missing);
    };
    let value = value.to_str().map_err(|_| AuthFailure::Incomplete("The Authorization header is not valid ASCII.".into()))?;
    let auth = sigv4::parse_authorization(value).map_err(|e| AuthFailure::Incomplete(e.message()))?;
    let cred = &auth.credential;
    if !SERVICES.contains(&cred.service.as_str()) {
        return Err(AuthFailure::UnknownService { service: cred.service.clone() });
    }
    if !is_region(&cred.region) {
        return Err(AuthFailure::InvalidRegion { region: cred.region.clone() });
    }
    Ok(auth)
}

/// The parts of `incoming` SigV4 covers, as this port hashes them: headers whose values are
/// not UTF-8 are left out, and the payload is always hashed as received.
pub fn canonical_request(incoming: &Incoming) -> CanonicalRequest<'_> {
    let headers: Vec<(&str, &str)> = incoming
        .headers
        .iter()
        .filter_map(|(k, v)| std::str::from_utf8(v.as_bytes()).ok().map(|v| (k.as_str(), v)))
        .collect();
    CanonicalRequest {
        method: incoming.method.as_str(),
        path: &incoming.raw_path,
        query: &incoming.raw_query,
        headers,
        // Not S3: the payload is always hashed as received, whatever a header claims.
        payload_hash: sigv4::sha256_hex(&incoming.body),
        excluded_query_params: &[],
    }
}

pub async fn authenticate(app: &App, verifier: &Verifier, incoming: &Incoming) -> Result<VerifiedRequest, AuthFailure> {
    let auth = authorization(incoming)?;
    let cred = &auth.credential;
    let access_key_id = cred.access_key_id.clone();
    let key = match app.identities.lookup(&access_key_id).await {
        Ok(Some(k)) => k,
        Ok(None) => return Err(AuthFailure::UnknownKey { access_key_id }),
        Err(e) => {
            tracing::error!(error = %e, "access key lookup failed");
            return Err(AuthFailure::Internal);
        }
    };
    let request = canonical_request(incoming);
    let known = KnownKey {
        access_key_id: access_key_id.clone(),
        account_id: key.principal.account_id.clone(),
        region: cred.region.clone(),
        service: cred.service.clone(),
    };
    let now = app.clock.now().to_offset_datetime();
    let expect = Expectations { now, service: None, region: None, uri_encoding: UriEncoding::Double };
    verifier
        .verify(&auth, &request, key.secret.expose(), &expect)
        .map_err(|error| AuthFailure::Signature { key: known.clone(), error })?;
    // The signature is checked first, so an inactive key answers only to its owner's secret.
    if key.status != KeyStatus::Active {
        return Err(AuthFailure::InactiveKey { key: known });
    }
    if let Some(session) = &key.session {
        let presented = incoming.header("x-amz-security-token").map(|t| sigv4::sha256_hex(t.as_bytes()));
        let matches = presented.is_some_and(|h| bool::from(h.as_bytes().ct_eq(session.token_sha256.as_bytes())));
        if !matches {
            return Err(AuthFailure::InvalidToken { key: known });
        }
        if app.clock.now() >= session.expires_at {
            return Err(AuthFailure::ExpiredToken { key: known });
        }
    }
    Ok(VerifiedRequest { principal: key.principal, region: cred.region.clone(), service: cred.service.clone() })
}

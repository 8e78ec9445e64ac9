//! AWS Signature Version 4 (header form): server-side verification, and signing for the server's own client tools.
//!
//! The flow a server follows:
//! 1. [`parse_authorization`] reads the `Authorization` header into an [`AuthorizationHeader`]
//!    without any secret: the caller learns the access key ID and the credential scope, which
//!    it needs to look the secret up (and to route the request by service).
//! 2. [`Verifier::verify`] rebuilds the canonical request and string to sign, checks the
//!    credential scope and the clock skew, derives (or reuses) the signing key and compares
//!    signatures in constant time. Success yields a [`VerifiedSignature`]: a proof value, not
//!    a boolean, that the API layer wraps together with the principal.
//!
//! The module does no I/O. Errors carry what AWS tells clients (for a signature mismatch, the
//! canonical request and string to sign the server expected), so that the API layer can answer
//! exactly as AWS does.

mod canonical;
mod error;
mod key_cache;
mod signer;

pub use canonical::{CanonicalRequest, UriEncoding, canonical_query_string, uri_encode};
pub use error::SigV4Error;
pub use key_cache::SigningKeyCache;
pub use signer::{Credentials, SignableRequest, Signer, sign_request};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime, PrimitiveDateTime, format_description::FormatItem, macros::format_description};

/// The only algorithm AWS SigV4 (non-asymmetric) uses.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's timestamp may be from the server clock, as AWS allows.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(15);

const AMZ_DATE_FORMAT: &[FormatItem<'static>] = format_description!("[year][month][day]T[hour][minute][second]Z");

type HmacSha256 = Hmac<Sha256>;

/// The credential scope: `<akid>/<date>/<region>/<service>/aws4_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialScope {
    pub access_key_id: String,
    /// `YYYYMMDD`
    pub date: String,
    pub region: String,
    pub service: String,
}

impl CredentialScope {
    /// The scope string used in the string to sign (without the access key ID).
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationHeader {
    pub credential: CredentialScope,
    /// Lowercase header names, in the order the client listed them.
    pub signed_headers: Vec<String>,
    /// Lowercase hex.
    pub signature: String,
}

/// Parses the `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<AuthorizationHeader, SigV4Error> {
    let value = value.trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(SigV4Error::IncompleteSignature(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'. Only {ALGORITHM} is supported."
        )));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            return Err(SigV4Error::IncompleteSignature(format!(
                "Authorization header requires each component to be of the form key=value, got '{part}'."
            )));
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim().to_string()),
            "SignedHeaders" => signed_headers = Some(v.trim().to_string()),
            "Signature" => signature = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let missing: Vec<&str> = [
        ("Credential", credential.is_none()),
        ("Signature", signature.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(n, _)| *n)
    .collect();
    if !missing.is_empty() {
        let list = missing.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", ");
        return Err(SigV4Error::IncompleteSignature(format!(
            "Authorization header requires {list} parameter. Authorization={value}"
        )));
    }
    let credential = parse_credential(credential.as_deref().unwrap_or_default())?;
    let signed_headers: Vec<String> =
        signed_headers.unwrap_or_default().split(';').filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase()).collect();
    if signed_headers.is_empty() {
        return Err(SigV4Error::IncompleteSignature("Authorization header requires a non-empty 'SignedHeaders'.".into()));
    }
    let signature = signature.unwrap_or_default().to_ascii_lowercase();
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SigV4Error::IncompleteSignature(
            "Signature must be 64 hexadecimal characters.".into(),
        ));
    }
    Ok(AuthorizationHeader { credential, signed_headers, signature })
}

fn parse_credential(value: &str) -> Result<CredentialScope, SigV4Error> {
    let parts: Vec<&str> = value.split('/').collect();
    if parts.len() != 5 || parts[4] != "aws4_request" {
        return Err(SigV4Error::IncompleteSignature(format!(
            "Credential should be scoped to a valid region, service and terminated with 'aws4_request'. Credential={value}"
        )));
    }
    if parts.iter().take(4).any(|p| p.is_empty()) {
        return Err(SigV4Error::IncompleteSignature(format!("Credential has an empty component. Credential={value}")));
    }
    if parts[1].len() != 8 || !parts[1].bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigV4Error::IncompleteSignature(format!(
            "Credential date must be in the form YYYYMMDD. Credential={value}"
        )));
    }
    Ok(CredentialScope {
        access_key_id: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
    })
}

/// Parses an `X-Amz-Date` value (`20150830T123600Z`).
pub fn parse_amz_date(value: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(value, AMZ_DATE_FORMAT).ok().map(|t| t.assume_utc())
}

/// Formats a time as an `X-Amz-Date` value.
pub fn format_amz_date(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(AMZ_DATE_FORMAT).unwrap_or_default()
}

/// What the server expects of the request, beyond the signature itself.
#[derive(Clone, Debug)]
pub struct Expectations<'a> {
    /// The server clock.
    pub now: OffsetDateTime,
    /// When set, the credential scope must name this service.
    pub service: Option<&'a str>,
    /// When set, the credential scope must name this region.
    pub region: Option<&'a str>,
    pub uri_encoding: UriEncoding,
}

/// Proof that a request was signed with the secret of `credential.access_key_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSignature {
    pub credential: CredentialScope,
    pub signed_at: OffsetDateTime,
    pub signed_headers: Vec<String>,
}

/// Verifies signatures, caching derived signing keys.
#[derive(Default)]
pub struct Verifier {
    keys: SigningKeyCache,
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies `request` against the parsed `auth` header and the secret of its access key.
    pub fn verify(
        &self,
        auth: &AuthorizationHeader,
        request: &CanonicalRequest<'_>,
        secret_access_key: &str,
        expect: &Expectations<'_>,
    ) -> Result<VerifiedSignature, SigV4Error> {
        if !auth.signed_headers.iter().any(|h| h == "host") {
            return Err(SigV4Error::IncompleteSignature(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
            ));
        }
        let amz_date_raw = request
            .header("x-amz-date")
            .ok_or_else(|| SigV4Error::IncompleteSignature(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
            ))?;
        let signed_at = parse_amz_date(amz_date_raw.trim()).ok_or_else(|| {
            SigV4Error::IncompleteSignature(format!(
                "Date must be in ISO-8601 'basic format'. Got '{amz_date_raw}'. See http://en.wikipedia.org/wiki/ISO_8601"
            ))
        })?;
        check_skew(signed_at, expect.now)?;
        let cred = &auth.credential;
        let date_part = &amz_date_raw.trim()[..8];
        if cred.date != date_part {
            return Err(SigV4Error::ScopeMismatch(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
                cred.date,
                date_part,
                amz_date_raw.trim()
            )));
        }
        if let Some(region) = expect.region
            && cred.region != region
        {
            return Err(SigV4Error::ScopeMismatch(format!(
                "Credential should be scoped to a valid region. Got '{}', expected '{region}'.",
                cred.region
            )));
        }
        if let Some(service) = expect.service
            && cred.service != service
        {
            return Err(SigV4Error::ScopeMismatch(format!("Credential should be scoped to correct service: '{service}'.")));
        }
        for h in &auth.signed_headers {
            if !request.has_header(h) {
                return Err(SigV4Error::IncompleteSignature(format!(
                    "The request signature includes header '{h}', which is missing from the request."
                )));
            }
        }

        let canonical = request.canonical_string(&auth.signed_headers, expect.uri_encoding);
        let string_to_sign = string_to_sign(amz_date_raw.trim(), &cred.scope(), &canonical);
        let key = self.keys.get_or_derive(secret_access_key, cred);
        let expected = sign(&key, &string_to_sign);
        let provided = hex::decode(&auth.signature).unwrap_or_default();
        if expected.ct_eq(&provided[..]).into() {
            Ok(VerifiedSignature { credential: cred.clone(), signed_at, signed_headers: auth.signed_headers.clone() })
        } else {
            Err(SigV4Error::SignatureMismatch { canonical_request: canonical, string_to_sign })
        }
    }
}

fn check_skew(signed_at: OffsetDateTime, now: OffsetDateTime) -> Result<(), SigV4Error> {
    let fmt = |t: OffsetDateTime| format_amz_date(t);
    if signed_at < now - MAX_CLOCK_SKEW {
        return Err(SigV4Error::SignatureExpired(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            fmt(signed_at),
            fmt(now - MAX_CLOCK_SKEW),
            fmt(now)
        )));
    }
    if signed_at > now + MAX_CLOCK_SKEW {
        return Err(SigV4Error::SignatureExpired(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            fmt(signed_at),
            fmt(now + MAX_CLOCK_SKEW),
            fmt(now)
        )));
    }
    Ok(())
}

/// `AWS4-HMAC-SHA256\n<amz-date>\n<scope>\n<hex sha256(canonical request)>`
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hash}")
}

/// Derives the signing key: HMAC chain over date, region, service and `aws4_request`.
pub fn derive_signing_key(secret_access_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret_access_key}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The signature bytes over a string to sign.
pub fn sign(signing_key: &[u8; 32], string_to_sign: &str) -> [u8; 32] {
    hmac(signing_key, string_to_sign.as_bytes())
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Lowercase hex SHA-256, as used for payload hashes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

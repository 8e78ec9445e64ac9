//! Client-side signing, for the few requests the server's own tools send (`otatrail
//! validate-logs` calling a CloudTrail endpoint). It builds the same canonical request the
//! verifier rebuilds, so a request signed here verifies there by construction; the tests check
//! that against [`crate::Verifier`].

use time::OffsetDateTime;

use crate::{ALGORITHM, CanonicalRequest, UriEncoding, derive_signing_key, format_amz_date, sha256_hex, sign, string_to_sign};

/// Long-term or temporary credentials of the caller.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret and token never reach a log line.
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// What to sign: a request without a body stream (the body is hashed whole).
pub struct SignableRequest<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// Wire path, already percent-encoded.
    pub path: &'a str,
    /// Wire query without `?`.
    pub query: &'a str,
    /// Extra headers to sign (e.g. `content-type`, `x-amz-target`), lowercase names.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// The headers to add to `req`: `x-amz-date`, `x-amz-security-token` when temporary, and
/// `authorization`.
pub fn sign_request(
    req: &SignableRequest<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Vec<(&'static str, String)> {
    sign_with(req, creds, region, service, now, |date| derive_signing_key(&creds.secret_access_key, date, region, service))
}

/// Signs request after request for one region and service, deriving the signing key once a
/// day instead of once a request (four HMACs: a load generator's hot path).
pub struct Signer {
    creds: Credentials,
    region: String,
    service: String,
    /// The date (`YYYYMMDD`) the key is for, and the key.
    key: Option<(String, [u8; 32])>,
}

impl Signer {
    pub fn new(creds: Credentials, region: &str, service: &str) -> Self {
        Self { creds, region: region.to_string(), service: service.to_string(), key: None }
    }

    /// What [`sign_request`] returns for the same request and time.
    pub fn sign(&mut self, req: &SignableRequest<'_>, now: OffsetDateTime) -> Vec<(&'static str, String)> {
        let Self { creds, region, service, key } = self;
        sign_with(req, creds, region, service, now, |date| match key {
            Some((d, k)) if d == date => *k,
            _ => {
                let k = derive_signing_key(&creds.secret_access_key, date, region, service);
                *key = Some((date.to_string(), k));
                k
            }
        })
    }
}

fn sign_with(
    req: &SignableRequest<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
    signing_key: impl FnOnce(&str) -> [u8; 32],
) -> Vec<(&'static str, String)> {
    let amz_date = format_amz_date(now);
    let date = &amz_date[..8];
    let mut headers: Vec<(&str, &str)> = vec![("host", req.host), ("x-amz-date", &amz_date)];
    if let Some(token) = &creds.session_token {
        headers.push(("x-amz-security-token", token));
    }
    headers.extend_from_slice(req.headers);
    let signed: Vec<String> = headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    let canonical = CanonicalRequest {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: headers.clone(),
        payload_hash: sha256_hex(req.body),
        excluded_query_params: &[],
    };
    let encoding = if service == "s3" { UriEncoding::Single } else { UriEncoding::Double };
    let canonical_string = canonical.canonical_string(&signed, encoding);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = string_to_sign(&amz_date, &scope, &canonical_string);
    let key = signing_key(date);
    let signature = hex::encode(sign(&key, &to_sign));
    let mut sorted = signed.clone();
    sorted.sort();
    sorted.dedup();
    let mut out = vec![("x-amz-date", amz_date.clone())];
    if let Some(token) = &creds.session_token {
        out.push(("x-amz-security-token", token.clone()));
    }
    out.push((
        "authorization",
        format!("{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}", creds.access_key_id, sorted.join(";")),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expectations, Verifier, parse_authorization};

    #[test]
    fn a_signed_request_verifies() {
        let creds = Credentials { access_key_id: "AKIDEXAMPLE".into(), secret_access_key: "secret/key".into(), session_token: Some("tok".into()) };
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let extra = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", "CloudTrail_20131101.ListPublicKeys")];
        let req = SignableRequest { method: "POST", host: "127.0.0.1:4566", path: "/", query: "", headers: &extra, body: b"{}" };
        let added = sign_request(&req, &creds, "us-east-1", "cloudtrail", now);
        let auth_value = added.iter().find(|(k, _)| *k == "authorization").unwrap().1.clone();
        let auth = parse_authorization(&auth_value).unwrap();
        let mut headers: Vec<(&str, &str)> = vec![("host", "127.0.0.1:4566")];
        headers.extend(extra);
        headers.extend(added.iter().filter(|(k, _)| *k != "authorization").map(|(k, v)| (*k, v.as_str())));
        let canonical = CanonicalRequest {
            method: "POST",
            path: "/",
            query: "",
            headers,
            payload_hash: sha256_hex(b"{}"),
            excluded_query_params: &[],
        };
        let expect = Expectations { now, service: Some("cloudtrail"), region: Some("us-east-1"), uri_encoding: UriEncoding::Double };
        Verifier::new().verify(&auth, &canonical, "secret/key", &expect).expect("verifies");
        assert!(Verifier::new().verify(&auth, &canonical, "other", &expect).is_err());
        assert!(!format!("{creds:?}").contains("secret"));
    }

    /// A `Signer` signs as `sign_request` does, on the same day and after the date changes
    /// (when its key must be derived again).
    #[test]
    fn a_signer_signs_as_sign_request_across_days() {
        let creds = Credentials { access_key_id: "AKIDEXAMPLE".into(), secret_access_key: "secret/key".into(), session_token: None };
        let req = SignableRequest { method: "GET", host: "h:1", path: "/things/t", query: "", headers: &[], body: b"" };
        let mut signer = Signer::new(creds.clone(), "eu-west-1", "iot");
        for t in [1_700_000_000, 1_700_000_100, 1_700_100_000, 1_700_000_000] {
            let now = OffsetDateTime::from_unix_timestamp(t).unwrap();
            assert_eq!(signer.sign(&req, now), sign_request(&req, &creds, "eu-west-1", "iot", now), "at {t}");
        }
    }
}

//! Rejections: malformed `Authorization` headers, clock skew, scope mismatches and requests
//! that do not carry what their signature claims to cover.
//!
//! Requests here are signed with the crate's own primitives (`canonical_string`,
//! `string_to_sign`, `derive_signing_key`, `sign`), which `aws_test_suite.rs` and `oracle.rs`
//! check against AWS; [`signing_helper_reproduces_the_aws_suite`] ties this helper to the suite
//! as well. Each test then changes one thing and checks the error it gets.

use otatrail_sigv4::{
    AuthorizationHeader, CanonicalRequest, Expectations, SigV4Error, UriEncoding, VerifiedSignature, Verifier,
    derive_signing_key, format_amz_date, parse_amz_date, parse_authorization, sha256_hex, sign, string_to_sign,
};
use time::{Duration, OffsetDateTime};

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";
const SERVICE: &str = "service";
const NOW: &str = "20150830T123600Z";
/// A syntactically valid signature, for parser tests.
const SIG: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

fn now() -> OffsetDateTime {
    parse_amz_date(NOW).expect("valid date")
}

/// A `GET /` request with `Host`, `X-Amz-Date` and any extra headers.
#[derive(Clone, Debug)]
struct Request {
    headers: Vec<(String, String)>,
}

impl Request {
    fn new(signed_at: OffsetDateTime, extra: &[(&str, &str)]) -> Self {
        let mut headers = vec![
            ("Host".to_string(), "example.amazonaws.com".to_string()),
            ("X-Amz-Date".to_string(), format_amz_date(signed_at)),
        ];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Request { headers }
    }

    fn canonical(&self) -> CanonicalRequest<'_> {
        CanonicalRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            payload_hash: sha256_hex(b""),
            excluded_query_params: &[],
        }
    }

    /// Signs the request as a client would, for the given headers and credential scope.
    /// `date` is the credential scope's date (normally the day of `X-Amz-Date`).
    fn sign(&self, signed_headers: &[&str], date: &str, region: &str, service: &str) -> AuthorizationHeader {
        let signed: Vec<String> = signed_headers.iter().map(|h| h.to_string()).collect();
        let amz_date = &self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-amz-date")).expect("X-Amz-Date").1;
        let creq = self.canonical().canonical_string(&signed, UriEncoding::Double);
        let sts = string_to_sign(amz_date, &format!("{date}/{region}/{service}/aws4_request"), &creq);
        let signature = hex::encode(sign(&derive_signing_key(SECRET, date, region, service), &sts));
        parse_authorization(&format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{date}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={signature}",
            signed_headers.join(";")
        ))
        .expect("helper builds a well-formed header")
    }

    /// Signs `host;x-amz-date` (plus the lowercase names of the extra headers) in the default scope.
    fn sign_default(&self) -> AuthorizationHeader {
        let mut names: Vec<String> = self.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
        names.sort();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let date = &self.headers[1].1[..8];
        self.sign(&names, date, REGION, SERVICE)
    }

    fn verify(&self, auth: &AuthorizationHeader, now: OffsetDateTime) -> Result<VerifiedSignature, SigV4Error> {
        self.verify_expecting(auth, now, Some(SERVICE), Some(REGION))
    }

    fn verify_expecting(
        &self,
        auth: &AuthorizationHeader,
        now: OffsetDateTime,
        service: Option<&str>,
        region: Option<&str>,
    ) -> Result<VerifiedSignature, SigV4Error> {
        let expect = Expectations { now, service, region, uri_encoding: UriEncoding::Double };
        Verifier::new().verify(auth, &self.canonical(), SECRET, &expect)
    }
}

fn incomplete(result: Result<AuthorizationHeader, SigV4Error>) -> String {
    match result {
        Err(SigV4Error::IncompleteSignature(message)) => message,
        other => panic!("expected IncompleteSignature, got {other:?}"),
    }
}

fn incomplete_verify(result: Result<VerifiedSignature, SigV4Error>) -> String {
    match result {
        Err(SigV4Error::IncompleteSignature(message)) => message,
        other => panic!("expected IncompleteSignature, got {other:?}"),
    }
}

fn scope_mismatch(result: Result<VerifiedSignature, SigV4Error>) -> String {
    match result {
        Err(SigV4Error::ScopeMismatch(message)) => message,
        other => panic!("expected ScopeMismatch, got {other:?}"),
    }
}

fn expired(result: Result<VerifiedSignature, SigV4Error>) -> String {
    match result {
        Err(SigV4Error::SignatureExpired(message)) => message,
        other => panic!("expected SignatureExpired, got {other:?}"),
    }
}

/// The helper must produce exactly the signature of the suite's get-vanilla vector, so that
/// tests built on it start from a request AWS would accept.
#[test]
fn signing_helper_reproduces_the_aws_suite() {
    let request = Request::new(now(), &[]);
    let auth = request.sign_default();
    assert_eq!(auth.signature, SIG);
    let verified = request.verify(&auth, now()).expect("verifies");
    assert_eq!(verified.signed_at, now());
    assert_eq!(verified.credential.access_key_id, ACCESS_KEY_ID);
    assert_eq!(verified.signed_headers, ["host", "x-amz-date"]);
}

// --- parse_authorization -------------------------------------------------------------------

#[test]
fn parses_a_well_formed_header_in_any_layout() {
    let expected = parse_authorization(&format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={SIG}"
    ))
    .expect("parses");
    assert_eq!(expected.credential.access_key_id, "AKIDEXAMPLE");
    assert_eq!(expected.credential.date, "20150830");
    assert_eq!(expected.credential.region, "us-east-1");
    assert_eq!(expected.credential.service, "service");
    assert_eq!(expected.credential.scope(), "20150830/us-east-1/service/aws4_request");
    assert_eq!(expected.signed_headers, ["host", "x-amz-date"]);
    assert_eq!(expected.signature, SIG);

    // Components in another order, without spaces after commas, mixed-case header names and
    // signature hex: the same header.
    let other = parse_authorization(&format!(
        "AWS4-HMAC-SHA256 Signature={},SignedHeaders=Host;X-Amz-Date,Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
        SIG.to_ascii_uppercase()
    ))
    .expect("parses");
    assert_eq!(other, expected);
}

#[test]
fn missing_components_are_named() {
    let credential = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
    let signed = "SignedHeaders=host;x-amz-date";
    let signature = format!("Signature={SIG}");
    for (header, missing) in [
        (format!("AWS4-HMAC-SHA256 {signed}, {signature}"), "'Credential'"),
        (format!("AWS4-HMAC-SHA256 {credential}, {signed}"), "'Signature'"),
        (format!("AWS4-HMAC-SHA256 {credential}, {signature}"), "'SignedHeaders'"),
        ("AWS4-HMAC-SHA256".to_string(), "'Credential', 'Signature', 'SignedHeaders'"),
    ] {
        let message = incomplete(parse_authorization(&header));
        assert!(
            message.starts_with(&format!("Authorization header requires {missing} parameter")),
            "{header}: {message}"
        );
    }
}

#[test]
fn unsupported_algorithms_are_rejected() {
    let rest =
        format!("Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature={SIG}");
    for algorithm in ["AWS4-HMAC-SHA1", "AWS4-ECDSA-P256-SHA256", "aws4-hmac-sha256", "AWS", "Bearer"] {
        let message = incomplete(parse_authorization(&format!("{algorithm} {rest}")));
        assert_eq!(message, format!("Unsupported AWS 'algorithm': '{algorithm}'. Only AWS4-HMAC-SHA256 is supported."));
    }
    // An empty header names an empty algorithm.
    assert!(incomplete(parse_authorization("")).starts_with("Unsupported AWS 'algorithm': ''"));
}

#[test]
fn bad_credential_scopes_are_rejected() {
    for credential in [
        // Too few or too many parts.
        "AKIDEXAMPLE/20150830/us-east-1/service",
        "AKIDEXAMPLE/20150830/us-east-1/service/extra/aws4_request",
        "AKIDEXAMPLE",
        // Wrong terminator.
        "AKIDEXAMPLE/20150830/us-east-1/service/aws4_requests",
        "AKIDEXAMPLE/20150830/us-east-1/service/aws5_request",
        // Empty component.
        "/20150830/us-east-1/service/aws4_request",
        "AKIDEXAMPLE/20150830//service/aws4_request",
        "AKIDEXAMPLE/20150830/us-east-1//aws4_request",
        // Date not YYYYMMDD.
        "AKIDEXAMPLE/2015-08-30/us-east-1/service/aws4_request",
        "AKIDEXAMPLE/2015083/us-east-1/service/aws4_request",
        "AKIDEXAMPLE/20150830T123600Z/us-east-1/service/aws4_request",
    ] {
        let header = format!("AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature={SIG}");
        let message = incomplete(parse_authorization(&header));
        assert!(message.contains(&format!("Credential={credential}")), "{credential}: {message}");
    }
}

#[test]
fn malformed_components_are_rejected() {
    let credential = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
    for header in [
        // Signature not 64 hex digits.
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host, Signature={}", &SIG[1..]),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host, Signature={SIG}0"),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host, Signature={}g", &SIG[1..]),
        // No signed headers at all.
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=, Signature={SIG}"),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=;, Signature={SIG}"),
        // A component that is not key=value.
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host, Signature={SIG}, garbage"),
    ] {
        incomplete(parse_authorization(&header));
    }
}

// --- clock skew ----------------------------------------------------------------------------

#[test]
fn a_request_signed_20_minutes_ago_has_expired() {
    let signed_at = now() - Duration::minutes(20);
    let request = Request::new(signed_at, &[]);
    let message = expired(request.verify(&request.sign_default(), now()));
    assert!(message.starts_with("Signature expired:"), "{message}");
    assert_eq!(
        message,
        "Signature expired: 20150830T121600Z is now earlier than 20150830T122100Z (20150830T123600Z - 15 min.)"
    );
}

#[test]
fn a_request_signed_20_minutes_ahead_is_not_yet_current() {
    let signed_at = now() + Duration::minutes(20);
    let request = Request::new(signed_at, &[]);
    let message = expired(request.verify(&request.sign_default(), now()));
    assert!(message.starts_with("Signature not yet current:"), "{message}");
    assert_eq!(
        message,
        "Signature not yet current: 20150830T125600Z is still later than 20150830T125100Z (20150830T123600Z + 15 min.)"
    );
}

#[test]
fn a_skew_of_14_minutes_either_way_is_accepted() {
    for skew in [Duration::minutes(-14), Duration::minutes(14)] {
        let signed_at = now() + skew;
        let request = Request::new(signed_at, &[]);
        let verified = request.verify(&request.sign_default(), now()).unwrap_or_else(|e| panic!("{skew}: {e}"));
        assert_eq!(verified.signed_at, signed_at);
    }
}

#[test]
fn skew_is_checked_across_midnight() {
    // Signed at 23:55 on the 29th with a scope dated the 29th; the server's clock reads 00:05 on
    // the 30th. Ten minutes apart: accepted, although the days differ.
    let signed_at = parse_amz_date("20150829T235500Z").unwrap();
    let request = Request::new(signed_at, &[]);
    request.verify(&request.sign_default(), parse_amz_date("20150830T000500Z").unwrap()).expect("accepted");
}

// --- credential scope ----------------------------------------------------------------------

#[test]
fn service_mismatch_is_a_scope_error() {
    let request = Request::new(now(), &[]);
    let auth = request.sign(&["host", "x-amz-date"], "20150830", REGION, "iam");
    let message = scope_mismatch(request.verify(&auth, now()));
    assert_eq!(message, "Credential should be scoped to correct service: 'service'.");
    // The signature itself is good: without an expected service the request verifies.
    request.verify_expecting(&auth, now(), None, Some(REGION)).expect("valid for its own scope");
}

#[test]
fn region_mismatch_is_a_scope_error() {
    let request = Request::new(now(), &[]);
    let auth = request.sign(&["host", "x-amz-date"], "20150830", "eu-west-1", SERVICE);
    let message = scope_mismatch(request.verify(&auth, now()));
    assert_eq!(message, "Credential should be scoped to a valid region. Got 'eu-west-1', expected 'us-east-1'.");
    request.verify_expecting(&auth, now(), Some(SERVICE), None).expect("valid for its own scope");
}

#[test]
fn credential_date_must_match_x_amz_date() {
    let request = Request::new(now(), &[]);
    let auth = request.sign(&["host", "x-amz-date"], "20150829", REGION, SERVICE);
    let message = scope_mismatch(request.verify(&auth, now()));
    assert!(message.starts_with("Date in Credential scope does not match YYYYMMDD"), "{message}");
}

// --- what the signature claims to cover ----------------------------------------------------

#[test]
fn a_signed_header_missing_from_the_request_is_rejected() {
    let request = Request::new(now(), &[("X-Custom", "v")]);
    let auth = request.sign_default();
    assert_eq!(auth.signed_headers, ["host", "x-amz-date", "x-custom"]);
    request.verify(&auth, now()).expect("complete request verifies");

    let mut stripped = request.clone();
    stripped.headers.retain(|(k, _)| k != "X-Custom");
    let message = incomplete_verify(stripped.verify(&auth, now()));
    assert_eq!(message, "The request signature includes header 'x-custom', which is missing from the request.");
}

#[test]
fn host_must_be_signed() {
    let request = Request::new(now(), &[]);
    // A correct signature over x-amz-date alone: still refused, since the host is not bound.
    let auth = request.sign(&["x-amz-date"], "20150830", REGION, SERVICE);
    let message = incomplete_verify(request.verify(&auth, now()));
    assert_eq!(message, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
}

#[test]
fn x_amz_date_must_be_present_and_well_formed() {
    let request = Request::new(now(), &[]);
    let auth = request.sign_default();

    let mut without = request.clone();
    without.headers.retain(|(k, _)| k != "X-Amz-Date");
    let message = incomplete_verify(without.verify(&auth, now()));
    assert!(message.contains("'X-Amz-Date'"), "{message}");

    for bad in ["2015-08-30T12:36:00Z", "20150830T123600", "20150830", "Sun, 30 Aug 2015 12:36:00 GMT"] {
        let mut malformed = request.clone();
        malformed.headers[1].1 = bad.to_string();
        let message = incomplete_verify(malformed.verify(&auth, now()));
        assert!(message.starts_with("Date must be in ISO-8601 'basic format'"), "{bad}: {message}");
    }
}

#[test]
fn a_wrong_secret_is_a_mismatch_that_shows_the_expected_strings() {
    let request = Request::new(now(), &[]);
    let auth = request.sign_default();
    let expect =
        Expectations { now: now(), service: Some(SERVICE), region: Some(REGION), uri_encoding: UriEncoding::Double };
    let error = Verifier::new().verify(&auth, &request.canonical(), "not-the-secret", &expect).unwrap_err();
    let SigV4Error::SignatureMismatch { canonical_request, string_to_sign } = &error else {
        panic!("expected SignatureMismatch, got {error:?}");
    };
    // The strings of the suite's get-vanilla vector: what the client should have signed.
    assert_eq!(
        canonical_request,
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        string_to_sign,
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
    );
    let message = error.to_string();
    assert!(message.starts_with("The request signature we calculated does not match the signature you provided."));
    assert!(
        message.contains(&format!("The Canonical String for this request should have been\n'{canonical_request}'"))
    );
    assert!(message.contains(&format!("The String-to-Sign should have been\n'{string_to_sign}'")));
}

/// The verifier caches signing keys per (secret, scope): a key derived for the right secret must
/// never be served to a request checked against another secret, nor the reverse.
#[test]
fn cached_signing_keys_are_bound_to_their_secret() {
    let request = Request::new(now(), &[]);
    let auth = request.sign_default();
    let expect =
        Expectations { now: now(), service: Some(SERVICE), region: Some(REGION), uri_encoding: UriEncoding::Double };
    let verifier = Verifier::new();
    let canonical = request.canonical();
    verifier.verify(&auth, &canonical, SECRET, &expect).expect("right secret");
    assert!(matches!(
        verifier.verify(&auth, &canonical, "not-the-secret", &expect),
        Err(SigV4Error::SignatureMismatch { .. })
    ));
    verifier.verify(&auth, &canonical, SECRET, &expect).expect("right secret again");
}

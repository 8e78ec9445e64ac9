//! Differential tests: requests signed by the AWS SDK's own signer (`aws-sigv4`) must verify,
//! and any tampering with what the signature covers must not.
//!
//! Each case is built the way a client builds a request: it starts from decoded path segments
//! and query parameters, percent-encodes them once into the wire URI, signs that URI with
//! `aws-sigv4` (which takes the URI as already encoded) and sends the headers the signer returns.
//! The server side sees only the wire form.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use otatrail_sigv4::{
    CanonicalRequest, Expectations, SigV4Error, UriEncoding, VerifiedSignature, Verifier, format_amz_date,
    parse_amz_date, parse_authorization, sha256_hex,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use time::OffsetDateTime;

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const HOST: &str = "example.amazonaws.com";

/// What the AWS SDKs encode: everything but the RFC 3986 unreserved characters.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// What a less careful client may leave raw: sub-delimiters that are legal in a path segment
/// and a query component and carry no meaning there (`&`, `=`, `+` stay encoded). The server
/// must reach the same canonical form either way.
const LENIENT: &AsciiSet = &STRICT
    .remove(b':')
    .remove(b'@')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b',')
    .remove(b';');

/// A request as the client program sees it, before any encoding.
#[derive(Clone, Debug)]
struct ClientRequest {
    method: &'static str,
    /// Decoded path segments; `.`, `..` and empty ones included to exercise normalization.
    segments: Vec<String>,
    trailing_slash: bool,
    /// Decoded query parameters; `None` is a bare key (`?flag`).
    query: Vec<(String, Option<String>)>,
    /// Extra headers: mixed-case names (repeats allowed), values with stray spaces.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    service: &'static str,
    region: &'static str,
    unix_time: i64,
    session_token: Option<String>,
    /// Encode with [`LENIENT`] rather than [`STRICT`].
    lenient: bool,
    /// Whether the server's HTTP parser strips leading/trailing spaces of header values (most
    /// do) before the verifier sees them; the verifier must accept both.
    server_trims_ows: bool,
}

impl ClientRequest {
    fn encode<'a>(&self, s: &'a str) -> percent_encoding::PercentEncode<'a> {
        utf8_percent_encode(s, if self.lenient { LENIENT } else { STRICT })
    }

    /// The path as sent: each segment percent-encoded once (`a:b` → `a%3Ab`).
    fn wire_path(&self) -> String {
        let segments: Vec<String> = self.segments.iter().map(|s| self.encode(s).to_string()).collect();
        let slash = if self.trailing_slash { "/" } else { "" };
        format!("/{}{slash}", segments.join("/"))
    }

    /// The query as sent, in the client's order, `%20` for spaces.
    fn wire_query(&self) -> String {
        self.query
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{}={}", self.encode(k), self.encode(v)),
                None => self.encode(k).to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// A signed request as it arrives at the server.
#[derive(Clone, Debug)]
struct Wire {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    /// The payload hash the server computes from the body (or takes from
    /// `x-amz-content-sha256` where the service uses it).
    payload_hash: String,
    signed_at: OffsetDateTime,
    region: String,
    service: String,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn header_mut(&mut self, name: &str) -> &mut String {
        &mut self.headers.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(name)).expect("header present").1
    }

    /// Parses the `Authorization` header and verifies the request, as the API layer does.
    fn verify(
        &self,
        secret: &str,
        region: &str,
        encoding: UriEncoding,
        verifier: &Verifier,
    ) -> Result<VerifiedSignature, SigV4Error> {
        let auth = parse_authorization(self.header("authorization").expect("Authorization header"))?;
        let request = CanonicalRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            payload_hash: self.payload_hash.clone(),
            excluded_query_params: &[],
        };
        let expect = Expectations {
            now: self.signed_at,
            service: Some(&self.service),
            region: Some(region),
            uri_encoding: encoding,
        };
        verifier.verify(&auth, &request, secret, &expect)
    }

    fn signed_headers(&self) -> Vec<String> {
        parse_authorization(self.header("authorization").expect("Authorization header")).expect("parses").signed_headers
    }
}

/// Signs `req` with `aws-sigv4` and returns what the server receives.
fn sign_with_aws(req: &ClientRequest, settings: SigningSettings, body: SignableBody<'_>) -> Wire {
    let identity: Identity = Credentials::from_keys(ACCESS_KEY_ID, SECRET, req.session_token.clone()).into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(req.region)
        .name(req.service)
        .time(SystemTime::UNIX_EPOCH + Duration::from_secs(req.unix_time as u64))
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let (path, query) = (req.wire_path(), req.wire_query());
    let uri = if query.is_empty() { format!("https://{HOST}{path}") } else { format!("https://{HOST}{path}?{query}") };
    let signable =
        SignableRequest::new(req.method, uri, req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())), body)
            .expect("signable request");
    let (instructions, _signature) = sign(signable, &params).expect("aws-sigv4 signs").into_parts();
    assert!(instructions.params().is_empty(), "header signing adds no query parameters");

    // Host is not given to the signer: it takes it from the URI, as the HTTP client later
    // writes it into the Host header.
    let mut headers = vec![("Host".to_string(), HOST.to_string())];
    for (name, value) in &req.headers {
        let value = if req.server_trims_ows { value.trim_matches(' ') } else { value.as_str() };
        headers.push((name.clone(), value.to_string()));
    }
    headers.extend(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())));
    Wire {
        method: req.method.to_string(),
        path,
        query,
        headers,
        payload_hash: sha256_hex(&req.body),
        signed_at: OffsetDateTime::from_unix_timestamp(req.unix_time).expect("time"),
        region: req.region.to_string(),
        service: req.service.to_string(),
    }
}

/// Characters for path segments, query keys and values: mostly plain, often ones that must be
/// percent-encoded. The ones that trip servers most (`:`, space, `$`, `%` itself, non-ASCII)
/// get a weight of their own so that most cases hold some.
fn text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    let tricky = select(vec![':', ' ', '$', '%', 'é', 'ሴ', '😀']);
    let other = select(vec![
        '-', '.', '_', '~', '+', '@', '!', '\'', '(', ')', '*', ',', ';', '=', '&', '/', '?', '#', '[', ']', '"', '<',
        '>', '\\', '^', '`', '{', '|', '}', '\t',
    ]);
    prop::collection::vec(
        prop_oneof![
            5 => prop::char::range('a', 'z'),
            1 => prop::char::range('A', 'Z'),
            1 => prop::char::range('0', '9'),
            2 => tricky,
            2 => other,
        ],
        len,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![8 => text(1..8), 1 => Just(".".to_string()), 1 => Just("..".to_string()), 1 => Just(String::new())]
}

fn query_param() -> impl Strategy<Value = (String, Option<String>)> {
    // A few fixed keys, so that repeated keys (sorted by value) are common.
    let key = prop_oneof![
        2 => select(vec!["a", "A", "list-type", "Param", "Param-3", "ሴ"]).prop_map(str::to_string),
        3 => text(0..6),
    ];
    let value = prop_oneof![1 => Just(None), 1 => Just(Some(String::new())), 6 => text(1..8).prop_map(Some)];
    (key, value)
}

fn header() -> impl Strategy<Value = (String, String)> {
    let name = select(vec!["Content-Type", "X-Amz-Target", "X-Custom", "My-Header1", "Accept", "X-Amz-Meta-Thing"])
        .prop_flat_map(|n| {
            // Random case per letter: header names are case-insensitive.
            prop::collection::vec(any::<bool>(), n.len()).prop_map(move |upper| {
                n.chars()
                    .zip(upper)
                    .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                    .collect()
            })
        });
    // Visible ASCII words separated by runs of spaces, with optional leading and trailing spaces.
    let value =
        (" {0,2}", prop::collection::vec(("[!-~]{1,6}", " {1,3}"), 0..4), " {0,2}").prop_map(|(lead, words, trail)| {
            let mut v = lead;
            for (i, (word, gap)) in words.iter().enumerate() {
                if i > 0 {
                    v.push_str(gap);
                }
                v.push_str(word);
            }
            v.push_str(&trail);
            v
        });
    (name, value)
}

fn client_request(services: &'static [&'static str]) -> impl Strategy<Value = ClientRequest> {
    (
        (select(vec!["GET", "POST", "PUT", "DELETE"]), prop::collection::vec(segment(), 1..=4), any::<bool>()),
        prop::collection::vec(query_param(), 0..5),
        prop::collection::vec(header(), 0..5),
        prop::collection::vec(any::<u8>(), 0..64),
        (select(services), select(vec!["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1"])),
        // 2014 .. 2033
        1_400_000_000i64..2_000_000_000,
        prop::option::weighted(0.25, "[A-Za-z0-9+/]{16,40}={0,2}"),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (method, segments, trailing_slash),
                query,
                headers,
                body,
                (service, region),
                unix_time,
                session_token,
                (lenient, server_trims_ows),
            )| {
                ClientRequest {
                    method,
                    segments,
                    trailing_slash,
                    query,
                    headers,
                    body,
                    service,
                    region,
                    unix_time,
                    session_token,
                    lenient,
                    server_trims_ows,
                }
            },
        )
}

fn double_encoding_settings() -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Double;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
    settings
}

/// Asserts that `result` is a `SignatureMismatch`, naming the tampering on failure.
fn assert_mismatch(what: &str, result: Result<VerifiedSignature, SigV4Error>) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(result, Err(SigV4Error::SignatureMismatch { .. })),
        "{what}: expected SignatureMismatch, got {result:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every service but S3: double encoding, normalized paths.
    #[test]
    fn aws_sigv4_signed_requests_verify(
        req in client_request(&["iot", "cloudtrail", "sts", "iam"]),
        header_pick in any::<Index>(),
    ) {
        let wire = sign_with_aws(&req, double_encoding_settings(), SignableBody::Bytes(&req.body));
        let verifier = Verifier::new();
        let verify = |w: &Wire| w.verify(SECRET, &w.region, UriEncoding::Double, &verifier);

        let verified = verify(&wire).map_err(|e| TestCaseError::fail(format!("{e}\nwire: {wire:#?}")))?;
        prop_assert_eq!(verified.credential.access_key_id.as_str(), ACCESS_KEY_ID);
        prop_assert_eq!(verified.signed_at, wire.signed_at);
        prop_assert_eq!(verified.credential.service.as_str(), req.service);

        // A signed header's value.
        let signed = wire.signed_headers();
        let name = header_pick.get(&signed).clone();
        let mut tampered = wire.clone();
        if name == "x-amz-date" {
            // Keep it a valid date, one second later: the string to sign changes. (At 23:59:59 it
            // also leaves the credential's day, which is a scope error instead.)
            let later = parse_amz_date(tampered.header("x-amz-date").unwrap()).unwrap() + time::Duration::SECOND;
            *tampered.header_mut(&name) = format_amz_date(later);
            prop_assert!(verify(&tampered).is_err(), "x-amz-date changed but verified");
        } else {
            tampered.header_mut(&name).push('x');
            assert_mismatch(&format!("header {name}"), verify(&tampered))?;
        }

        // The path: `x` appended to the last segment always changes the normalized path.
        let mut tampered = wire.clone();
        tampered.path.push('x');
        assert_mismatch("path", verify(&tampered))?;

        // A query value (or, without a query, a new parameter).
        let mut tampered = wire.clone();
        if tampered.query.is_empty() {
            tampered.query = "tampered=1".into();
        } else if let Some(eq) = tampered.query.find('=') {
            tampered.query.insert(eq + 1, 'x');
        } else {
            tampered.query.push_str("=x");
        }
        assert_mismatch("query", verify(&tampered))?;

        // The body.
        let mut tampered = wire.clone();
        let mut body = req.body.clone();
        body.push(0);
        tampered.payload_hash = sha256_hex(&body);
        assert_mismatch("body", verify(&tampered))?;

        // The method.
        let mut tampered = wire.clone();
        tampered.method = if wire.method == "GET" { "HEAD".into() } else { "GET".into() };
        assert_mismatch("method", verify(&tampered))?;

        // The secret.
        let wrong_secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ";
        assert_mismatch("secret", wire.verify(wrong_secret, &wire.region, UriEncoding::Double, &verifier))?;

        // The region the server serves.
        let other_region = if wire.region == "us-west-2" { "eu-central-1" } else { "us-west-2" };
        let result = wire.verify(SECRET, other_region, UriEncoding::Double, &verifier);
        prop_assert!(matches!(result, Err(SigV4Error::ScopeMismatch(_))), "region: got {:?}", result);
    }

    /// S3: the path is signed as sent (single encoding, no normalization), and the payload hash
    /// is the signed `x-amz-content-sha256` header, possibly `UNSIGNED-PAYLOAD`.
    #[test]
    fn aws_sigv4_signed_s3_requests_verify(
        req in client_request(&["s3"]),
        unsigned_payload in any::<bool>(),
    ) {
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let body = if unsigned_payload { SignableBody::UnsignedPayload } else { SignableBody::Bytes(&req.body) };
        let mut wire = sign_with_aws(&req, settings, body);

        // As S3 does: the canonical request carries the header's value; a real hash must also
        // match the body (checked separately from the signature).
        let content_sha256 = wire.header("x-amz-content-sha256").expect("x-amz-content-sha256").to_string();
        if unsigned_payload {
            prop_assert_eq!(content_sha256.as_str(), "UNSIGNED-PAYLOAD");
        } else {
            prop_assert_eq!(&content_sha256, &sha256_hex(&req.body));
        }
        wire.payload_hash = content_sha256;
        prop_assert!(wire.signed_headers().iter().any(|h| h == "x-amz-content-sha256"));

        let verifier = Verifier::new();
        let verify = |w: &Wire| w.verify(SECRET, &w.region, UriEncoding::Single, &verifier);
        verify(&wire).map_err(|e| TestCaseError::fail(format!("{e}\nwire: {wire:#?}")))?;

        let mut tampered = wire.clone();
        tampered.path.push('x');
        assert_mismatch("path", verify(&tampered))?;

        let mut tampered = wire.clone();
        tampered.header_mut("x-amz-content-sha256").push('x');
        tampered.payload_hash.push('x');
        assert_mismatch("payload hash", verify(&tampered))?;
    }
}

/// A fixed request: `GET` with the given decoded path segments, nothing else.
fn plain_request(service: &'static str, segments: &[&str]) -> ClientRequest {
    ClientRequest {
        method: "GET",
        segments: segments.iter().map(|s| s.to_string()).collect(),
        trailing_slash: false,
        query: vec![],
        headers: vec![],
        body: vec![],
        service,
        region: "us-east-1",
        unix_time: 1_440_938_160, // 20150830T123600Z
        session_token: None,
        lenient: false,
        server_trims_ows: true,
    }
}

/// Regression (found by the property test above): a trailing `.` or `..` segment normalizes to
/// a trailing slash, per RFC 3986 §5.2.4 and as aws-sigv4 does. The verifier used to drop it
/// (`/a/b/.` → `/a/b`) and so rejected such requests.
#[test]
fn trailing_dot_segments_keep_their_slash() {
    let verifier = Verifier::new();
    for (segments, canonical_path) in [
        (&["a", "b", "."][..], "/a/b/"),
        (&["a", "b", ".."][..], "/a/"),
        (&["a", ".."][..], "/"),
        (&["a", "b", "..."][..], "/a/b/..."),
    ] {
        let wire = sign_with_aws(&plain_request("iot", segments), double_encoding_settings(), SignableBody::Bytes(&[]));
        // Verify with a wrong secret to read the canonical request the verifier built.
        match wire.verify("wrong", "us-east-1", UriEncoding::Double, &verifier) {
            Err(SigV4Error::SignatureMismatch { canonical_request, .. }) => {
                assert_eq!(canonical_request.lines().nth(1), Some(canonical_path), "{segments:?}");
            }
            other => panic!("{segments:?}: {other:?}"),
        }
        wire.verify(SECRET, "us-east-1", UriEncoding::Double, &verifier)
            .unwrap_or_else(|e| panic!("{segments:?}: {e}"));
    }
}

/// S3 keys keep dot segments and repeated slashes: a path that normalization would change must
/// verify with single encoding and fail with double encoding (which normalizes).
#[test]
fn s3_paths_are_not_normalized() {
    let req = plain_request("s3", &["bucket", "", ".", "a b", ".."]);
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let wire = sign_with_aws(&req, settings, SignableBody::Bytes(&[]));
    assert_eq!(wire.path, "/bucket//./a%20b/..");
    let verifier = Verifier::new();
    wire.verify(SECRET, "us-east-1", UriEncoding::Single, &verifier).expect("S3 form verifies");
    assert!(matches!(
        wire.verify(SECRET, "us-east-1", UriEncoding::Double, &verifier),
        Err(SigV4Error::SignatureMismatch { .. })
    ));
}

/// The double-encoding case that matters most in practice: a name with `:` (an ARN, an IoT
/// thing name) is sent as `%3A` and signed as `%253A`.
#[test]
fn colon_in_path_is_double_encoded() {
    let wire = sign_with_aws(
        &plain_request("iot", &["things", "arn:aws:iot:us-east-1:123456789012:thing/dev 1"]),
        double_encoding_settings(),
        SignableBody::Bytes(&[]),
    );
    assert_eq!(wire.path, "/things/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Athing%2Fdev%201");
    let verifier = Verifier::new();
    match wire.verify("wrong", "us-east-1", UriEncoding::Double, &verifier) {
        Err(SigV4Error::SignatureMismatch { canonical_request, .. }) => assert_eq!(
            canonical_request.lines().nth(1),
            Some("/things/arn%253Aaws%253Aiot%253Aus-east-1%253A123456789012%253Athing%252Fdev%25201")
        ),
        other => panic!("{other:?}"),
    }
    wire.verify(SECRET, "us-east-1", UriEncoding::Double, &verifier).expect("verifies");
}

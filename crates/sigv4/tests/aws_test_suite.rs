//! The AWS SigV4 test suite (header form), vendored under `tests/vectors/` (see its README for
//! provenance and licence), run against the server-side verifier.
//!
//! Each vector's `header-signed-request.txt` is the request as the server receives it. For
//! every vector the test checks that
//! (a) `Verifier::verify` accepts the vendored `Authorization` header,
//! (b) the canonical request and string to sign the verifier builds equal the vendored ones,
//! (c) flipping any one hex digit of the signature yields `SigV4Error::SignatureMismatch`.

use std::fs;
use std::path::{Path, PathBuf};

use otatrail_sigv4::{
    CanonicalRequest, Expectations, SigV4Error, UriEncoding, Verifier, parse_authorization, sha256_hex, string_to_sign,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

// One test per vector, named after it, so a failure names the vector.
//
// The URI encoding per vector: vectors with `"normalize": true` are signed the way every
// service but S3 signs (normalize the path, then encode it once more), i.e.
// `UriEncoding::Double`. Vectors with `"normalize": false` have paths that need no
// percent-encoding, so for them the signer's canonical path is the wire path as sent, which is
// `UriEncoding::Single`. The one exception is get-space-unnormalized: its wire path holds a raw
// space, which the canonical path must encode once (`%20`); its path has nothing to normalize,
// so that is the `Double` rule.
macro_rules! vectors {
    ($($test:ident => $name:literal, $encoding:ident;)*) => {
        const VECTORS: &[&str] = &[$($name),*];
        $(
            #[test]
            fn $test() {
                run_vector($name, UriEncoding::$encoding);
            }
        )*
    };
}

vectors! {
    get_header_key_duplicate => "get-header-key-duplicate", Double;
    get_header_value_multiline => "get-header-value-multiline", Double;
    get_header_value_order => "get-header-value-order", Double;
    get_header_value_trim => "get-header-value-trim", Double;
    get_relative_normalized => "get-relative-normalized", Double;
    get_relative_relative_normalized => "get-relative-relative-normalized", Double;
    get_relative_relative_unnormalized => "get-relative-relative-unnormalized", Single;
    get_relative_unnormalized => "get-relative-unnormalized", Single;
    get_slash_dot_slash_normalized => "get-slash-dot-slash-normalized", Double;
    get_slash_dot_slash_unnormalized => "get-slash-dot-slash-unnormalized", Single;
    get_slash_normalized => "get-slash-normalized", Double;
    get_slash_pointless_dot_normalized => "get-slash-pointless-dot-normalized", Double;
    get_slash_pointless_dot_unnormalized => "get-slash-pointless-dot-unnormalized", Single;
    get_slash_unnormalized => "get-slash-unnormalized", Single;
    get_slashes_normalized => "get-slashes-normalized", Double;
    get_slashes_unnormalized => "get-slashes-unnormalized", Single;
    get_space_normalized => "get-space-normalized", Double;
    get_space_unnormalized => "get-space-unnormalized", Double;
    get_unreserved => "get-unreserved", Double;
    get_utf8 => "get-utf8", Double;
    get_vanilla => "get-vanilla", Double;
    get_vanilla_empty_query_key => "get-vanilla-empty-query-key", Double;
    get_vanilla_query => "get-vanilla-query", Double;
    get_vanilla_query_order_encoded => "get-vanilla-query-order-encoded", Double;
    get_vanilla_query_order_key_case => "get-vanilla-query-order-key-case", Double;
    get_vanilla_query_unreserved => "get-vanilla-query-unreserved", Double;
    get_vanilla_utf8_query => "get-vanilla-utf8-query", Double;
    get_vanilla_with_session_token => "get-vanilla-with-session-token", Double;
    post_header_key_case => "post-header-key-case", Double;
    post_header_key_sort => "post-header-key-sort", Double;
    post_header_value_case => "post-header-value-case", Double;
    post_sts_header_after => "post-sts-header-after", Double;
    post_sts_header_before => "post-sts-header-before", Double;
    post_vanilla => "post-vanilla", Double;
    post_vanilla_empty_query_value => "post-vanilla-empty-query-value", Double;
    post_vanilla_query => "post-vanilla-query", Double;
    post_x_www_form_urlencoded => "post-x-www-form-urlencoded", Double;
    post_x_www_form_urlencoded_parameters => "post-x-www-form-urlencoded-parameters", Double;
}

/// Every vendored vector must be run by one of the tests above, so that none is kept but
/// silently ignored.
#[test]
fn every_vendored_vector_is_run() {
    let mut on_disk: Vec<String> = fs::read_dir(suite_dir())
        .expect("vector directory")
        .map(|e| e.expect("dir entry").file_name().into_string().expect("UTF-8 name"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = VECTORS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/aws-signing-test-suite/v4")
}

fn read(dir: &Path, file: &str) -> String {
    let path = dir.join(file);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `context.json`: the signer's inputs.
struct Context {
    access_key_id: String,
    secret_access_key: String,
    region: String,
    service: String,
    time: OffsetDateTime,
}

impl Context {
    fn parse(json: &str) -> Self {
        let field = |k: &str| json_string(json, k).unwrap_or_else(|| panic!("context.json lacks {k}")).to_string();
        Context {
            access_key_id: field("access_key_id"),
            secret_access_key: field("secret_access_key"),
            region: field("region"),
            service: field("service"),
            time: OffsetDateTime::parse(&field("timestamp"), &Rfc3339).expect("RFC 3339 timestamp"),
        }
    }
}

/// The string value of `"key": "value"` in a flat JSON text without escapes, which is all the
/// suite's `context.json` files hold; saves a JSON dependency.
fn json_string<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let after_key = &json[json.find(&format!("\"{key}\""))? + key.len() + 2..];
    let value = after_key.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    value.split('"').next()
}

/// A request as an HTTP/1.1 server hands it to the application.
struct WireRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl WireRequest {
    /// Parses the suite's request format: request line, `Name:value` header lines, an empty
    /// line, the body.
    fn parse(text: &str) -> Self {
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
        let request_line = lines.next().expect("request line");
        let (method, rest) = request_line.split_once(' ').expect("method");
        // The target may hold a raw space (get-space-unnormalized): cut the version at the last one.
        let target = rest.rsplit_once(" HTTP/").map_or(rest, |(t, _)| t);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // obs-fold (get-header-value-multiline). RFC 9112 §5.2: a recipient replaces it
                // with SP before interpreting the value. The continuation's own leading spaces are
                // kept, so the verifier's whitespace collapsing is exercised too.
                let (_, value) = headers.last_mut().expect("continuation line after a header");
                value.push(' ');
                value.push_str(line);
                continue;
            }
            let (name, value) = line.split_once(':').expect("header line");
            // Servers strip the optional whitespace around a field value (RFC 9110 §5.5).
            headers.push((name.to_string(), value.trim_matches([' ', '\t']).to_string()));
        }
        WireRequest {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn canonical_request(&self) -> CanonicalRequest<'_> {
        CanonicalRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            payload_hash: sha256_hex(&self.body),
            excluded_query_params: &[],
        }
    }
}

/// Changes the hex digit at `index` to another hex digit.
fn flip_hex_digit(signature: &str, index: usize) -> String {
    let mut chars: Vec<char> = signature.chars().collect();
    let digit = chars[index].to_digit(16).expect("hex digit");
    chars[index] = char::from_digit(digit ^ 0x8, 16).expect("hex digit");
    chars.into_iter().collect()
}

fn run_vector(name: &str, encoding: UriEncoding) {
    let dir = suite_dir().join(name);
    let ctx = Context::parse(&read(&dir, "context.json"));
    let expected_creq = read(&dir, "header-canonical-request.txt");
    let expected_sts = read(&dir, "header-string-to-sign.txt");
    let expected_signature = read(&dir, "header-signature.txt");
    let request = WireRequest::parse(&read(&dir, "header-signed-request.txt"));

    let authorization = request.header("authorization").expect("signed request has an Authorization header");
    let auth = parse_authorization(authorization).expect("vendored Authorization header parses");
    assert_eq!(auth.credential.access_key_id, ctx.access_key_id);
    assert_eq!(auth.credential.region, ctx.region);
    assert_eq!(auth.credential.service, ctx.service);
    assert_eq!(auth.signature, expected_signature.trim());

    // (b) The canonical request and string to sign, computed from the wire request alone.
    let creq = request.canonical_request();
    let canonical = creq.canonical_string(&auth.signed_headers, encoding);
    assert_eq!(canonical, expected_creq, "{name}: canonical request");
    let amz_date = request.header("x-amz-date").expect("X-Amz-Date");
    assert_eq!(string_to_sign(amz_date, &auth.credential.scope(), &canonical), expected_sts, "{name}: string to sign");

    // (a) The verifier accepts the vendored signature.
    let expect =
        Expectations { now: ctx.time, service: Some(&ctx.service), region: Some(&ctx.region), uri_encoding: encoding };
    let verifier = Verifier::new();
    let verified = verifier
        .verify(&auth, &creq, &ctx.secret_access_key, &expect)
        .unwrap_or_else(|e| panic!("{name}: verify failed: {e}"));
    assert_eq!(verified.credential, auth.credential);
    assert_eq!(verified.signed_at, ctx.time);
    assert_eq!(verified.signed_headers, auth.signed_headers);

    // (c) Any single wrong hex digit, written into the header text as a client would send it, is
    // a mismatch, and the error carries the canonical request and string to sign AWS would show.
    for index in 0..auth.signature.len() {
        let forged = flip_hex_digit(&auth.signature, index);
        let header = authorization.replace(&auth.signature, &forged);
        let forged_auth = parse_authorization(&header).expect("forged header still parses");
        match verifier.verify(&forged_auth, &creq, &ctx.secret_access_key, &expect) {
            Err(SigV4Error::SignatureMismatch { canonical_request, string_to_sign }) => {
                assert_eq!(canonical_request, expected_creq);
                assert_eq!(string_to_sign, expected_sts);
            }
            other => panic!("{name}: digit {index} flipped: expected SignatureMismatch, got {other:?}"),
        }
    }
}

/// The wire parser itself, on the two shapes that need care: obs-fold and a body.
#[test]
fn wire_parser_unfolds_headers_and_keeps_body() {
    let r = WireRequest::parse("POST /a?b=c HTTP/1.1\nHost: h \nX:v1\n  v2\n\nbody");
    assert_eq!((r.method.as_str(), r.path.as_str(), r.query.as_str()), ("POST", "/a", "b=c"));
    assert_eq!(r.headers, vec![("Host".into(), "h".into()), ("X".into(), "v1   v2".into())]);
    assert_eq!(r.body, b"body");
}

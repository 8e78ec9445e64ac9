//! The canonical request: the exact bytes both sides hash before signing.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Everything but the RFC 3986 unreserved characters.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// As [`STRICT`], but keeps `/` (path segments).
const PATH: &AsciiSet = &STRICT.remove(b'/');

/// How the path is turned into the canonical URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriEncoding {
    /// Every service but S3: the wire path is normalized (dot segments and repeated slashes
    /// removed) and percent-encoded once more, so `%3A` on the wire becomes `%253A`.
    Double,
    /// S3: the wire path is used as sent.
    Single,
}

/// The parts of an HTTP request that SigV4 covers.
#[derive(Clone, Debug)]
pub struct CanonicalRequest<'a> {
    pub method: &'a str,
    /// The path exactly as received (still percent-encoded).
    pub path: &'a str,
    /// The query string exactly as received, without `?`.
    pub query: &'a str,
    /// Header names (any case) and raw values; a name may repeat.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Lowercase hex SHA-256 of the payload, or the literal the client signed
    /// (`UNSIGNED-PAYLOAD`, `STREAMING-…`).
    pub payload_hash: String,
    /// Query parameters left out of the canonical query (`X-Amz-Signature` for presigned URLs).
    pub excluded_query_params: &'a [&'a str],
}

impl<'a> CanonicalRequest<'a> {
    /// The value of a header, repeated values joined by `,` as SigV4 prescribes.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case(name) {
                match &mut out {
                    Some(s) => {
                        s.push(',');
                        s.push_str(v);
                    }
                    None => out = Some((*v).to_string()),
                }
            }
        }
        out
    }

    /// The canonical request string for the given signed headers.
    pub fn canonical_string(&self, signed_headers: &[String], encoding: UriEncoding) -> String {
        let mut sorted: Vec<&String> = signed_headers.iter().collect();
        sorted.sort();
        sorted.dedup();
        // Written in place: a request is verified on every call, and the pieces built as
        // strings of their own and joined cost an allocation per header.
        let mut out = String::with_capacity(512);
        out.push_str(self.method);
        out.push('\n');
        out.push_str(&canonical_uri(self.path, encoding));
        out.push('\n');
        out.push_str(&canonical_query_string(self.query, self.excluded_query_params));
        out.push('\n');
        for name in &sorted {
            out.push_str(name);
            out.push(':');
            for (i, (_, v)) in self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_collapsed(&mut out, v);
            }
            out.push('\n');
        }
        out.push('\n');
        for (i, name) in sorted.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(name);
        }
        out.push('\n');
        out.push_str(&self.payload_hash);
        out
    }

    /// Whether the request has a header of this name (any case).
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    }
}

/// Appends `v` trimmed, with each run of inner whitespace as one space.
fn push_collapsed(out: &mut String, v: &str) {
    for (i, word) in v.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

/// Percent-encodes everything but the unreserved characters (and `/` when `keep_slash`).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    utf8_percent_encode(s, if keep_slash { PATH } else { STRICT }).to_string()
}

fn canonical_uri(path: &str, encoding: UriEncoding) -> String {
    match encoding {
        UriEncoding::Single => {
            if path.is_empty() {
                "/".to_string()
            } else {
                path.to_string()
            }
        }
        UriEncoding::Double => {
            let normalized = remove_dot_segments(path);
            if normalized.is_empty() { "/".to_string() } else { uri_encode(&normalized, true) }
        }
    }
}

/// RFC 3986 §5.2.4, and repeated slashes collapsed, as AWS SDKs normalize paths.
fn remove_dot_segments(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    // A trailing `.` or `..` segment leaves a trailing slash, as a trailing `/` does
    // (RFC 3986 §5.2.4 2B/2C: `/a/b/.` → `/a/b/`, `/a/b/c/..` → `/a/b/`).
    let ends_in_dir = matches!(path.rsplit('/').next(), Some("" | "." | ".."));
    let last = if ends_in_dir && !out.is_empty() { "/" } else { "" };
    format!("{first}{}{last}", out.join("/"))
}

/// The canonical query string: every parameter decoded, then strictly re-encoded, sorted by
/// name and value, joined by `&`.
pub fn canonical_query_string(query: &str, excluded: &[&str]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = percent_decode_str(k).decode_utf8_lossy().to_string();
            if excluded.iter().any(|e| *e == k) {
                return None;
            }
            let v = percent_decode_str(v).decode_utf8_lossy().to_string();
            Some((uri_encode(&k, false), uri_encode(&v, false)))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(remove_dot_segments("/a/./b/../c"), "/a/c");
        assert_eq!(remove_dot_segments("//a//b/"), "/a/b/");
        assert_eq!(remove_dot_segments("/.."), "/");
        assert_eq!(remove_dot_segments("/"), "/");
    }

    #[test]
    fn double_encoding_reencodes_percent() {
        assert_eq!(canonical_uri("/things/a%3Ab", UriEncoding::Double), "/things/a%253Ab");
        assert_eq!(canonical_uri("/things/a%3Ab", UriEncoding::Single), "/things/a%3Ab");
        assert_eq!(canonical_uri("", UriEncoding::Double), "/");
    }

    #[test]
    fn query_is_sorted_and_reencoded() {
        assert_eq!(canonical_query_string("b=2&a=1&a=0", &[]), "a=0&a=1&b=2");
        assert_eq!(canonical_query_string("k=a%20b&x", &[]), "k=a%20b&x=");
        assert_eq!(canonical_query_string("X-Amz-Signature=abc&a=1", &["X-Amz-Signature"]), "a=1");
        assert_eq!(canonical_query_string("p=a/b", &[]), "p=a%2Fb");
    }
}

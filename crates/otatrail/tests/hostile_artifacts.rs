//! What `validate-logs` and CreateOTAUpdate read comes from buckets and requests anyone may
//! have written: the parsers of keys, digests, gzip members, PEM, DER certificates and
//! signatures must answer every input without panicking.

use otatrail::domain::{codesign, integrity};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn key_parsers_never_panic(key in ".{0,200}") {
        let _ = integrity::parse_digest_key(&key);
        let _ = integrity::parse_log_key(&key);
    }

    #[test]
    fn shaped_keys_never_panic(acct in "[0-9]{10,13}", region in "[a-z0-9_-]{0,12}", trail in "[A-Za-z0-9_.-]{0,20}", stamp in "[0-9TZ]{0,18}") {
        let _ = integrity::parse_digest_key(&format!("AWSLogs/{acct}/CloudTrail-Digest/{region}/{acct}_CloudTrail-Digest_{region}_{trail}_{region}_{stamp}.json.gz"));
        let _ = integrity::parse_log_key(&format!("AWSLogs/{acct}/CloudTrail/{region}/{acct}_CloudTrail_{region}_{stamp}_{trail}.json.gz"));
    }

    #[test]
    fn bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = integrity::inflate_one_member(&bytes);
        let _ = integrity::parse_digest(&bytes);
        let _ = codesign::certificate_spki(&bytes);
        let _ = integrity::check_log_file(&bytes, "00");
    }

    #[test]
    fn der_like_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..300), len in any::<u8>(), tag in any::<u8>()) {
        // Start like a certificate so the walker goes deep.
        let mut der = vec![0x30, 0x82, 0x01, len, 0x30, len, tag];
        der.extend(tail);
        let _ = codesign::certificate_spki(&der);
    }

    #[test]
    fn text_never_panics(text in ".{0,400}") {
        let _ = codesign::pem_blocks(&text, "CERTIFICATE");
        let _ = codesign::decode_signature(&text);
        let scheme = codesign::SignatureScheme::parse("SHA256", "ECDSA").unwrap();
        let d = aws_lc_rs::digest::digest(scheme.digest_algorithm(), b"x");
        let _ = codesign::verify(scheme, &text, &d, &text);
        let _ = integrity::parse_digest(text.as_bytes());
    }

    #[test]
    fn pem_wrapped_garbage_never_panics(body in "[A-Za-z0-9+/=\n]{0,400}") {
        let pem = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
        let scheme = codesign::SignatureScheme::parse("SHA1", "RSA").unwrap();
        let d = aws_lc_rs::digest::digest(scheme.digest_algorithm(), b"x");
        let _ = codesign::verify(scheme, &pem, &d, "AAAA");
    }
}

//! Code signing of OTA images (`device.md` §4), without I/O: the job-document key a signature
//! goes under, reading certificates, and checking a signature against an image's digest, so a
//! bad signature fails the update on the server instead of on every device.
//!
//! Devices verify `sig-sha256-ecdsa` (P-256, SHA-256, ASN.1 DER signature) or `sig-sha1-rsa`
//! / `sig-sha256-rsa` (PKCS#1 v1.5) over the whole file with the certificate's public key.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine;

/// The hash and signature algorithms of a code signature, as CreateOTAUpdate names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureScheme {
    pub hash: HashAlg,
    pub key: KeyAlg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    Ecdsa,
    Rsa,
}

/// The largest decoded signature the OTA agent accepts.
pub const MAX_SIGNATURE_BYTES: usize = 384;

impl SignatureScheme {
    /// From `customCodeSigning.hashAlgorithm` / `signatureAlgorithm` (any case, as the docs
    /// write them: `SHA256`, `SHA1`, `ECDSA`, `RSA`).
    pub fn parse(hash: &str, signature: &str) -> Result<Self, String> {
        let hash = match hash.to_ascii_lowercase().replace('-', "").as_str() {
            "sha256" => HashAlg::Sha256,
            "sha1" => HashAlg::Sha1,
            other => return Err(format!("hashAlgorithm {other} is not supported; FreeRTOS devices use SHA256 or SHA1")),
        };
        let key = match signature.to_ascii_lowercase().as_str() {
            "ecdsa" => KeyAlg::Ecdsa,
            "rsa" => KeyAlg::Rsa,
            other => return Err(format!("signatureAlgorithm {other} is not supported; FreeRTOS devices use ECDSA or RSA")),
        };
        if key == KeyAlg::Ecdsa && hash == HashAlg::Sha1 {
            return Err("ECDSA signatures of OTA images use SHA256".into());
        }
        Ok(Self { hash, key })
    }

    /// The job document key: `sig-<hash>-<algorithm>`, e.g. `sig-sha256-ecdsa`.
    pub fn document_key(self) -> String {
        let hash = match self.hash {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha1 => "sha1",
        };
        let key = match self.key {
            KeyAlg::Ecdsa => "ecdsa",
            KeyAlg::Rsa => "rsa",
        };
        format!("sig-{hash}-{key}")
    }

    /// The digest to compute over the image.
    pub fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self.hash {
            HashAlg::Sha256 => &digest::SHA256,
            HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match (self.key, self.hash) {
            (KeyAlg::Ecdsa, _) => &signature::ECDSA_P256_SHA256_ASN1,
            (KeyAlg::Rsa, HashAlg::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (KeyAlg::Rsa, HashAlg::Sha1) => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
}

/// The DER bodies of the PEM blocks labelled `label` (e.g. `CERTIFICATE`), in order.
pub fn pem_blocks(pem: &str, label: &str) -> Vec<Vec<u8>> {
    let (begin, end) = (format!("-----BEGIN {label}-----"), format!("-----END {label}-----"));
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(i) = rest.find(&begin) {
        let after = &rest[i + begin.len()..];
        let Some(j) = after.find(&end) else { break };
        let b64: String = after[..j].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(der);
        }
        rest = &after[j + end.len()..];
    }
    out
}

/// One DER element: (tag, contents, the rest after it).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The `SubjectPublicKeyInfo` (DER, whole element) of an X.509 certificate (DER).
pub fn certificate_spki(cert: &[u8]) -> Option<Vec<u8>> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert_body, _) = der_element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der_element(cert_body)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] version (optional), serialNumber, signature, issuer, validity, subject, SPKI.
    if tbs.first() == Some(&0xa0) {
        tbs = der_element(tbs)?.2;
    }
    for _ in 0..5 {
        tbs = der_element(tbs)?.2;
    }
    let (tag, _, rest) = der_element(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    Some(tbs[..tbs.len() - rest.len()].to_vec())
}

/// The key bytes aws-lc-rs verifies with: the SPKI's BIT STRING contents (an EC point or a
/// PKCS#1 `RSAPublicKey`).
fn spki_key_bytes(spki: &[u8]) -> Option<Vec<u8>> {
    let (_, body, _) = der_element(spki)?;
    let (_, _, rest) = der_element(body)?; // the algorithm identifier
    let (tag, bits, _) = der_element(rest)?;
    (tag == 0x03 && bits.first() == Some(&0)).then(|| bits[1..].to_vec())
}

/// Why a code signature was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureProblem {
    NoCertificate,
    NotBase64,
    TooLong(usize),
    Mismatch,
}

impl SignatureProblem {
    pub fn message(&self, file: &str) -> String {
        match self {
            SignatureProblem::NoCertificate => format!("file {file}: the certificate chain holds no readable X.509 certificate"),
            SignatureProblem::NotBase64 => format!("file {file}: the signature is not base64"),
            SignatureProblem::TooLong(n) => format!("file {file}: the signature is {n} bytes; devices accept at most {MAX_SIGNATURE_BYTES}"),
            SignatureProblem::Mismatch => format!(
                "file {file}: the signature does not verify with the certificate's public key over the image; devices would reject it"
            ),
        }
    }
}

/// Decodes a base64 signature as devices do, refusing what they would refuse.
pub fn decode_signature(b64: &str) -> Result<Vec<u8>, SignatureProblem> {
    let sig = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| SignatureProblem::NotBase64)?;
    if sig.len() > MAX_SIGNATURE_BYTES {
        return Err(SignatureProblem::TooLong(sig.len()));
    }
    Ok(sig)
}

/// Checks `signature_b64` over the image whose digest (by `scheme.digest_algorithm()`) is
/// `image_digest`, with the first certificate of `certificate_pem`.
pub fn verify(scheme: SignatureScheme, certificate_pem: &str, image_digest: &digest::Digest, signature_b64: &str) -> Result<(), SignatureProblem> {
    let signature = decode_signature(signature_b64)?;
    let cert = pem_blocks(certificate_pem, "CERTIFICATE").into_iter().next().ok_or(SignatureProblem::NoCertificate)?;
    let spki = certificate_spki(&cert).ok_or(SignatureProblem::NoCertificate)?;
    let key = spki_key_bytes(&spki).ok_or(SignatureProblem::NoCertificate)?;
    UnparsedPublicKey::new(scheme.verification(), key).verify_digest(image_digest, &signature).map_err(|_| SignatureProblem::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    /// A self-signed P-256 certificate and its key, made with rcgen as an operator's tooling would.
    fn cert_and_key() -> (String, EcdsaKeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["code-signer".into()]).unwrap().self_signed(&key).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.der());
        (format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n"), pair)
    }

    #[test]
    fn keys_and_schemes() {
        assert_eq!(SignatureScheme::parse("SHA256", "ECDSA").unwrap().document_key(), "sig-sha256-ecdsa");
        assert_eq!(SignatureScheme::parse("sha1", "RSA").unwrap().document_key(), "sig-sha1-rsa");
        assert!(SignatureScheme::parse("MD5", "RSA").is_err());
        assert!(SignatureScheme::parse("SHA1", "ECDSA").is_err());
    }

    #[test]
    fn a_signature_verifies_over_the_image_digest_and_a_wrong_one_does_not() {
        let (pem, pair) = cert_and_key();
        let image = b"\x7fELF firmware image".repeat(1000);
        let scheme = SignatureScheme::parse("SHA256", "ECDSA").unwrap();
        let sig = pair.sign(&SystemRandom::new(), &image).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(sig.as_ref());
        let digest = digest::digest(scheme.digest_algorithm(), &image);
        assert_eq!(verify(scheme, &pem, &digest, &b64), Ok(()));
        let other = digest::digest(scheme.digest_algorithm(), b"another image");
        assert_eq!(verify(scheme, &pem, &other, &b64), Err(SignatureProblem::Mismatch));
        assert_eq!(verify(scheme, "no pem here", &digest, &b64), Err(SignatureProblem::NoCertificate));
        assert_eq!(verify(scheme, &pem, &digest, "!!"), Err(SignatureProblem::NotBase64));
        let long = base64::engine::general_purpose::STANDARD.encode([0u8; 400]);
        assert_eq!(verify(scheme, &pem, &digest, &long), Err(SignatureProblem::TooLong(400)));
        // The certificate's key is the key pair's.
        let spki = certificate_spki(&pem_blocks(&pem, "CERTIFICATE")[0]).unwrap();
        assert_eq!(spki_key_bytes(&spki).unwrap(), pair.public_key().as_ref());
    }

    #[test]
    fn signatures_made_with_openssl_verify() {
        const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/codesign/");
        let read = |f: &str| std::fs::read(format!("{DIR}{f}")).unwrap();
        let text = |f: &str| String::from_utf8(read(f)).unwrap();
        let image = read("image.bin");
        let ecdsa = SignatureScheme::parse("SHA256", "ECDSA").unwrap();
        let d = digest::digest(ecdsa.digest_algorithm(), &image);
        assert_eq!(verify(ecdsa, &text("cert.pem"), &d, &text("image.sig.b64")), Ok(()));
        let rsa = SignatureScheme::parse("SHA1", "RSA").unwrap();
        let d1 = digest::digest(rsa.digest_algorithm(), &image);
        assert_eq!(verify(rsa, &text("rsa-cert.pem"), &d1, &text("image.sha1-rsa.b64")), Ok(()));
        // The other certificate's key does not verify it.
        assert_eq!(verify(rsa, &text("cert.pem"), &d1, &text("image.sha1-rsa.b64")), Err(SignatureProblem::Mismatch));
    }
}

//! Digest signing keys: per region, RSA-2048, rotated on a schedule. Old public keys stay
//! listed for their whole validity, so digests they signed can still be checked.

use super::time::Millis;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKey {
    pub region: String,
    /// Lowercase hex MD5 of `public_der`.
    pub fingerprint: String,
    /// PKCS#1 `RSAPublicKey`, DER.
    pub public_der: Vec<u8>,
    /// PKCS#8 private key, sealed with the master key.
    pub sealed_private: Vec<u8>,
    pub valid_from: Millis,
    pub valid_to: Millis,
}

impl SigningKey {
    /// Whether the key is valid at some point of `[start, end]`.
    pub fn overlaps(&self, start: Millis, end: Millis) -> bool {
        self.valid_from <= end && self.valid_to >= start
    }

    /// Whether a new key should take over at `now`.
    pub fn due_for_rotation(&self, now: Millis, rotation_ms: i64) -> bool {
        now.0 - self.valid_from.0 >= rotation_ms
    }
}

/// The lowercase hex MD5 fingerprint of a DER public key, as CloudTrail shows it.
pub fn fingerprint(public_der: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(public_der))
}

/// Whether `signature` is a valid `SHA256withRSA` (RSASSA-PKCS1-v1_5, SHA-256) signature of
/// `message` by the PKCS#1 DER public key.
pub fn verify(public_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_der).verify(message, signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_and_rotation() {
        let k = SigningKey {
            region: "us-east-1".into(),
            fingerprint: "f".into(),
            public_der: vec![],
            sealed_private: vec![],
            valid_from: Millis(1000),
            valid_to: Millis(5000),
        };
        assert!(k.overlaps(Millis(0), Millis(1000)));
        assert!(k.overlaps(Millis(4000), Millis(9000)));
        assert!(!k.overlaps(Millis(5001), Millis(9000)));
        assert!(!k.due_for_rotation(Millis(1500), 1000));
        assert!(k.due_for_rotation(Millis(2000), 1000));
        assert_eq!(fingerprint(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn verifies_what_the_server_signs() {
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), b"to sign", &mut sig).unwrap();
        let der = pair.public_key().as_ref();
        assert!(verify(der, b"to sign", &sig));
        assert!(!verify(der, b"to sigN", &sig));
        assert!(!verify(b"not a key", b"to sign", &sig));
    }
}

//! Sealing secrets at rest: AES-256-GCM under the server's master key.
//!
//! Access key secrets must be readable by the server (SigV4 needs them to recompute
//! signatures), so they are encrypted rather than hashed. The master key lives in its own file
//! with mode 0600; the database alone reveals no secret.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

const NONCE_LEN: usize = 12;

pub struct MasterKey {
    cipher: Aes256Gcm,
}

#[derive(Debug, thiserror::Error)]
#[error("a sealed secret could not be opened (wrong master key or corrupt data)")]
pub struct UnsealError;

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(bytes.into()) }
    }

    pub fn generate_bytes() -> [u8; 32] {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        k
    }

    /// Encrypts `plaintext`, bound to `context` (for instance the access key ID), so a sealed
    /// value moved to another row does not open.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, UnsealError> {
        if sealed.len() < NONCE_LEN {
            return Err(UnsealError);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: context.as_bytes() }).map_err(|_| UnsealError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let k = MasterKey::from_bytes(&MasterKey::generate_bytes());
        let sealed = k.seal("AKIA1", b"secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open("AKIA1", &sealed).unwrap(), b"secret");
        assert!(k.open("AKIA2", &sealed).is_err());
        let other = MasterKey::from_bytes(&MasterKey::generate_bytes());
        assert!(other.open("AKIA1", &sealed).is_err());
    }
}

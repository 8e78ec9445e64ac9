//! Signing keys are derived with four HMACs; they change only with the date, so caching them
//! per (secret, date, region, service) saves that work on every request.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::{CredentialScope, derive_signing_key};

/// Upper bound on cached keys; the cache is simply cleared when it is reached.
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub struct SigningKeyCache {
    // Keyed by a hash of the secret, never by the secret itself, so a memory dump of the
    // map does not hand out secrets.
    inner: Mutex<HashMap<[u8; 32], [u8; 32]>>,
}

impl SigningKeyCache {
    pub fn get_or_derive(&self, secret: &str, scope: &CredentialScope) -> [u8; 32] {
        // One hash over the secret and the scope, each part followed by a byte no part can
        // hold: no string built per request to look the key up.
        let mut h = Sha256::new();
        for part in [secret, &scope.date, &scope.region, &scope.service] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let entry: [u8; 32] = h.finalize().into();
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = map.get(&entry) {
            return *k;
        }
        let key = derive_signing_key(secret, &scope.date, &scope.region, &scope.service);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(entry, key);
        key
    }
}

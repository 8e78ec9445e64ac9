//! Digest signing keys (per region, RSA-2048 from aws-lc-rs): created when first needed,
//! rotated on schedule, private halves sealed with the master key.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};

use crate::domain::ServiceError;
use crate::domain::signing::{SigningKey, fingerprint};
use crate::domain::time::Millis;
use crate::store::{self, StoreError};

use super::App;

fn context(region: &str, fp: &str) -> String {
    format!("signing-key:{region}:{fp}")
}

impl App {
    /// The region's keys, creating the first or the next one when due.
    pub async fn signing_keys(&self, region: &str) -> Result<Vec<SigningKey>, ServiceError> {
        let r = region.to_string();
        let keys = store::read::<_, StoreError, _>(&*self.store, move |tx| Box::pin(async move { tx.signing_keys(&r).await })).await?;
        let now = self.clock.now();
        let rotation_ms = self.signing_key_rotation_seconds * 1000;
        if keys.last().is_some_and(|k| !k.due_for_rotation(now, rotation_ms)) {
            return Ok(keys);
        }
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| ServiceError::internal())?;
        let public_der = pair.public_key().as_ref().to_vec();
        let pkcs8 = pair.as_der().map_err(|_| ServiceError::internal())?;
        let fp = fingerprint(&public_der);
        let key = SigningKey {
            region: region.to_string(),
            sealed_private: self.master.seal(&context(region, &fp), pkcs8.as_ref()),
            fingerprint: fp,
            public_der,
            valid_from: now,
            // A key stays listed for two rotation periods: digests signed just before the
            // next key took over remain checkable.
            valid_to: Millis(now.0 + 2 * rotation_ms),
        };
        let r = region.to_string();
        store::write::<_, StoreError, _>(&*self.store, move |tx| {
            Box::pin(async move {
                // Another request may have created the key meanwhile.
                let current = tx.signing_keys(&key.region).await?;
                if current.last().is_none_or(|k| k.due_for_rotation(key.valid_from, rotation_ms)) {
                    tx.insert_signing_key(&key).await?;
                }
                tx.signing_keys(&r).await
            })
        })
        .await
        .map_err(ServiceError::from)
    }

    /// Signs `message` (RSASSA-PKCS1-v1_5, SHA-256: `SHA256withRSA`) with the region's current
    /// key; returns the key's fingerprint and the signature.
    pub async fn sign_digest(&self, region: &str, message: &[u8]) -> Result<(String, Vec<u8>), ServiceError> {
        let keys = self.signing_keys(region).await?;
        let key = keys.last().ok_or_else(ServiceError::internal)?;
        let pkcs8 = self.master.open(&context(region, &key.fingerprint), &key.sealed_private).map_err(|_| ServiceError::internal())?;
        let pair = KeyPair::from_pkcs8(&pkcs8).map_err(|_| ServiceError::internal())?;
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), message, &mut sig).map_err(|_| ServiceError::internal())?;
        Ok((key.fingerprint.clone(), sig))
    }
}

//! Code signing on the server: signing profiles (an ECDSA P-256 key and its certificate,
//! declared in configuration as `[[signing_profiles]]`) that sign OTA images, and checking a
//! given signature against an image before devices are asked to install it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use base64::Engine;
use serde::Deserialize;

use crate::domain::ServiceError;
use crate::domain::buckets::ObjectMeta;
use crate::domain::codesign::{self, SignatureProblem, SignatureScheme};

use super::App;
use super::buckets::READ_WINDOW;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningProfileConfig {
    /// The name `startSigningJobParameter.signingProfileName` gives.
    pub name: String,
    /// PEM private key, ECDSA P-256 (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
    pub private_key_file: PathBuf,
    /// PEM certificate of that key, as devices hold it.
    pub certificate_file: PathBuf,
    /// Where devices keep the certificate (`certfile` in the job document).
    #[serde(default = "default_path_on_device")]
    pub certificate_path_on_device: String,
}

fn default_path_on_device() -> String {
    "Code Verify Key".into()
}

/// A loaded profile. The key never leaves this struct.
pub struct SigningProfile {
    pub name: String,
    pub certificate_pem: String,
    pub certificate_path_on_device: String,
    key: EcdsaKeyPair,
}

impl std::fmt::Debug for SigningProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningProfile").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The scheme profiles sign with.
pub const PROFILE_SCHEME: SignatureScheme = SignatureScheme { hash: codesign::HashAlg::Sha256, key: codesign::KeyAlg::Ecdsa };

impl SigningProfile {
    /// Reads the key and certificate, and checks that they belong together.
    pub fn load(c: &SigningProfileConfig) -> Result<Self, String> {
        let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("signing profile {}: {}: {e}", c.name, p.display()));
        let key_pem = read(&c.private_key_file)?;
        let certificate_pem = read(&c.certificate_file)?;
        let der = codesign::pem_blocks(&key_pem, "PRIVATE KEY")
            .into_iter()
            .chain(codesign::pem_blocks(&key_pem, "EC PRIVATE KEY"))
            .next()
            .ok_or_else(|| format!("signing profile {}: {} holds no PEM private key", c.name, c.private_key_file.display()))?;
        let key = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
            .map_err(|e| format!("signing profile {}: the key is not an ECDSA P-256 key: {e}", c.name))?;
        let profile = Self { name: c.name.clone(), certificate_pem, certificate_path_on_device: c.certificate_path_on_device.clone(), key };
        // A probe signature must verify with the certificate: a mismatched pair would make
        // every device reject every image.
        let probe = digest::digest(PROFILE_SCHEME.digest_algorithm(), b"otatrail signing profile check");
        let sig = profile.sign_digest(&probe).map_err(|e| format!("signing profile {}: {e}", c.name))?;
        codesign::verify(PROFILE_SCHEME, &profile.certificate_pem, &probe, &sig)
            .map_err(|_| format!("signing profile {}: the certificate in {} is not the key's", c.name, c.certificate_file.display()))?;
        Ok(profile)
    }

    /// A base64 ASN.1 DER ECDSA signature over the image with this digest.
    pub fn sign_digest(&self, d: &digest::Digest) -> Result<String, String> {
        let sig = self.key.sign_digest(d).map_err(|_| "signing failed".to_string())?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sig.as_ref()))
    }
}

/// The configured profiles, by name.
#[derive(Clone, Debug, Default)]
pub struct SigningProfiles(Arc<HashMap<String, SigningProfile>>);

impl SigningProfiles {
    pub fn load(configs: &[SigningProfileConfig]) -> Result<Self, String> {
        let mut map = HashMap::new();
        for c in configs {
            if map.insert(c.name.clone(), SigningProfile::load(c)?).is_some() {
                return Err(format!("signing profile {} is declared twice", c.name));
            }
        }
        Ok(Self(Arc::new(map)))
    }

    pub fn get(&self, name: &str) -> Option<&SigningProfile> {
        self.0.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort();
        names
    }
}

impl App {
    /// The digest of an object's bytes, read window by window.
    pub async fn image_digest(&self, meta: &ObjectMeta, alg: &'static digest::Algorithm) -> Result<digest::Digest, ServiceError> {
        let mut ctx = digest::Context::new(alg);
        let mut pos = 0;
        while pos < meta.size {
            let to = (pos + READ_WINDOW).min(meta.size);
            for chunk in self.s3_read(meta, pos, to).await? {
                ctx.update(&chunk);
            }
            pos = to;
        }
        Ok(ctx.finish())
    }

    /// Checks a given code signature over an image, so an update fails on the server rather
    /// than on every device.
    pub async fn verify_image_signature(
        &self,
        meta: &ObjectMeta,
        scheme: SignatureScheme,
        certificate_pem: &str,
        signature_b64: &str,
    ) -> Result<Result<(), SignatureProblem>, ServiceError> {
        let d = self.image_digest(meta, scheme.digest_algorithm()).await?;
        Ok(codesign::verify(scheme, certificate_pem, &d, signature_b64))
    }

    /// Signs an image with a configured profile; the base64 signature.
    pub async fn sign_image(&self, profile: &str, meta: &ObjectMeta) -> Result<String, ServiceError> {
        let p = self.signing_profiles.get(profile).ok_or_else(|| {
            let known = self.signing_profiles.names();
            ServiceError::new(
                crate::domain::error::codes::RESOURCE_NOT_FOUND,
                format!(
                    "Signing profile {profile} does not exist; profiles are declared in the server configuration ({})",
                    if known.is_empty() { "none is".to_string() } else { format!("known: {}", known.join(", ")) }
                ),
            )
        })?;
        let d = self.image_digest(meta, PROFILE_SCHEME.digest_algorithm()).await?;
        p.sign_digest(&d).map_err(|_| ServiceError::internal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(label: &str, der: &[u8]) -> String {
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", base64::engine::general_purpose::STANDARD.encode(der))
    }

    /// Writes a P-256 key and a certificate (of `cert_key`, or of the key itself).
    fn files(dir: &std::path::Path, name: &str, mismatched: bool) -> SigningProfileConfig {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let signer = if mismatched { &other } else { &key };
        let cert = rcgen::CertificateParams::new(vec!["signer".into()]).unwrap().self_signed(signer).unwrap();
        let (k, c) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.crt")));
        std::fs::write(&k, pem("PRIVATE KEY", &key.serialize_der())).unwrap();
        std::fs::write(&c, pem("CERTIFICATE", cert.der())).unwrap();
        SigningProfileConfig { name: name.into(), private_key_file: k, certificate_file: c, certificate_path_on_device: default_path_on_device() }
    }

    #[test]
    fn profiles_sign_what_their_certificate_verifies_and_mismatches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = files(dir.path(), "good", false);
        let profiles = SigningProfiles::load(std::slice::from_ref(&good)).unwrap();
        let p = profiles.get("good").unwrap();
        let d = digest::digest(PROFILE_SCHEME.digest_algorithm(), b"image bytes");
        let sig = p.sign_digest(&d).unwrap();
        assert_eq!(codesign::verify(PROFILE_SCHEME, &p.certificate_pem, &d, &sig), Ok(()));
        assert!(!format!("{p:?}").contains("PRIVATE"));

        let bad = files(dir.path(), "bad", true);
        let err = SigningProfiles::load(&[bad]).unwrap_err();
        assert!(err.contains("is not the key's"), "{err}");
        assert!(SigningProfiles::load(&[good.clone(), good]).unwrap_err().contains("twice"));
    }
}

//! Where `validate-logs` reads from: the trail's bucket, its signing keys and its status,
//! either straight from a data directory ([`LocalSource`]) or over the wire from a running
//! server or any S3-compatible store ([`super::remote::RemoteSource`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::app::App;
use crate::config::{ServeArgs, ServerConfig};
use crate::domain::time::Millis;
use crate::store::{self, StoreError};

/// A trail's ARN, read by field as the AWS tool does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailArn {
    pub arn: String,
    pub account: String,
    pub home_region: String,
    pub name: String,
}

impl TrailArn {
    /// `arn:<partition>:cloudtrail:<region>:<12 digits>:trail/<name>`
    pub fn parse(arn: &str) -> Option<Self> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [_, _, service, region, account, resource] = parts.as_slice() else { return None };
        let name = resource.strip_prefix("trail/")?;
        if *service != "cloudtrail" || region.is_empty() || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
            return None;
        }
        Some(Self { arn: arn.into(), account: account.to_string(), home_region: region.to_string(), name: name.to_string() })
    }
}

/// Where a trail delivers, and when it last delivered a digest.
#[derive(Clone, Debug, Default)]
pub struct TrailLocation {
    pub bucket: String,
    pub prefix: Option<String>,
    /// End time of the newest digest the trail delivered (GetTrailStatus).
    pub latest_digest: Option<Millis>,
    /// An organization trail's files sit under `AWSLogs/<o-id>/`.
    pub organization_id: Option<String>,
    pub is_organization_trail: bool,
}

/// An object's bytes and the metadata validation needs.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub signature: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

#[async_trait]
pub trait LogSource: Send + Sync {
    async fn trail(&self, arn: &TrailArn) -> Result<TrailLocation, SourceError>;
    /// Fingerprint → PKCS#1 DER of every key of `region` valid at some point of the range.
    async fn public_keys(&self, region: &str, start: Millis, end: Millis) -> Result<HashMap<String, Vec<u8>>, SourceError>;
    /// Every key under `prefix` after `after`, in byte order.
    async fn list(&self, bucket: &str, prefix: &str, after: Option<&str>) -> Result<Vec<String>, SourceError>;
    /// `None` when there is no such object.
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Fetched>, SourceError>;
}

fn store_err(e: impl std::fmt::Display) -> SourceError {
    SourceError(format!("reading the data directory: {e}"))
}

/// The server's own data directory, read as the server reads it (the server may be running).
pub struct LocalSource {
    app: Arc<App>,
}

impl LocalSource {
    pub async fn open(args: &ServeArgs) -> Result<Self, SourceError> {
        let config = ServerConfig::load(args).map_err(|e| SourceError(e.to_string()))?;
        if !config.data_dir.join("otatrail.db").exists() {
            return Err(SourceError(format!("no otatrail database in {} (give --data-dir)", config.data_dir.display())));
        }
        let app = App::open(&config).await.map_err(store_err)?;
        Ok(Self { app })
    }
}

#[async_trait]
impl LogSource for LocalSource {
    async fn trail(&self, arn: &TrailArn) -> Result<TrailLocation, SourceError> {
        let a = arn.clone();
        let trail = store::read::<_, StoreError, _>(&*self.app.store, move |tx| {
            Box::pin(async move { tx.get_trail(&a.account, &a.home_region, &a.name).await })
        })
        .await
        .map_err(store_err)?
        .ok_or_else(|| SourceError(format!("A trail could not be found for {}", arn.arn)))?;
        Ok(TrailLocation {
            bucket: trail.s3_bucket,
            prefix: trail.s3_key_prefix,
            latest_digest: trail.latest_digest_time,
            is_organization_trail: trail.organization_id.is_some(),
            organization_id: trail.organization_id,
        })
    }

    async fn public_keys(&self, region: &str, start: Millis, end: Millis) -> Result<HashMap<String, Vec<u8>>, SourceError> {
        let r = region.to_string();
        let keys = store::read::<_, StoreError, _>(&*self.app.store, move |tx| Box::pin(async move { tx.signing_keys(&r).await }))
            .await
            .map_err(store_err)?;
        Ok(keys.into_iter().filter(|k| k.overlaps(start, end)).map(|k| (k.fingerprint, k.public_der)).collect())
    }

    async fn list(&self, bucket: &str, prefix: &str, after: Option<&str>) -> Result<Vec<String>, SourceError> {
        if self.app.external_buckets.contains(bucket) {
            let keys = self.app.external_buckets.list(bucket, prefix).await.map_err(store_err)?;
            return Ok(keys.into_iter().filter(|k| after.is_none_or(|a| k.as_str() > a)).collect());
        }
        let mut out = Vec::new();
        let mut cursor = after.map(str::to_string);
        loop {
            let (b, p, c) = (bucket.to_string(), prefix.to_string(), cursor.clone());
            let batch = store::read::<_, StoreError, _>(&*self.app.store, move |tx| {
                Box::pin(async move { tx.list_objects(&b, &p, c.as_deref(), 1000).await })
            })
            .await
            .map_err(store_err)?;
            let done = batch.len() < 1000;
            cursor = batch.last().map(|o| o.key.clone());
            out.extend(batch.into_iter().map(|o| o.key));
            if done {
                return Ok(out);
            }
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Fetched>, SourceError> {
        if self.app.external_buckets.contains(bucket) {
            let got = self.app.external_buckets.get(bucket, key).await.map_err(store_err)?;
            return Ok(got.map(|(bytes, metadata)| Fetched { bytes, signature: metadata.get("signature").cloned() }));
        }
        let (b, k) = (bucket.to_string(), key.to_string());
        let Some(meta) =
            store::read::<_, StoreError, _>(&*self.app.store, move |tx| Box::pin(async move { tx.get_object(&b, &k).await }))
                .await
                .map_err(store_err)?
        else {
            return Ok(None);
        };
        let chunks = self.app.s3_read(&meta, 0, meta.size).await.map_err(|e| store_err(e.message))?;
        Ok(Some(Fetched { bytes: chunks.concat(), signature: meta.metadata.get("signature").cloned() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trail_arns() {
        let a = TrailArn::parse("arn:aws:cloudtrail:eu-west-1:123456789012:trail/my-trail").unwrap();
        assert_eq!((a.account.as_str(), a.home_region.as_str(), a.name.as_str()), ("123456789012", "eu-west-1", "my-trail"));
        assert!(TrailArn::parse("arn:aws:s3:eu-west-1:123456789012:trail/x").is_none());
        assert!(TrailArn::parse("arn:aws:cloudtrail:eu-west-1:1234:trail/x").is_none());
        assert!(TrailArn::parse("my-trail").is_none());
    }
}

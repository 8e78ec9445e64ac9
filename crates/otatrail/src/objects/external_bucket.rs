//! Buckets of another S3-compatible store that trails deliver into directly (configured as
//! `[[external_buckets]]`): one bucket can then collect the log files of several otatrail
//! servers. Writes are create-only (`If-None-Match: *`), and every key is unique to its
//! writer (account, region, trail and a random part), so servers never overwrite or hide each
//! other's files.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use futures::TryStreamExt;
use object_store::{Attribute, ClientOptions, RetryConfig, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Deserialize;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalBucketConfig {
    /// The bucket's name, as trails give it in `S3BucketName`.
    pub name: String,
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for ExternalBucketConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line.
        f.debug_struct("ExternalBucketConfig").field("name", &self.name).field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

#[derive(Debug, thiserror::Error)]
pub enum ExternalPutError {
    #[error("the object already exists")]
    Exists,
    #[error("{0}")]
    Other(String),
}

/// S3 error codes a delivery into another store can meet, reported as they are.
const DELIVERY_ERROR_CODES: &[&str] = &[
    "NoSuchBucket",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthorizationHeaderMalformed",
    "RequestTimeTooSkewed",
    "InvalidBucketName",
    "PermanentRedirect",
    "EntityTooLarge",
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
];

impl ExternalPutError {
    /// The S3 error code of a failed put, for GetTrailStatus's `LatestDeliveryError` (which
    /// CloudTrail fills with the S3 error it met: `NoSuchBucket`, `AccessDenied`, …): the
    /// store's own `<Code>` when it answered with one we know, else `ServiceUnavailable` (the
    /// store could not be reached, timed out, or answered something else).
    pub fn s3_code(&self) -> &'static str {
        let ExternalPutError::Other(text) = self else { return "PreconditionFailed" };
        // object_store's message ends with the response body, S3's `<Error><Code>…</Code>…`.
        text.split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .and_then(|(code, _)| DELIVERY_ERROR_CODES.iter().find(|c| **c == code.trim()))
            .copied()
            .unwrap_or("ServiceUnavailable")
    }
}

/// How long a connection to the store may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in all (a log file is at most a few MiB).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A few quick retries, given up within seconds. Every delivery pass (each second) tries a
/// failed file again anyway, and GetTrailStatus should show an unreachable store as soon as
/// CloudTrail's would; object_store's default keeps one put retrying for up to three minutes,
/// which hid a 24-s outage from the trail's status and held up the pass.
fn delivery_retries() -> RetryConfig {
    let mut retry = RetryConfig::default();
    retry.max_retries = 3;
    retry.retry_timeout = Duration::from_secs(10);
    retry.backoff.init_backoff = Duration::from_millis(100);
    retry.backoff.max_backoff = Duration::from_secs(2);
    retry
}

/// The configured external buckets, by name.
#[derive(Clone, Default)]
pub struct ExternalBuckets {
    stores: HashMap<String, Arc<dyn ObjectStore>>,
}

impl ExternalBuckets {
    pub fn open(configs: &[ExternalBucketConfig]) -> Result<Self, String> {
        let mut stores: HashMap<String, Arc<dyn ObjectStore>> = HashMap::new();
        for c in configs {
            let store = AmazonS3Builder::new()
                .with_endpoint(&c.endpoint)
                .with_bucket_name(&c.name)
                .with_region(&c.region)
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key)
                // Before `with_allow_http`, which is itself a client option.
                .with_client_options(ClientOptions::new().with_connect_timeout(CONNECT_TIMEOUT).with_timeout(REQUEST_TIMEOUT))
                .with_allow_http(true)
                .with_retry(delivery_retries())
                .build()
                .map_err(|e| format!("external bucket {} at {}: {e}", c.name, c.endpoint))?;
            stores.insert(c.name.clone(), Arc::new(store));
        }
        Ok(Self { stores })
    }

    pub fn contains(&self, bucket: &str) -> bool {
        self.stores.contains_key(bucket)
    }

    /// Writes `key` only if it does not exist yet.
    pub async fn put_new(&self, bucket: &str, key: &str, body: Vec<u8>, metadata: &BTreeMap<String, String>) -> Result<(), ExternalPutError> {
        let store = self.stores.get(bucket).ok_or_else(|| ExternalPutError::Other(format!("{bucket} is not an external bucket")))?;
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, "application/json".into());
        for (k, v) in metadata {
            attributes.insert(Attribute::Metadata(k.clone().into()), v.clone().into());
        }
        let opts = PutOptions { mode: PutMode::Create, attributes, ..Default::default() };
        match store.put_opts(&ObjectPath::from(key), PutPayload::from(body), opts).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Err(ExternalPutError::Exists),
            Err(e) => Err(ExternalPutError::Other(e.to_string())),
        }
    }

    fn store(&self, bucket: &str) -> Result<&Arc<dyn ObjectStore>, String> {
        self.stores.get(bucket).ok_or_else(|| format!("{bucket} is not an external bucket"))
    }

    /// An object's bytes and user metadata; `None` when there is no such object.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, BTreeMap<String, String>)>, String> {
        match self.store(bucket)?.get(&ObjectPath::from(key)).await {
            Ok(r) => {
                let metadata = r
                    .attributes
                    .iter()
                    .filter_map(|(k, v)| match k {
                        Attribute::Metadata(name) => Some((name.to_string(), v.to_string())),
                        _ => None,
                    })
                    .collect();
                let bytes = r.bytes().await.map_err(|e| e.to_string())?;
                Ok(Some((bytes.to_vec(), metadata)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Every key under `prefix` (a folder), in byte order.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, String> {
        let objects: Vec<_> =
            self.store(bucket)?.list(Some(&ObjectPath::from(prefix.trim_end_matches('/')))).try_collect().await.map_err(|e| e.to_string())?;
        let mut keys: Vec<String> = objects.into_iter().map(|o| o.location.to_string()).collect();
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worst case of the retries: every backoff at its cap. object_store's default (10
    /// retries, backoffs up to 15 s, three minutes in all) hid a 24-s outage from GetTrailStatus.
    #[test]
    fn a_failing_put_is_given_up_within_seconds() {
        let r = delivery_retries();
        let worst_waits = r.backoff.max_backoff * r.max_retries as u32;
        assert!(worst_waits <= Duration::from_secs(6), "{worst_waits:?}");
        assert!(r.retry_timeout <= Duration::from_secs(10));
        assert!(CONNECT_TIMEOUT <= Duration::from_secs(5));
    }

    #[test]
    fn delivery_errors_carry_the_stores_s3_code() {
        let missing = ExternalPutError::Other(
            "Object at location AWSLogs/x.json.gz not found: Error performing PUT http://127.0.0.1:9/b/AWSLogs/x.json.gz in 3ms - \
             Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>"
                .into(),
        );
        assert_eq!(missing.s3_code(), "NoSuchBucket");
        let denied = ExternalPutError::Other("… 403 Forbidden: <Error><Code>AccessDenied</Code></Error>".into());
        assert_eq!(denied.s3_code(), "AccessDenied");
        // Unreachable, or a code we do not pass on: ServiceUnavailable.
        let refused = ExternalPutError::Other(
            "Generic S3 error: Error performing PUT http://127.0.0.1:9/b/k in 5s, after 10 retries, max_retries: 10, \
             retry_timeout: 180s  - HTTP error: error sending request"
                .into(),
        );
        assert_eq!(refused.s3_code(), "ServiceUnavailable");
        assert_eq!(ExternalPutError::Other("<Code><script></Code>".into()).s3_code(), "ServiceUnavailable");
    }
}

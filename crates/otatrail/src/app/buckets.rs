//! The bucket store's operations (S3): buckets owned by accounts, objects whose bytes are
//! encrypted blobs and whose metadata is state. A write stores its blob first and then
//! commits the metadata; blobs an operation replaced are removed after the commit, so a crash
//! leaves at worst an unreferenced blob, never a dangling object.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};

use crate::domain::buckets::{BlobRef, Bucket, ObjectMeta, Part, Upload, is_valid_bucket_name};
use crate::domain::{Principal, ServiceError};
use crate::objects::blob::{BlobError, Written};
use crate::store::{self, StateTx, StoreError};

use std::sync::Arc;

use super::App;
use super::audit::Call;

pub mod codes {
    pub const NO_SUCH_BUCKET: &str = "NoSuchBucket";
    pub const NO_SUCH_KEY: &str = "NoSuchKey";
    pub const NO_SUCH_UPLOAD: &str = "NoSuchUpload";
    pub const ACCESS_DENIED: &str = "AccessDenied";
    pub const BUCKET_NOT_EMPTY: &str = "BucketNotEmpty";
    pub const ALREADY_OWNED: &str = "BucketAlreadyOwnedByYou";
    pub const ALREADY_EXISTS: &str = "BucketAlreadyExists";
    pub const INVALID_BUCKET_NAME: &str = "InvalidBucketName";
    pub const INVALID_PART: &str = "InvalidPart";
    pub const INVALID_PART_ORDER: &str = "InvalidPartOrder";
    pub const ENTITY_TOO_SMALL: &str = "EntityTooSmall";
    pub const ENTITY_TOO_LARGE: &str = "EntityTooLarge";
    pub const INVALID_ARGUMENT: &str = "InvalidArgument";
    pub const KEY_TOO_LONG: &str = "KeyTooLongError";
}

const BUCKET: &str = "AWS::S3::Bucket";

/// Which bucket subresource a configuration call changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketConfig {
    Policy,
    Lifecycle,
}

/// How much of an object a reader decrypts at a time.
pub const READ_WINDOW: u64 = 1024 * 1024;

/// Largest single PUT, as S3.
pub const MAX_PUT: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest part but the last, as S3.
pub const MIN_PART: u64 = 5 * 1024 * 1024;

fn blob_err(e: BlobError) -> ServiceError {
    tracing::error!(error = %e, "blob store failure");
    ServiceError::new("InternalError", "We encountered an internal error. Please try again.")
}

fn no_such_bucket(name: &str) -> ServiceError {
    ServiceError::new(codes::NO_SUCH_BUCKET, format!("The specified bucket does not exist: {name}"))
}

fn no_such_key(key: &str) -> ServiceError {
    ServiceError::new(codes::NO_SUCH_KEY, format!("The specified key does not exist: {key}"))
}

/// The bucket, if `who` may perform `action` on it (or on `key` in it): its own account's
/// buckets always, another account's when the bucket policy allows it.
async fn owned_bucket(
    tx: &mut dyn StateTx,
    name: &str,
    who: &Principal,
    action: &str,
    key: Option<&str>,
) -> Result<Bucket, ServiceError> {
    let b = tx.get_bucket(name).await?.ok_or_else(|| no_such_bucket(name))?;
    if b.account_id == who.account_id || policy_allows(&b, who, action, key) {
        return Ok(b);
    }
    Err(ServiceError::new(codes::ACCESS_DENIED, "Access Denied"))
}

/// Whether the bucket policy grants `who` the action on the bucket or object ARN.
pub fn policy_allows(bucket: &Bucket, who: &Principal, action: &str, key: Option<&str>) -> bool {
    let Some(doc) = bucket.policy.as_deref() else { return false };
    let Ok(policy) = crate::domain::policy::parse(doc, false) else { return false };
    let mut arns = vec![who.arn.clone()];
    if let Some(issuer) = who.session.as_ref().and_then(|s| s.session_issuer.as_ref()) {
        arns.push(issuer.arn.clone());
    }
    let resource = match key {
        Some(k) => format!("arn:aws:s3:::{}/{k}", bucket.name),
        None => format!("arn:aws:s3:::{}", bucket.name),
    };
    let context = std::collections::HashMap::from([
        ("aws:principalaccount".to_string(), who.account_id.clone()),
        ("aws:principalarn".to_string(), who.arn.clone()),
    ]);
    let caller = crate::domain::policy::Caller::Aws { account_id: &who.account_id, arns };
    policy.allows(&caller, action, Some(&resource), &context)
}

pub(crate) fn check_key(key: &str) -> Result<(), ServiceError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(ServiceError::new(codes::KEY_TOO_LONG, "Your key is too long or empty (1 to 1024 bytes)."));
    }
    Ok(())
}

/// UploadPart's part number: 1 to 10,000, as S3.
pub(crate) fn check_part_number(part_number: i64) -> Result<(), ServiceError> {
    if !(1..=10_000).contains(&part_number) {
        return Err(ServiceError::new(codes::INVALID_ARGUMENT, "Part number must be an integer between 1 and 10000, inclusive"));
    }
    Ok(())
}

/// CompleteMultipartUpload's `(part number, etag)` list: not empty, part numbers ascending.
pub(crate) fn check_part_list(chosen: &[(i64, String)]) -> Result<(), ServiceError> {
    if chosen.is_empty() {
        return Err(ServiceError::new("MalformedXML", "You must specify at least one part."));
    }
    if chosen.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(ServiceError::new(codes::INVALID_PART_ORDER, "The list of parts was not in ascending order."));
    }
    Ok(())
}

/// What a listing returns: objects and, with a delimiter, the common prefixes rolled up.
pub struct Listing {
    pub objects: Vec<ObjectMeta>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or prefix returned, where a next page starts after.
    pub last: Option<String>,
}

/// New object properties given by the caller.
#[derive(Clone, Debug, Default)]
pub struct ObjectProps {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub storage_class: Option<String>,
}

impl App {
    pub async fn s3_create_bucket(&self, call: &Arc<Call>, name: &str, region: &str) -> Result<Bucket, ServiceError> {
        let p = &call.principal;
        if !is_valid_bucket_name(name) {
            return Err(ServiceError::new(codes::INVALID_BUCKET_NAME, "The specified bucket is not valid."));
        }
        let bucket = Bucket {
            name: name.to_string(),
            account_id: p.account_id.clone(),
            region: region.to_string(),
            created_at: self.clock.now(),
            policy: None,
            lifecycle: None,
        };
        let call = call.clone();
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                if let Some(existing) = tx.get_bucket(&bucket.name).await? {
                    return Err(if existing.account_id == bucket.account_id {
                        ServiceError::new(codes::ALREADY_OWNED, "Your previous request to create the named bucket succeeded and you already own it.")
                    } else {
                        ServiceError::new(codes::ALREADY_EXISTS, "The requested bucket name is not available. Please select a different name and try again.")
                    });
                }
                tx.insert_bucket(&bucket).await?;
                call.record_success(tx, None, vec![call.resource(format!("arn:aws:s3:::{}", bucket.name), BUCKET)]).await?;
                Ok(bucket)
            })
        })
        .await
    }

    /// The bucket, if `p` may perform `action` on it.
    pub async fn s3_bucket(&self, p: &Principal, name: &str, action: &'static str) -> Result<Bucket, ServiceError> {
        let (name, who) = (name.to_string(), p.clone());
        store::read(&*self.store, move |tx| Box::pin(async move { owned_bucket(tx, &name, &who, action, None).await })).await
    }

    pub async fn s3_list_buckets(&self, p: &Principal) -> Result<Vec<Bucket>, ServiceError> {
        let acct = p.account_id.clone();
        store::read::<_, ServiceError, _>(&*self.store, move |tx| Box::pin(async move { Ok(tx.list_buckets(&acct).await?) })).await
    }

    pub async fn s3_delete_bucket(&self, call: &Arc<Call>, name: &str) -> Result<(), ServiceError> {
        let (name, who, call) = (name.to_string(), call.principal.clone(), call.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                owned_bucket(tx, &name, &who, "s3:DeleteBucket", None).await?;
                if !tx.list_objects(&name, "", None, 1).await?.is_empty() {
                    return Err(ServiceError::new(codes::BUCKET_NOT_EMPTY, "The bucket you tried to delete is not empty."));
                }
                tx.delete_bucket(&name).await?;
                call.record_success(tx, None, vec![call.resource(format!("arn:aws:s3:::{name}"), BUCKET)]).await?;
                Ok(())
            })
        })
        .await
    }

    /// Sets (`Some`) or removes (`None`) a bucket's policy or lifecycle configuration. Only the
    /// owner may; a policy must parse (`MalformedPolicy` otherwise).
    pub async fn s3_set_bucket_config(&self, call: &Arc<Call>, name: &str, which: BucketConfig, value: Option<String>) -> Result<(), ServiceError> {
        if which == BucketConfig::Policy
            && let Some(doc) = &value
        {
            crate::domain::policy::parse(doc, false).map_err(|e| ServiceError::new("MalformedPolicy", e.message))?;
        }
        let (name, call) = (name.to_string(), call.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let b = tx.get_bucket(&name).await?.ok_or_else(|| no_such_bucket(&name))?;
                if b.account_id != call.principal.account_id {
                    return Err(ServiceError::new(codes::ACCESS_DENIED, "Access Denied"));
                }
                let (policy, lifecycle) = match which {
                    BucketConfig::Policy => (value, b.lifecycle),
                    BucketConfig::Lifecycle => (b.policy, value),
                };
                tx.set_bucket_config(&name, policy.as_deref(), lifecycle.as_deref()).await?;
                call.record_success(tx, None, vec![call.resource(format!("arn:aws:s3:::{name}"), BUCKET)]).await?;
                Ok(())
            })
        })
        .await
    }

    /// A bucket's policy or lifecycle configuration (owner only).
    pub async fn s3_bucket_config(&self, p: &Principal, name: &str, which: BucketConfig) -> Result<String, ServiceError> {
        let b = self.s3_bucket(p, name, "s3:GetBucketPolicy").await?;
        if b.account_id != p.account_id {
            return Err(ServiceError::new(codes::ACCESS_DENIED, "Access Denied"));
        }
        match which {
            BucketConfig::Policy => b.policy.ok_or_else(|| ServiceError::new("NoSuchBucketPolicy", "The bucket policy does not exist")),
            BucketConfig::Lifecycle => b
                .lifecycle
                .ok_or_else(|| ServiceError::new("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist")),
        }
    }

    /// CloudTrail writing a log file for `trail`: create-only, into a bucket the trail may
    /// deliver to (`PreconditionFailed` when the key exists).
    pub async fn deliver_object(
        &self,
        trail: &crate::domain::trails::Trail,
        key: &str,
        body: Vec<u8>,
        metadata: BTreeMap<String, String>,
    ) -> Result<(), ServiceError> {
        if self.external_buckets.contains(&trail.s3_bucket) {
            use crate::objects::external_bucket::ExternalPutError;
            return match self.external_buckets.put_new(&trail.s3_bucket, key, body, &metadata).await {
                Ok(()) => Ok(()),
                Err(ExternalPutError::Exists) => Err(ServiceError::new("PreconditionFailed", "The object already exists.")),
                // GetTrailStatus shows the S3 error code, as for a bucket of our own.
                Err(e) => {
                    tracing::warn!(bucket = %trail.s3_bucket, key, code = e.s3_code(), error = %e, "external bucket write failed");
                    Err(ServiceError::new(e.s3_code(), format!("external bucket {}: {e}", trail.s3_bucket)))
                }
            };
        }
        let (name, t) = (trail.s3_bucket.clone(), trail.clone());
        let bucket = store::read::<_, ServiceError, _>(&*self.store, move |tx| Box::pin(async move { Ok(tx.get_bucket(&name).await?) }))
            .await?
            .ok_or_else(|| no_such_bucket(&trail.s3_bucket))?;
        if !super::trails::may_deliver(&bucket, &t, key) {
            return Err(ServiceError::new(codes::ACCESS_DENIED, format!("CloudTrail may not write to bucket {}", bucket.name)));
        }
        let size = body.len();
        let stream = futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(body))]);
        let w = self.write_blob(stream, MAX_PUT).await?;
        let meta = ObjectMeta {
            bucket: bucket.name.clone(),
            key: key.to_string(),
            size: size as u64,
            etag: w.md5_hex,
            content_type: Some("application/json".into()),
            metadata,
            last_modified: self.clock.now(),
            storage_class: "STANDARD".into(),
            blobs: vec![BlobRef {
                id: w.id.clone(),
                size: w.size,
                sha256: Some(w.sha256_hex),
            }],
        };
        let r = store::write(&*self.store, move |tx| {
            Box::pin(async move {
                if tx.get_bucket(&meta.bucket).await?.is_none() {
                    return Err(no_such_bucket(&meta.bucket));
                }
                if tx.get_object(&meta.bucket, &meta.key).await?.is_some() {
                    return Err(ServiceError::new("PreconditionFailed", "The object already exists."));
                }
                tx.put_object(&meta).await?;
                Ok(())
            })
        })
        .await;
        if r.is_err() {
            self.blobs.remove(&w.id).await;
        }
        r
    }

    /// Writes a body into a new blob, refusing bodies above `limit` bytes.
    async fn write_blob<S, E>(&self, mut body: S, limit: u64) -> Result<Written, ServiceError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut w = self.blobs.create().await.map_err(blob_err)?;
        let mut total = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    w.abort().await;
                    return Err(ServiceError::new("IncompleteBody", format!("The request body could not be read: {e}")));
                }
            };
            total += chunk.len() as u64;
            if total > limit {
                w.abort().await;
                return Err(ServiceError::new(codes::ENTITY_TOO_LARGE, "Your proposed upload exceeds the maximum allowed object size."));
            }
            if let Err(e) = w.write(&chunk).await {
                w.abort().await;
                return Err(blob_err(e));
            }
        }
        w.finish().await.map_err(blob_err)
    }

    async fn remove_blobs(&self, blobs: impl IntoIterator<Item = String>) {
        for id in blobs {
            self.blobs.remove(&id).await;
        }
    }

    /// Commits an object's metadata for a written blob; `create_only` refuses to replace.
    async fn commit_object(&self, p: &Principal, meta: ObjectMeta, create_only: bool) -> Result<ObjectMeta, ServiceError> {
        let who = p.clone();
        let blobs: Vec<String> = meta.blobs.iter().map(|b| b.id.clone()).collect();
        let result = store::write(&*self.store, move |tx| {
            Box::pin(async move {
                owned_bucket(tx, &meta.bucket, &who, "s3:PutObject", Some(&meta.key)).await?;
                if create_only && tx.get_object(&meta.bucket, &meta.key).await?.is_some() {
                    return Err(ServiceError::new("PreconditionFailed", "At least one of the pre-conditions you specified did not hold"));
                }
                let old = tx.put_object(&meta).await?;
                Ok((meta, old))
            })
        })
        .await;
        match result {
            Ok((meta, old)) => {
                if let Some(old) = old {
                    self.remove_blobs(old.blobs.into_iter().map(|b| b.id)).await;
                }
                Ok(meta)
            }
            Err(e) => {
                self.remove_blobs(blobs).await;
                Err(e)
            }
        }
    }

    pub async fn s3_put_object<S, E>(
        &self,
        p: &Principal,
        bucket: &str,
        key: &str,
        body: S,
        props: ObjectProps,
        create_only: bool,
    ) -> Result<ObjectMeta, ServiceError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        check_key(key)?;
        // Fail before reading the body when the caller may not write there.
        let (b, k, who) = (bucket.to_string(), key.to_string(), p.clone());
        let mut body = body;
        drain_on_error(
            &mut body,
            store::read(&*self.store, move |tx| Box::pin(async move { owned_bucket(tx, &b, &who, "s3:PutObject", Some(&k)).await })).await,
        )
        .await?;
        let w = self.write_blob(body, MAX_PUT).await?;
        let meta = ObjectMeta {
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: w.size,
            etag: w.md5_hex,
            content_type: props.content_type,
            metadata: props.metadata,
            last_modified: self.clock.now(),
            storage_class: props.storage_class.unwrap_or_else(|| "STANDARD".into()),
            blobs: vec![BlobRef {
                id: w.id,
                size: w.size,
                sha256: Some(w.sha256_hex),
            }],
        };
        self.commit_object(p, meta, create_only).await
    }

    pub async fn s3_head_object(&self, p: &Principal, bucket: &str, key: &str) -> Result<ObjectMeta, ServiceError> {
        let (bucket, key, who) = (bucket.to_string(), key.to_string(), p.clone());
        store::read(&*self.store, move |tx| {
            Box::pin(async move {
                owned_bucket(tx, &bucket, &who, "s3:GetObject", Some(&key)).await?;
                tx.get_object(&bucket, &key).await?.ok_or_else(|| no_such_key(&key))
            })
        })
        .await
    }

    /// The object a GetObject or HeadObject serves: [`Self::s3_head_object`], once durable.
    pub async fn s3_object_to_serve(&self, p: &Principal, bucket: &str, key: &str) -> Result<ObjectMeta, ServiceError> {
        let meta = self.s3_head_object(p, bucket, key).await?;
        self.settled(meta).await
    }

    /// `v`, once what was read to make it is durable. Object reads are data events, with no
    /// record of their own whose durable write would wait for that: without this a client
    /// could fetch an object whose upload a crash then takes back.
    async fn settled<T>(&self, v: T) -> Result<T, ServiceError> {
        self.store.settle().await?;
        Ok(v)
    }

    /// Plaintext `[start, end)` of an object, decrypted.
    pub async fn s3_read(&self, meta: &ObjectMeta, start: u64, end: u64) -> Result<Vec<Bytes>, ServiceError> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        for b in &meta.blobs {
            let (bs, be) = (offset, offset + b.size);
            if end > bs && start < be {
                let chunks = self.blobs.read(&b.id, b.size, start.max(bs) - bs, end.min(be) - bs).await.map_err(blob_err)?;
                out.extend(chunks);
            }
            offset = be;
        }
        Ok(out)
    }

    /// Plaintext `[start, end)` as a stream of bounded windows: a task decrypts window after
    /// window into a channel of two, so memory stays at a few [`READ_WINDOW`]s per reader
    /// whatever the object's size, and stops when the reader goes away.
    pub fn s3_stream(
        self: &Arc<Self>,
        meta: ObjectMeta,
        start: u64,
        end: u64,
    ) -> std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, ServiceError>> + Send + Sync + 'static>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, ServiceError>>(2);
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let mut pos = start;
            while pos < end {
                let to = (pos + READ_WINDOW).min(end);
                match app.s3_read(&meta, pos, to).await {
                    Ok(chunks) => {
                        for c in chunks {
                            if tx.send(Ok(c)).await.is_err() {
                                return; // the reader is gone
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
                pos = to;
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
    }

    /// Hex SHA-256 of an object's bytes: noted at upload for a one-blob object, otherwise
    /// (multipart uploads, objects from builds that did not note it) read window by window.
    pub async fn s3_sha256(&self, meta: &ObjectMeta) -> Result<String, ServiceError> {
        use sha2::{Digest as _, Sha256};
        if let [
            BlobRef {
                sha256: Some(sha),
                size,
                ..
            },
        ] = meta.blobs.as_slice()
            && *size == meta.size
        {
            return Ok(sha.clone());
        }
        let mut hasher = Sha256::new();
        let mut pos = 0;
        while pos < meta.size {
            let to = (pos + READ_WINDOW).min(meta.size);
            for chunk in self.s3_read(meta, pos, to).await? {
                hasher.update(&chunk);
            }
            pos = to;
        }
        Ok(hex::encode(hasher.finalize()))
    }

    pub async fn s3_delete_object(&self, p: &Principal, bucket: &str, key: &str) -> Result<(), ServiceError> {
        let (bucket, key, who) = (bucket.to_string(), key.to_string(), p.clone());
        let old = store::write(&*self.store, move |tx| {
            Box::pin(async move {
                owned_bucket(tx, &bucket, &who, "s3:DeleteObject", Some(&key)).await?;
                Ok::<_, ServiceError>(tx.delete_object(&bucket, &key).await?)
            })
        })
        .await?;
        if let Some(old) = old {
            self.remove_blobs(old.blobs.into_iter().map(|b| b.id)).await;
        }
        Ok(())
    }

    /// Keys in byte order after `after`, rolled up at `delimiter` after `prefix`.
    pub async fn s3_list(
        &self,
        p: &Principal,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<Listing, ServiceError> {
        let listing = self.list_keys(p, bucket, prefix, delimiter, after, max).await?;
        self.settled(listing).await
    }

    async fn list_keys(
        &self,
        p: &Principal,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<Listing, ServiceError> {
        self.s3_bucket(p, bucket, "s3:ListBucket").await?;
        let mut listing = Listing { objects: vec![], common_prefixes: vec![], truncated: false, last: None };
        let mut cursor = after.map(str::to_string);
        if max == 0 {
            return Ok(listing);
        }
        loop {
            let (b, pre, cur) = (bucket.to_string(), prefix.to_string(), cursor.clone());
            let batch = store::read::<_, StoreError, _>(&*self.store, move |tx| {
                Box::pin(async move { tx.list_objects(&b, &pre, cur.as_deref(), 1000).await })
            })
            .await?;
            let exhausted = batch.len() < 1000;
            for o in batch {
                let rest = &o.key[prefix.len()..];
                let rolled = delimiter.filter(|d| !d.is_empty()).and_then(|d| rest.find(d).map(|i| format!("{prefix}{}", &rest[..i + d.len()])));
                let entry_key = rolled.clone().unwrap_or_else(|| o.key.clone());
                // Entries (keys or rolled-up prefixes) come strictly after the marker, and
                // each prefix once.
                if listing.last.as_deref() == Some(entry_key.as_str()) || after.is_some_and(|a| entry_key.as_str() <= a) {
                    cursor = Some(o.key.clone());
                    continue;
                }
                if listing.objects.len() + listing.common_prefixes.len() == max {
                    listing.truncated = true;
                    return Ok(listing);
                }
                cursor = Some(o.key.clone());
                listing.last = Some(entry_key);
                match rolled {
                    Some(cp) => listing.common_prefixes.push(cp),
                    None => listing.objects.push(o),
                }
            }
            if exhausted {
                return Ok(listing);
            }
        }
    }

    pub async fn s3_create_upload(&self, p: &Principal, bucket: &str, key: &str, props: ObjectProps) -> Result<Upload, ServiceError> {
        check_key(key)?;
        let upload = Upload {
            upload_id: uuid::Uuid::new_v4().simple().to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            content_type: props.content_type,
            metadata: props.metadata,
            created_at: self.clock.now(),
        };
        let who = p.clone();
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                owned_bucket(tx, &upload.bucket, &who, "s3:PutObject", Some(&upload.key)).await?;
                tx.insert_upload(&upload).await?;
                Ok(upload)
            })
        })
        .await
    }

    async fn upload(&self, p: &Principal, bucket: &str, key: &str, upload_id: &str) -> Result<Upload, ServiceError> {
        let (id, who) = (upload_id.to_string(), p.clone());
        let (bucket, key) = (bucket.to_string(), key.to_string());
        store::read(&*self.store, move |tx| {
            Box::pin(async move {
                owned_bucket(tx, &bucket, &who, "s3:PutObject", Some(&key)).await?;
                tx.get_upload(&id)
                    .await?
                    .filter(|u| u.bucket == bucket && u.key == key)
                    .ok_or_else(|| ServiceError::new(codes::NO_SUCH_UPLOAD, "The specified multipart upload does not exist."))
            })
        })
        .await
    }

    pub async fn s3_upload_part<S, E>(
        &self,
        p: &Principal,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i64,
        body: S,
    ) -> Result<Part, ServiceError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        check_part_number(part_number)?;
        let mut body = body;
        drain_on_error(&mut body, self.upload(p, bucket, key, upload_id).await).await?;
        let w = self.write_blob(body, MAX_PUT).await?;
        let part = Part { upload_id: upload_id.to_string(), part_number, size: w.size, etag: w.md5_hex, blob: w.id.clone() };
        let pt = part.clone();
        let replaced = store::write(&*self.store, move |tx| {
            Box::pin(async move {
                if tx.get_upload(&pt.upload_id).await?.is_none() {
                    return Err(ServiceError::new(codes::NO_SUCH_UPLOAD, "The specified multipart upload does not exist."));
                }
                Ok(tx.put_part(&pt).await?)
            })
        })
        .await;
        match replaced {
            Ok(old) => {
                if let Some(old) = old {
                    self.blobs.remove(&old.blob).await;
                }
                Ok(part)
            }
            Err(e) => {
                self.blobs.remove(&w.id).await;
                Err(e)
            }
        }
    }

    pub async fn s3_list_parts(&self, p: &Principal, bucket: &str, key: &str, upload_id: &str) -> Result<(Upload, Vec<Part>), ServiceError> {
        let upload = self.upload(p, bucket, key, upload_id).await?;
        let id = upload_id.to_string();
        let parts = store::read::<_, StoreError, _>(&*self.store, move |tx| Box::pin(async move { tx.list_parts(&id).await })).await?;
        self.settled((upload, parts)).await
    }

    pub async fn s3_abort_upload(&self, p: &Principal, bucket: &str, key: &str, upload_id: &str) -> Result<(), ServiceError> {
        self.upload(p, bucket, key, upload_id).await?;
        let id = upload_id.to_string();
        let parts = store::write::<_, StoreError, _>(&*self.store, move |tx| Box::pin(async move { tx.delete_upload(&id).await })).await?;
        self.remove_blobs(parts.into_iter().map(|p| p.blob)).await;
        Ok(())
    }

    /// Completes an upload from `(part number, etag)` pairs, in ascending order; the ETag is
    /// the MD5 of the parts' binary MD5s, `-N`.
    pub async fn s3_complete_upload(
        &self,
        p: &Principal,
        bucket: &str,
        key: &str,
        upload_id: &str,
        chosen: Vec<(i64, String)>,
    ) -> Result<ObjectMeta, ServiceError> {
        let upload = self.upload(p, bucket, key, upload_id).await?;
        check_part_list(&chosen)?;
        let (_, stored) = self.s3_list_parts(p, bucket, key, upload_id).await?;
        let mut used = Vec::with_capacity(chosen.len());
        for (i, (n, etag)) in chosen.iter().enumerate() {
            let part = stored
                .iter()
                .find(|s| s.part_number == *n && s.etag == etag.trim_matches('"'))
                .ok_or_else(|| ServiceError::new(codes::INVALID_PART, format!("One or more of the specified parts could not be found: part {n}.")))?;
            if i + 1 < chosen.len() && part.size < MIN_PART {
                return Err(ServiceError::new(codes::ENTITY_TOO_SMALL, "Your proposed upload is smaller than the minimum allowed size."));
            }
            used.push(part.clone());
        }
        let mut md5 = Md5::new();
        for part in &used {
            md5.update(hex::decode(&part.etag).unwrap_or_default());
        }
        let meta = ObjectMeta {
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: used.iter().map(|p| p.size).sum(),
            etag: format!("{}-{}", hex::encode(md5.finalize()), used.len()),
            content_type: upload.content_type.clone(),
            metadata: upload.metadata.clone(),
            last_modified: self.clock.now(),
            storage_class: "STANDARD".into(),
            blobs: used
                .iter()
                .map(|p| BlobRef {
                    id: p.blob.clone(),
                    size: p.size,
                    sha256: None,
                })
                .collect(),
        };
        let (who, id) = (p.clone(), upload_id.to_string());
        let m = meta.clone();
        let (old, leftover) = store::write(&*self.store, move |tx| {
            Box::pin(async move {
                owned_bucket(tx, &m.bucket, &who, "s3:PutObject", Some(&m.key)).await?;
                let parts = tx.delete_upload(&id).await?;
                let old = tx.put_object(&m).await?;
                let kept: Vec<&str> = m.blobs.iter().map(|b| b.id.as_str()).collect();
                let leftover: Vec<String> = parts.into_iter().map(|p| p.blob).filter(|b| !kept.contains(&b.as_str())).collect();
                Ok::<_, ServiceError>((old, leftover))
            })
        })
        .await?;
        self.remove_blobs(leftover).await;
        if let Some(old) = old {
            self.remove_blobs(old.blobs.into_iter().map(|b| b.id)).await;
        }
        Ok(meta)
    }

    /// Copies an object into a new blob (objects never share blobs), streaming.
    pub async fn s3_copy_object(
        self: &Arc<Self>,
        p: &Principal,
        src_bucket: &str,
        src_key: &str,
        bucket: &str,
        key: &str,
        replace: Option<ObjectProps>,
    ) -> Result<ObjectMeta, ServiceError> {
        check_key(key)?;
        let src = self.s3_head_object(p, src_bucket, src_key).await?;
        let body = self.s3_stream(src.clone(), 0, src.size);
        let props = replace.unwrap_or(ObjectProps {
            content_type: src.content_type.clone(),
            metadata: src.metadata.clone(),
            storage_class: Some(src.storage_class.clone()),
        });
        self.s3_put_object(p, bucket, key, body, props, false).await
    }
}

impl App {
    /// Applies every bucket's lifecycle rules once; returns (expired, transitioned) counts.
    pub async fn apply_lifecycle(&self) -> Result<(usize, usize), ServiceError> {
        use crate::domain::buckets::{LifecycleAction, LifecycleRule};
        let buckets = store::read::<_, StoreError, _>(&*self.store, |tx| Box::pin(async move { tx.buckets_with_lifecycle().await })).await?;
        let now = self.clock.now();
        let day_ms = self.lifecycle_day_seconds * 1000;
        let (mut expired, mut moved) = (0, 0);
        for b in buckets {
            let Ok(rules) = serde_json::from_str::<Vec<LifecycleRule>>(b.lifecycle.as_deref().unwrap_or("[]")) else { continue };
            for rule in rules.iter().filter(|r| r.enabled) {
                let mut after: Option<String> = None;
                loop {
                    let (name, prefix, cur) = (b.name.clone(), rule.prefix.clone(), after.clone());
                    let batch = store::read::<_, StoreError, _>(&*self.store, move |tx| {
                        Box::pin(async move { tx.list_objects(&name, &prefix, cur.as_deref(), 500).await })
                    })
                    .await?;
                    let done = batch.len() < 500;
                    after = batch.last().map(|o| o.key.clone());
                    for o in batch {
                        let age_days = (now.0 - o.last_modified.0) / day_ms.max(1);
                        match rule.action(&o.key, age_days, &o.storage_class) {
                            Some(LifecycleAction::Expire) => {
                                let (bn, k) = (o.bucket.clone(), o.key.clone());
                                let old = store::write::<_, StoreError, _>(&*self.store, move |tx| {
                                    Box::pin(async move { tx.delete_object(&bn, &k).await })
                                })
                                .await?;
                                if let Some(old) = old {
                                    self.remove_blobs(old.blobs.into_iter().map(|b| b.id)).await;
                                    expired += 1;
                                }
                            }
                            Some(LifecycleAction::Transition(class)) => {
                                let mut m = o.clone();
                                m.storage_class = class;
                                store::write::<_, StoreError, _>(&*self.store, move |tx| {
                                    Box::pin(async move { tx.put_object(&m).await.map(|_| ()) })
                                })
                                .await?;
                                moved += 1;
                            }
                            None => {}
                        }
                    }
                    if done {
                        break;
                    }
                }
            }
        }
        Ok((expired, moved))
    }

    /// Runs [`App::apply_lifecycle`] every `interval`.
    pub fn spawn_lifecycle(self: &Arc<Self>, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                match app.apply_lifecycle().await {
                    Ok((0, 0)) => {}
                    Ok((expired, transitioned)) => tracing::info!(expired, transitioned, "lifecycle rules applied"),
                    Err(e) => tracing::warn!(error = %e, "lifecycle sweep failed"),
                }
            }
        })
    }
}

/// Bytes of a refused request's body read anyway, so that the client, still sending it, gets
/// the error response rather than a reset connection (closing a socket with unread data
/// resets it, and the client may lose the response). Larger bodies are left unread: clients
/// send those after `Expect: 100-continue`, which the error answers.
const DRAIN_LIMIT: usize = 1 << 20;

async fn drain_on_error<T, S, E>(body: &mut S, r: Result<T, ServiceError>) -> Result<T, ServiceError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    if r.is_err() {
        let mut read = 0;
        while read < DRAIN_LIMIT {
            match body.next().await {
                Some(Ok(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
    }
    r
}


//! S3 operations mapped onto `app::buckets`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::auth::principal;
use crate::app::App;
use crate::app::buckets::{BucketConfig, ObjectProps};
use crate::domain::buckets::LifecycleRule;
use serde_json::json;
use crate::domain::ServiceError;
use crate::domain::buckets::ObjectMeta;
use crate::domain::time::Millis;

pub struct S3Api {
    pub app: Arc<App>,
}

/// A domain error in S3's vocabulary; codes S3 does not know get an explicit status (s3s
/// would answer 500 for them).
pub(crate) fn s3_err(e: ServiceError) -> S3Error {
    let name = match e.code {
        "ServiceUnavailableException" => "ServiceUnavailable",
        "InternalFailureException" => "InternalError",
        other => other,
    };
    let code = S3ErrorCode::from_bytes(name.as_bytes()).unwrap_or(S3ErrorCode::InternalError);
    let known = code.status_code().is_some();
    let mut err = S3Error::with_message(code, e.message);
    if !known {
        err.set_status_code(http::StatusCode::BAD_REQUEST);
    }
    err
}

fn ts(m: Millis) -> Timestamp {
    Timestamp::from(m.to_offset_datetime())
}

fn etag(meta: &ObjectMeta) -> ETag {
    ETag::Strong(meta.etag.clone())
}

fn sse() -> Option<ServerSideEncryption> {
    // Every object of the embedded store is encrypted at rest.
    Some(ServerSideEncryption::from_static(ServerSideEncryption::AES256))
}

pub(crate) fn props(content_type: Option<String>, metadata: Option<Metadata>, storage_class: Option<StorageClass>) -> ObjectProps {
    ObjectProps {
        content_type,
        metadata: metadata.unwrap_or_default().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect::<BTreeMap<_, _>>(),
        storage_class: storage_class.map(|s| s.as_str().to_string()),
    }
}

fn user_metadata(meta: &ObjectMeta) -> Option<Metadata> {
    if meta.metadata.is_empty() { None } else { Some(meta.metadata.clone().into_iter().collect()) }
}

fn etag_matches(cond: &ETagCondition, meta: &ObjectMeta) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == meta.etag,
    }
}

/// `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since` on a read.
pub(crate) fn check_preconditions(
    meta: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let modified = meta.last_modified.to_offset_datetime().replace_millisecond(0).unwrap_or(meta.last_modified.to_offset_datetime());
    if let Some(c) = if_match
        && !etag_matches(c, meta)
    {
        return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
    }
    if let Some(t) = if_unmodified_since
        && modified > time::OffsetDateTime::from(t.clone())
    {
        return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
    }
    if let Some(c) = if_none_match
        && etag_matches(c, meta)
    {
        return Err(S3Error::new(S3ErrorCode::NotModified));
    }
    if let Some(t) = if_modified_since
        && modified <= time::OffsetDateTime::from(t.clone())
    {
        return Err(S3Error::new(S3ErrorCode::NotModified));
    }
    Ok(())
}

fn list_object(o: &ObjectMeta) -> Object {
    Object {
        key: Some(o.key.clone()),
        e_tag: Some(etag(o)),
        size: Some(o.size as i64),
        last_modified: Some(ts(o.last_modified)),
        storage_class: Some(ObjectStorageClass::from(o.storage_class.clone())),
        ..Default::default()
    }
}

pub(crate) fn lifecycle_rule(r: &s3s::dto::LifecycleRule) -> LifecycleRule {
    let prefix = r.filter.as_ref().and_then(|f| f.prefix.clone()).or_else(|| r.prefix.clone()).unwrap_or_default();
    LifecycleRule {
        id: r.id.clone(),
        enabled: r.status.as_str() == ExpirationStatus::ENABLED,
        prefix,
        expiration_days: r.expiration.as_ref().and_then(|e| e.days).map(i64::from),
        transitions: r
            .transitions
            .iter()
            .flatten()
            .filter_map(|t| Some((i64::from(t.days?), t.storage_class.as_ref()?.as_str().to_string())))
            .collect(),
    }
}

pub(crate) fn to_dto_rule(r: &LifecycleRule) -> s3s::dto::LifecycleRule {
    s3s::dto::LifecycleRule {
        id: r.id.clone(),
        status: ExpirationStatus::from(if r.enabled { ExpirationStatus::ENABLED } else { ExpirationStatus::DISABLED }.to_string()),
        filter: Some(LifecycleRuleFilter { prefix: Some(r.prefix.clone()), ..Default::default() }),
        expiration: r.expiration_days.map(|d| LifecycleExpiration { days: Some(d as i32), ..Default::default() }),
        transitions: (!r.transitions.is_empty()).then(|| {
            r.transitions
                .iter()
                .map(|(d, c)| Transition { days: Some(*d as i32), storage_class: Some(TransitionStorageClass::from(c.clone())), date: None })
                .collect()
        }),
        abort_incomplete_multipart_upload: None,
        noncurrent_version_expiration: None,
        noncurrent_version_transitions: None,
        prefix: None,
    }
}

pub(crate) fn encode_key(s: &str, url: bool) -> String {
    if url { otatrail_sigv4::uri_encode(s, true) } else { s.to_string() }
}

/// The bytes a GetObject `Range` selects of an object of `size` bytes, and the
/// `Content-Range` to answer with (`InvalidRange` when not satisfiable).
pub(crate) fn byte_range(range: Option<&Range>, size: u64) -> S3Result<(std::ops::Range<u64>, Option<String>)> {
    match range {
        None => Ok((0..size, None)),
        Some(r) => {
            let range = r.check(size).map_err(|_| s3_error!(InvalidRange, "The requested range is not satisfiable"))?;
            let cr = format!("bytes {}-{}/{}", range.start, range.end.saturating_sub(1), size);
            Ok((range, Some(cr)))
        }
    }
}

/// CompleteMultipartUpload's parts as `(part number, etag)`; a part without a number is
/// part 0 (which the app rejects).
pub(crate) fn completed_parts(upload: Option<CompletedMultipartUpload>) -> Vec<(i64, String)> {
    upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.part_number.unwrap_or(0) as i64, c.e_tag.map(|e| e.value().to_string()).unwrap_or_default()))
        .collect()
}

/// ListObjectsV2's continuation token: the last key returned, unpadded URL-safe base64.
pub(crate) fn continuation_token(last_key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last_key)
}

/// The key a continuation token names (`InvalidArgument` when it is not one of ours).
pub(crate) fn continuation_key(token: &str) -> S3Result<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))
}

#[async_trait::async_trait]
impl S3 for S3Api {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let p = principal(&req)?;
        let buckets = self.app.s3_list_buckets(&p).await.map_err(s3_err)?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(
                buckets
                    .iter()
                    .map(|b| Bucket { name: Some(b.name.clone()), creation_date: Some(ts(b.created_at)), bucket_region: Some(b.region.clone()) })
                    .collect(),
            ),
            owner: Some(Owner { id: Some(p.account_id.clone()), display_name: None }),
            ..Default::default()
        }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let p = principal(&req)?;
        let region = req
            .input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
            .map(|l| l.as_str().to_string())
            .or_else(|| req.region.as_ref().map(|r| r.as_str().to_string()))
            .unwrap_or_else(|| self.app.default_region.clone());
        let call = super::record::call(&self.app, &req, p, "CreateBucket", false, json!({"bucketName": req.input.bucket, "host": req.headers.get("host").and_then(|h| h.to_str().ok())}));
        let result = self.app.s3_create_bucket(&call, &req.input.bucket, &region).await;
        let b = super::record::finish(&self.app, &call, true, result).await.map_err(s3_err)?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{}", b.name)), ..Default::default() }))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let p = principal(&req)?;
        let b = self.app.s3_bucket(&p, &req.input.bucket, "s3:ListBucket").await.map_err(s3_err)?;
        Ok(S3Response::new(HeadBucketOutput { bucket_region: Some(b.region), ..Default::default() }))
    }

    async fn get_bucket_location(&self, req: S3Request<GetBucketLocationInput>) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let p = principal(&req)?;
        let b = self.app.s3_bucket(&p, &req.input.bucket, "s3:GetBucketLocation").await.map_err(s3_err)?;
        // us-east-1 is the empty constraint, as S3 answers.
        let location = (b.region != "us-east-1").then(|| BucketLocationConstraint::from(b.region));
        Ok(S3Response::new(GetBucketLocationOutput { location_constraint: location }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let p = principal(&req)?;
        let call = super::record::call(&self.app, &req, p, "DeleteBucket", false, json!({"bucketName": req.input.bucket}));
        let result = self.app.s3_delete_bucket(&call, &req.input.bucket).await;
        super::record::finish(&self.app, &call, true, result).await.map_err(s3_err)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn put_bucket_policy(&self, req: S3Request<PutBucketPolicyInput>) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let p = principal(&req)?;
        let bucket = req.input.bucket.clone();
        let call = super::record::call(&self.app, &req, p, "PutBucketPolicy", false, json!({"bucketName": bucket, "bucketPolicy": req.input.policy}));
        let result = self.app.s3_set_bucket_config(&call, &bucket, BucketConfig::Policy, Some(req.input.policy)).await;
        super::record::finish(&self.app, &call, true, result).await.map_err(s3_err)?;
        Ok(S3Response::with_status(PutBucketPolicyOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn get_bucket_policy(&self, req: S3Request<GetBucketPolicyInput>) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let p = principal(&req)?;
        let call = super::record::call(&self.app, &req, p.clone(), "GetBucketPolicy", true, json!({"bucketName": req.input.bucket}));
        let result = self.app.s3_bucket_config(&p, &req.input.bucket, BucketConfig::Policy).await;
        let policy = super::record::finish(&self.app, &call, false, result).await.map_err(s3_err)?;
        Ok(S3Response::new(GetBucketPolicyOutput { policy: Some(policy) }))
    }

    async fn delete_bucket_policy(&self, req: S3Request<DeleteBucketPolicyInput>) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        let p = principal(&req)?;
        let call = super::record::call(&self.app, &req, p, "DeleteBucketPolicy", false, json!({"bucketName": req.input.bucket}));
        let result = self.app.s3_set_bucket_config(&call, &req.input.bucket, BucketConfig::Policy, None).await;
        super::record::finish(&self.app, &call, true, result).await.map_err(s3_err)?;
        Ok(S3Response::with_status(DeleteBucketPolicyOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let p = principal(&req)?;
        let bucket = req.input.bucket.clone();
        let rules: Vec<LifecycleRule> = req
            .input
            .lifecycle_configuration
            .as_ref()
            .map(|c| c.rules.iter().map(lifecycle_rule).collect())
            .unwrap_or_default();
        let text = serde_json::to_string(&rules).map_err(|_| s3_error!(MalformedXML))?;
        let call = super::record::call(&self.app, &req, p, "PutBucketLifecycle", false, json!({"bucketName": bucket, "rules": rules.len()}));
        let result = self.app.s3_set_bucket_config(&call, &bucket, BucketConfig::Lifecycle, Some(text)).await;
        super::record::finish(&self.app, &call, true, result).await.map_err(s3_err)?;
        Ok(S3Response::new(PutBucketLifecycleConfigurationOutput::default()))
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let p = principal(&req)?;
        let call = super::record::call(&self.app, &req, p.clone(), "GetBucketLifecycle", true, json!({"bucketName": req.input.bucket}));
        let result = self.app.s3_bucket_config(&p, &req.input.bucket, BucketConfig::Lifecycle).await;
        let text = super::record::finish(&self.app, &call, false, result).await.map_err(s3_err)?;
        let rules: Vec<LifecycleRule> = serde_json::from_str(&text).unwrap_or_default();
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(rules.iter().map(to_dto_rule).collect()),
            ..Default::default()
        }))
    }

    async fn delete_bucket_lifecycle(&self, req: S3Request<DeleteBucketLifecycleInput>) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let p = principal(&req)?;
        let call = super::record::call(&self.app, &req, p, "DeleteBucketLifecycle", false, json!({"bucketName": req.input.bucket}));
        let result = self.app.s3_set_bucket_config(&call, &req.input.bucket, BucketConfig::Lifecycle, None).await;
        super::record::finish(&self.app, &call, true, result).await.map_err(s3_err)?;
        Ok(S3Response::with_status(DeleteBucketLifecycleOutput {}, http::StatusCode::NO_CONTENT))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        // `If-None-Match: *` is a create-only put.
        let create_only = matches!(input.if_none_match, Some(ETagCondition::Any));
        let body = input.body.unwrap_or_else(|| StreamingBlob::from(s3s::Body::empty()));
        let meta = self
            .app
            .s3_put_object(&p, &input.bucket, &input.key, body, props(input.content_type, input.metadata, input.storage_class), create_only)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(PutObjectOutput { e_tag: Some(etag(&meta)), server_side_encryption: sse(), ..Default::default() }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        let meta = self.app.s3_object_to_serve(&p, &input.bucket, &input.key).await.map_err(s3_err)?;
        check_preconditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (range, content_range) = byte_range(input.range.as_ref(), meta.size)?;
        // Streamed window by window; an error mid-way cuts the response short.
        let body = self.app.s3_stream(meta.clone(), range.start, range.end).map(|r| r.map_err(|e| std::io::Error::other(e.message)));
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some((range.end - range.start) as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            content_type: meta.content_type.clone(),
            e_tag: Some(etag(&meta)),
            last_modified: Some(ts(meta.last_modified)),
            metadata: user_metadata(&meta),
            server_side_encryption: sse(),
            storage_class: (meta.storage_class != "STANDARD").then(|| StorageClass::from(meta.storage_class.clone())),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        let meta = self.app.s3_object_to_serve(&p, &input.bucket, &input.key).await.map_err(s3_err)?;
        check_preconditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(meta.size as i64),
            accept_ranges: Some("bytes".into()),
            content_type: meta.content_type.clone(),
            e_tag: Some(etag(&meta)),
            last_modified: Some(ts(meta.last_modified)),
            metadata: user_metadata(&meta),
            server_side_encryption: sse(),
            storage_class: (meta.storage_class != "STANDARD").then(|| StorageClass::from(meta.storage_class.clone())),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let p = principal(&req)?;
        self.app.s3_delete_object(&p, &req.input.bucket, &req.input.key).await.map_err(s3_err)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        self.app.s3_bucket(&p, &input.bucket, "s3:ListBucket").await.map_err(s3_err)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in input.delete.objects {
            match self.app.s3_delete_object(&p, &input.bucket, &o.key).await {
                Ok(()) => deleted.push(DeletedObject { key: Some(o.key), ..Default::default() }),
                Err(e) => errors.push(Error { code: Some(e.code.to_string()), key: Some(o.key), message: Some(e.message), version_id: None }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let url = input.encoding_type.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL);
        let l = self
            .app
            .s3_list(&p, &input.bucket, &prefix, input.delimiter.as_deref(), input.marker.as_deref().filter(|m| !m.is_empty()), max)
            .await
            .map_err(s3_err)?;
        let has_delimiter = input.delimiter.as_deref().is_some_and(|d| !d.is_empty());
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encode_key(&prefix, url)),
            marker: Some(encode_key(input.marker.as_deref().unwrap_or(""), url)),
            max_keys: Some(max as i32),
            is_truncated: Some(l.truncated),
            // S3 sends NextMarker only with a delimiter; clients use the last key otherwise.
            next_marker: l.last.as_deref().filter(|_| l.truncated && has_delimiter).map(|k| encode_key(k, url)),
            contents: Some(l.objects.iter().map(|o| Object { key: Some(encode_key(&o.key, url)), ..list_object(o) }).collect()),
            common_prefixes: Some(l.common_prefixes.iter().map(|c| CommonPrefix { prefix: Some(encode_key(c, url)) }).collect()),
            delimiter: input.delimiter.map(|d| encode_key(&d, url)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let p = principal(&req)?;
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let url = input.encoding_type.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL);
        let after = match input.continuation_token.as_deref() {
            Some(t) => Some(continuation_key(t)?),
            None => input.start_after.clone().filter(|s| !s.is_empty()),
        };
        let l = self
            .app
            .s3_list(&p, &input.bucket, &prefix, input.delimiter.as_deref(), after.as_deref(), max)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode_key(&prefix, url)),
            max_keys: Some(max as i32),
            key_count: Some((l.objects.len() + l.common_prefixes.len()) as i32),
            continuation_token: input.continuation_token,
            is_truncated: Some(l.truncated),
            next_continuation_token: l.last.as_deref().filter(|_| l.truncated).map(continuation_token),
            contents: Some(l.objects.iter().map(|o| Object { key: Some(encode_key(&o.key, url)), ..list_object(o) }).collect()),
            common_prefixes: Some(l.common_prefixes.iter().map(|c| CommonPrefix { prefix: Some(encode_key(c, url)) }).collect()),
            delimiter: input.delimiter.map(|d| encode_key(&d, url)),
            encoding_type: input.encoding_type,
            start_after: input.start_after,
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        let CopySource::Bucket { bucket: src_bucket, key: src_key, .. } = &input.copy_source else {
            return Err(s3_error!(NotImplemented, "Only bucket/key copy sources are supported."));
        };
        let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let new_props = replace.then(|| props(input.content_type.clone(), input.metadata.clone(), input.storage_class.clone()));
        let meta = self
            .app
            .s3_copy_object(&p, src_bucket, src_key, &input.bucket, &input.key, new_props)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&meta)),
                last_modified: Some(ts(meta.last_modified)),
                ..Default::default()
            }),
            server_side_encryption: sse(),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        let u = self
            .app
            .s3_create_upload(&p, &input.bucket, &input.key, props(input.content_type, input.metadata, input.storage_class))
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(u.bucket),
            key: Some(u.key),
            upload_id: Some(u.upload_id),
            server_side_encryption: sse(),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        let body = input.body.unwrap_or_else(|| StreamingBlob::from(s3s::Body::empty()));
        let part = self
            .app
            .s3_upload_part(&p, &input.bucket, &input.key, &input.upload_id, input.part_number as i64, body)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(part.etag)),
            server_side_encryption: sse(),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        let parts = completed_parts(input.multipart_upload);
        let meta = self.app.s3_complete_upload(&p, &input.bucket, &input.key, &input.upload_id, parts).await.map_err(s3_err)?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(meta.bucket.clone()),
            key: Some(meta.key.clone()),
            e_tag: Some(etag(&meta)),
            location: Some(format!("/{}/{}", meta.bucket, meta.key)),
            server_side_encryption: sse(),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        self.app.s3_abort_upload(&p, &input.bucket, &input.key, &input.upload_id).await.map_err(s3_err)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let p = principal(&req)?;
        let input = req.input;
        let (u, parts) = self.app.s3_list_parts(&p, &input.bucket, &input.key, &input.upload_id).await.map_err(s3_err)?;
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(u.bucket),
            key: Some(u.key),
            upload_id: Some(u.upload_id),
            is_truncated: Some(false),
            parts: Some(
                parts
                    .iter()
                    .map(|x| Part {
                        part_number: Some(x.part_number as i32),
                        e_tag: Some(ETag::Strong(x.etag.clone())),
                        size: Some(x.size as i64),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}

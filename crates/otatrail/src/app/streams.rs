//! The five Streams operations.

use std::sync::Arc;

use crate::domain::streams::{
    self, CreateStreamBody, FileRef, ListPage, ListRequest, RESOURCE_TYPE, Stream, StreamFile, UpdateStreamBody, stream_arn,
};
use crate::domain::ServiceError;
use crate::store;

use super::App;
use super::audit::Call;

impl App {
    /// Looks every file's object up in the caller's buckets, recording its size and SHA-256.
    async fn resolve_files(&self, call: &Call, refs: &[FileRef]) -> Result<Vec<StreamFile>, ServiceError> {
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let meta = self.s3_head_object(&call.principal, &r.bucket, &r.key).await.map_err(|e| match e.code {
                "NoSuchBucket" | "NoSuchKey" | "AccessDenied" | "KeyTooLongError" => ServiceError::invalid_request(format!(
                    "The S3 object s3://{}/{} of fileId {} does not exist or is not in this account's buckets.",
                    r.bucket, r.key, r.file_id
                )),
                _ => e,
            })?;
            let sha256 = self.s3_sha256(&meta).await?;
            out.push(StreamFile::from_ref(r.clone(), meta.size, sha256));
        }
        Ok(out)
    }

    pub async fn create_stream(&self, call: &Arc<Call>, stream_id: &str, body: &CreateStreamBody) -> Result<Stream, ServiceError> {
        let valid = streams::validate_create(stream_id, body)?;
        let files = self.resolve_files(call, &valid.files).await?;
        let (call, now) = (call.clone(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let scope = call.scope();
                let s = streams::create(tx, &scope, valid, files, now).await?;
                call.record_success(tx, Some(s.summary()), vec![call.resource(s.arn(), RESOURCE_TYPE)]).await?;
                Ok(s)
            })
        })
        .await
    }

    pub async fn describe_stream(&self, call: &Arc<Call>, stream_id: &str) -> Result<Stream, ServiceError> {
        let (scope, id) = (call.scope(), stream_id.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { streams::describe(tx, &scope, &id).await })).await
    }

    pub async fn update_stream(&self, call: &Arc<Call>, stream_id: &str, body: &UpdateStreamBody) -> Result<Stream, ServiceError> {
        let valid = streams::validate_update(stream_id, body)?;
        let files = match &valid.files {
            Some(refs) => Some(self.resolve_files(call, refs).await?),
            None => None,
        };
        let (call, now) = (call.clone(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let s = streams::update(tx, &call.scope(), valid, files, now).await?;
                call.record_success(tx, Some(s.summary()), vec![call.resource(s.arn(), RESOURCE_TYPE)]).await?;
                Ok(s)
            })
        })
        .await
    }

    pub async fn delete_stream(&self, call: &Arc<Call>, stream_id: &str) -> Result<(), ServiceError> {
        let (call, id) = (call.clone(), stream_id.to_string());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let scope = call.scope();
                streams::delete(tx, &scope, &id).await?;
                call.record_success(tx, None, vec![call.resource(stream_arn(&scope, &id), RESOURCE_TYPE)]).await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn list_streams(&self, call: &Arc<Call>, req: ListRequest) -> Result<ListPage, ServiceError> {
        let scope = call.scope();
        store::read(&*self.store, move |tx| Box::pin(async move { streams::list(tx, &scope, req).await })).await
    }
}

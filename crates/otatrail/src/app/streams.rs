//! The five Streams operations.

use std::sync::Arc;

use crate::domain::streams::{
    self, CreateStreamBody, FileRef, ListPage, ListRequest, RESOURCE_TYPE, Stream, StreamFile, UpdateStreamBody, stream_arn,
};
use crate::domain::ServiceError;
use crate::objects::ObjectError;
use crate::store;

use super::App;
use super::audit::Call;

impl App {
    /// Looks every file's object up, recording its size and SHA-256.
    async fn resolve_files(&self, refs: &[FileRef]) -> Result<Vec<StreamFile>, ServiceError> {
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            match self.objects.digest(&r.bucket, &r.key).await {
                Ok(d) => out.push(StreamFile::from_ref(r.clone(), d.size, d.sha256)),
                Err(ObjectError::NotFound { bucket, key }) => {
                    return Err(ServiceError::invalid_request(format!(
                        "The S3 object s3://{bucket}/{key} of fileId {} does not exist.",
                        r.file_id
                    )));
                }
                Err(ObjectError::InvalidName(n)) => {
                    return Err(ServiceError::invalid_request(format!(
                        "'{n}' is not a valid S3 bucket name or key (fileId {}).",
                        r.file_id
                    )));
                }
                Err(e @ ObjectError::Backend(_)) => {
                    tracing::error!(error = %e, "bucket store failure");
                    return Err(ServiceError::unavailable());
                }
            }
        }
        Ok(out)
    }

    pub async fn create_stream(&self, call: &Arc<Call>, stream_id: &str, body: &CreateStreamBody) -> Result<Stream, ServiceError> {
        let valid = streams::validate_create(stream_id, body)?;
        let files = self.resolve_files(&valid.files).await?;
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
            Some(refs) => Some(self.resolve_files(refs).await?),
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

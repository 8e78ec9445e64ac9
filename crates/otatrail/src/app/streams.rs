//! The five Streams operations.

use crate::domain::streams::{self, CreateStreamBody, FileRef, ListPage, ListRequest, Stream, StreamFile, UpdateStreamBody};
use crate::domain::{Scope, ServiceError};
use crate::objects::ObjectError;
use crate::store;

use super::App;

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

    pub async fn create_stream(&self, scope: &Scope, stream_id: &str, body: &CreateStreamBody) -> Result<Stream, ServiceError> {
        let valid = streams::validate_create(stream_id, body)?;
        let files = self.resolve_files(&valid.files).await?;
        let (scope, now) = (scope.clone(), self.clock.now());
        store::write(&*self.store, move |tx| Box::pin(async move { streams::create(tx, &scope, valid, files, now).await })).await
    }

    pub async fn describe_stream(&self, scope: &Scope, stream_id: &str) -> Result<Stream, ServiceError> {
        let (scope, id) = (scope.clone(), stream_id.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { streams::describe(tx, &scope, &id).await })).await
    }

    pub async fn update_stream(&self, scope: &Scope, stream_id: &str, body: &UpdateStreamBody) -> Result<Stream, ServiceError> {
        let valid = streams::validate_update(stream_id, body)?;
        let files = match &valid.files {
            Some(refs) => Some(self.resolve_files(refs).await?),
            None => None,
        };
        let (scope, now) = (scope.clone(), self.clock.now());
        store::write(&*self.store, move |tx| Box::pin(async move { streams::update(tx, &scope, valid, files, now).await })).await
    }

    pub async fn delete_stream(&self, scope: &Scope, stream_id: &str) -> Result<(), ServiceError> {
        let (scope, id) = (scope.clone(), stream_id.to_string());
        store::write(&*self.store, move |tx| Box::pin(async move { streams::delete(tx, &scope, &id).await })).await
    }

    pub async fn list_streams(&self, scope: &Scope, req: ListRequest) -> Result<ListPage, ServiceError> {
        let scope = scope.clone();
        store::read(&*self.store, move |tx| Box::pin(async move { streams::list(tx, &scope, req).await })).await
    }
}

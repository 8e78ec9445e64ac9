//! The bucket store: buckets and objects, behind the `object_store` trait.
//!
//! Until the S3 endpoint exists, a bucket is the directory `buckets/<bucket>/` of the data
//! directory. Everything in the server that reads objects goes through [`BucketStore`].

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    #[error("'{0}' is not a valid bucket name or object key")]
    InvalidName(String),
    #[error("object store failure: {0}")]
    Backend(String),
}

/// Size and SHA-256 (lowercase hex) of an object's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectDigest {
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone)]
pub struct BucketStore {
    inner: Arc<dyn ObjectStore>,
}

impl BucketStore {
    /// Buckets as directories under `root`.
    pub fn local(root: &Path) -> Result<Self, ObjectError> {
        std::fs::create_dir_all(root).map_err(|e| ObjectError::Backend(e.to_string()))?;
        let fs = LocalFileSystem::new_with_prefix(root).map_err(|e| ObjectError::Backend(e.to_string()))?;
        Ok(Self { inner: Arc::new(fs) })
    }

    pub fn from_store(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }

    fn path(bucket: &str, key: &str) -> Result<ObjectPath, ObjectError> {
        if bucket.is_empty() || bucket.contains('/') || bucket == "." || bucket == ".." {
            return Err(ObjectError::InvalidName(bucket.to_string()));
        }
        ObjectPath::parse(format!("{bucket}/{key}")).map_err(|_| ObjectError::InvalidName(key.to_string()))
    }

    /// Reads the whole object once to learn its size and SHA-256.
    pub async fn digest(&self, bucket: &str, key: &str) -> Result<ObjectDigest, ObjectError> {
        let path = Self::path(bucket, key)?;
        let result = match self.inner.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ObjectError::NotFound { bucket: bucket.into(), key: key.into() });
            }
            Err(e) => return Err(ObjectError::Backend(e.to_string())),
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ObjectError::Backend(e.to_string()))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(ObjectDigest { size, sha256: hex::encode(hasher.finalize()) })
    }

    pub async fn put(&self, bucket: &str, key: &str, data: bytes::Bytes) -> Result<(), ObjectError> {
        let path = Self::path(bucket, key)?;
        self.inner.put(&path, data.into()).await.map_err(|e| ObjectError::Backend(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digest_of_a_local_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = BucketStore::local(dir.path()).unwrap();
        store.put("fw", "a/b.bin", bytes::Bytes::from_static(b"hello")).await.unwrap();
        assert!(dir.path().join("fw/a/b.bin").exists());
        let d = store.digest("fw", "a/b.bin").await.unwrap();
        assert_eq!(d.size, 5);
        assert_eq!(d.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert!(matches!(store.digest("fw", "missing").await, Err(ObjectError::NotFound { .. })));
        assert!(matches!(store.digest("nobucket", "x").await, Err(ObjectError::NotFound { .. })));
        assert!(matches!(store.digest("fw", "../etc/passwd").await, Err(ObjectError::InvalidName(_))));
    }
}

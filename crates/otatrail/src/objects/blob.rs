//! Blobs: where the bytes of objects live. Two backends, chosen at start:
//! - **local** (the embedded default): encrypted blob files in the data directory (below);
//! - **external**: objects `<prefix>blobs/<id>` of a bucket in any S3-compatible store, written
//!   with `x-amz-server-side-encryption: AES256` (the store encrypts them at rest).
//!
//! Encrypted blob files: how the embedded store keeps object bytes at rest.
//!
//! A blob is one file: `OTB1`, the length and bytes of its data key sealed by the master key
//! (AES-256-GCM, bound to the blob ID), then the plaintext in 64 KiB segments, each sealed
//! with the data key (AES-256-GCM; nonce = segment index; the associated data binds the blob
//! ID, the index and whether the segment is the last, so segments cannot be reordered,
//! swapped between blobs or cut off). A range read decrypts only the segments it touches.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;
use md5::{Digest as _, Md5};
use rand::RngCore;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::crypto::MasterKey;

pub const SEGMENT: u64 = 64 * 1024;
const TAG: u64 = 16;
const MAGIC: &[u8; 4] = b"OTB1";

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob {0} is corrupt or was tampered with")]
    Corrupt(String),
}

/// Where blobs live.
#[derive(Clone)]
pub enum BlobStore {
    Local(LocalBlobs),
    External(ExternalBlobs),
}

/// Encrypted blob files in a directory, and the key that opens their data keys.
#[derive(Clone)]
pub struct LocalBlobs {
    dir: PathBuf,
    master: Arc<MasterKey>,
}

/// Blobs as objects of an external S3-compatible store.
#[derive(Clone)]
pub struct ExternalBlobs {
    store: Arc<dyn object_store::ObjectStore>,
}

/// The external store's connection settings.
#[derive(Clone)]
pub struct ExternalConfig {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The result of writing a blob.
pub struct Written {
    pub id: String,
    pub size: u64,
    pub md5_hex: String,
    pub sha256_hex: String,
}

fn aad(id: &str, index: u64, last: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(id.len() + 9);
    v.extend_from_slice(id.as_bytes());
    v.extend_from_slice(&index.to_be_bytes());
    v.push(u8::from(last));
    v
}

fn nonce(index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

impl std::fmt::Debug for ExternalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .finish()
    }
}

/// Streams bytes into a new blob.
pub enum BlobWriter {
    Local(LocalWriter),
    External(ExternalWriter),
}

pub struct ExternalWriter {
    id: String,
    store: Arc<dyn object_store::ObjectStore>,
    out: object_store::buffered::BufWriter,
    size: u64,
    md5: Md5,
    sha256: Sha256,
}

/// Streams plaintext into a new encrypted blob file.
pub struct LocalWriter {
    id: String,
    tmp: PathBuf,
    dest: PathBuf,
    file: tokio::fs::File,
    cipher: Aes256Gcm,
    index: u64,
    pending: Vec<u8>,
    size: u64,
    md5: Md5,
    sha256: Sha256,
}

fn external_path(id: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("blobs/{}/{id}", &id[..2]))
}

fn backend_err(e: object_store::Error) -> BlobError {
    BlobError::Io(std::io::Error::other(e.to_string()))
}

impl BlobStore {
    /// The embedded backend, in `dir`.
    pub fn open(dir: &Path, master: Arc<MasterKey>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        std::fs::create_dir_all(dir.join("data"))?;
        Ok(BlobStore::Local(LocalBlobs { dir: dir.to_path_buf(), master }))
    }

    /// An external S3-compatible store (path-style, plain HTTP allowed for loopback stores).
    pub fn external(c: &ExternalConfig) -> Result<Self, BlobError> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let sse: AmazonS3ConfigKey = "aws_server_side_encryption".parse().map_err(backend_err)?;
        let store = AmazonS3Builder::new()
            .with_endpoint(&c.endpoint)
            .with_bucket_name(&c.bucket)
            .with_region(&c.region)
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(&c.secret_access_key)
            .with_allow_http(true)
            .with_config(sse, "AES256")
            .build()
            .map_err(backend_err)?;
        Ok(BlobStore::External(ExternalBlobs { store: Arc::new(store) }))
    }

    pub async fn create(&self) -> Result<BlobWriter, BlobError> {
        match self {
            BlobStore::Local(l) => l.create().await.map(BlobWriter::Local),
            BlobStore::External(e) => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let out = object_store::buffered::BufWriter::new(e.store.clone(), external_path(&id));
                Ok(BlobWriter::External(ExternalWriter { id, store: e.store.clone(), out, size: 0, md5: Md5::new(), sha256: Sha256::new() }))
            }
        }
    }

    pub async fn remove(&self, id: &str) {
        match self {
            BlobStore::Local(l) => l.remove(id).await,
            BlobStore::External(e) => {
                let _ = object_store::ObjectStoreExt::delete(&*e.store, &external_path(id)).await;
            }
        }
    }

    /// Bytes `[start, end)` of a blob of `size` bytes.
    pub async fn read(&self, id: &str, size: u64, start: u64, end: u64) -> Result<Vec<Bytes>, BlobError> {
        match self {
            BlobStore::Local(l) => l.read(id, size, start, end).await,
            BlobStore::External(e) => {
                if start >= end {
                    return Ok(vec![]);
                }
                let b = object_store::ObjectStoreExt::get_range(&*e.store, &external_path(id), start..end).await.map_err(backend_err)?;
                if b.len() as u64 != end - start {
                    return Err(BlobError::Corrupt(id.to_string()));
                }
                Ok(vec![b])
            }
        }
    }

    /// Checks that the backend answers (the external bucket exists and the keys work).
    pub async fn check(&self) -> Result<(), BlobError> {
        match self {
            BlobStore::Local(_) => Ok(()),
            BlobStore::External(e) => {
                let probe = object_store::path::Path::from("blobs/.otatrail-probe");
                object_store::ObjectStoreExt::put(&*e.store, &probe, Bytes::from_static(b"ok").into()).await.map_err(backend_err)?;
                Ok(())
            }
        }
    }
}

impl BlobWriter {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        match self {
            BlobWriter::Local(w) => w.write(data).await,
            BlobWriter::External(w) => {
                w.md5.update(data);
                w.sha256.update(data);
                w.size += data.len() as u64;
                w.out.write_all(data).await?;
                Ok(())
            }
        }
    }

    pub async fn finish(self) -> Result<Written, BlobError> {
        match self {
            BlobWriter::Local(w) => w.finish().await,
            BlobWriter::External(mut w) => {
                w.out.shutdown().await?;
                Ok(Written {
                    id: w.id,
                    size: w.size,
                    md5_hex: hex::encode(w.md5.finalize()),
                    sha256_hex: hex::encode(sha2::Digest::finalize(w.sha256)),
                })
            }
        }
    }

    pub async fn abort(self) {
        match self {
            BlobWriter::Local(w) => w.abort().await,
            BlobWriter::External(mut w) => {
                let _ = w.out.abort().await;
                let _ = object_store::ObjectStoreExt::delete(&*w.store, &external_path(&w.id)).await;
            }
        }
    }
}

impl LocalBlobs {
    fn path(&self, id: &str) -> PathBuf {
        // Two-level fan-out keeps directories small.
        self.dir.join("data").join(&id[..2]).join(id)
    }

    async fn create(&self) -> Result<LocalWriter, BlobError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let sealed = self.master.seal(&format!("blob:{id}"), &key);
        let tmp = self.dir.join("tmp").join(&id);
        let mut file = tokio::fs::File::create(&tmp).await?;
        let header = async {
            file.write_all(MAGIC).await?;
            file.write_all(&(sealed.len() as u16).to_be_bytes()).await?;
            file.write_all(&sealed).await
        };
        if let Err(e) = header.await {
            // A full disk fails here too: no writer will ever own this file, so remove it.
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        Ok(LocalWriter {
            dest: self.path(&id),
            id,
            tmp,
            file,
            cipher: Aes256Gcm::new((&key).into()),
            index: 0,
            pending: Vec::with_capacity(SEGMENT as usize * 2),
            size: 0,
            md5: Md5::new(),
            sha256: Sha256::new(),
        })
    }

    async fn remove(&self, id: &str) {
        let _ = tokio::fs::remove_file(self.path(id)).await;
    }

    /// Plaintext bytes `[start, end)` of a blob of plaintext `size`, as decrypted chunks.
    async fn read(&self, id: &str, size: u64, start: u64, end: u64) -> Result<Vec<Bytes>, BlobError> {
        let corrupt = || BlobError::Corrupt(id.to_string());
        let mut file = tokio::fs::File::open(self.path(id)).await?;
        let mut head = [0u8; 6];
        file.read_exact(&mut head).await?;
        if &head[..4] != MAGIC {
            return Err(corrupt());
        }
        let sealed_len = u16::from_be_bytes([head[4], head[5]]) as usize;
        let mut sealed = vec![0u8; sealed_len];
        file.read_exact(&mut sealed).await?;
        let key = self.master.open(&format!("blob:{id}"), &sealed).map_err(|_| corrupt())?;
        let key: [u8; 32] = key.try_into().map_err(|_| corrupt())?;
        let cipher = Aes256Gcm::new((&key).into());
        let header = 6 + sealed_len as u64;
        let segments = size.div_ceil(SEGMENT).max(1);
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let (first, last) = (start / SEGMENT, (end - 1) / SEGMENT);
        file.seek(std::io::SeekFrom::Start(header + first * (SEGMENT + TAG))).await?;
        for i in first..=last {
            let plain_len = if i == segments - 1 { size - i * SEGMENT } else { SEGMENT };
            let mut ct = vec![0u8; (plain_len + TAG) as usize];
            file.read_exact(&mut ct).await?;
            let pt = cipher
                .decrypt(Nonce::from_slice(&nonce(i)), Payload { msg: &ct, aad: &aad(id, i, i == segments - 1) })
                .map_err(|_| corrupt())?;
            let seg_start = i * SEGMENT;
            let from = start.saturating_sub(seg_start) as usize;
            let to = (end.min(seg_start + plain_len) - seg_start) as usize;
            out.push(Bytes::from(pt).slice(from..to));
        }
        Ok(out)
    }
}

impl LocalWriter {
    async fn seal_segment(&mut self, plain: &[u8], last: bool) -> Result<(), BlobError> {
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce(self.index)), Payload { msg: plain, aad: &aad(&self.id, self.index, last) })
            .map_err(|_| BlobError::Corrupt(self.id.clone()))?;
        self.file.write_all(&ct).await?;
        self.index += 1;
        Ok(())
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.md5.update(data);
        self.sha256.update(data);
        self.size += data.len() as u64;
        self.pending.extend_from_slice(data);
        // Keep at least one byte pending: only `finish` knows which segment is the last.
        while self.pending.len() as u64 > SEGMENT {
            let rest = self.pending.split_off(SEGMENT as usize);
            let seg = std::mem::replace(&mut self.pending, rest);
            self.seal_segment(&seg, false).await?;
        }
        Ok(())
    }

    /// Seals the last segment, makes the file durable and moves it into place. On failure
    /// (typically a full disk: ENOSPC on the last segment, the flush or the sync) the partial
    /// file is removed: nothing can refer to it, and the deliverer retries every second, so
    /// each failed attempt would otherwise leave one more file in `tmp/` for good.
    async fn finish(mut self) -> Result<Written, BlobError> {
        if let Err(e) = self.seal_last_and_place().await {
            let _ = tokio::fs::remove_file(&self.tmp).await;
            return Err(e);
        }
        Ok(Written {
            id: self.id,
            size: self.size,
            md5_hex: hex::encode(self.md5.finalize()),
            sha256_hex: hex::encode(sha2::Digest::finalize(self.sha256)),
        })
    }

    async fn seal_last_and_place(&mut self) -> Result<(), BlobError> {
        let last = std::mem::take(&mut self.pending);
        self.seal_segment(&last, true).await?;
        self.file.flush().await?;
        self.file.sync_all().await?;
        if let Some(parent) = self.dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(&self.tmp, &self.dest).await?;
        Ok(())
    }

    /// Drops an unfinished blob.
    async fn abort(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn write(store: &BlobStore, data: &[u8]) -> Written {
        let mut w = store.create().await.unwrap();
        for chunk in data.chunks(10_000) {
            w.write(chunk).await.unwrap();
        }
        w.finish().await.unwrap()
    }

    #[tokio::test]
    async fn ranges_round_trip_and_files_hold_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), Arc::new(MasterKey::from_bytes(&MasterKey::generate_bytes()))).unwrap();
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| format!("firmware-{i};").into_bytes()).take(300_001).collect();
        let w = write(&store, &data).await;
        assert_eq!(w.size, data.len() as u64);
        let BlobStore::Local(local) = &store else { unreachable!() };
        let raw = std::fs::read(local.path(&w.id)).unwrap();
        assert!(!raw.windows(12).any(|x| x == b"firmware-100"), "plaintext on disk");
        for (s, e) in [(0, data.len()), (0, 1), (65_535, 65_537), (131_072, 200_000), (300_000, 300_001)] {
            let got: Vec<u8> = store.read(&w.id, w.size, s as u64, e as u64).await.unwrap().concat();
            assert_eq!(got, &data[s..e], "range {s}..{e}");
        }
        let empty = write(&store, b"").await;
        assert!(store.read(&empty.id, 0, 0, 0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_finish_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), Arc::new(MasterKey::from_bytes(&MasterKey::generate_bytes()))).unwrap();
        // Every fan-out directory is taken by a plain file, so moving the blob into place fails
        // (as ENOSPC makes the last write, the flush or the sync fail on a full disk).
        for i in 0..=255u8 {
            std::fs::write(dir.path().join("data").join(format!("{i:02x}")), b"").unwrap();
        }
        for _ in 0..3 {
            let mut w = store.create().await.unwrap();
            w.write(&[7u8; 100_000]).await.unwrap();
            assert!(w.finish().await.is_err());
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "partial blobs left behind: {left:?}");
    }

    #[tokio::test]
    async fn tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), Arc::new(MasterKey::from_bytes(&MasterKey::generate_bytes()))).unwrap();
        let w = write(&store, &[7u8; 100_000]).await;
        let BlobStore::Local(local) = &store else { unreachable!() };
        let path = local.path(&w.id);
        let mut raw = std::fs::read(&path).unwrap();
        let n = raw.len();
        raw[n - 100] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        assert!(matches!(store.read(&w.id, w.size, 70_000, 80_000).await, Err(BlobError::Corrupt(_))));
        // A truncated blob (last segment cut) does not read as a shorter object.
        raw.truncate(n - 40_000);
        std::fs::write(&path, &raw).unwrap();
        assert!(store.read(&w.id, 65_536, 0, 65_536).await.is_err());
    }
}

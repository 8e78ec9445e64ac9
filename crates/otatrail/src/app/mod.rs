//! The application layer: carries out one API operation by combining domain rules with the
//! stores. It does I/O only through the traits it holds ([`Store`], [`BucketStore`]) and
//! knows no wire format.

pub mod audit;
pub mod buckets;
pub mod codesign;
pub mod delivery;
pub mod digests;
pub mod history;
pub mod iam;
pub mod identities;
pub mod jobs;
pub mod ota;
pub mod profile;
pub mod signing;
pub mod sns;
pub mod streams;
pub mod sts;
pub mod things;
pub mod trails;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ServerConfig;
use crate::crypto::MasterKey;
use crate::domain::time::{SharedClock, SystemClock};
use crate::objects::blob::BlobStore;
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

pub use identities::Identities;

/// Everything a request handler needs, shared by all requests.
pub struct App {
    pub store: Arc<dyn Store>,
    /// Encrypted object bytes of the embedded bucket store.
    pub blobs: BlobStore,
    pub identities: Identities,
    pub clock: SharedClock,
    pub data_dir: PathBuf,
    /// The region of generated profiles and of requests that name none.
    pub default_region: String,
    pub max_body_bytes: usize,
    /// Header and body read timeouts and the connection cap of each listener (`server`).
    pub connection_limits: crate::config::ConnectionLimits,
    /// Shortest DurationSeconds STS accepts (900 as in AWS; lower only for tests).
    pub sts_min_duration_seconds: i64,
    /// How long LookupEvents sees a record.
    pub event_retention_days: i64,
    /// The length of a lifecycle "day" in seconds (86400; tests shorten it).
    pub lifecycle_day_seconds: i64,
    /// How long a log file's oldest record waits before the file is delivered.
    pub delivery_interval_seconds: i64,
    /// Proxies whose `X-Forwarded-For` is believed for `sourceIPAddress`.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Seals secrets and private keys at rest.
    pub master: Arc<MasterKey>,
    /// How long a digest signing key signs before the next takes over.
    pub signing_key_rotation_seconds: i64,
    /// How often digest files are written.
    pub digest_interval_seconds: i64,
    pub log_file_max_records: usize,
    pub organizations: Vec<crate::domain::organization::Organization>,
    /// Keys that sign OTA images (`startSigningJobParameter`).
    pub signing_profiles: codesign::SigningProfiles,
    /// Buckets of another S3-compatible store that trails may deliver into.
    pub external_buckets: crate::objects::external_bucket::ExternalBuckets,
    /// SNS: retry policy, delivery transport, the worker's wake-up, signing keys.
    pub sns: sns::SnsRuntime,
    /// The OTA update state machine's wake-up and pass lock.
    pub ota: ota::OtaRuntime,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("master key {path}: {message}")]
    MasterKey { path: PathBuf, message: String },
    #[error("state store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("object store: {0}")]
    Blobs(String),
    #[error("identities: {0}")]
    Identities(String),
    #[error("{0}")]
    SigningProfiles(String),
}

impl App {
    /// Opens the data directory: database (migrated), master key, buckets and identities.
    pub async fn open(config: &ServerConfig) -> Result<Arc<App>, StartError> {
        let dir = &config.data_dir;
        create_private_dir(dir)?;
        let master = Arc::new(load_or_create_master_key(&dir.join("keys"))?);
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("otatrail.db")).await?);
        let blobs = match &config.external_store {
            None => BlobStore::open(&dir.join("objects"), master.clone())
                .map_err(|source| StartError::DataDir { path: dir.join("objects"), source })?,
            Some(ext) => {
                let b = BlobStore::external(ext).map_err(|e| StartError::Blobs(e.to_string()))?;
                b.check().await.map_err(|e| {
                    StartError::Blobs(format!("external store {} bucket {} does not answer: {e}", ext.endpoint, ext.bucket))
                })?;
                b
            }
        };
        let clock: SharedClock = Arc::new(SystemClock);
        let identities = Identities::new(store.clone(), master.clone(), clock.clone());
        identities.apply_config(&config.accounts).await.map_err(|e| StartError::Identities(e.to_string()))?;
        Ok(Arc::new(App {
            store,
            blobs,
            identities,
            clock,
            data_dir: dir.clone(),
            default_region: config.region.clone(),
            max_body_bytes: config.max_body_bytes,
            connection_limits: config.connection_limits(),
            sts_min_duration_seconds: config.sts_min_duration_seconds,
            event_retention_days: config.event_retention_days,
            lifecycle_day_seconds: config.lifecycle_day_seconds,
            delivery_interval_seconds: config.delivery_interval_seconds,
            trusted_proxies: config.trusted_proxies.clone(),
            master: master.clone(),
            signing_key_rotation_seconds: config.signing_key_rotation_seconds,
            digest_interval_seconds: config.digest_interval_seconds,
            log_file_max_records: config.log_file_max_records,
            organizations: config.organizations.clone(),
            signing_profiles: codesign::SigningProfiles::load(&config.signing_profiles).map_err(StartError::SigningProfiles)?,
            external_buckets: crate::objects::external_bucket::ExternalBuckets::open(&config.external_buckets).map_err(StartError::Blobs)?,
            sns: sns::SnsRuntime::new(
                crate::domain::sns::RetryPolicy {
                    first_delay_ms: 1000,
                    max_delay_ms: config.sns_retry_max_seconds * 1000,
                    give_up_after_ms: config.sns_retry_give_up_seconds * 1000,
                },
                config.sns_public_url.clone(),
                format!("http://{}", config.listen),
                Arc::new(crate::outbound::HttpTransport::new()),
            ),
            ota: ota::OtaRuntime::default(),
        }))
    }
}

fn create_private_dir(path: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir { path: path.to_path_buf(), source };
    std::fs::create_dir_all(path).map_err(err)?;
    Ok(())
}

/// Writes `data` to `path` with mode 0600, replacing it atomically.
pub fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn load_or_create_master_key(dir: &Path) -> Result<MasterKey, StartError> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("master.key");
    let err = |message: String| StartError::MasterKey { path: path.clone(), message };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| err(e.to_string()))?;
    match std::fs::read(&path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| err(format!("expected 32 bytes, found {}; restore the original file", bytes.len())))?;
            Ok(MasterKey::from_bytes(&key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate_bytes();
            write_private_file(&path, &key).map_err(|e| err(e.to_string()))?;
            Ok(MasterKey::from_bytes(&key))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

impl App {
    /// Background upkeep: removes temporary credentials a day after they expired (until then
    /// they are kept so that a late request gets `ExpiredToken` rather than an unknown key).
    pub fn spawn_housekeeping(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let cutoff = crate::domain::time::Millis(app.clock.now().0 - 86_400_000);
                let r = crate::store::write::<_, crate::store::StoreError, _>(&*app.store, move |tx| {
                    Box::pin(async move { tx.delete_expired_sessions(cutoff).await })
                })
                .await;
                match r {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "removed expired temporary credentials"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not remove expired temporary credentials"),
                }
            }
        })
    }
}

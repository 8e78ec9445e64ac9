//! Server configuration: command-line flags, then `OTATRAIL_*` environment variables (both
//! read by clap), then `otatrail.toml`, then built-in defaults, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4566";
pub const DEFAULT_S3_LISTEN: &str = "127.0.0.1:4567";
pub const DEFAULT_DATA_DIR: &str = "./otatrail-data";
pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_HEADER_READ_TIMEOUT_SECONDS: u64 = 10;
pub const DEFAULT_BODY_READ_TIMEOUT_SECONDS: u64 = 60;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_CONFIG_FILE: &str = "otatrail.toml";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings given on the command line or in the environment; `None` when not given.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). Default: ./otatrail.toml when it exists.
    #[arg(long, env = "OTATRAIL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the database, buckets and keys [default: ./otatrail-data]
    #[arg(long, env = "OTATRAIL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the port that answers every AWS JSON and query API [default: 127.0.0.1:4566]
    #[arg(long, env = "OTATRAIL_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Address of the S3 endpoint (path-style) [default: 127.0.0.1:4567]
    #[arg(long, env = "OTATRAIL_S3_LISTEN", value_name = "HOST:PORT")]
    pub s3_listen: Option<SocketAddr>,
    /// Region written to the generated aws CLI profile [default: us-east-1]
    #[arg(long, env = "OTATRAIL_REGION", value_name = "REGION")]
    pub region: Option<String>,
    /// Log line format [default: text]
    #[arg(long, env = "OTATRAIL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Keep object bytes in an external S3-compatible store at this URL instead of the data
    /// directory (objects are written with SSE AES256)
    #[arg(long, env = "OTATRAIL_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Bucket of the external store [default: otatrail]
    #[arg(long, env = "OTATRAIL_S3_BUCKET", value_name = "NAME")]
    pub s3_bucket: Option<String>,
    /// Region of the external store [default: us-east-1]
    #[arg(long, env = "OTATRAIL_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Access key ID for the external store (also AWS_ACCESS_KEY_ID)
    #[arg(long, env = "OTATRAIL_S3_ACCESS_KEY_ID", value_name = "ID")]
    pub s3_access_key_id: Option<String>,
    /// Secret access key for the external store (prefer the environment variable)
    #[arg(long, env = "OTATRAIL_S3_SECRET_ACCESS_KEY", value_name = "SECRET", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Seconds a log file's oldest record waits before the file is delivered [default: 300]
    #[arg(long, env = "OTATRAIL_DELIVERY_INTERVAL", value_name = "SECONDS")]
    pub delivery_interval: Option<i64>,
    /// Seconds between digest files of trails with log file validation [default: 3600, at least 60]
    #[arg(long, env = "OTATRAIL_DIGEST_INTERVAL", value_name = "SECONDS")]
    pub digest_interval: Option<i64>,
    /// Largest accepted request body, in bytes [default: 1048576]
    #[arg(long, env = "OTATRAIL_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds a client has to send a request's headers; a connection that waits this long
    /// for a request (also between keep-alive requests) is closed [default: 10, 1 to 3600]
    #[arg(long, env = "OTATRAIL_HEADER_READ_TIMEOUT", value_name = "SECONDS")]
    pub header_read_timeout: Option<u64>,
    /// Seconds a client has to send a whole request body on the main port (else 408
    /// RequestTimeoutException); on the S3 port, where uploads may take long, seconds an
    /// upload may stall without sending a byte (else it fails); on both ports, seconds a
    /// response may wait for the client to read (else the connection is closed) [default: 60,
    /// 1 to 86400]
    #[arg(long, env = "OTATRAIL_BODY_READ_TIMEOUT", value_name = "SECONDS")]
    pub body_read_timeout: Option<u64>,
    /// Open connections per port at most; beyond it new connections wait in the kernel's
    /// backlog until one closes (keep it below the open-file limit, ulimit -n) [default: 4096,
    /// 1 to 1000000]
    #[arg(long, env = "OTATRAIL_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
}

/// `otatrail.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub s3_listen: Option<SocketAddr>,
    pub region: Option<String>,
    pub log_format: Option<LogFormat>,
    pub max_body_bytes: Option<usize>,
    pub header_read_timeout_seconds: Option<u64>,
    pub body_read_timeout_seconds: Option<u64>,
    pub max_connections: Option<usize>,
    /// Shortest STS DurationSeconds accepted. AWS's 900 by default; tests lower it to see
    /// credentials expire.
    pub sts_min_duration_seconds: Option<i64>,
    /// Days LookupEvents keeps seeing a record (90, as in AWS).
    pub event_retention_days: Option<i64>,
    /// Seconds in a lifecycle-rule "day" (86400). Tests shorten it to see rules apply.
    pub lifecycle_day_seconds: Option<i64>,
    /// How often lifecycle rules are applied, in seconds (3600).
    pub lifecycle_interval_seconds: Option<u64>,
    pub delivery_interval_seconds: Option<i64>,
    /// Seconds a digest signing key signs before the next one takes over (30 days).
    pub signing_key_rotation_seconds: Option<i64>,
    pub digest_interval_seconds: Option<i64>,
    /// Records per log file at most (1000, as CloudTrail). Benchmarks lower it to make many files.
    pub log_file_max_records: Option<usize>,
    /// Longest wait between two attempts of an SNS delivery, in seconds (60); attempts back
    /// off from 1 s, doubling up to this. Tests shorten it.
    pub sns_retry_max_seconds: Option<i64>,
    /// How long an undelivered SNS message is retried before it is dropped (23 days, as SNS).
    pub sns_retry_give_up_seconds: Option<i64>,
    /// The main port's URL as SNS subscribers reach it (SubscribeURL, UnsubscribeURL,
    /// SigningCertURL); default: the listen address.
    pub sns_public_url: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` header names the client (none by default).
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// `[[organizations]]`: id, management_account, members.
    #[serde(default)]
    pub organizations: Vec<crate::domain::organization::Organization>,
    /// `[[external_buckets]]`: buckets of another S3-compatible store trails deliver into.
    #[serde(default)]
    pub external_buckets: Vec<crate::objects::external_bucket::ExternalBucketConfig>,
    /// `[[signing_profiles]]`: name, private_key_file, certificate_file, certificate_path_on_device.
    #[serde(default)]
    pub signing_profiles: Vec<crate::app::codesign::SigningProfileConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub id: String,
    pub root_access_key_id: Option<String>,
    pub root_secret_access_key: Option<String>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub access_keys: Vec<AccessKeyConfig>,
}

fn default_path() -> String {
    "/".into()
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for AccessKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyConfig").field("id", &self.id).field("secret", &"***").finish()
    }
}

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub s3_listen: SocketAddr,
    pub region: String,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    /// See [`ConnectionLimits`].
    pub header_read_timeout_seconds: u64,
    pub body_read_timeout_seconds: u64,
    pub max_connections: usize,
    pub sts_min_duration_seconds: i64,
    pub event_retention_days: i64,
    pub lifecycle_day_seconds: i64,
    pub lifecycle_interval_seconds: u64,
    pub delivery_interval_seconds: i64,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub signing_key_rotation_seconds: i64,
    pub digest_interval_seconds: i64,
    pub log_file_max_records: usize,
    pub sns_retry_max_seconds: i64,
    pub sns_retry_give_up_seconds: i64,
    pub sns_public_url: Option<String>,
    /// Object bytes in an external S3-compatible store instead of the data directory.
    pub external_store: Option<crate::objects::blob::ExternalConfig>,
    pub accounts: Vec<AccountConfig>,
    pub organizations: Vec<crate::domain::organization::Organization>,
    pub external_buckets: Vec<crate::objects::external_bucket::ExternalBucketConfig>,
    pub signing_profiles: Vec<crate::app::codesign::SigningProfileConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("configuration file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Merges flags/environment over the configuration file over the defaults.
    pub fn load(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(p) => Some(read_file(p)?),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => Some(read_file(Path::new(DEFAULT_CONFIG_FILE))?),
            None => None,
        };
        Self::merge(args, file.unwrap_or_default())
    }

    pub fn merge(args: &ServeArgs, file: FileConfig) -> Result<Self, ConfigError> {
        let cfg = Self {
            data_dir: args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            listen: match args.listen.or(file.listen) {
                Some(l) => l,
                None => DEFAULT_LISTEN.parse().expect("default address parses"),
            },
            s3_listen: match args.s3_listen.or(file.s3_listen) {
                Some(l) => l,
                None => DEFAULT_S3_LISTEN.parse().expect("default address parses"),
            },
            region: args.region.clone().or(file.region).unwrap_or_else(|| DEFAULT_REGION.into()),
            log_format: args.log_format.or(file.log_format).unwrap_or(LogFormat::Text),
            max_body_bytes: args.max_body_bytes.or(file.max_body_bytes).unwrap_or(DEFAULT_MAX_BODY_BYTES),
            header_read_timeout_seconds: args
                .header_read_timeout
                .or(file.header_read_timeout_seconds)
                .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT_SECONDS),
            body_read_timeout_seconds: args.body_read_timeout.or(file.body_read_timeout_seconds).unwrap_or(DEFAULT_BODY_READ_TIMEOUT_SECONDS),
            max_connections: args.max_connections.or(file.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
            sts_min_duration_seconds: file.sts_min_duration_seconds.unwrap_or(900),
            event_retention_days: file.event_retention_days.unwrap_or(crate::domain::history::DEFAULT_RETENTION_DAYS),
            lifecycle_day_seconds: file.lifecycle_day_seconds.unwrap_or(86_400),
            lifecycle_interval_seconds: file.lifecycle_interval_seconds.unwrap_or(3600),
            trusted_proxies: file.trusted_proxies,
            signing_key_rotation_seconds: file.signing_key_rotation_seconds.unwrap_or(30 * 86_400),
            digest_interval_seconds: args.digest_interval.or(file.digest_interval_seconds).unwrap_or(3600),
            log_file_max_records: file.log_file_max_records.unwrap_or(crate::app::delivery::MAX_RECORDS_PER_FILE),
            sns_retry_max_seconds: file.sns_retry_max_seconds.unwrap_or(crate::domain::sns::DEFAULT_MAX_DELAY_SECONDS),
            sns_retry_give_up_seconds: file.sns_retry_give_up_seconds.unwrap_or(crate::domain::sns::DEFAULT_GIVE_UP_SECONDS),
            sns_public_url: file.sns_public_url,
            external_store: match args.s3_endpoint.clone().or(file.s3_endpoint) {
                None => None,
                Some(endpoint) => Some(crate::objects::blob::ExternalConfig {
                    endpoint,
                    bucket: args.s3_bucket.clone().or(file.s3_bucket).unwrap_or_else(|| "otatrail".into()),
                    region: args.s3_region.clone().or(file.s3_region).unwrap_or_else(|| DEFAULT_REGION.into()),
                    access_key_id: args
                        .s3_access_key_id
                        .clone()
                        .or(file.s3_access_key_id)
                        .or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok())
                        .ok_or_else(|| ConfigError::Invalid("--s3-endpoint needs --s3-access-key-id (or AWS_ACCESS_KEY_ID)".into()))?,
                    secret_access_key: args
                        .s3_secret_access_key
                        .clone()
                        .or(file.s3_secret_access_key)
                        .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok())
                        .ok_or_else(|| ConfigError::Invalid("--s3-endpoint needs --s3-secret-access-key (or AWS_SECRET_ACCESS_KEY)".into()))?,
                }),
            },
            delivery_interval_seconds: args.delivery_interval.or(file.delivery_interval_seconds).unwrap_or(300),
            accounts: file.accounts,
            organizations: file.organizations,
            external_buckets: file.external_buckets,
            signing_profiles: file.signing_profiles,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        use crate::domain::identity::{is_access_key_id, is_account_id, is_user_name};
        if !crate::api::auth::is_region(&self.region) {
            return Err(ConfigError::Invalid(format!("'{}' is not a region name such as us-east-1", self.region)));
        }
        if !(1..=900).contains(&self.sts_min_duration_seconds) {
            return Err(ConfigError::Invalid("sts_min_duration_seconds must be between 1 and 900".into()));
        }
        if self.lifecycle_day_seconds < 1 || self.lifecycle_interval_seconds < 1 {
            return Err(ConfigError::Invalid("lifecycle_day_seconds and lifecycle_interval_seconds must be at least 1".into()));
        }
        if !(1..=86_400).contains(&self.delivery_interval_seconds) {
            return Err(ConfigError::Invalid("the delivery interval must be between 1 and 86400 seconds".into()));
        }
        if !(60..=86_400).contains(&self.digest_interval_seconds) {
            return Err(ConfigError::Invalid("the digest interval must be between 60 and 86400 seconds".into()));
        }
        if !(1..=3600).contains(&self.sns_retry_max_seconds) || self.sns_retry_give_up_seconds < 1 {
            return Err(ConfigError::Invalid("sns_retry_max_seconds must be between 1 and 3600, sns_retry_give_up_seconds at least 1".into()));
        }
        if let Some(u) = &self.sns_public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!("sns_public_url '{u}' must be an http:// or https:// URL")));
        }
        if !(1..=crate::app::delivery::MAX_RECORDS_PER_FILE).contains(&self.log_file_max_records) {
            return Err(ConfigError::Invalid(format!("log_file_max_records must be between 1 and {}", crate::app::delivery::MAX_RECORDS_PER_FILE)));
        }
        if self.signing_key_rotation_seconds < 60 {
            return Err(ConfigError::Invalid("signing_key_rotation_seconds must be at least 60".into()));
        }
        if self.event_retention_days < 1 {
            return Err(ConfigError::Invalid("event_retention_days must be at least 1".into()));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid("max_body_bytes must be at least 1024".into()));
        }
        if !(1..=3600).contains(&self.header_read_timeout_seconds) {
            return Err(ConfigError::Invalid("the header read timeout must be between 1 and 3600 seconds".into()));
        }
        if !(1..=86_400).contains(&self.body_read_timeout_seconds) {
            return Err(ConfigError::Invalid("the body read timeout must be between 1 and 86400 seconds".into()));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(ConfigError::Invalid("max_connections must be between 1 and 1000000".into()));
        }
        crate::domain::organization::validate_all(&self.organizations).map_err(ConfigError::Invalid)?;
        for a in &self.accounts {
            if !is_account_id(&a.id) {
                return Err(ConfigError::Invalid(format!("account id '{}' must be 12 digits", a.id)));
            }
            match (&a.root_access_key_id, &a.root_secret_access_key) {
                (Some(id), Some(secret)) => check_key(id, secret)?,
                (None, None) => {}
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "account {}: give both root_access_key_id and root_secret_access_key, or neither",
                        a.id
                    )));
                }
            }
            for u in &a.users {
                if !is_user_name(&u.name) {
                    return Err(ConfigError::Invalid(format!("account {}: '{}' is not a valid IAM user name", a.id, u.name)));
                }
                for k in &u.access_keys {
                    check_key(&k.id, &k.secret)?;
                }
            }
        }
        fn check_key(id: &str, secret: &str) -> Result<(), ConfigError> {
            if !is_access_key_id(id) {
                return Err(ConfigError::Invalid(format!("access key id '{id}' must be 16-128 letters, digits or _")));
            }
            if secret.len() < 16 {
                return Err(ConfigError::Invalid(format!("the secret of access key '{id}' is shorter than 16 characters")));
            }
            Ok(())
        }
        Ok(())
    }
}

/// What one listener allows a client, from [`ServerConfig`] (used by `server`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to send a request's headers, counted from when the connection waits for a request
    /// (after accepting it, and after each response on a kept-alive connection): it is also how
    /// long a connection may stay idle.
    pub header_read_timeout: std::time::Duration,
    /// Main port: time to send a whole request body. S3 port: longest silence within a body.
    /// Both ports: longest a response may wait for the client to read.
    pub body_read_timeout: std::time::Duration,
    /// Open connections per listener.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: std::time::Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_SECONDS),
            body_read_timeout: std::time::Duration::from_secs(DEFAULT_BODY_READ_TIMEOUT_SECONDS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ServerConfig {
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_seconds),
            body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout_seconds),
            max_connections: self.max_connections,
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:9000"
            region = "eu-west-1"
            data_dir = "/from/file"
            "#,
        )
        .unwrap();
        let args = ServeArgs { listen: Some("127.0.0.1:9100".parse().unwrap()), ..Default::default() };
        let cfg = ServerConfig::merge(&args, file).unwrap();
        assert_eq!(cfg.listen.port(), 9100);
        assert_eq!(cfg.region, "eu-west-1");
        assert_eq!(cfg.data_dir, PathBuf::from("/from/file"));
        assert_eq!(cfg.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(cfg.connection_limits(), ConnectionLimits::default());

        let cfg = ServerConfig::merge(&ServeArgs::default(), FileConfig::default()).unwrap();
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(cfg.region, DEFAULT_REGION);
        assert_eq!(cfg.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn accounts_are_checked() {
        let bad: FileConfig = toml::from_str("[[accounts]]\nid = \"12\"").unwrap();
        assert!(ServerConfig::merge(&ServeArgs::default(), bad).is_err());
        let unknown = toml::from_str::<FileConfig>("colour = 1");
        assert!(unknown.is_err());
        let ok: FileConfig = toml::from_str(
            r#"
            [[accounts]]
            id = "111122223333"
            root_access_key_id = "AKIAROOT0000EXAMPLE1"
            root_secret_access_key = "rootsecret/EXAMPLE/0000000000000000000000"
            [[accounts.users]]
            name = "alice"
            [[accounts.users.access_keys]]
            id = "AKIAALICE000EXAMPLE1"
            secret = "alicesecret/EXAMPLE/000000000000000000000"
            "#,
        )
        .unwrap();
        let cfg = ServerConfig::merge(&ServeArgs::default(), ok).unwrap();
        assert_eq!(cfg.accounts[0].users[0].access_keys.len(), 1);
        assert!(!format!("{:?}", cfg).contains("alicesecret"));
    }

    #[test]
    fn connection_limits_are_merged_and_checked() {
        let file: FileConfig = toml::from_str("header_read_timeout_seconds = 3\nbody_read_timeout_seconds = 7\nmax_connections = 9").unwrap();
        let args = ServeArgs { max_connections: Some(11), ..Default::default() };
        let limits = ServerConfig::merge(&args, file).unwrap().connection_limits();
        assert_eq!(limits.header_read_timeout, std::time::Duration::from_secs(3));
        assert_eq!(limits.body_read_timeout, std::time::Duration::from_secs(7));
        assert_eq!(limits.max_connections, 11);
        for bad in ["header_read_timeout_seconds = 0", "body_read_timeout_seconds = 0", "max_connections = 0", "header_read_timeout_seconds = 3601"] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            assert!(ServerConfig::merge(&ServeArgs::default(), file).is_err(), "{bad}");
        }
    }
}

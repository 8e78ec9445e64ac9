//! The aws CLI files written on first start, so that `aws` and boto3 work with three
//! environment variables and nothing else.

use std::path::{Path, PathBuf};

use super::identities::RootCredentials;
use super::write_private_file;

pub const PROFILE: &str = "otatrail";

pub struct AwsFiles {
    pub credentials: PathBuf,
    pub config: PathBuf,
}

impl AwsFiles {
    pub fn in_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("aws");
        Self { credentials: dir.join("credentials"), config: dir.join("config") }
    }

    /// Writes `config` (endpoint and region) and, when given, `credentials`, both mode 0600.
    pub fn write(&self, endpoint_url: &str, s3_endpoint_url: &str, region: &str, root: Option<&RootCredentials>) -> std::io::Result<()> {
        if let Some(parent) = self.config.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // S3 has its own port; the `services` section routes the s3 client there (botocore's
        // configured endpoints, honoured by `aws s3` and `aws cloudtrail validate-logs`).
        let config = format!(
            "[profile {PROFILE}]\nregion = {region}\nendpoint_url = {endpoint_url}\noutput = json\nservices = {PROFILE}-services\n\n[services {PROFILE}-services]\ns3 =\n  endpoint_url = {s3_endpoint_url}\n"
        );
        write_private_file(&self.config, config.as_bytes())?;
        if let Some(root) = root {
            let creds = format!(
                "[{PROFILE}]\n# Root user of account {}\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                root.account_id,
                root.access_key_id,
                root.secret.expose()
            );
            write_private_file(&self.credentials, creds.as_bytes())?;
        }
        Ok(())
    }

    /// The shell lines that point the aws CLI and boto3 at these files.
    pub fn env_lines(&self) -> [String; 3] {
        [
            format!("export AWS_SHARED_CREDENTIALS_FILE={}", self.credentials.display()),
            format!("export AWS_CONFIG_FILE={}", self.config.display()),
            format!("export AWS_PROFILE={PROFILE}"),
        ]
    }
}

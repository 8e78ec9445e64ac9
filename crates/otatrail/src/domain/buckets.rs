//! Buckets and object metadata of the bucket store, and S3's naming rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::time::Millis;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub account_id: String,
    pub region: String,
    pub created_at: Millis,
    pub policy: Option<String>,
    pub lifecycle: Option<String>,
}

/// A piece of an object's bytes: an encrypted blob file and its plaintext size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub id: String,
    pub size: u64,
    /// Hex SHA-256 of the plaintext, noted while the blob was written (absent for blobs
    /// written before it was noted), so a stream over the object need not read it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Without quotes: hex MD5, or `<hex>-<parts>` for multipart uploads.
    pub etag: String,
    pub content_type: Option<String>,
    /// `x-amz-meta-*` user metadata, names lowercase.
    pub metadata: BTreeMap<String, String>,
    pub last_modified: Millis,
    pub storage_class: String,
    pub blobs: Vec<BlobRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub upload_id: String,
    pub part_number: i64,
    pub size: u64,
    pub etag: String,
    pub blob: String,
}

/// A lifecycle rule as otatrail applies it: expiration and transitions by age, filtered by
/// key prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    pub id: Option<String>,
    pub enabled: bool,
    pub prefix: String,
    pub expiration_days: Option<i64>,
    /// `(days, storage class)`
    pub transitions: Vec<(i64, String)>,
}

impl LifecycleRule {
    /// What the rule does to an object of `age_days`: expire it, or move it to a class.
    pub fn action(&self, key: &str, age_days: i64, current_class: &str) -> Option<LifecycleAction> {
        if !self.enabled || !key.starts_with(&self.prefix) {
            return None;
        }
        if self.expiration_days.is_some_and(|d| age_days >= d) {
            return Some(LifecycleAction::Expire);
        }
        let class = self.transitions.iter().filter(|(d, _)| age_days >= *d).max_by_key(|(d, _)| *d).map(|(_, c)| c.clone())?;
        (class != current_class).then_some(LifecycleAction::Transition(class))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LifecycleAction {
    Expire,
    Transition(String),
}

/// S3 general-purpose bucket names: 3–63 of lowercase letters, digits, `.` and `-`, starting
/// and ending with a letter or digit, no `..`, not an IP address.
pub fn is_valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && !name.contains(".-")
        && !name.contains("-.")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_rules() {
        let r = LifecycleRule {
            id: None,
            enabled: true,
            prefix: "AWSLogs/".into(),
            expiration_days: Some(30),
            transitions: vec![(7, "STANDARD_IA".into()), (14, "GLACIER".into())],
        };
        assert_eq!(r.action("other/x", 100, "STANDARD"), None);
        assert_eq!(r.action("AWSLogs/x", 3, "STANDARD"), None);
        assert_eq!(r.action("AWSLogs/x", 8, "STANDARD"), Some(LifecycleAction::Transition("STANDARD_IA".into())));
        assert_eq!(r.action("AWSLogs/x", 15, "STANDARD_IA"), Some(LifecycleAction::Transition("GLACIER".into())));
        assert_eq!(r.action("AWSLogs/x", 15, "GLACIER"), None);
        assert_eq!(r.action("AWSLogs/x", 30, "GLACIER"), Some(LifecycleAction::Expire));
    }

    #[test]
    fn bucket_names() {
        for ok in ["fw", "firmware-2026", "a.b.c", "abc"] {
            assert_eq!(is_valid_bucket_name(ok), ok.len() >= 3, "{ok}");
        }
        for bad in ["Firmware", "-abc", "abc-", "a..b", "192.168.1.1", "a_b", &"a".repeat(64)] {
            assert!(!is_valid_bucket_name(bad), "{bad}");
        }
    }
}

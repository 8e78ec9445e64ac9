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
    fn bucket_names() {
        for ok in ["fw", "firmware-2026", "a.b.c", "abc"] {
            assert_eq!(is_valid_bucket_name(ok), ok.len() >= 3, "{ok}");
        }
        for bad in ["Firmware", "-abc", "abc-", "a..b", "192.168.1.1", "a_b", &"a".repeat(64)] {
            assert!(!is_valid_bucket_name(bad), "{bad}");
        }
    }
}

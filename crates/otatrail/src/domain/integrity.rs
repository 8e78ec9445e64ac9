//! Log file integrity: what `otatrail validate-logs` decides about digests and log files
//! (`cloudtrail.md` §3), with no I/O. The caller fetches objects and hands their bytes in.
//!
//! Beyond the checks `aws cloudtrail validate-logs` makes, the chain is checked both ways
//! (`previousDigestHashValue` and `previousDigestSignature` against the previous digest
//! actually stored), intervals must meet exactly (no gap, no overlap), and log files in the
//! bucket that no digest lists are found.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use serde_json::Value;

use super::time::Millis;

/// The parts of a digest key's file name:
/// `<acct>_CloudTrail-Digest_<region>_<trail>_<home>_<YYYYMMDDTHHMMSSZ>[_backfill].json.gz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestKeyInfo {
    pub account: String,
    pub region: String,
    pub trail_name: String,
    pub home_region: String,
    pub end: Millis,
    pub backfill: bool,
}

fn parse_stamp(s: &str, with_seconds: bool) -> Option<Millis> {
    let digits = |r: std::ops::Range<usize>| s.get(r).filter(|d| d.bytes().all(|b| b.is_ascii_digit())).and_then(|d| d.parse::<u32>().ok());
    let want_len = if with_seconds { 16 } else { 14 };
    if s.len() != want_len || s.as_bytes()[8] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let (y, mo, d, h, mi) = (digits(0..4)?, digits(4..6)?, digits(6..8)?, digits(9..11)?, digits(11..13)?);
    let sec = if with_seconds { digits(13..15)? } else { 0 };
    let date = time::Date::from_calendar_date(y as i32, time::Month::try_from(mo as u8).ok()?, d as u8).ok()?;
    let t = time::Time::from_hms(h as u8, mi as u8, sec as u8).ok()?;
    let dt = time::PrimitiveDateTime::new(date, t).assume_utc();
    Some(Millis((dt.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// Reads a digest key's file name; `None` for anything that is not a digest key.
pub fn parse_digest_key(key: &str) -> Option<DigestKeyInfo> {
    let name = key.rsplit('/').next()?;
    let (stem, backfill) = match name.strip_suffix("_backfill.json.gz") {
        Some(s) => (s, true),
        None => (name.strip_suffix(".json.gz")?, false),
    };
    let (rest, stamp) = stem.rsplit_once('_')?;
    let end = parse_stamp(stamp, true)?;
    let (account, rest) = rest.split_once("_CloudTrail-Digest_")?;
    let (region, rest) = rest.split_once('_')?;
    // Trail names may hold underscores; the home region is the last part.
    let (trail_name, home_region) = rest.rsplit_once('_')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) || trail_name.is_empty() {
        return None;
    }
    Some(DigestKeyInfo {
        account: account.into(),
        region: region.into(),
        trail_name: trail_name.into(),
        home_region: home_region.into(),
        end,
        backfill,
    })
}

/// A log file key's account, region and (minute-precision) delivery time:
/// `<acct>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz`.
pub fn parse_log_key(key: &str) -> Option<(String, String, Millis)> {
    let name = key.rsplit('/').next()?;
    let stem = name.strip_suffix(".json.gz")?;
    let (account, rest) = stem.split_once("_CloudTrail_")?;
    let (region, rest) = rest.split_once('_')?;
    let (stamp, unique) = rest.split_once('_')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) || unique.is_empty() {
        return None;
    }
    Some((account.into(), region.into(), parse_stamp(stamp, false)?))
}

/// Why a gzip object could not be read, in the AWS tool's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    InvalidFormat,
    TrailingData,
}

impl InflateError {
    pub fn reason(self) -> &'static str {
        match self {
            InflateError::InvalidFormat => "invalid format",
            InflateError::TrailingData => "unexpected data after end of compressed stream",
        }
    }
}

/// Inflates exactly one gzip member; anything after it is an error, as for the AWS tool.
pub fn inflate_one_member(gz: &[u8]) -> Result<Vec<u8>, InflateError> {
    let mut decoder = flate2::bufread::GzDecoder::new(gz);
    let mut out = Vec::with_capacity(gz.len() * 8);
    decoder.read_to_end(&mut out).map_err(|_| InflateError::InvalidFormat)?;
    if !decoder.into_inner().is_empty() {
        return Err(InflateError::TrailingData);
    }
    Ok(out)
}

/// One `logFiles[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedLogFile {
    pub bucket: String,
    pub key: String,
    pub sha256: String,
}

/// The fields of a digest that validation uses, as written in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestContent {
    pub start_text: String,
    pub end_text: String,
    pub start: Millis,
    pub end: Millis,
    pub bucket: String,
    pub key: String,
    pub fingerprint: String,
    pub previous: Option<(String, String)>,
    pub previous_hash: Option<String>,
    pub previous_signature: Option<String>,
    pub log_files: Vec<ListedLogFile>,
}

fn parse_iso(s: &str) -> Option<Millis> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some(Millis((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// Parses inflated digest bytes; `None` is the AWS tool's `invalid format` (unreadable JSON, or
/// one of the keys it requires missing).
pub fn parse_digest(json: &[u8]) -> Option<DigestContent> {
    let v: Value = serde_json::from_slice(json).ok()?;
    let o = v.as_object()?;
    for required in ["digestPublicKeyFingerprint", "digestS3Bucket", "digestS3Object", "previousDigestSignature", "digestEndTime", "digestStartTime", "logFiles"] {
        if !o.contains_key(required) {
            return None;
        }
    }
    let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let (start_text, end_text) = (text("digestStartTime")?, text("digestEndTime")?);
    let previous = match (text("previousDigestS3Bucket"), text("previousDigestS3Object")) {
        (Some(b), Some(k)) => Some((b, k)),
        _ => None,
    };
    let mut log_files = Vec::new();
    for f in o.get("logFiles")?.as_array()? {
        let s = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
        log_files.push(ListedLogFile { bucket: s("s3Bucket")?, key: s("s3Object")?, sha256: s("hashValue")? });
    }
    Some(DigestContent {
        start: parse_iso(&start_text)?,
        end: parse_iso(&end_text)?,
        start_text,
        end_text,
        bucket: text("digestS3Bucket")?,
        key: text("digestS3Object")?,
        fingerprint: text("digestPublicKeyFingerprint")?,
        previous,
        previous_hash: text("previousDigestHashValue"),
        previous_signature: text("previousDigestSignature"),
        log_files,
    })
}

/// `<end>\n<bucket>/<key>\n<sha256 of the inflated digest>\n<previous signature or "null">`
pub fn string_to_sign(d: &DigestContent, inflated_sha256: &str) -> String {
    format!("{}\n{}/{}\n{}\n{}", d.end_text, d.bucket, d.key, inflated_sha256, d.previous_signature.as_deref().unwrap_or("null"))
}

/// Why a digest is not valid (the first four are the AWS tool's reasons).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestProblem {
    NotFound,
    InvalidFormat,
    Moved,
    UnknownKey { region: String },
    BadSignature,
}

impl DigestProblem {
    pub fn reason(&self) -> String {
        match self {
            DigestProblem::NotFound => "not found".into(),
            DigestProblem::InvalidFormat => "invalid format".into(),
            DigestProblem::Moved => "has been moved from its original location".into(),
            DigestProblem::UnknownKey { region } => format!("public key not found in region {region}"),
            DigestProblem::BadSignature => "signature verification failed".into(),
        }
    }
}

/// A digest as fetched: where it was read and its raw parts.
pub struct FetchedDigest<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub region: &'a str,
    pub gz: &'a [u8],
    /// The `signature` metadata (hex).
    pub signature_hex: Option<&'a str>,
}

/// A digest that passed every check, with what the chain checks need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidDigest {
    pub content: DigestContent,
    pub sha256: String,
    pub signature_hex: String,
}

/// Checks one digest as the AWS tool does: format, location, key, signature. `public_keys`
/// maps fingerprints to PKCS#1 DER public keys.
pub fn check_digest(d: &FetchedDigest<'_>, public_keys: &HashMap<String, Vec<u8>>) -> Result<ValidDigest, DigestProblem> {
    let json = inflate_one_member(d.gz).map_err(|_| DigestProblem::InvalidFormat)?;
    let content = parse_digest(&json).ok_or(DigestProblem::InvalidFormat)?;
    let signature_hex = d.signature_hex.ok_or(DigestProblem::InvalidFormat)?;
    if content.bucket != d.bucket || content.key != d.key {
        return Err(DigestProblem::Moved);
    }
    let public = public_keys.get(&content.fingerprint).ok_or_else(|| DigestProblem::UnknownKey { region: d.region.to_string() })?;
    let sha256 = otatrail_sigv4::sha256_hex(&json);
    let signature = hex::decode(signature_hex).map_err(|_| DigestProblem::BadSignature)?;
    if !super::signing::verify(public, string_to_sign(&content, &sha256).as_bytes(), &signature) {
        return Err(DigestProblem::BadSignature);
    }
    Ok(ValidDigest { content, sha256, signature_hex: signature_hex.to_string() })
}

/// Why a log file listed in a digest is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogProblem {
    NotFound,
    Unreadable(InflateError),
    HashMismatch,
}

impl LogProblem {
    pub fn reason(&self) -> String {
        match self {
            LogProblem::NotFound => "not found".into(),
            LogProblem::Unreadable(e) => e.reason().into(),
            LogProblem::HashMismatch => "hash value doesn't match".into(),
        }
    }
}

/// Checks a log file's bytes against the hash its digest lists.
pub fn check_log_file(gz: &[u8], listed_sha256: &str) -> Result<(), LogProblem> {
    let json = inflate_one_member(gz).map_err(LogProblem::Unreadable)?;
    if otatrail_sigv4::sha256_hex(&json) != listed_sha256 {
        return Err(LogProblem::HashMismatch);
    }
    Ok(())
}

/// A break in one trail's digest chain, reported against the later digest's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainProblem {
    PreviousHash { key: String, previous: String },
    PreviousSignature { key: String, previous: String },
    Gap { key: String, from: String, to: String },
    Overlap { key: String, other: String },
    NewestMissing { newest_end: String, latest_delivery: String },
}

impl ChainProblem {
    pub fn key(&self) -> Option<&str> {
        match self {
            ChainProblem::PreviousHash { key, .. }
            | ChainProblem::PreviousSignature { key, .. }
            | ChainProblem::Gap { key, .. }
            | ChainProblem::Overlap { key, .. } => Some(key),
            ChainProblem::NewestMissing { .. } => None,
        }
    }

    pub fn reason(&self) -> String {
        match self {
            ChainProblem::PreviousHash { previous, .. } => {
                format!("previousDigestHashValue does not match the previous digest {previous}")
            }
            ChainProblem::PreviousSignature { previous, .. } => {
                format!("previousDigestSignature does not match the signature of the previous digest {previous}")
            }
            ChainProblem::Gap { from, to, .. } => format!("gap: no digest covers {from} to {to}"),
            ChainProblem::Overlap { other, .. } => format!("overlap: this digest's interval overlaps that of {other}"),
            ChainProblem::NewestMissing { newest_end, latest_delivery } => format!(
                "newest digest missing: the trail last delivered a digest ending {latest_delivery}, the newest found ends {newest_end}"
            ),
        }
    }
}

/// Checks a trail's valid digests of one region against each other. `digests` may come in
/// any order; `absent` holds the keys of digests known to be missing or invalid (already
/// reported, so a pointer to them is not a second problem).
pub fn check_chain(digests: &[ValidDigest], absent: &HashSet<String>) -> Vec<ChainProblem> {
    let mut sorted: Vec<&ValidDigest> = digests.iter().collect();
    sorted.sort_by_key(|d| (d.content.end, d.content.start));
    let by_key: HashMap<&str, &ValidDigest> = sorted.iter().map(|d| (d.content.key.as_str(), *d)).collect();
    let mut problems = Vec::new();
    for (i, d) in sorted.iter().enumerate() {
        let c = &d.content;
        if let Some((_, prev_key)) = &c.previous {
            if let Some(p) = by_key.get(prev_key.as_str()) {
                if c.previous_hash.as_deref() != Some(p.sha256.as_str()) {
                    problems.push(ChainProblem::PreviousHash { key: c.key.clone(), previous: prev_key.clone() });
                }
                if c.previous_signature.as_deref() != Some(p.signature_hex.as_str()) {
                    problems.push(ChainProblem::PreviousSignature { key: c.key.clone(), previous: prev_key.clone() });
                }
                if p.content.end < c.start {
                    problems.push(ChainProblem::Gap { key: c.key.clone(), from: p.content.end_text.clone(), to: c.start_text.clone() });
                }
            } else if absent.contains(prev_key) {
                continue; // reported as a digest problem already
            }
        }
        // Whatever the pointers say, no two digests of the chain may cover the same time.
        if let Some(before) = i.checked_sub(1).map(|j| sorted[j])
            && before.content.end > c.start
        {
            problems.push(ChainProblem::Overlap { key: c.key.clone(), other: before.content.key.clone() });
        }
    }
    problems
}

/// The AWS tool only walks back from the newest digest it finds, so deleting the newest
/// digests goes unseen by it. The trail's status says when the last one was delivered.
pub fn newest_missing(newest_listed_end: Option<Millis>, latest_delivery: Option<Millis>, range: (Millis, Millis)) -> Option<ChainProblem> {
    let latest = latest_delivery.filter(|t| *t >= range.0 && *t <= range.1)?;
    // Digests of one pass are written within moments of each other across regions.
    const SLACK_MS: i64 = 60_000;
    match newest_listed_end {
        Some(n) if n.0 + SLACK_MS >= latest.0 => None,
        n => Some(ChainProblem::NewestMissing {
            newest_end: n.map(super::audit::event_time_text).unwrap_or_else(|| "(none)".into()),
            latest_delivery: super::audit::event_time_text(latest),
        }),
    }
}

/// Log files in the bucket that must be listed in a digest but are not: delivered at or after
/// `start` (their key's minute is) and surely before `covered_until` (every file delivered
/// before a digest's end is in that digest or an earlier one).
pub fn unlisted_log_files<'a>(
    in_bucket: &'a [(String, Millis)],
    listed: &HashSet<&str>,
    start: Millis,
    covered_until: Millis,
) -> Vec<&'a str> {
    // A key's time is the minute of delivery: the file arrived within the following minute.
    const KEY_PRECISION_MS: i64 = 60_000;
    in_bucket
        .iter()
        .filter(|(_, t)| *t >= start && t.0 + KEY_PRECISION_MS <= covered_until.0)
        .filter(|(k, _)| !listed.contains(k.as_str()))
        .map(|(k, _)| k.as_str())
        .collect()
}

/// Whether a log file delivered at `t` (its key's minute) falls in the interval of a digest
/// that is missing or invalid: such a file is unlisted because its digest is gone, not
/// (necessarily) because it was injected. `absent_ends` are those digests' end times (from
/// their keys), `valid_ends` the ends of the valid digests of the chain.
pub fn in_absent_digest(t: Millis, absent_ends: &[Millis], valid_ends: &[Millis]) -> bool {
    absent_ends.iter().any(|end| {
        let start = valid_ends.iter().filter(|v| *v < end).max().copied().unwrap_or(Millis(i64::MIN));
        t.0 + 60_000 > start.0 && t <= *end
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_keys_are_read_by_position() {
        let k = "p/AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2026/11/24/123456789012_CloudTrail-Digest_eu-west-1_my_trail_us-east-1_20261124T101502Z.json.gz";
        let i = parse_digest_key(k).unwrap();
        assert_eq!(i.account, "123456789012");
        assert_eq!(i.region, "eu-west-1");
        assert_eq!(i.trail_name, "my_trail");
        assert_eq!(i.home_region, "us-east-1");
        assert_eq!(i.end, parse_iso("2026-11-24T10:15:02Z").unwrap());
        assert!(!i.backfill);
        assert!(parse_digest_key(&k.replace(".json.gz", "_backfill.json.gz")).unwrap().backfill);
        assert!(parse_digest_key("AWSLogs/1/CloudTrail-Digest/x.json.gz").is_none());
        assert!(parse_digest_key(&k.replace("T101502Z", "T1015Z")).is_none());
    }

    #[test]
    fn log_keys_give_the_minute() {
        let k = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/24/123456789012_CloudTrail_us-east-1_20261124T1015Z_AbCdEfGh01234567.json.gz";
        let (a, r, t) = parse_log_key(k).unwrap();
        assert_eq!((a.as_str(), r.as_str()), ("123456789012", "us-east-1"));
        assert_eq!(t, parse_iso("2026-11-24T10:15:00Z").unwrap());
        assert!(parse_log_key("AWSLogs/x/notes.txt").is_none());
    }

    #[test]
    fn one_gzip_member_only() {
        let one = {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(b"{}").unwrap();
            gz.finish().unwrap()
        };
        assert_eq!(inflate_one_member(&one).unwrap(), b"{}");
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(inflate_one_member(&two), Err(InflateError::TrailingData));
        assert_eq!(inflate_one_member(b"not gzip"), Err(InflateError::InvalidFormat));
        assert_eq!(check_log_file(&one, &otatrail_sigv4::sha256_hex(b"{}")), Ok(()));
        assert_eq!(check_log_file(&one, &otatrail_sigv4::sha256_hex(b"{ }")), Err(LogProblem::HashMismatch));
    }

    fn digest(key: &str, start: i64, end: i64, prev: Option<&ValidDigest>) -> ValidDigest {
        let t = |s: i64| crate::domain::audit::event_time_text(Millis(s * 1000));
        ValidDigest {
            content: DigestContent {
                start_text: t(start),
                end_text: t(end),
                start: Millis(start * 1000),
                end: Millis(end * 1000),
                bucket: "b".into(),
                key: key.into(),
                fingerprint: "f".into(),
                previous: prev.map(|p| ("b".to_string(), p.content.key.clone())),
                previous_hash: prev.map(|p| p.sha256.clone()),
                previous_signature: prev.map(|p| p.signature_hex.clone()),
                log_files: vec![],
            },
            sha256: format!("sha-{key}"),
            signature_hex: format!("sig-{key}"),
        }
    }

    #[test]
    fn a_sound_chain_has_no_problems_and_breaks_are_named() {
        let a = digest("a", 0, 60, None);
        let b = digest("b", 60, 120, Some(&a));
        let c = digest("c", 120, 180, Some(&b));
        assert!(check_chain(&[c.clone(), a.clone(), b.clone()], &HashSet::new()).is_empty());

        let mut bad = c.clone();
        bad.content.previous_hash = Some("other".into());
        assert_eq!(check_chain(&[a.clone(), b.clone(), bad], &HashSet::new()), vec![ChainProblem::PreviousHash { key: "c".into(), previous: "b".into() }]);

        let mut late = c.clone();
        late.content.start = Millis(130_000);
        assert!(matches!(check_chain(&[a.clone(), b.clone(), late][..], &HashSet::new())[..], [ChainProblem::Gap { .. }]));

        let early = digest("x", 100, 170, None);
        assert!(matches!(check_chain(&[a.clone(), b.clone(), early][..], &HashSet::new())[..], [ChainProblem::Overlap { .. }]));

        // A restarted chain (no previous) after a pause is fine; b missing is reported elsewhere.
        let restarted = digest("r", 300, 360, None);
        assert!(check_chain(&[a.clone(), b.clone(), restarted], &HashSet::new()).is_empty());
        assert!(check_chain(&[a, c], &HashSet::from(["b".to_string()])).is_empty());
    }

    #[test]
    fn newest_and_unlisted() {
        let range = (Millis(0), Millis(1_000_000));
        assert_eq!(newest_missing(Some(Millis(500_000)), Some(Millis(500_500)), range), None);
        assert!(newest_missing(Some(Millis(300_000)), Some(Millis(500_000)), range).is_some());
        assert!(newest_missing(None, Some(Millis(500_000)), range).is_some());
        assert_eq!(newest_missing(None, Some(Millis(2_000_000)), range), None);

        let files = vec![("a".to_string(), Millis(60_000)), ("b".to_string(), Millis(120_000)), ("c".to_string(), Millis(600_000))];
        let listed = HashSet::from(["a"]);
        // c may still be waiting for its digest; b must be listed.
        assert_eq!(unlisted_log_files(&files, &listed, Millis(0), Millis(300_000)), vec!["b"]);

        // Digests end at 100 s (valid), 200 s (missing), 300 s (valid).
        let (absent, valid) = ([Millis(200_000)], [Millis(100_000), Millis(300_000)]);
        assert!(in_absent_digest(Millis(120_000), &absent, &valid));
        assert!(!in_absent_digest(Millis(240_000), &absent, &valid));
    }
}

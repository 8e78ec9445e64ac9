//! Digest files (`cloudtrail.md` §3): for each trail with log file validation, per region,
//! every digest interval, a signed list of the log files delivered since the previous digest,
//! chained to it, that `aws cloudtrail validate-logs` verifies.
//!
//! Each digest starts where the previous one ended. A digest is first saved as pending (its
//! end time and the files it lists), so a restart rewrites the very same digest (its bytes and
//! signature are a function of those) instead of starting an overlapping one.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::ServiceError;
use crate::domain::audit::event_time_text;
use crate::domain::time::Millis;
use crate::domain::trails::{Lane, Trail};
use crate::store::{self, DeliveredFile, StoreError};

use super::App;
use super::delivery::{TRAILS_AT_ONCE, sum_outcomes};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Previous {
    bucket: String,
    key: String,
    sha256: String,
    signature: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ChainState {
    /// Where the next digest starts.
    start: Option<Millis>,
    /// Files up to this delivered-file sequence are in a digest already.
    last_file_seq: i64,
    prev: Option<Previous>,
    /// The StartLogging time this chain belongs to; a later start begins a new chain.
    logging_started: Option<Millis>,
    /// A digest being written: its end and the last file it lists.
    pending: Option<(Millis, i64)>,
}

fn stamp(t: Millis) -> String {
    let d = t.to_offset_datetime();
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", d.year(), d.month() as u8, d.day(), d.hour(), d.minute(), d.second())
}

/// `[prefix/]AWSLogs/[<o-id>/]<acct>/CloudTrail-Digest/<region>/YYYY/MM/DD/<acct>_CloudTrail-Digest_<region>_<trail>_<home>_<end>.json.gz`
pub fn digest_key(trail: &Trail, lane: &Lane, end: Millis) -> String {
    let d = end.to_offset_datetime();
    let (root, acct, region) = (trail.lane_root(lane), &lane.account, &lane.region);
    format!(
        "{root}CloudTrail-Digest/{region}/{:04}/{:02}/{:02}/{acct}_CloudTrail-Digest_{region}_{}_{}_{}.json.gz",
        d.year(),
        d.month() as u8,
        d.day(),
        trail.name,
        trail.home_region,
        stamp(end)
    )
}

fn whole_seconds(t: Millis) -> Millis {
    Millis(t.0.div_euclid(1000) * 1000)
}

impl App {
    /// One pass: writes every digest that is due. Returns how many.
    pub async fn digest_once(&self) -> Result<usize, ServiceError> {
        let trails = store::read::<_, StoreError, _>(&*self.store, |tx| Box::pin(async move { tx.logging_trails().await })).await?;
        let validated = trails.into_iter().filter(|t| t.log_file_validation);
        let outcomes: Vec<_> = stream::iter(validated).map(|trail| self.digest_trail(trail)).buffer_unordered(TRAILS_AT_ONCE).collect().await;
        sum_outcomes(outcomes)
    }

    /// Every lane's next digest of one trail, when due.
    pub(super) async fn digest_trail(&self, trail: Trail) -> Result<usize, ServiceError> {
        let mut written = 0;
        for lane in self.lanes(&trail, true).await? {
            match self.digest_lane(&trail, &lane).await {
                Ok(Some(end)) => {
                    written += 1;
                    self.note_digest(&trail, Ok(end)).await;
                }
                Ok(None) => {}
                Err(e) => self.note_digest(&trail, Err(e.code.to_string())).await,
            }
        }
        Ok(written)
    }

    /// Writes the region's next digest when due; returns its end time when it did.
    async fn digest_lane(&self, trail: &Trail, lane: &Lane) -> Result<Option<Millis>, ServiceError> {
        let (t, r) = (trail.clone(), trail.lane_key(lane));
        let saved = store::read::<_, StoreError, _>(&*self.store, move |tx| Box::pin(async move { tx.get_digest_state(&t, &r).await })).await?;
        let mut state: ChainState = saved.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        let now = whole_seconds(self.clock.now());
        if state.pending.is_none() && state.logging_started != trail.start_logging_time {
            // A new logging session (or the first): a starting digest, with no previous.
            state.start = Some(whole_seconds(trail.start_logging_time.unwrap_or(now)));
            state.prev = None;
            state.logging_started = trail.start_logging_time;
        }
        let Some(start) = state.start else { return Ok(None) };
        let (t, r, after) = (trail.clone(), trail.lane_key(lane), state.last_file_seq);
        let mut files: Vec<DeliveredFile> =
            store::read::<_, StoreError, _>(&*self.store, move |tx| Box::pin(async move { tx.delivered_files(&t, &r, after).await })).await?;
        let (end, max_seq) = match state.pending {
            Some((end, max)) => {
                files.retain(|f| f.seq <= max);
                (end, max)
            }
            None => {
                let end = if trail.is_logging {
                    if now.0 - start.0 < self.digest_interval_seconds * 1000 {
                        return Ok(None);
                    }
                    now
                } else {
                    // Stopped: one final digest up to the stop.
                    match trail.stop_logging_time.map(whole_seconds) {
                        Some(stop) if stop > start => stop,
                        _ => return Ok(None),
                    }
                };
                files.retain(|f| f.delivered_at <= end);
                let max = files.last().map(|f| f.seq).unwrap_or(state.last_file_seq);
                state.pending = Some((end, max));
                let (t, r, text) = (trail.clone(), trail.lane_key(lane), serde_json::to_string(&state).map_err(|_| ServiceError::internal())?);
                store::write::<_, StoreError, _>(&*self.store, move |tx| Box::pin(async move { tx.set_digest_state(&t, &r, &text).await }))
                    .await?;
                (end, max)
            }
        };
        let region = lane.region.as_str();
        let key = digest_key(trail, lane, end);
        let keys = self.signing_keys(region).await?;
        let fingerprint = keys.last().map(|k| k.fingerprint.clone()).ok_or_else(ServiceError::internal)?;
        let prev = state.prev.clone();
        let log_files: Vec<Value> = files
            .iter()
            .map(|f| {
                json!({
                    "s3Bucket": f.bucket,
                    "s3Object": f.key,
                    "hashValue": f.sha256,
                    "hashAlgorithm": "SHA-256",
                    "newestEventTime": event_time_text(f.newest_event),
                    "oldestEventTime": event_time_text(f.oldest_event),
                })
            })
            .collect();
        let digest = json!({
            "awsAccountId": lane.account,
            "digestStartTime": event_time_text(start),
            "digestEndTime": event_time_text(end),
            "digestS3Bucket": trail.s3_bucket,
            "digestS3Object": key,
            "digestPublicKeyFingerprint": fingerprint,
            "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": files.iter().map(|f| f.newest_event).max().map(event_time_text),
            "oldestEventTime": files.iter().map(|f| f.oldest_event).min().map(event_time_text),
            "previousDigestS3Bucket": prev.as_ref().map(|p| p.bucket.clone()),
            "previousDigestS3Object": prev.as_ref().map(|p| p.key.clone()),
            "previousDigestHashValue": prev.as_ref().map(|p| p.sha256.clone()),
            "previousDigestHashAlgorithm": prev.as_ref().map(|_| "SHA-256"),
            "previousDigestSignature": prev.as_ref().map(|p| p.signature.clone()),
            "logFiles": log_files,
        });
        let text = digest.to_string();
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        let to_sign = format!(
            "{}\n{}/{}\n{}\n{}",
            event_time_text(end),
            trail.s3_bucket,
            key,
            sha256,
            prev.as_ref().map(|p| p.signature.as_str()).unwrap_or("null")
        );
        let (signed_with, signature) = self.sign_digest(region, to_sign.as_bytes()).await?;
        if signed_with != fingerprint {
            // A rotation between reading the key and signing: try again next pass.
            return Ok(None);
        }
        let signature = hex::encode(signature);
        let gz = super::delivery::gzip(text.as_bytes());
        let metadata =
            BTreeMap::from([("signature".to_string(), signature.clone()), ("signature-algorithm".to_string(), "SHA256withRSA".to_string())]);
        match self.deliver_object(trail, &key, gz, metadata).await {
            Ok(()) => {}
            Err(e) if e.code == "PreconditionFailed" => {} // written before a crash
            Err(e) => return Err(e),
        }
        state.prev = Some(Previous { bucket: trail.s3_bucket.clone(), key: key.clone(), sha256, signature });
        state.start = Some(end);
        state.last_file_seq = max_seq;
        state.pending = None;
        let (t, r, text) = (trail.clone(), trail.lane_key(lane), serde_json::to_string(&state).map_err(|_| ServiceError::internal())?);
        store::write::<_, StoreError, _>(&*self.store, move |tx| Box::pin(async move { tx.set_digest_state(&t, &r, &text).await })).await?;
        tracing::info!(trail = %trail.arn(), account = %lane.account, region, key = %key, files = files.len(), "delivered a digest file");
        Ok(Some(end))
    }

    /// GetTrailStatus's digest fields. `LatestDigestDeliveryTime` is the newest digest's end
    /// time (a digest is written when it ends): validators compare it with the newest digest
    /// they find, so a deleted newest digest is seen.
    async fn note_digest(&self, t: &Trail, outcome: Result<Millis, String>) {
        self.note_trail_status(t, "digest", move |cur| match outcome {
            Ok(end) => {
                cur.latest_digest_time = Some(cur.latest_digest_time.map_or(end, |t| t.max(end)));
                cur.latest_digest_error = None;
            }
            Err(e) => cur.latest_digest_error = Some(e),
        })
        .await;
    }
}

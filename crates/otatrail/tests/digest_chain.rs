//! The digest chain in-process, with a clock the test moves: digests meet end to start, a
//! StopLogging ends the chain with a final digest up to the stop, a StartLogging begins a new
//! chain (a starting digest, no previous), an UpdateTrail and a key rotation do not break it,
//! and every digest verifies and chains as `otatrail validate-logs` checks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use otatrail::app::App;
use otatrail::app::audit::Call;
use otatrail::app::trails::TrailSettings;
use otatrail::config::{FileConfig, ServeArgs, ServerConfig};
use otatrail::domain::Principal;
use otatrail::domain::audit::Outcome;
use otatrail::domain::integrity::{FetchedDigest, ValidDigest, check_chain, check_digest, check_log_file};
use otatrail::domain::time::{Clock, Millis};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";
const SEC: i64 = 1000;

struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.0.load(Ordering::SeqCst))
    }
}

fn call(app: &App, name: &str, read_only: bool) -> Arc<Call> {
    Arc::new(Call::internal(Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1"), REGION, "iot.amazonaws.com", name, read_only, app.clock.now()))
}

async fn some_calls(app: &App, n: usize) {
    for _ in 0..n {
        let c = call(app, "DescribeStream", true);
        app.record(c.event(Outcome::Success { response_elements: None }, vec![])).await.unwrap();
    }
}

/// Every digest in the bucket, checked, oldest first.
async fn digests(app: &App) -> Vec<ValidDigest> {
    let p = Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1");
    let keys: HashMap<String, Vec<u8>> =
        app.signing_keys(REGION).await.unwrap().into_iter().map(|k| (k.fingerprint, k.public_der)).collect();
    let mut out = Vec::new();
    for o in app.s3_list(&p, "audit-logs", "", None, None, 1000).await.unwrap().objects {
        if !o.key.contains("/CloudTrail-Digest/") {
            continue;
        }
        let gz = app.s3_read(&o, 0, o.size).await.unwrap().concat();
        let d = FetchedDigest { bucket: "audit-logs", key: &o.key, region: REGION, gz: &gz, signature_hex: o.metadata.get("signature").map(String::as_str) };
        let v = check_digest(&d, &keys).unwrap_or_else(|e| panic!("{}: {}", o.key, e.reason()));
        for f in &v.content.log_files {
            let meta = app.s3_head_object(&p, &f.bucket, &f.key).await.unwrap();
            let log = app.s3_read(&meta, 0, meta.size).await.unwrap().concat();
            check_log_file(&log, &f.sha256).unwrap();
        }
        out.push(v);
    }
    out.sort_by_key(|d| d.content.end);
    out
}

#[tokio::test]
async fn the_chain_across_stop_start_update_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let file: FileConfig = toml::from_str(&format!(
        "delivery_interval_seconds = 1\ndigest_interval_seconds = 60\nsigning_key_rotation_seconds = 120\n[[accounts]]\nid = \"{ACCOUNT}\"\nroot_access_key_id = \"AKIAROOT0000EXAMPLE1\"\nroot_secret_access_key = \"rootsecret/EXAMPLE/0000000000000000000000\"\n"
    ))
    .unwrap();
    let args = ServeArgs { data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let mut app = App::open(&ServerConfig::merge(&args, file).unwrap()).await.unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000)));
    Arc::get_mut(&mut app).expect("sole owner").clock = clock.clone();
    let advance = |ms: i64| clock.0.fetch_add(ms, Ordering::SeqCst);
    let pass = || async {
        app.deliver_once().await.unwrap();
        app.digest_once().await.unwrap()
    };

    app.s3_create_bucket(&call(&app, "CreateBucket", false), "audit-logs", REGION).await.unwrap();
    let settings = TrailSettings { s3_bucket: Some("audit-logs".into()), log_file_validation: Some(true), ..Default::default() };
    app.create_trail(&call(&app, "CreateTrail", false), "chained", settings).await.unwrap();
    app.set_logging(&call(&app, "StartLogging", false), "chained", true).await.unwrap();

    // Three digest intervals of traffic; the key rotates after two.
    for _ in 0..3 {
        some_calls(&app, 3).await;
        advance(2 * SEC);
        pass().await;
        advance(60 * SEC);
        assert_eq!(pass().await, 1, "one digest per interval");
    }
    // UpdateTrail keeps the chain.
    let update = TrailSettings { include_global_service_events: Some(false), ..Default::default() };
    app.update_trail(&call(&app, "UpdateTrail", false), "chained", update).await.unwrap();
    some_calls(&app, 2).await;
    advance(2 * SEC);
    pass().await;
    advance(60 * SEC);
    assert_eq!(pass().await, 1);
    // StopLogging: a final digest up to the stop, then none while stopped.
    advance(10 * SEC);
    app.set_logging(&call(&app, "StopLogging", false), "chained", false).await.unwrap();
    advance(2 * SEC);
    pass().await;
    assert_eq!(pass().await, 0, "nothing more after the final digest");
    advance(300 * SEC);
    assert_eq!(pass().await, 0, "no digests while stopped");
    // StartLogging: a new chain.
    app.set_logging(&call(&app, "StartLogging", false), "chained", true).await.unwrap();
    some_calls(&app, 2).await;
    advance(2 * SEC);
    pass().await;
    advance(60 * SEC);
    assert_eq!(pass().await, 1);

    let all = digests(&app).await;
    assert_eq!(all.len(), 6, "{:?}", all.iter().map(|d| &d.content.key).collect::<Vec<_>>());
    let fingerprints: HashSet<&str> = all.iter().map(|d| d.content.fingerprint.as_str()).collect();
    assert!(fingerprints.len() >= 2, "the signing key rotated");
    assert!(check_chain(&all, &HashSet::new()).is_empty(), "{:?}", check_chain(&all, &HashSet::new()));
    // Links: each digest names the one before, except the first and the first after the restart.
    let starts: Vec<usize> = (0..all.len()).filter(|i| all[*i].content.previous.is_none()).collect();
    assert_eq!(starts, vec![0, 5]);
    for i in 1..5 {
        assert_eq!(all[i].content.previous.as_ref().map(|p| p.1.as_str()), Some(all[i - 1].content.key.as_str()));
        assert_eq!(all[i].content.start, all[i - 1].content.end, "no gap, no overlap");
    }
    // The stop's digest ends at the stop; the new chain starts at the new start.
    assert!(all[4].content.end < all[5].content.start);
    // Every delivered log file is in exactly one digest.
    let listed: Vec<&str> = all.iter().flat_map(|d| d.content.log_files.iter().map(|f| f.key.as_str())).collect();
    let unique: HashSet<&str> = listed.iter().copied().collect();
    assert_eq!(listed.len(), unique.len());
    let p = Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1");
    let files: HashSet<String> = app
        .s3_list(&p, "audit-logs", "", None, None, 1000)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.contains("/CloudTrail/"))
        .collect();
    assert_eq!(files.iter().map(String::as_str).collect::<HashSet<_>>(), unique);
}

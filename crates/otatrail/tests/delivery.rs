//! Log-file delivery in-process: files land under CloudTrail's key layout, hold each selected
//! record once, and a delivery interrupted after its file was written (a crash before the
//! cursor moved) completes without a second file.

use std::sync::Arc;

use otatrail::app::App;
use otatrail::app::audit::Call;
use otatrail::app::trails::TrailSettings;
use otatrail::config::{FileConfig, ServeArgs, ServerConfig};
use otatrail::domain::Principal;
use otatrail::domain::audit::Outcome;
use otatrail::store::{StoreError, read, write};

const ACCOUNT: &str = "111122223333";

async fn app(dir: &std::path::Path) -> Arc<App> {
    app_with_external(dir, &[]).await
}

fn call(app: &App, name: &str, read_only: bool) -> Arc<Call> {
    Arc::new(Call::internal(Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1"), "us-east-1", "iot.amazonaws.com", name, read_only, app.clock.now()))
}

async fn keys(app: &App, bucket: &str) -> Vec<String> {
    let p = Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1");
    app.s3_list(&p, bucket, "", None, None, 1000).await.unwrap().objects.into_iter().map(|o| o.key).collect()
}

async fn records_in(app: &App, bucket: &str, key: &str) -> Vec<serde_json::Value> {
    let p = Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1");
    let meta = app.s3_head_object(&p, bucket, key).await.unwrap();
    let gz: Vec<u8> = app.s3_read(&meta, 0, meta.size).await.unwrap().concat();
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["Records"].as_array().unwrap().clone()
}

#[tokio::test]
async fn delivery_is_exactly_once_even_when_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    app.s3_create_bucket(&call(&app, "CreateBucket", false), "audit-logs", "us-east-1").await.unwrap();
    let settings = TrailSettings { s3_bucket: Some("audit-logs".into()), s3_key_prefix: Some("pfx".into()), ..Default::default() };
    app.create_trail(&call(&app, "CreateTrail", false), "ota-audit", settings).await.unwrap();
    // Not logging yet: these are never delivered.
    for _ in 0..3 {
        let c = call(&app, "DescribeStream", true);
        app.record(c.event(Outcome::Success { response_elements: None }, vec![])).await.unwrap();
    }
    app.set_logging(&call(&app, "StartLogging", false), "ota-audit", true).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = call(&app, if i % 2 == 0 { "CreateStream" } else { "DescribeStream" }, i % 2 == 1);
        let e = c.event(Outcome::Success { response_elements: None }, vec![]);
        ids.push(e.event_id.clone());
        app.record(e).await.unwrap();
    }
    // Before the interval has passed nothing is delivered.
    assert_eq!(app.deliver_once().await.unwrap(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(app.deliver_once().await.unwrap(), 1);
    let files = keys(&app, "audit-logs").await;
    assert_eq!(files.len(), 1, "{files:?}");
    let key = &files[0];
    let re = regex::Regex::new(&format!(
        r"^pfx/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/\d{{4}}/\d{{2}}/\d{{2}}/{ACCOUNT}_CloudTrail_us-east-1_\d{{8}}T\d{{4}}Z_[A-Za-z0-9]{{16}}\.json\.gz$"
    ))
    .unwrap();
    assert!(re.is_match(key), "{key}");
    let records = records_in(&app, "audit-logs", key).await;
    let delivered: Vec<String> = records.iter().map(|r| r["eventID"].as_str().unwrap().to_string()).collect();
    for id in &ids {
        assert_eq!(delivered.iter().filter(|d| *d == id).count(), 1, "record {id} not delivered exactly once");
    }
    assert!(records.iter().any(|r| r["eventName"] == "StartLogging"));
    assert!(!records.iter().any(|r| r["eventName"] == "CreateTrail"), "a record from before StartLogging was delivered");

    // Simulate a crash after the file was written but before the cursor moved: put the pending
    // entry back. The next pass must finish it without writing a second file.
    let trail = app.get_trail(&call(&app, "GetTrail", true), "ota-audit").await.unwrap().0;
    let (t, region) = (trail.clone(), "us-east-1".to_string());
    let (since, seqs) = read::<_, StoreError, _>(&*app.store, move |tx| {
        Box::pin(async move {
            let events = tx.events_since(ACCOUNT, &region, t.logging_since_seq, 100).await?;
            Ok((t.logging_since_seq, events.iter().map(|e| e.seq).collect::<Vec<_>>()))
        })
    })
    .await
    .unwrap();
    let last = *seqs.iter().filter(|s| **s > since).max().unwrap();
    let pending = serde_json::json!({"key": key, "seqs": seqs, "last_seq": last}).to_string();
    let t = trail.clone();
    write::<_, StoreError, _>(&*app.store, move |tx| {
        Box::pin(async move { tx.set_cursor(&t, "us-east-1", since, Some(&pending)).await })
    })
    .await
    .unwrap();
    app.deliver_once().await.unwrap();
    assert_eq!(keys(&app, "audit-logs").await, files, "an interrupted delivery wrote a second file");
    let t = trail.clone();
    let cursor = read::<_, StoreError, _>(&*app.store, move |tx| Box::pin(async move { tx.get_cursor(&t, "us-east-1").await }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor, (last, None));
}

#[tokio::test]
async fn a_missing_bucket_holds_records_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    app.s3_create_bucket(&call(&app, "CreateBucket", false), "audit-logs", "us-east-1").await.unwrap();
    let settings = TrailSettings { s3_bucket: Some("audit-logs".into()), ..Default::default() };
    app.create_trail(&call(&app, "CreateTrail", false), "ota-audit", settings).await.unwrap();
    app.set_logging(&call(&app, "StartLogging", false), "ota-audit", true).await.unwrap();
    app.s3_delete_bucket(&call(&app, "DeleteBucket", false), "audit-logs").await.unwrap();
    let c = call(&app, "CreateStream", false);
    let e = c.event(Outcome::Success { response_elements: None }, vec![]);
    let id = e.event_id.clone();
    app.record(e).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    app.deliver_once().await.unwrap();
    let (trail, _) = app.get_trail(&call(&app, "GetTrail", true), "ota-audit").await.unwrap();
    assert_eq!(trail.latest_delivery_error.as_deref(), Some("NoSuchBucket"));

    app.s3_create_bucket(&call(&app, "CreateBucket", false), "audit-logs", "us-east-1").await.unwrap();
    app.deliver_once().await.unwrap();
    let files = keys(&app, "audit-logs").await;
    let mut all = Vec::new();
    for f in &files {
        all.extend(records_in(&app, "audit-logs", f).await);
    }
    assert_eq!(all.iter().filter(|r| r["eventID"] == id.as_str()).count(), 1);
    let (trail, _) = app.get_trail(&call(&app, "GetTrail", true), "ota-audit").await.unwrap();
    assert_eq!(trail.latest_delivery_error, None);
    assert!(trail.latest_delivery_time.is_some());
}

#[tokio::test]
async fn digest_signatures_verify_with_the_listed_public_key() {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let message = b"2026-11-24T10:00:00Z\naudit-logs/AWSLogs/x.json.gz\nabc\nnull";
    let (fp, sig) = app.sign_digest("eu-west-1", message).await.unwrap();
    assert_eq!(sig.len(), 256, "RSA-2048 signatures are 256 bytes");
    let keys = app.signing_keys("eu-west-1").await.unwrap();
    assert_eq!(keys.len(), 1, "one key per region until rotation");
    assert_eq!(keys[0].fingerprint, fp);
    assert_eq!(otatrail::domain::signing::fingerprint(&keys[0].public_der), fp);
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &keys[0].public_der).verify(message, &sig).unwrap();
    assert!(UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &keys[0].public_der).verify(b"tampered", &sig).is_err());
    // Regions have their own keys.
    let other = app.signing_keys("us-east-1").await.unwrap();
    assert_ne!(other[0].fingerprint, fp);
}

/// An app whose config also declares external buckets named `name` at `endpoint`.
async fn app_with_external(dir: &std::path::Path, buckets: &[(&str, String)]) -> Arc<App> {
    let external: String = buckets
        .iter()
        .map(|(name, endpoint)| {
            format!("[[external_buckets]]\nname = \"{name}\"\nendpoint = \"{endpoint}\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n")
        })
        .collect();
    let file: FileConfig = toml::from_str(&format!(
        "delivery_interval_seconds = 1\n{external}[[accounts]]\nid = \"{ACCOUNT}\"\nroot_access_key_id = \"AKIAROOT0000EXAMPLE1\"\nroot_secret_access_key = \"rootsecret/EXAMPLE/0000000000000000000000\"\n"
    ))
    .unwrap();
    let args = ServeArgs { data_dir: Some(dir.to_path_buf()), ..Default::default() };
    App::open(&ServerConfig::merge(&args, file).unwrap()).await.unwrap()
}

async fn logging_trail(app: &App, name: &str, bucket: &str) {
    let settings = TrailSettings { s3_bucket: Some(bucket.into()), ..Default::default() };
    app.create_trail(&call(app, "CreateTrail", false), name, settings).await.unwrap();
    app.set_logging(&call(app, "StartLogging", false), name, true).await.unwrap();
}

/// A store that accepts connections and never answers: a put into it hangs until the client's
/// request timeout.
async fn silent_store() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_trail_whose_bucket_hangs_does_not_hold_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_external(dir.path(), &[("hanging-bucket", silent_store().await)]).await;
    app.s3_create_bucket(&call(&app, "CreateBucket", false), "audit-logs", "us-east-1").await.unwrap();
    // Passes list trails by name: the hanging one comes first.
    logging_trail(&app, "a-into-hanging", "hanging-bucket").await;
    logging_trail(&app, "b-into-embedded", "audit-logs").await;
    app.record(call(&app, "CreateStream", false).event(Outcome::Success { response_elements: None }, vec![])).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let pass = tokio::spawn({
        let app = app.clone();
        async move { app.deliver_once().await }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while keys(&app, "audit-logs").await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the embedded bucket's trail waited for the hanging put");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!pass.is_finished(), "the put into the silent store was expected to be still waiting");
    pass.abort();
}

#[tokio::test]
async fn an_unreachable_bucket_shows_in_the_trails_status_within_seconds() {
    // A port nobody listens on: connections are refused.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_external(dir.path(), &[("gone-bucket", refused)]).await;
    logging_trail(&app, "into-gone", "gone-bucket").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let started = std::time::Instant::now();
    app.deliver_once().await.unwrap();
    // A few quick retries at most (their bound: `external_bucket`'s unit tests).
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the pass took {:?}", started.elapsed());
    let (trail, _) = app.get_trail(&call(&app, "GetTrail", true), "into-gone").await.unwrap();
    assert_eq!(trail.latest_delivery_error.as_deref(), Some("ServiceUnavailable"));
}

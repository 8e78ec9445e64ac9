//! The OTA update state machine in-process: CREATE_PENDING to CREATE_COMPLETE (stream, job,
//! document), failures with their reason, signing profiles, deletion, and restarts.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use base64::Engine;
use otatrail::app::App;
use otatrail::app::audit::Call;
use otatrail::config::{FileConfig, ServeArgs, ServerConfig};
use otatrail::domain::ota::{CreateOtaUpdateBody, DeleteRequest, OtaStatus};
use otatrail::domain::things::CreateThingBody;
use otatrail::domain::{Principal, Scope};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";
const IMAGE: &[u8] = b"\x7fELF firmware image v2";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn pem(label: &str, der: &[u8]) -> String {
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", b64(der))
}

struct Signer {
    key: EcdsaKeyPair,
    cert_pem: String,
}

fn signer(dir: &std::path::Path) -> (Signer, otatrail::app::codesign::SigningProfileConfig) {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new()).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
    let kp = rcgen::KeyPair::try_from(pkcs8.as_ref()).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["fw-signer".into()]).unwrap().self_signed(&kp).unwrap();
    let cert_pem = pem("CERTIFICATE", cert.der());
    let (k, c) = (dir.join("signer.key"), dir.join("signer.crt"));
    std::fs::write(&k, pem("PRIVATE KEY", pkcs8.as_ref())).unwrap();
    std::fs::write(&c, &cert_pem).unwrap();
    let cfg = otatrail::app::codesign::SigningProfileConfig {
        name: "fw-signer".into(),
        private_key_file: k,
        certificate_file: c,
        certificate_path_on_device: "Code Verify Key".into(),
    };
    (Signer { key, cert_pem }, cfg)
}

impl Signer {
    fn sign(&self, data: &[u8]) -> String {
        b64(self.key.sign(&SystemRandom::new(), data).unwrap().as_ref())
    }
}

async fn open(dir: &std::path::Path, profile: &otatrail::app::codesign::SigningProfileConfig) -> Arc<App> {
    let args = ServeArgs { data_dir: Some(dir.join("data")), ..Default::default() };
    let mut file: FileConfig = toml::from_str(&format!(
        "[[accounts]]\nid = \"{ACCOUNT}\"\nroot_access_key_id = \"AKIAROOT0000EXAMPLE1\"\nroot_secret_access_key = \"secretsecretsecretsecretsecretsecret1234\"\n"
    ))
    .unwrap();
    file.signing_profiles = vec![profile.clone()];
    App::open(&ServerConfig::merge(&args, file).unwrap()).await.unwrap()
}

fn call(app: &App, name: &str) -> Arc<Call> {
    Arc::new(Call::internal(Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1"), REGION, "iot.amazonaws.com", name, false, app.clock.now()))
}

async fn setup(app: &App) {
    let trusts_iot = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"iot.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    app.iam_create_role(&call(app, "CreateRole"), "ota", None, trusts_iot, None, None, vec![]).await.unwrap();
    app.s3_create_bucket(&call(app, "CreateBucket"), "fw-bucket", REGION).await.unwrap();
    put(app, "fw-bucket", "image.bin", IMAGE).await;
    app.create_thing(&call(app, "CreateThing"), "dev1", &CreateThingBody::default()).await.unwrap();
}

async fn put(app: &App, bucket: &str, key: &str, data: &[u8]) {
    let body = futures::stream::iter(vec![Ok::<bytes::Bytes, std::io::Error>(bytes::Bytes::copy_from_slice(data))]);
    app.s3_put_object(&Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1"), bucket, key, body, Default::default(), false).await.unwrap();
}

fn body(protocols: &[&str], signing: serde_json::Value) -> CreateOtaUpdateBody {
    serde_json::from_value(serde_json::json!({
        "targets": [format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/dev1")],
        "protocols": protocols,
        "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/ota"),
        "files": [{
            "fileName": "/fw.bin",
            "fileLocation": {"s3Location": {"bucket": "fw-bucket", "key": "image.bin"}},
            "codeSigning": signing,
        }],
    }))
    .unwrap()
}

fn custom(sig: &str, cert: Option<&str>) -> serde_json::Value {
    let mut chain = serde_json::json!({"certificateName": "Code Verify Key"});
    if let Some(c) = cert {
        chain["inlineDocument"] = c.into();
    }
    serde_json::json!({"customCodeSigning": {"signature": {"inlineDocument": sig}, "certificateChain": chain, "hashAlgorithm": "SHA256", "signatureAlgorithm": "ECDSA"}})
}

async fn status(app: &App, id: &str) -> (OtaStatus, serde_json::Value) {
    let u = app.get_ota_update(&call(app, "GetOTAUpdate"), id).await.unwrap();
    (u.status, u.info())
}

async fn document(app: &App, id: &str) -> serde_json::Value {
    let job = app.get_job(&call(app, "GetJobDocument"), &format!("AFR_OTA-{id}")).await.unwrap();
    serde_json::from_str(&job.spec.document).unwrap()
}

#[tokio::test]
async fn updates_become_streams_and_jobs_or_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (s, profile) = signer(dir.path());
    let app = open(dir.path(), &profile).await;
    setup(&app).await;

    // MQTT, a custom signature checked against the inline certificate.
    let u = app.create_ota_update(&call(&app, "CreateOTAUpdate"), "mqtt-1", &body(&["MQTT"], custom(&s.sign(IMAGE), Some(&s.cert_pem)))).await.unwrap();
    assert_eq!(u.status, OtaStatus::CreatePending);
    assert_eq!(app.ota_tick().await.unwrap(), 1);
    let (st, info) = status(&app, "mqtt-1").await;
    assert_eq!(st, OtaStatus::CreateComplete, "{info}");
    assert_eq!(info["awsIotJobId"], "AFR_OTA-mqtt-1");
    let doc = document(&app, "mqtt-1").await;
    let stream = doc["afr_ota"]["streamname"].as_str().unwrap().to_string();
    assert!(stream.starts_with("AFR_OTA-") && stream.len() == 44, "{stream}");
    let f = &doc["afr_ota"]["files"][0];
    assert_eq!((f["filepath"].as_str(), f["filesize"].as_u64(), f["certfile"].as_str()), (Some("/fw.bin"), Some(IMAGE.len() as u64), Some("Code Verify Key")));
    assert!(f["sig-sha256-ecdsa"].is_string());
    // The stream is in use: DeleteStream refuses it.
    let e = app.delete_stream(&call(&app, "DeleteStream"), &stream).await.unwrap_err();
    assert_eq!(e.code, "DeleteConflictException");

    // A wrong signature (the certificate is known through the profile's path on device).
    app.create_ota_update(&call(&app, "CreateOTAUpdate"), "bad-sig", &body(&["MQTT"], custom(&s.sign(b"other"), None))).await.unwrap();
    // A missing object.
    let mut missing = body(&["HTTP"], serde_json::Value::Null);
    missing.files.as_mut().unwrap()[0].file_location.as_mut().unwrap().s3_location.as_mut().unwrap().key = Some("nope.bin".into());
    app.create_ota_update(&call(&app, "CreateOTAUpdate"), "missing", &missing).await.unwrap();
    // HTTP with a signing profile and a destination for the signed output.
    let prof = serde_json::json!({"startSigningJobParameter": {"signingProfileName": "fw-signer", "destination": {"s3Destination": {"bucket": "fw-bucket", "prefix": "out/"}}}});
    app.create_ota_update(&call(&app, "CreateOTAUpdate"), "http-1", &body(&["HTTP"], prof)).await.unwrap();
    app.ota_tick().await.unwrap();

    let (st, info) = status(&app, "bad-sig").await;
    assert_eq!(st, OtaStatus::CreateFailed);
    assert!(info["errorInfo"]["message"].as_str().unwrap().contains("does not verify"), "{info}");
    let (st, info) = status(&app, "missing").await;
    assert_eq!(st, OtaStatus::CreateFailed);
    assert!(info["errorInfo"]["message"].as_str().unwrap().contains("nope.bin"), "{info}");
    let (st, info) = status(&app, "http-1").await;
    assert_eq!(st, OtaStatus::CreateComplete, "{info}");
    let doc = document(&app, "http-1").await;
    let f = &doc["afr_ota"]["files"][0];
    assert_eq!(f["update_data_url"], "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/fw-bucket/image.bin}");
    assert!(doc["afr_ota"].get("streamname").is_none());
    // The server's signature verifies with the profile's certificate.
    let sig = base64::engine::general_purpose::STANDARD.decode(f["sig-sha256-ecdsa"].as_str().unwrap()).unwrap();
    let spki = otatrail::domain::codesign::certificate_spki(&otatrail::domain::codesign::pem_blocks(&s.cert_pem, "CERTIFICATE")[0]).unwrap();
    assert!(!spki.is_empty());
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, IMAGE);
    assert_eq!(
        otatrail::domain::codesign::verify(otatrail::app::codesign::PROFILE_SCHEME, &s.cert_pem, &d, &b64(&sig)),
        Ok(())
    );
    let out = app.s3_head_object(&Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1"), "fw-bucket", "out/SignedImages/http-1-0").await.unwrap();
    assert!(out.size > IMAGE.len() as u64);

    // Deletion: an active job needs forceDeleteAWSJob.
    app.delete_ota_update(&call(&app, "DeleteOTAUpdate"), "mqtt-1", DeleteRequest { delete_stream: true, force_delete_aws_job: false }).await.unwrap();
    let (st, info) = status(&app, "mqtt-1").await;
    assert_eq!(st, OtaStatus::DeleteFailed, "{info}");
    app.delete_ota_update(&call(&app, "DeleteOTAUpdate"), "mqtt-1", DeleteRequest { delete_stream: true, force_delete_aws_job: true }).await.unwrap();
    assert_eq!(app.get_ota_update(&call(&app, "GetOTAUpdate"), "mqtt-1").await.unwrap_err().code, "ResourceNotFoundException");
    assert_eq!(app.describe_stream(&call(&app, "DescribeStream"), &stream).await.unwrap_err().code, "ResourceNotFoundException");
    assert!(app.get_job(&call(&app, "GetJob"), "AFR_OTA-mqtt-1").await.is_err());

    // Records of the service's calls carry the role, assumed by iot.amazonaws.com.
    let scope = Scope::new(ACCOUNT, REGION);
    let events = app
        .store
        .clone();
    let rows = otatrail::store::read::<_, otatrail::store::StoreError, _>(&*events, move |tx| {
        Box::pin(async move {
            tx.lookup_events(&otatrail::store::EventQuery {
                account_id: scope.account_id.clone(),
                region: scope.region.clone(),
                attribute: None,
                start: None,
                end: None,
                before: None,
                limit: 200,
            })
            .await
        })
    })
    .await
    .unwrap();
    let recs: Vec<serde_json::Value> = rows.iter().map(|r| serde_json::from_str(&r.record).unwrap()).collect();
    for name in ["CreateStream", "CreateJob", "StartSigningJob"] {
        let r = recs.iter().find(|r| r["eventName"] == name && r["userIdentity"]["type"] == "AssumedRole").unwrap_or_else(|| panic!("{name}"));
        assert_eq!(r["userIdentity"]["invokedBy"], "iot.amazonaws.com", "{r}");
        assert_eq!(r["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"], "ota", "{r}");
    }
}

#[tokio::test]
async fn pending_updates_resume_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (s, profile) = signer(dir.path());
    {
        let app = open(dir.path(), &profile).await;
        setup(&app).await;
        app.create_ota_update(&call(&app, "CreateOTAUpdate"), "r-2", &body(&["MQTT"], serde_json::Value::Null)).await.unwrap();
        // r-2 got as far as creating its job when the server stopped.
        app.ota_tick().await.unwrap();
        let scope = Scope::new(ACCOUNT, REGION);
        otatrail::store::write::<_, otatrail::domain::ServiceError, _>(&*app.store, move |tx| {
            Box::pin(async move {
                let mut u = tx.get_ota_update(&scope, "r-2").await?.unwrap();
                u.status = OtaStatus::CreateInProgress;
                u.spec.progress.job_created = false;
                tx.update_ota_update(&u).await?;
                Ok(())
            })
        })
        .await
        .unwrap();
        // r-1 is still CREATE_PENDING when the server stops.
        app.create_ota_update(&call(&app, "CreateOTAUpdate"), "r-1", &body(&["MQTT", "HTTP"], custom(&s.sign(IMAGE), None))).await.unwrap();
    }
    let app = open(dir.path(), &profile).await;
    assert_eq!(app.ota_tick().await.unwrap(), 2);
    for id in ["r-1", "r-2"] {
        let (st, info) = status(&app, id).await;
        assert_eq!(st, OtaStatus::CreateComplete, "{id}: {info}");
    }
    assert_eq!(app.ota_tick().await.unwrap(), 0, "nothing left pending");
    let doc = document(&app, "r-1").await;
    assert_eq!(doc["afr_ota"]["protocols"], serde_json::json!(["MQTT", "HTTP"]));
}

/// Streams and OTA updates record each file's SHA-256: noted while the object was uploaded,
/// computed from its bytes when it was not.
#[tokio::test]
async fn an_objects_sha256_is_noted_at_upload() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let (_, profile) = signer(dir.path());
    let app = open(dir.path(), &profile).await;
    setup(&app).await;
    let p = Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1");
    let meta = app
        .s3_head_object(&p, "fw-bucket", "image.bin")
        .await
        .unwrap();
    let want = hex::encode(sha2::Sha256::digest(IMAGE));
    assert_eq!(meta.blobs[0].sha256.as_deref(), Some(want.as_str()));
    assert_eq!(app.s3_sha256(&meta).await.unwrap(), want);
    // An object from a build that did not note it is read and hashed.
    let mut old = meta.clone();
    old.blobs[0].sha256 = None;
    assert_eq!(app.s3_sha256(&old).await.unwrap(), want);
}

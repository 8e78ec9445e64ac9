//! The main port in-process: the server runs from `server::run` on 127.0.0.1:0 and requests
//! are signed by the AWS SDK's own signer (`aws-sigv4`), independent of our verifier.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use otatrail::app::App;
use otatrail::config::{FileConfig, ServeArgs, ServerConfig};
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";
const ROOT_KEY: &str = "AKIAROOT0000EXAMPLE1";
const ROOT_SECRET: &str = "rootsecret/EXAMPLE/0000000000000000000000";

struct Server {
    addr: SocketAddr,
    app: Arc<App>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Server {
    start_with("").await
}

async fn start_with(extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let file: FileConfig = toml::from_str(&format!(
        "{extra}\n[[accounts]]\nid = \"{ACCOUNT}\"\nroot_access_key_id = \"{ROOT_KEY}\"\nroot_secret_access_key = \"{ROOT_SECRET}\"\n"
    ))
    .unwrap();
    let args = ServeArgs { data_dir: Some(dir.path().to_path_buf()), max_body_bytes: Some(64 * 1024), ..Default::default() };
    let config = ServerConfig::merge(&args, file).unwrap();
    let app: Arc<App> = App::open(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(otatrail::server::run(listener, app.clone(), async move {
        let _ = stopped.await;
    }));
    Server { addr, app, _dir: dir, _stop: stop }
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

/// Sends a request signed with `aws-sigv4` for `service`.
async fn call(
    server: &Server,
    method: &str,
    path_and_query: &str,
    service: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    key: (&str, &str),
) -> Reply {
    let url = format!("http://{}{}", server.addr, path_and_query);
    let mut headers: Vec<(String, String)> = vec![("host".into(), server.addr.to_string())];
    headers.extend(extra_headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let identity: Identity = Credentials::new(key.0, key.1, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        &url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), &url).body(body.to_vec());
    for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
        req = req.header(k, v);
    }
    for (k, v) in instructions.headers() {
        req = req.header(k, v);
    }
    send(req).await
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, body, text }
}

fn root() -> (&'static str, &'static str) {
    (ROOT_KEY, ROOT_SECRET)
}

async fn put_object(server: &Server, bucket: &str, key: &str, data: &'static [u8]) {
    let root = otatrail::domain::Principal::root(ACCOUNT, ROOT_KEY);
    let call = Arc::new(otatrail::app::audit::Call::internal(
        root.clone(),
        "us-east-1",
        "s3.amazonaws.com",
        "CreateBucket",
        false,
        otatrail::domain::time::Millis(0),
    ));
    let _ = server.app.s3_create_bucket(&call, bucket, "us-east-1").await;
    let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(data))]);
    server.app.s3_put_object(&root, bucket, key, body, Default::default(), false).await.unwrap();
}

fn create_body(bucket: &str, key: &str) -> Vec<u8> {
    json!({
        "files": [{"fileId": 0, "s3Location": {"bucket": bucket, "key": key}}],
        "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/ota"),
        "description": "firmware 1.0"
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn health_needs_no_signature_and_has_a_request_id() {
    let s = start().await;
    let r = send(reqwest::Client::new().get(format!("http://{}/_otatrail/health", s.addr))).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.contains_key("x-amzn-requestid"));
}

#[tokio::test]
async fn stream_round_trip_with_percent_encoded_path() {
    let s = start().await;
    put_object(&s, "fw-bucket", "dir/image.bin", b"0123456789").await;
    let r = call(&s, "POST", "/streams/fw-1_a", "iot", &[("content-type", "application/json")], &create_body("fw-bucket", "dir/image.bin"), root()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["streamVersion"], 1);
    assert_eq!(r.body["streamArn"], format!("arn:aws:iot:us-east-1:{ACCOUNT}:stream/fw-1_a"));

    let r = call(&s, "GET", "/streams/fw-1_a", "iot", &[], b"", root()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["streamInfo"]["files"][0]["s3Location"]["key"], "dir/image.bin");
    assert!(r.body["streamInfo"]["createdAt"].is_number());

    // An ID that needs percent-encoding reaches validation decoded.
    let r = call(&s, "GET", "/streams/bad%20id", "iot", &[], b"", root()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers["x-amzn-errortype"], "InvalidRequestException");
    assert!(r.body["message"].as_str().unwrap().contains("'bad id'"));
}

#[tokio::test]
async fn errors_follow_each_protocol() {
    let s = start().await;
    // rest-json: header and lowercase message.
    let r = call(&s, "GET", "/streams/nope", "iot", &[], b"", root()).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-amzn-errortype"], "ResourceNotFoundException");
    assert!(r.body["message"].is_string());

    // json 1.1: __type in the body.
    let r = call(
        &s,
        "POST",
        "/",
        "cloudtrail",
        &[
            ("x-amz-target", "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.NoSuchOp"),
            ("content-type", "application/x-amz-json-1.1"),
        ],
        b"{}",
        root(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["__type"], "UnknownOperationException");

    // query: XML ErrorResponse.
    let r = call(
        &s,
        "POST",
        "/",
        "sts",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"Action=NoSuchAction&Version=2011-06-15",
        root(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("<Code>InvalidAction</Code>"), "{}", r.text);

    // Malformed JSON is a 400 with a clear message, not a 500.
    let r = call(&s, "POST", "/streams/s", "iot", &[("content-type", "application/json")], b"{not json", root()).await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().contains("not valid JSON"));

    // Oversized bodies are refused before anything else.
    let big = vec![b' '; 100 * 1024];
    let r = call(&s, "POST", "/streams/s", "iot", &[("content-type", "application/json")], &big, root()).await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn authentication_failures() {
    let s = start().await;
    let r = send(reqwest::Client::new().get(format!("http://{}/streams", s.addr))).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["x-amzn-errortype"], "MissingAuthenticationTokenException");

    let r = call(&s, "GET", "/streams", "iot", &[], b"", ("AKIAUNKNOWN000000000", ROOT_SECRET)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["x-amzn-errortype"], "UnrecognizedClientException");

    let r = call(&s, "GET", "/streams", "iot", &[], b"", (ROOT_KEY, "wrong-secret-0000000000000000000000000000")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["x-amzn-errortype"], "InvalidSignatureException");
    assert!(r.body["message"].as_str().unwrap().contains("The Canonical String for this request should have been"));

    let r = call(&s, "POST", "/", "sts", &[("content-type", "application/x-www-form-urlencoded")], b"Action=GetCallerIdentity&Version=2011-06-15", (ROOT_KEY, "wrong-secret-0000000000000000000000000000")).await;
    assert_eq!(r.status, 403);
    assert!(r.text.contains("<Code>SignatureDoesNotMatch</Code>"));

    let r = call(&s, "POST", "/", "sts", &[("content-type", "application/x-www-form-urlencoded")], b"Action=GetCallerIdentity&Version=2011-06-15", root()).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains(&format!("<Arn>arn:aws:iam::{ACCOUNT}:root</Arn>")), "{}", r.text);
}

#[tokio::test]
async fn the_server_assumes_a_role_that_trusts_its_service() {
    let dir = tempfile::tempdir().unwrap();
    let file: FileConfig = toml::from_str(&format!(
        "[[accounts]]\nid = \"{ACCOUNT}\"\nroot_access_key_id = \"{ROOT_KEY}\"\nroot_secret_access_key = \"{ROOT_SECRET}\"\n"
    ))
    .unwrap();
    let args = ServeArgs { data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let app = App::open(&ServerConfig::merge(&args, file).unwrap()).await.unwrap();
    let call = Arc::new(otatrail::app::audit::Call::internal(
        otatrail::domain::Principal::root(ACCOUNT, ROOT_KEY),
        "us-east-1",
        "iam.amazonaws.com",
        "CreateRole",
        false,
        otatrail::domain::time::Millis(0),
    ));
    let trusts_iot = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"iot.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let trusts_account = format!(r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{ACCOUNT}"}},"Action":"sts:AssumeRole"}}]}}"#);
    app.iam_create_role(&call, "ota", None, trusts_iot, None, None, vec![]).await.unwrap();
    app.iam_create_role(&call, "humans", None, &trusts_account, None, None, vec![]).await.unwrap();

    let p = app
        .assume_role_as_service("iot.amazonaws.com", ACCOUNT, &format!("arn:aws:iam::{ACCOUNT}:role/ota"), "ota-1")
        .await
        .unwrap();
    assert_eq!(p.identity_type, otatrail::domain::IdentityType::AssumedRole);
    assert_eq!(p.arn, format!("arn:aws:sts::{ACCOUNT}:assumed-role/ota/ota-1"));
    assert_eq!(p.invoked_by.as_deref(), Some("iot.amazonaws.com"));
    let issuer = p.session.unwrap().session_issuer.unwrap();
    assert_eq!((issuer.issuer_type.as_str(), issuer.user_name.as_str()), ("Role", "ota"));

    for (role, account) in [("humans", ACCOUNT), ("missing", ACCOUNT), ("ota", "999999999999")] {
        let e = app
            .assume_role_as_service("iot.amazonaws.com", account, &format!("arn:aws:iam::{ACCOUNT}:role/{role}"), "s")
            .await
            .unwrap_err();
        assert_eq!(e.code, "InvalidRequestException", "{role}");
    }
}

/// The record's sourceIPAddress of the newest event with this request ID.
async fn source_ip_of(s: &Server, request_id: &str) -> String {
    let lookup = otatrail::domain::history::validate(otatrail::domain::history::LookupInput {
        attributes: vec![],
        start: None,
        end: None,
        event_category: None,
        max_results: Some(50),
        next_token: None,
    })
    .unwrap();
    let page = s.app.lookup_in(ACCOUNT, "us-east-1", lookup).await.unwrap();
    let rec = page.events.iter().find(|e| e.record.contains(request_id)).expect("record");
    let v: Value = serde_json::from_str(&rec.record).unwrap();
    v["sourceIPAddress"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let untrusted = start().await;
    let r = call(&untrusted, "GET", "/streams", "iot", &[("x-forwarded-for", "203.0.113.7")], b"", root()).await;
    let id = r.headers["x-amzn-requestid"].to_str().unwrap().to_string();
    assert_eq!(source_ip_of(&untrusted, &id).await, "127.0.0.1");

    let trusted = start_with("trusted_proxies = [\"127.0.0.1\"]").await;
    // The right-most untrusted address is the client; what it claims before that is ignored.
    let r = call(&trusted, "GET", "/streams", "iot", &[("x-forwarded-for", "198.51.100.1, 203.0.113.7")], b"", root()).await;
    let id = r.headers["x-amzn-requestid"].to_str().unwrap().to_string();
    assert_eq!(source_ip_of(&trusted, &id).await, "203.0.113.7");
}

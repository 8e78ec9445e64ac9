//! What hostile or broken clients can do to the listeners (`server.rs`): slow headers, slow
//! bodies, responses never read, too many connections, oversized bodies; and what must still hold: graceful
//! shutdown finishes requests in flight, handlers see the real peer address.
//!
//! The servers run in-process on 127.0.0.1:0 with small limits; clients are raw TCP sockets
//! so that they can misbehave.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use otatrail::app::App;
use otatrail::config::{FileConfig, ServeArgs, ServerConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ACCOUNT: &str = "111122223333";
const ROOT_KEY: &str = "AKIAROOT0000EXAMPLE1";
const ROOT_SECRET: &str = "rootsecret/EXAMPLE/0000000000000000000000";

struct Server {
    addr: SocketAddr,
    s3_addr: SocketAddr,
    app: Arc<App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    main: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// Both ports with the limits in `limits` (configuration file keys).
async fn start(limits: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let file: FileConfig = toml::from_str(&format!(
        "{limits}\nmax_body_bytes = 65536\n[[accounts]]\nid = \"{ACCOUNT}\"\nroot_access_key_id = \"{ROOT_KEY}\"\nroot_secret_access_key = \"{ROOT_SECRET}\"\n"
    ))
    .unwrap();
    let args = ServeArgs { data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let app = App::open(&ServerConfig::merge(&args, file).unwrap()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s3_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, s3_addr) = (listener.local_addr().unwrap(), s3_listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (s3_stop, s3_stopped) = tokio::sync::watch::channel(false);
    let main = tokio::spawn(otatrail::server::run(listener, app.clone(), async move {
        let _ = stopped.await;
        let _ = s3_stop.send(true);
    }));
    let mut s3_stopped = s3_stopped;
    tokio::spawn(otatrail::server::run_s3(s3_listener, app.clone(), async move {
        let _ = s3_stopped.wait_for(|s| *s).await;
    }));
    Server { addr, s3_addr, app, stop: Some(stop), main, _dir: dir }
}

/// An HTTP response read off a raw connection: status, head, body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Reads one response (Content-Length framed, else up to the end of the connection).
async fn read_response(s: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed before a response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head[9..12].parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()));
    let mut body = buf[head_end..].to_vec();
    match length {
        Some(n) => {
            while body.len() < n {
                let k = s.read(&mut chunk).await.expect("read body");
                assert!(k > 0, "connection closed within a body");
                body.extend_from_slice(&chunk[..k]);
            }
        }
        None => {
            let _ = s.read_to_end(&mut body).await;
        }
    }
    Raw { status, head, body: String::from_utf8_lossy(&body).to_string() }
}

/// How long after `since` the server closed `s` (reading and dropping whatever it sends);
/// fails if it is still open after `max`.
async fn closed_after(s: &mut TcpStream, since: Instant, max: Duration) -> Duration {
    let mut sink = [0u8; 4096];
    let closed = tokio::time::timeout(max, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection is still open after {max:?}");
    since.elapsed()
}

/// True when nothing arrives on `s` for `wait` (and it stays open).
async fn silent_for(s: &mut TcpStream, wait: Duration) -> bool {
    let mut one = [0u8; 1];
    tokio::time::timeout(wait, s.read(&mut one)).await.is_err()
}

const HEALTH: &[u8] = b"GET /_otatrail/health HTTP/1.1\r\nHost: otatrail\r\n\r\n";

#[tokio::test]
async fn clients_that_send_no_request_in_time_are_disconnected() {
    let s = start("header_read_timeout_seconds = 1").await;
    let t0 = Instant::now();
    // Half a request line, then nothing (slowloris).
    let slow = async {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /_otatrail/he").await.unwrap();
        closed_after(&mut c, t0, Duration::from_secs(4)).await
    };
    // Headers that never end, sent a line every 300 ms.
    let dripping = async {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /_otatrail/health HTTP/1.1\r\n").await.unwrap();
        let mut writes = 0;
        while writes < 20 && c.write_all(b"X-Drip: 1\r\n").await.is_ok() {
            writes += 1;
            if !silent_for(&mut c, Duration::from_millis(300)).await {
                break;
            }
        }
        closed_after(&mut c, t0, Duration::from_secs(4)).await
    };
    // Connected, but not a single byte.
    let mute = async {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        closed_after(&mut c, t0, Duration::from_secs(4)).await
    };
    // One request answered, then idle on a kept-alive connection.
    let idle = async {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(HEALTH).await.unwrap();
        assert_eq!(read_response(&mut c).await.status, 200);
        let answered = Instant::now();
        closed_after(&mut c, answered, Duration::from_secs(4)).await
    };
    // HTTP/2 (prior knowledge): the preface and SETTINGS, then no request.
    let h2 = async {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
        closed_after(&mut c, t0, Duration::from_secs(5)).await
    };
    let (slow, dripping, mute, idle, h2) = tokio::join!(slow, dripping, mute, idle, h2);
    for (what, took, max) in [("slow", slow, 3.0), ("dripping", dripping, 3.0), ("mute", mute, 3.0), ("idle", idle, 3.0), ("h2", h2, 4.5)] {
        assert!(took >= Duration::from_millis(900), "{what}: closed after {took:?}, before the timeout");
        assert!(took.as_secs_f64() <= max, "{what}: closed after {took:?}");
    }
    // The server still answers.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut c).await.status, 200);
}

/// A request whose body comes a byte every 200 ms; the response and when it came.
async fn trickle(addr: SocketAddr, head: &str, length: usize) -> (Raw, Duration) {
    let c = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = c.into_split();
    wr.write_all(format!("{head}Content-Length: {length}\r\n\r\n").as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..length {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"x").await.is_err() {
                break;
            }
        }
        wr
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), rd.read_to_end(&mut buf)).await;
    let took = t0.elapsed();
    assert!(read.is_ok(), "the connection was not closed");
    writer.abort();
    let text = String::from_utf8_lossy(&buf).to_string();
    assert!(text.starts_with("HTTP/1.1 "), "no response: {text:?}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (Raw { status: head[9..12].parse().unwrap(), head: head.to_string(), body: body.to_string() }, took)
}

#[tokio::test]
async fn a_trickled_body_is_answered_with_request_timeout() {
    let s = start("body_read_timeout_seconds = 1").await;
    let json = "POST / HTTP/1.1\r\nHost: otatrail\r\nContent-Type: application/x-amz-json-1.1\r\n\
                X-Amz-Target: CloudTrail_20131101.LookupEvents\r\n";
    let query = "POST / HTTP/1.1\r\nHost: otatrail\r\nContent-Type: application/x-www-form-urlencoded\r\n";
    let ((j, j_took), (q, q_took)) = tokio::join!(trickle(s.addr, json, 100), trickle(s.addr, query, 100));
    for took in [j_took, q_took] {
        assert!(took >= Duration::from_millis(900) && took <= Duration::from_secs(3), "answered after {took:?}");
    }
    assert_eq!(j.status, 408, "{}", j.head);
    let head = j.head.to_ascii_lowercase();
    assert!(head.contains("connection: close") && head.contains("x-amzn-requestid:"), "{head}");
    let v: Value = serde_json::from_str(&j.body).unwrap();
    assert_eq!(v["__type"], "RequestTimeoutException");
    assert_eq!(q.status, 408, "{}", q.head);
    assert!(q.body.contains("<Code>RequestTimeout</Code>"), "{}", q.body);

    // A body that is slow but complete in time is not cut short.
    let (r, _) = trickle(s.addr, "POST /streams HTTP/1.1\r\nHost: otatrail\r\nConnection: close\r\n", 3).await;
    assert!(r.status != 408 && r.status != 413, "{} {}", r.head, r.body);
    assert!(r.body.contains("MissingAuthenticationToken") || r.head.contains("MissingAuthenticationToken"), "{} {}", r.head, r.body);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let s = start("max_connections = 8\nheader_read_timeout_seconds = 30").await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(HEALTH).await.unwrap();
        assert_eq!(read_response(&mut c).await.status, 200);
        held.push(c);
    }
    // The ninth is connected by the kernel but not served.
    let mut ninth = TcpStream::connect(s.addr).await.unwrap();
    ninth.write_all(HEALTH).await.unwrap();
    assert!(silent_for(&mut ninth, Duration::from_millis(800)).await, "a ninth connection was served");
    // The eight still work.
    held[0].write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut held[0]).await.status, 200);
    // One closes: the ninth is served.
    drop(held.pop());
    let served = tokio::time::timeout(Duration::from_secs(3), read_response(&mut ninth)).await.expect("the ninth was not served");
    assert_eq!(served.status, 200);
    drop(held);
    drop(ninth);
    for _ in 0..3 {
        let r = reqwest::Client::new().get(format!("http://{}/_otatrail/health", s.addr)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn oversized_bodies_get_the_aws_error() {
    let s = start("").await;
    // Declared too large: refused without reading the body.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /streams HTTP/1.1\r\nHost: otatrail\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(3), read_response(&mut c)).await.expect("no answer");
    assert_eq!(r.status, 413);
    assert!(r.head.contains("RequestEntityTooLargeException"), "{}", r.head);
    // Chunked, no length given: refused once past the limit.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let mut req = b"POST /streams HTTP/1.1\r\nHost: otatrail\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        req.extend_from_slice(format!("{:x}\r\n", 10_000).as_bytes());
        req.extend_from_slice(&[b'x'; 10_000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.write_all(&req).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(3), read_response(&mut c)).await.expect("no answer");
    assert_eq!(r.status, 413);
    assert!(r.head.contains("RequestEntityTooLargeException"), "{}", r.head);
    // Within the limit, chunked: read whole (then refused for want of a signature).
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /streams HTTP/1.1\r\nHost: otatrail\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await.unwrap();
    let r = read_response(&mut c).await;
    assert_eq!(r.status, 403, "{} {}", r.head, r.body);
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight() {
    let mut s = start("").await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /streams HTTP/1.1\r\nHost: otatrail\r\nContent-Length: 10\r\n\r\nhello").await.unwrap();
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    idle.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut idle).await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections; the idle one is closed.
    assert!(TcpStream::connect(s.addr).await.is_err(), "still accepting after shutdown");
    closed_after(&mut idle, Instant::now(), Duration::from_secs(2)).await;
    assert!(!s.main.is_finished(), "stopped with a request in flight");
    // The request in flight completes and is answered.
    c.write_all(b"world").await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(3), read_response(&mut c)).await.expect("no answer");
    assert_eq!(r.status, 403, "{} {}", r.head, r.body);
    assert!(r.head.to_ascii_lowercase().contains("x-amzn-requestid:"));
    let done = tokio::time::timeout(Duration::from_secs(3), &mut s.main).await.expect("the server did not stop");
    done.unwrap().unwrap();
}

/// Headers signing `method url` for `service` (`s3`: as S3 clients sign).
fn signed_headers(method: &str, url: &str, host: &str, service: &str, body: SignableBody<'_>) -> Vec<(String, String)> {
    let identity: Identity = Credentials::new(ROOT_KEY, ROOT_SECRET, None, None, "test").into();
    let mut settings = SigningSettings::default();
    if service == "s3" {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(method, url, [("host", host)].into_iter(), body).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The newest record of `event_name`.
async fn newest_record(app: &App, event_name: &str) -> Value {
    let lookup = otatrail::domain::history::validate(otatrail::domain::history::LookupInput {
        attributes: vec![],
        start: None,
        end: None,
        event_category: None,
        max_results: Some(50),
        next_token: None,
    })
    .unwrap();
    let page = app.lookup_in(ACCOUNT, "us-east-1", lookup).await.unwrap();
    let rec = page.events.iter().find(|e| e.record.contains(&format!("\"eventName\":\"{event_name}\""))).expect("record");
    serde_json::from_str(&rec.record).unwrap()
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let s = start("").await;
    // 127.0.0.2 is loopback too: an address no default could produce.
    let client = reqwest::Client::builder().local_address(IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let url = format!("http://{}/streams", s.addr);
    let mut req = client.get(&url);
    for (k, v) in signed_headers("GET", &url, &s.addr.to_string(), "iot", SignableBody::Bytes(b"")) {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    assert_eq!(newest_record(&s.app, "ListStreams").await["sourceIPAddress"], "127.0.0.2");

    let url = format!("http://{}/peer-bucket", s.s3_addr);
    let mut req = client.put(&url);
    for (k, v) in signed_headers("PUT", &url, &s.s3_addr.to_string(), "s3", SignableBody::Bytes(b"")) {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(newest_record(&s.app, "CreateBucket").await["sourceIPAddress"], "127.0.0.2");
}

#[tokio::test]
async fn s3_uploads_may_be_slow_but_not_silent() {
    let s = start("body_read_timeout_seconds = 1").await;
    let host = s.s3_addr.to_string();
    let url = format!("http://{host}/slow-bucket");
    let mut req = reqwest::Client::new().put(&url);
    for (k, v) in signed_headers("PUT", &url, &host, "s3", SignableBody::Bytes(b"")) {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);

    let put = |key: &str| {
        let url = format!("http://{host}/slow-bucket/{key}");
        let mut head = format!("PUT /slow-bucket/{key} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 40\r\n");
        for (k, v) in signed_headers("PUT", &url, &host, "s3", SignableBody::UnsignedPayload) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head
    };
    // 40 bytes over 2.4 s, never silent for a second: stored.
    let mut c = TcpStream::connect(s.s3_addr).await.unwrap();
    c.write_all(put("steady").as_bytes()).await.unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.write_all(b"01234").await.unwrap();
    }
    let r = tokio::time::timeout(Duration::from_secs(3), read_response(&mut c)).await.expect("no answer");
    assert_eq!(r.status, 200, "{} {}", r.head, r.body);

    // 10 bytes, then silence: the upload fails and the connection closes.
    let mut c = TcpStream::connect(s.s3_addr).await.unwrap();
    c.write_all(put("stalled").as_bytes()).await.unwrap();
    c.write_all(b"0123456789").await.unwrap();
    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(4), read_response(&mut c)).await.expect("no answer");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(900) && took <= Duration::from_secs(3), "answered after {took:?}");
    assert_eq!(r.status, 400, "{} {}", r.head, r.body);
    assert!(r.body.contains("IncompleteBody"), "{}", r.body);
    closed_after(&mut c, Instant::now(), Duration::from_secs(2)).await;
    let root = otatrail::domain::Principal::root(ACCOUNT, ROOT_KEY);
    assert_eq!(s.app.s3_head_object(&root, "slow-bucket", "steady").await.unwrap().size, 40);
    assert!(s.app.s3_head_object(&root, "slow-bucket", "stalled").await.is_err(), "a stalled upload was stored");
}

/// A client that stops reading its response is disconnected once the response has waited the
/// body timeout for it (its socket buffers full); one that reads slowly but steadily, never
/// pausing that long, gets all of it.
#[tokio::test]
async fn clients_that_stop_reading_their_response_are_disconnected() {
    // More than the server's socket send buffer can hold (up to 4 MiB by default) plus the
    // client's small receive buffer.
    const SIZE: usize = 8 << 20;
    let s = start("body_read_timeout_seconds = 1").await;
    let host = s.s3_addr.to_string();
    let send = |method: &str, path: &str, body: Vec<u8>| {
        let url = format!("http://{host}{path}");
        let mut req = reqwest::Client::new().request(method.parse().unwrap(), &url).body(body);
        for (k, v) in signed_headers(method, &url, &host, "s3", SignableBody::UnsignedPayload) {
            req = req.header(k, v);
        }
        req.send()
    };
    assert_eq!(send("PUT", "/big-bucket", vec![]).await.unwrap().status(), 200);
    let image: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    assert_eq!(send("PUT", "/big-bucket/image.bin", image).await.unwrap().status(), 200);
    let url = format!("http://{host}/big-bucket/image.bin");
    let mut get = format!("GET /big-bucket/image.bin HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in signed_headers("GET", &url, &host, "s3", SignableBody::UnsignedPayload) {
        get.push_str(&format!("{k}: {v}\r\n"));
    }
    get.push_str("\r\n");
    let mut chunk = vec![0u8; 1 << 16];

    // Asks, then reads nothing for 4 s: by then the server has closed the connection, and what
    // is left to read (the buffered start of the object) ends early.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut c = socket.connect(s.s3_addr).await.unwrap();
    c.write_all(get.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = 0usize;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection is still open; {got} bytes read");
    assert!(got < SIZE, "the whole object ({got} bytes) was sent to a client that did not read");

    // Reads half a MiB, pauses 300 ms, and so on: served whole.
    let mut c = TcpStream::connect(s.s3_addr).await.unwrap();
    c.write_all(get.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let complete = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut step = 0;
            while step < 512 * 1024 {
                match c.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => {
                        got.extend_from_slice(&chunk[..n]);
                        step += n;
                    }
                }
                if let Some(head_end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    if got.len() - (head_end + 4) >= SIZE {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    assert_eq!(complete, Ok(true), "a steady reader was cut off after {} bytes", got.len());
    assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got[..64.min(got.len())]));
}

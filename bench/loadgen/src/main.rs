//! A load generator for the control-plane benchmarks (`bench/controlplane.py` drives it).
//!
//! Each client owns one keep-alive HTTP/1.1 connection and sends SigV4-signed requests one
//! after another, as an SDK client with a connection pool of one would. Without `--rate` the
//! clients send as fast as the server answers (closed loop: throughput). With `--rate` each
//! client sends on a fixed schedule and latency is measured from the *scheduled* send time,
//! so a stalled server shows up as latency instead of silently lowering the offered load
//! (no coordinated omission).
//!
//! The request is described by a JSON spec; `{n}` in its path, query or body becomes a number
//! unique across all clients of the run (from `--first-index`), so create calls get fresh
//! names. The result is one JSON object on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use http1::Conn;
use otatrail_sigv4::{Credentials, SignableRequest, Signer};
use serde::{Deserialize, Serialize};

mod http1;

#[derive(Parser, Debug)]
#[command(about = "SigV4 load generator: N keep-alive clients sending one kind of request")]
struct Args {
    /// host:port of the server.
    #[arg(long)]
    endpoint: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    session_token: Option<String>,
    /// The request, as JSON: {"method","path","query","headers":[[k,v]],"body","service","region"}.
    #[arg(long)]
    spec: String,
    /// Concurrent clients (connections).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds to measure for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds to run before measuring (not counted).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Total requests per second across all clients; 0 sends as fast as answers come.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many requests in all (0: no limit).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Runtime threads of the load generator. At ~14 µs of CPU a call one has room for some
    /// 70,000 calls/s and leaves the rest of the machine to the server; a second cost more in
    /// thread switches than it gave (CreateThing at 64 clients 3-4% slower with two).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// First value of `{n}`.
    #[arg(long, default_value_t = 0)]
    first_index: u64,
}

#[derive(Deserialize, Debug)]
struct Spec {
    method: String,
    path: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
    service: String,
    region: String,
}

#[derive(Serialize)]
struct Report {
    clients: usize,
    offered_rate: f64,
    seconds: f64,
    requests: u64,
    ok: u64,
    errors: u64,
    statuses: std::collections::BTreeMap<u16, u64>,
    first_error: Option<String>,
    /// Answers after which the server closed the connection (each one reopened).
    reconnects: u64,
    throughput: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

struct Shared {
    args: Args,
    spec: Spec,
    creds: Credentials,
    next_index: AtomicU64,
    sent: AtomicU64,
    stop: AtomicBool,
}

#[derive(Default)]
struct ClientResult {
    latencies_us: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, u64>,
    first_error: Option<String>,
    /// Connections the server closed after an answer (each one reopened).
    reconnects: u64,
}

fn main() {
    let args = Args::parse();
    let spec: Spec = match serde_json::from_str(&args.spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("--spec is not a valid request spec: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build().expect("tokio runtime");
    let report = rt.block_on(run(args, spec));
    match report {
        Ok(r) => println!("{}", serde_json::to_string(&r).expect("report serializes")),
        Err(e) => {
            eprintln!("load generation failed: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args, spec: Spec) -> Result<Report, String> {
    let creds = Credentials {
        access_key_id: args.access_key.clone(),
        secret_access_key: args.secret_key.clone(),
        session_token: args.session_token.clone(),
    };
    let first = args.first_index;
    let shared = Arc::new(Shared { args, spec, creds, next_index: AtomicU64::new(first), sent: AtomicU64::new(0), stop: AtomicBool::new(false) });
    let clients = shared.args.clients.max(1);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(shared.args.warmup);
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move { client(shared, c, clients, start, measure_from).await }));
    }
    let total = Duration::from_secs_f64(shared.args.warmup + shared.args.duration);
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(total).await;
            shared.stop.store(true, Ordering::Relaxed);
        });
    }
    let mut all = ClientResult::default();
    for t in tasks {
        let r = t.await.map_err(|e| e.to_string())??;
        all.latencies_us.extend(r.latencies_us);
        for (s, n) in r.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
        if all.first_error.is_none() {
            all.first_error = r.first_error;
        }
        all.reconnects += r.reconnects;
    }
    let seconds = (Instant::now().min(start + total) - measure_from).as_secs_f64().max(1e-9);
    let mut lat = all.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    let requests: u64 = all.statuses.values().sum();
    let ok: u64 = all.statuses.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum();
    Ok(Report {
        clients,
        offered_rate: shared.args.rate,
        seconds,
        requests,
        ok,
        errors: requests - ok,
        statuses: all.statuses,
        first_error: all.first_error,
        reconnects: all.reconnects,
        throughput: requests as f64 / seconds,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: lat.last().map(|v| *v as f64 / 1000.0).unwrap_or(0.0),
    })
}

fn fill(template: &str, n: u64) -> String {
    template.replace("{n}", &n.to_string())
}

async fn client(shared: Arc<Shared>, id: usize, clients: usize, start: Instant, measure_from: Instant) -> Result<ClientResult, String> {
    let args = &shared.args;
    let spec = &shared.spec;
    // None after the server closed the connection: the next request opens a new one, so the
    // connect counts in that request's latency (as a client's would), not in the answer's.
    let mut conn = Some(Conn::connect(&args.endpoint).await?);
    let mut request = Vec::with_capacity(4096);
    let mut reconnects = 0u64;
    let mut signer = Signer::new(shared.creds.clone(), &spec.region, &spec.service);
    let mut out = ClientResult::default();
    // Open loop: client `id` sends at start + (id + k*clients) / rate, so the clients
    // together offer `rate` requests per second, evenly spread.
    let interval = if args.rate > 0.0 { Some(Duration::from_secs_f64(clients as f64 / args.rate)) } else { None };
    let mut next_at = interval.map(|i| start + i.mul_f64(id as f64 / clients as f64));
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if args.count > 0 && shared.sent.fetch_add(1, Ordering::Relaxed) >= args.count {
            break;
        }
        let scheduled = match (next_at, interval) {
            (Some(at), Some(i)) => {
                tokio::time::sleep_until(at.into()).await;
                next_at = Some(at + i);
                at
            }
            _ => Instant::now(),
        };
        let n = shared.next_index.fetch_add(1, Ordering::Relaxed);
        let path = fill(&spec.path, n);
        let query = fill(&spec.query, n);
        let body = fill(&spec.body, n);
        let headers: Vec<(&str, &str)> = spec.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let signed = signer.sign(
            &SignableRequest { method: &spec.method, host: &args.endpoint, path: &path, query: &query, headers: &headers, body: body.as_bytes() },
            time::OffsetDateTime::now_utc(),
        );
        let target = if query.is_empty() { path } else { format!("{path}?{query}") };
        let mut head: Vec<(&str, &str)> = vec![("host", &args.endpoint), ("user-agent", "otatrail-loadgen")];
        head.extend(headers.iter().copied());
        head.extend(signed.iter().map(|(k, v)| (*k, v.as_str())));
        http1::write_request(&mut request, &spec.method, &target, &head, body.as_bytes());
        let open = match &mut conn {
            Some(c) => c,
            None => conn.insert(Conn::connect(&args.endpoint).await?),
        };
        let mut conn_closed = false;
        let (status, error_body) = match open.roundtrip(&request).await {
            Ok(answer) => {
                let err = if (200..300).contains(&answer.status) {
                    None
                } else {
                    Some(String::from_utf8_lossy(&answer.body).chars().take(300).collect::<String>())
                };
                if !answer.reusable {
                    reconnects += 1;
                    conn_closed = true;
                }
                (answer.status, err)
            }
            Err(e) => {
                // A dropped connection: count it as status 0; the next request reconnects.
                conn_closed = true;
                (0, Some(format!("transport error: {e}")))
            }
        };
        let done = Instant::now();
        if conn_closed {
            conn = None;
        }
        if scheduled >= measure_from && !shared.stop.load(Ordering::Relaxed) {
            let us = (done - scheduled).as_micros().min(u32::MAX as u128) as u32;
            out.latencies_us.push(us);
            *out.statuses.entry(status).or_default() += 1;
            if out.first_error.is_none() {
                out.first_error = error_body.map(|b| format!("{status}: {b}"));
            }
        }
    }
    out.reconnects = reconnects;
    Ok(out)
}

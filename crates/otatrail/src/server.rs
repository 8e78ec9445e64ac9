//! Starting and stopping the server. Tests start it in-process with [`run`] on listeners
//! bound to `127.0.0.1:0`.
//!
//! Connections are served here with hyper (HTTP/1.1 with keep-alive, and HTTP/2 with prior
//! knowledge), within what [`ConnectionLimits`] allows a client on each listener:
//!
//! - **headers**: a connection must deliver a request's headers within `header_read_timeout`
//!   of starting to wait for them (after it is accepted, and after each response on a kept-alive
//!   connection), else it is closed without an answer. In hyper 1.x the HTTP/1 header timer
//!   starts as soon as the connection waits for the next request, so this is also the idle
//!   keep-alive limit. Connections hyper's timer does not cover (nothing sent yet, an HTTP/2
//!   connection) are closed by a watchdog once no request has been in flight for that long
//!   (an HTTP/2 connection: between one and two times that long).
//! - **bodies**: on the main port the whole body must arrive within `body_read_timeout`, else
//!   the answer is 408 `RequestTimeoutException` (`RequestTimeout` for query-protocol
//!   services) and the connection is closed. The S3 port streams uploads of up to 5 GiB, which
//!   may rightly take long; there an upload may not stay silent (no bytes) for that long, as S3
//!   closes idle sockets, and the upload fails with `IncompleteBody`.
//! - **connections**: at most `max_connections` are open per listener. Beyond it the listener
//!   stops accepting, so new connections wait in the kernel's backlog and are served as soon as
//!   a slot frees: accepting and closing them at once would turn a burst into errors (and
//!   immediate retries) instead of a short wait, and spend work on connections that are
//!   refused anyway. A warning is logged at most once a minute while the cap is hit.
//! - **accept errors** (out of file descriptors, …) are logged and retried after a back-off
//!   (5 ms doubling up to 1 s), never ending the server.
//!
//! - **responses**: a client must keep taking the bytes of its response. A connection whose
//!   response has waited `body_read_timeout` for the client to read anything (its socket
//!   buffers full) is closed, as S3 closes a socket "not read from or written to within the
//!   timeout period"; a slow but steady reader is served.
//!
//! Not bounded in time: an S3 body that keeps trickling bytes without ever pausing for the body
//! timeout (S3 allows it too); `max_connections` bounds how many of them there can be.
//!
//! On shutdown the listener is closed, idle connections are closed, and requests in flight
//! are finished (each has committed its state change before it answers).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleError;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use otatrail_sigv4::Verifier;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::api::{self, ApiState, Protocol};
use crate::app::App;
use crate::config::ConnectionLimits;
use crate::domain::ServiceError;

/// Serves the main port on `listener` until `shutdown` completes, then finishes the requests
/// in flight (each of which has committed its state change before it answers).
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let limits = app.connection_limits;
    let bodies = BodyPolicy::Whole { limit: app.max_body_bytes, within: limits.body_read_timeout };
    let state = Arc::new(ApiState { app, verifier: Verifier::new() });
    let router = Router::new().fallback(api::handle).with_state(state);
    serve("main", listener, router, bodies, limits, shutdown).await
}

async fn s3_transport_error(err: s3s::HttpError) -> Response<Body> {
    tracing::error!(error = ?err, "S3 request failed below the S3 layer");
    let mut r = Response::new(Body::from("Internal Server Error"));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

/// Serves the S3 endpoint (path-style) on `listener` until `shutdown` completes.
pub async fn run_s3(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let limits = app.connection_limits;
    let service = HandleError::new(crate::s3::service(app), s3_transport_error);
    // Peer addresses reach the S3 layer through the request extensions (sourceIPAddress).
    let router = Router::new().fallback_service(service);
    serve("S3", listener, router, BodyPolicy::NeverSilentFor(limits.body_read_timeout), limits, shutdown).await
}

/// How a port bounds the time a client takes to send a request body.
#[derive(Clone, Copy, Debug)]
enum BodyPolicy {
    /// Read the whole body (up to one byte past `limit`: `api::handle` refuses it) within `within`.
    Whole { limit: usize, within: Duration },
    /// Stream the body; fail it once no bytes came for this long while they are awaited.
    NeverSilentFor(Duration),
}

const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

async fn serve(
    port: &'static str,
    listener: TcpListener,
    router: Router,
    bodies: BodyPolicy,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut warned_full: Option<Instant> = None;
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                    warned_full = Some(Instant::now());
                    tracing::warn!(
                        port,
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait until one closes"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = Duration::ZERO;
                    accepted
                }
                // The peer gave up before we accepted: nothing wrong with the listener.
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(port, error = %e, "connection failed before it was accepted");
                    continue;
                }
                Err(e) => {
                    backoff = (backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    tracing::error!(port, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot accept connections");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        no_delay(&tcp);
        let (tcp, sending) = Watched::new(tcp);
        let activity = Arc::new(Activity::default());
        let service = {
            let (router, activity) = (router.clone(), activity.clone());
            tower::service_fn(move |req: Request<hyper::body::Incoming>| {
                let in_flight = activity.begin();
                let router = router.clone();
                async move { Ok::<_, Infallible>(handle(router, bodies, peer, req, in_flight).await) }
            })
        };
        let (builder, watcher, idle, unread) = (builder.clone(), graceful.watcher(), limits.header_read_timeout, limits.body_read_timeout);
        tokio::spawn(async move {
            let conn = watcher.watch(builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service)));
            tokio::select! {
                biased;
                done = conn => if let Err(e) = done {
                    tracing::debug!(port, peer = %peer, error = %e, "connection ended with an error");
                },
                () = activity.idle_for(idle) => tracing::debug!(port, peer = %peer, "closed an idle connection"),
                () = sending.stalled_for(unread) => tracing::info!(
                    port,
                    peer = %peer,
                    timeout_seconds = unread.as_secs(),
                    "closed a connection whose client stopped reading its response"
                ),
            }
            drop(slot);
        });
    }
    // No new connections; idle ones close, requests in flight finish.
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Responses go out as soon as they are written: with Nagle's algorithm a response written in
/// two parts waits for the client's delayed ACK (tens of milliseconds per request).
fn no_delay(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

/// One request: the peer address for handlers (`ConnectInfo<SocketAddr>`, as axum's
/// `into_make_service_with_connect_info` gave it), the port's body bound, and the request
/// counted in flight until its response body is done.
async fn handle(router: Router, bodies: BodyPolicy, peer: SocketAddr, req: Request<hyper::body::Incoming>, in_flight: InFlight) -> Response<Body> {
    let mut req = req.map(Body::new);
    req.extensions_mut().insert(ConnectInfo(peer));
    let req = match bodies {
        BodyPolicy::Whole { limit, within } => match read_whole_body(req, limit, within).await {
            Ok(req) => req,
            Err(parts) => return request_timeout(&parts, peer, within),
        },
        BodyPolicy::NeverSilentFor(idle) => {
            req.map(|b| if b.is_end_stream() { b } else { Body::new(NeverSilent::new(b, idle)) })
        }
    };
    let response = match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if response.body().is_end_stream() {
        return response;
    }
    response.map(|inner| Body::new(Counted { inner, _in_flight: in_flight }))
}

/// The request with its body read, or its head when the body did not arrive in time. Bodies
/// declared too large are left unread: `api::handle` refuses them without reading.
async fn read_whole_body(req: Request<Body>, limit: usize, within: Duration) -> Result<Request<Body>, http::request::Parts> {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if req.body().is_end_stream() || declared.is_some_and(|n| n > limit as u64) {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(within, take_up_to(body, limit)).await {
        Ok(body) => Ok(Request::from_parts(parts, body)),
        Err(_) => Err(parts),
    }
}

/// The body's bytes, stopping once past `limit` (then `api::handle` finds it too large); a
/// body that failed fails again for `api::handle`.
async fn take_up_to(mut body: Body, limit: usize) -> Body {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    chunks.push(data);
                    if len > limit {
                        break;
                    }
                }
            }
            Err(e) => return Body::from_stream(futures::stream::once(async move { Err::<Bytes, _>(e) })),
        }
    }
    match chunks.len() {
        0 => Body::empty(),
        1 => Body::from(chunks.pop().expect("one chunk")),
        _ => Body::from(chunks.concat()),
    }
}

/// The main port's answer to a body that did not arrive within `within`: AWS's
/// `RequestTimeoutException` with HTTP 408 (as Glacier answers; the SDKs' standard retry mode
/// retries both it and `RequestTimeout`), in the protocol the request appears to use, and the connection closed (the rest of the body is not awaited).
fn request_timeout(parts: &http::request::Parts, peer: SocketAddr, within: Duration) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let protocol = api::apparent_protocol(&parts.headers, parts.uri.query().unwrap_or_default());
    let code = if matches!(protocol, Protocol::Query(_)) { "RequestTimeout" } else { "RequestTimeoutException" };
    let err = ServiceError::new(code, format!("The request body was not received within {} seconds.", within.as_secs()));
    let mut response = api::error::render(protocol, &err, &request_id);
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    if parts.version <= Version::HTTP_11 {
        response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    tracing::info!(
        request_id = %request_id,
        method = %parts.method,
        path = %parts.uri.path(),
        status = 408,
        source = %peer,
        "request body not received in time"
    );
    response
}

/// Requests of one connection: how many are in flight (until their response body is done)
/// and a count of starts and ends, so that the watchdog sees any activity between two looks.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    changes: AtomicU64,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changes.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Completes once no request was in flight or started for a whole period of `idle`
    /// (checked every `idle`: an idle connection is noticed after `idle` to twice `idle`).
    async fn idle_for(&self, idle: Duration) {
        loop {
            let seen = self.changes.load(Ordering::SeqCst);
            tokio::time::sleep(idle).await;
            if self.in_flight.load(Ordering::SeqCst) == 0 && self.changes.load(Ordering::SeqCst) == seen {
                return;
            }
        }
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.changes.fetch_add(1, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted in flight until it is done or dropped.
struct Counted {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails once its reader has waited `idle` for bytes that do not come.
struct NeverSilent {
    inner: Body,
    idle: Duration,
    /// Armed when a read finds no bytes, disarmed by each frame.
    timer: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
}

impl NeverSilent {
    fn new(inner: Body, idle: Duration) -> Self {
        Self { inner, idle, timer: Box::pin(tokio::time::sleep(idle)), armed: false }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no request body bytes were received for {0} seconds")]
struct BodySilent(u64);

impl HttpBody for NeverSilent {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    this.timer.as_mut().reset(Instant::now() + this.idle);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodySilent(this.idle.as_secs()).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket, noting since when a write has waited for the client to take bytes
/// (the socket's send buffer full because the client does not read).
struct Watched {
    tcp: tokio::net::TcpStream,
    sending: Arc<Sending>,
}

/// Shared with the connection's watchdog.
struct Sending {
    start: Instant,
    /// Milliseconds after `start` when the current wait to write began; 0 when no write waits.
    blocked_since: AtomicU64,
}

impl Watched {
    fn new(tcp: tokio::net::TcpStream) -> (Self, Arc<Sending>) {
        let sending = Arc::new(Sending { start: Instant::now(), blocked_since: AtomicU64::new(0) });
        (Self { tcp, sending: sending.clone() }, sending)
    }

    /// Notes the outcome of a write: waiting (the first wait starts the clock) or done.
    fn note<T>(&self, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match &poll {
            Poll::Pending => {
                let now = self.sending.start.elapsed().as_millis() as u64 + 1;
                let _ = self.sending.blocked_since.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            }
            Poll::Ready(_) => self.sending.blocked_since.store(0, Ordering::Relaxed),
        }
        poll
    }
}

impl Sending {
    /// Completes once a write has waited `limit` without the client taking a byte (checked
    /// every half `limit`: noticed after one to one and a half times `limit`).
    async fn stalled_for(&self, limit: Duration) {
        loop {
            tokio::time::sleep(limit / 2).await;
            let since = self.blocked_since.load(Ordering::Relaxed);
            if since != 0 && self.start.elapsed().as_millis() as u64 + 1 - since >= limit.as_millis() as u64 {
                return;
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.note(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

//! Starting and stopping the server. Tests start it in-process with [`run`] on listeners
//! bound to `127.0.0.1:0`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::serve::ListenerExt;
use axum::body::Body;
use axum::error_handling::HandleError;
use http::{Response, StatusCode};
use otatrail_sigv4::Verifier;
use tokio::net::TcpListener;

use crate::api::{self, ApiState};
use crate::app::App;

/// Serves the main port on `listener` until `shutdown` completes, then finishes the requests
/// in flight (each of which has committed its state change before it answers).
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let state = Arc::new(ApiState { app, verifier: Verifier::new() });
    let router = Router::new().fallback(api::handle).with_state(state);
    axum::serve(listener.tap_io(no_delay), router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Responses go out as soon as they are written: with Nagle's algorithm a response written in
/// two parts waits for the client's delayed ACK (tens of milliseconds per request).
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

async fn s3_transport_error(err: s3s::HttpError) -> Response<Body> {
    tracing::error!(error = ?err, "S3 request failed below the S3 layer");
    let mut r = Response::new(Body::from("Internal Server Error"));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

/// Serves the S3 endpoint (path-style) on `listener` until `shutdown` completes.
pub async fn run_s3(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let service = HandleError::new(crate::s3::service(app), s3_transport_error);
    let router = Router::new().fallback_service(service);
    // Peer addresses reach the S3 layer through the request extensions (sourceIPAddress).
    axum::serve(listener.tap_io(no_delay), router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

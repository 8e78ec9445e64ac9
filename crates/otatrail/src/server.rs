//! Starting and stopping the server. Tests start it in-process with [`run`] on a listener
//! bound to `127.0.0.1:0`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use otatrail_sigv4::Verifier;
use tokio::net::TcpListener;

use crate::api::{self, ApiState};
use crate::app::App;

/// Serves the main port on `listener` until `shutdown` completes, then finishes the requests
/// in flight (each of which has committed its state change before it answers).
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let state = Arc::new(ApiState { app, verifier: Verifier::new() });
    let router = Router::new().fallback(api::handle).with_state(state);
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

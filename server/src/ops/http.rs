//! The HTTP listener of `--metrics-addr`: `/livez`, `/readyz` and `/metrics`.
//!
//! - `/livez`: 200 `ok` while the process answers and its Raft core runs; 503 once Raft has
//!   stopped (a fatal storage error). Restart the pod when it fails.
//! - `/readyz`: 200 `ok` when the readiness rule (`health.rs`) says serving, else 503 with the
//!   reason. Take the member out of client traffic when it fails; do not restart it.
//! - `/metrics`: every metric in OpenMetrics text (Prometheus scrapes it as is).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use super::health::Readiness;
use super::metrics::global;
use super::scrape::refresh;
use crate::node::Node;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The node.
    pub node: Arc<Node>,
    /// The readiness rule's latest verdict.
    pub readiness: watch::Receiver<Readiness>,
    /// The leader lease (for `conclave_has_leader`).
    pub lease: Duration,
}

/// Serves the three endpoints on `listener` until `shutdown` resolves.
///
/// # Errors
/// When accepting connections fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn livez(State(s): State<HttpState>) -> Response {
    if s.node.status().role == "shutdown" {
        (StatusCode::SERVICE_UNAVAILABLE, "raft has stopped\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn readyz(State(s): State<HttpState>) -> Response {
    match &*s.readiness.borrow() {
        Readiness::Ready => (StatusCode::OK, "ok\n".to_owned()).into_response(),
        Readiness::NotReady(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let ready = s.readiness.borrow().is_ready();
    refresh(&s.node, s.lease, ready).await;
    match global().encode() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding failed: {e}\n")).into_response(),
    }
}

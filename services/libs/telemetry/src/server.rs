//! The `/metrics`, `/healthz` and `/readyz` HTTP endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::Shutdown;

/// Readiness: the flag a service flips once it can do work (e.g. its broker consumer is up),
/// and whether its broker is reachable; `/readyz` says ready only when both hold.
#[derive(Debug, Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    disconnected: Arc<AtomicBool>,
}

impl Health {
    /// Marks the service ready or not ready.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Records whether the service's broker is reachable (assumed so until told otherwise).
    pub fn set_connected(&self, connected: bool) {
        self.disconnected.store(!connected, Ordering::Relaxed);
    }

    /// Whether the service said it is ready and its broker is reachable.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.disconnected.load(Ordering::Relaxed)
    }
}

/// The metrics server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding the listen address failed.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct AppState {
    registry: Registry,
    health: Health,
}

/// Serves the registry on `addr` until `shutdown`; returns the bound address (port 0 picks one).
///
/// # Errors
/// [`ServerError::Bind`] when the address cannot be bound.
pub async fn serve_metrics(
    addr: &str,
    registry: Registry,
    health: Health,
    shutdown: Shutdown,
) -> Result<SocketAddr, ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { registry, health });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "metrics server stopped");
        }
    });
    tracing::info!(addr = %local, "serving /metrics /healthz /readyz");
    Ok(local)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string().into_bytes(),
        ),
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

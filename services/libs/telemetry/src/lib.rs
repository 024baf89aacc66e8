//! Operations plumbing shared by every terrafill service: tracing, the Prometheus registry and its
//! `/metrics` `/healthz` `/readyz` server, the shutdown signal and layered configuration.

mod config;
mod process;
mod server;

pub use config::{load_config, ConfigError};
pub use process::register_process_metrics;
pub use server::{serve_metrics, Health, ServerError};
pub use tokio_util::sync::CancellationToken as Shutdown;

/// Installs the global tracing subscriber: human-readable on a terminal, JSON lines otherwise.
/// `RUST_LOG` filters (default `default_level`, e.g. `info`). Safe to call more than once.
pub fn init_tracing(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}

/// A shutdown token cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> Shutdown {
    let token = Shutdown::new();
    let child = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        child.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        child.cancel();
    });
    token
}

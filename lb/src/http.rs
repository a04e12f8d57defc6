//! The HTTP side port (`--http-listen`): `/healthz` (the process serves), `/readyz`
//! (the LB steers: see [`crate::health`]) and Prometheus `/metrics`. These are the
//! probes and the scrape target of the operator's LB DaemonSet.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::health::{Health, Readiness};

#[derive(Clone)]
struct HttpState {
    health: Arc<Health>,
    prometheus: PrometheusHandle,
}

/// The running server; dropping it stops it.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// The address it listens on (the port chosen when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `listen` and serves the endpoints from a task of the current runtime.
///
/// # Errors
/// [`Error::Http`] naming `--http-listen` when the address cannot be bound.
pub async fn serve(
    listen: SocketAddr,
    health: Arc<Health>,
    prometheus: PrometheusHandle,
) -> Result<HttpServer> {
    let bind_error = |source| Error::Http { listen, source };
    let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(HttpState { health, prometheus });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    Ok(HttpServer { addr, task })
}

async fn readyz(State(s): State<HttpState>) -> Response {
    match s.health.readiness() {
        Readiness::Ready(why) => format!("ready: {why}\n").into_response(),
        Readiness::NotReady(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.prometheus.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::table::Epoch;

    /// `(status, body)` of `GET path`, with a minimal HTTP/1.0 client.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let status = buf
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap();
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap();
        (status, body)
    }

    #[tokio::test]
    async fn endpoints_follow_the_agent_state() {
        let health = Arc::new(Health::default());
        let prometheus = crate::metrics::install();
        let server = serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::clone(&health),
            prometheus,
        )
        .await
        .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
        health.waiting_for_config(std::path::Path::new("/etc/mfplane/lb-m1.toml"));
        let (code, body) = get(addr, "/readyz").await;
        assert_eq!(code, 503);
        assert!(
            body.contains("waiting for the configuration file"),
            "{body}"
        );
        assert_eq!(get(addr, "/healthz").await.0, 200, "alive while waiting");

        health.starting();
        health.attached(vec!["eth1 (both)".into()]);
        let (code, body) = get(addr, "/readyz").await;
        assert_eq!(code, 503, "attached but no table: {body}");
        assert!(body.contains("no steering table installed yet"), "{body}");

        health.table_installed(Epoch(7));
        let (code, body) = get(addr, "/readyz").await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body, "ready: steering by epoch 7 on eth1 (both)\n");

        metrics::gauge!("mfplane_lb_epoch").set(7.0);
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("mfplane_lb_epoch 7"), "{body}");

        assert_eq!(get(addr, "/nope").await.0, 404);
        health.shutting_down();
        assert_eq!(get(addr, "/readyz").await.0, 503);
        drop(server);
    }

    #[tokio::test]
    async fn a_taken_port_names_the_flag() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = serve(addr, Arc::default(), crate::metrics::install())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("--http-listen {addr}: ")), "{e}");
    }
}

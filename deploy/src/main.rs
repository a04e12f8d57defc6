//! `mfplane-operator`: runs the Nat and Node controllers while this replica holds the
//! leader lease, and serves `/metrics`, `/health` and `/ready`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use mfplane_operator::admin::GrpcAdmin;
use mfplane_operator::controller::{self, Context};
use mfplane_operator::leader_election::{LeaderElector, LeaseConfig};
use mfplane_operator::names::{OPERATOR_NAME, OPERATOR_NAMESPACE};
use tokio::sync::watch;
use tracing::{error, info};

#[derive(Debug, Parser)]
#[command(
    name = "mfplane-operator",
    version,
    about = "Kubernetes operator for mfplane NAT clusters (nats.mfplane.io, nodes.mfplane.io)"
)]
struct Args {
    /// Address of the HTTP server for /metrics, /health and /ready.
    #[arg(long, env = "MFPLANE_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// This replica's identity in the leader lease and in events (the pod name).
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// Namespace of the leader lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = OPERATOR_NAMESPACE)]
    namespace: String,
    /// Name of the leader lease.
    #[arg(long, default_value = OPERATOR_NAME)]
    lease: String,
}

/// What the HTTP endpoints report.
#[derive(Debug, Default)]
struct Health {
    /// Set once the Kubernetes client works.
    started: AtomicBool,
    /// Set while this replica leads.
    leading: AtomicBool,
}

#[derive(Clone)]
struct Http {
    prometheus: PrometheusHandle,
    health: Arc<Health>,
}

async fn metrics_page(State(http): State<Http>) -> String {
    http.prometheus.render()
}

async fn health_page() -> &'static str {
    "ok\n"
}

async fn ready_page(State(http): State<Http>) -> (StatusCode, &'static str) {
    match (
        http.health.started.load(Ordering::Relaxed),
        http.health.leading.load(Ordering::Relaxed),
    ) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        (true, true) => (StatusCode::OK, "leading\n"),
        (true, false) => (StatusCode::OK, "standing by\n"),
    }
}

fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    error!(error = %e, "cannot watch SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let health = Arc::new(Health::default());
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/health", get(health_page))
        .route("/ready", get(ready_page))
        .with_state(Http {
            prometheus,
            health: health.clone(),
        });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "HTTP server stopped");
        }
    });

    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    health.started.store(true, Ordering::Relaxed);
    let shutdown = shutdown_signal();
    let holder = args
        .instance
        .clone()
        .unwrap_or_else(|| format!("{OPERATOR_NAME}-{}", std::process::id()));
    let elector = LeaderElector::new(
        client.clone(),
        LeaseConfig::new(&args.namespace, &args.lease, &holder),
    );

    tokio::select! {
        () = elector.acquire() => {}
        () = stopped(shutdown.clone()) => return Ok(()),
    }
    health.leading.store(true, Ordering::Relaxed);

    let ctx = Arc::new(Context::new(
        client,
        Arc::new(GrpcAdmin::default()),
        Some(holder),
    ));
    let outcome = tokio::select! {
        r = controller::run(ctx, stopped(shutdown.clone())) => r.context("controllers failed"),
        lost = elector.hold() => Err(anyhow::Error::new(lost).context("stopping: another replica may lead now")),
    };
    health.leading.store(false, Ordering::Relaxed);
    if let Err(e) = elector.release().await {
        error!(error = %e, "cannot release the leader lease; it expires by itself");
    }
    outcome
}

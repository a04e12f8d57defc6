//! `mfplane-operator`: runs the Nat and Node controllers while this replica holds the
//! leader lease, and serves `/metrics`, `/health`, `/ready` and `PUT /log-level`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
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

/// Changes the log filter of the running process.
type LogLevel =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

#[derive(Clone)]
struct Http {
    prometheus: PrometheusHandle,
    health: Arc<Health>,
    log_level: LogLevel,
}

/// `PUT /log-level` with a filter such as `debug` or `info,mfplane_operator=trace`:
/// more detail while debugging a live cluster, without a restart (which would hand
/// leadership to the other replica).
async fn set_log_level(State(http): State<Http>, body: String) -> (StatusCode, String) {
    let wanted = body.trim();
    match tracing_subscriber::EnvFilter::try_new(wanted) {
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("{wanted:?} is not a log filter (e.g. info,mfplane_operator=debug): {e}\n"),
        ),
        Ok(filter) => match http.log_level.reload(filter) {
            Ok(()) => {
                info!(filter = wanted, "log filter changed");
                (StatusCode::OK, format!("log filter is now {wanted}\n"))
            }
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot change the log filter: {e}\n"),
            ),
        },
    }
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
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let (filter, log_level) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .init();
    let args = Args::parse();
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let health = Arc::new(Health::default());
    mfplane_operator::metrics::leader(false);
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/health", get(health_page))
        .route("/ready", get(ready_page))
        .route("/log-level", put(set_log_level))
        .with_state(Http {
            prometheus,
            health: health.clone(),
            log_level,
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

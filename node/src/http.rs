//! The HTTP side port: `/healthz` (the process serves), `/readyz` (a member of a
//! cluster with a known leader), `/metrics` (Prometheus), `/debug/leases` (lease state,
//! for tests and operators) and, with `--debug-synthetic-load`,
//! `POST /debug/synthetic-sessions`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::lease::{Failover, PeerLease};
use crate::node::Core;
use crate::synthetic::{self, Allocator, LoadRequest};

#[derive(Clone)]
struct HttpState {
    core: Arc<Core>,
    prometheus: Option<PrometheusHandle>,
    alloc: Arc<Mutex<Allocator>>,
}

/// Serves the HTTP endpoints on `addr` until the node shuts down.
///
/// # Errors
/// The bind error.
pub async fn serve(
    core: Arc<Core>,
    addr: SocketAddr,
    prometheus: Option<PrometheusHandle>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let mut shutdown = core.shutdown_signal();
    let synthetic = core.config.debug_synthetic_load;
    let state = HttpState {
        core,
        prometheus,
        alloc: Arc::new(Mutex::new(Allocator::default())),
    };
    let mut app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/leases", get(leases))
        .route("/debug/state", get(state_summary));
    if synthetic {
        app = app.route("/debug/synthetic-sessions", post(synthetic_sessions));
    }
    let app = app.with_state(state);
    tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(())
}

async fn readyz(State(s): State<HttpState>) -> Response {
    match s.core.member() {
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not a member of a cluster yet\n",
        )
            .into_response(),
        Some(m) => match m.leader() {
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no leader known\n",
            )
                .into_response(),
            Some(l) => {
                format!("ready: node {} in a cluster led by node {}\n", m.id, l.id).into_response()
            }
        },
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    match &s.prometheus {
        Some(h) => h.render().into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process\n",
        )
            .into_response(),
    }
}

/// Lease state as JSON.
#[derive(Debug, Serialize)]
struct LeaseReport {
    node: u64,
    is_leader: bool,
    /// Milliseconds this member's own lease still runs (0: none).
    own_lease_ms: u64,
    lease_ms: u64,
    margin_ms: u64,
    /// The leader's view of every member's lease (empty when not leader).
    peers: Vec<PeerLease>,
    /// Buckets moved away from a silent or lapsed owner, while this member led.
    failovers: Vec<Failover>,
}

async fn leases(State(s): State<HttpState>) -> Response {
    let Some(m) = s.core.member() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "not a member yet\n").into_response();
    };
    let t = m.config.timing;
    let is_leader = m.is_leader();
    let nodes: Vec<_> = m.voters().into_iter().filter(|n| *n != m.id).collect();
    Json(LeaseReport {
        node: m.id.0,
        is_leader,
        own_lease_ms: m
            .lease_remaining()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        lease_ms: u64::try_from(t.lease.as_millis()).unwrap_or(u64::MAX),
        margin_ms: u64::try_from(t.lease_margin.as_millis()).unwrap_or(u64::MAX),
        peers: if is_leader {
            m.leases
                .peers(nodes, Instant::now(), t.lease, t.lease_margin)
        } else {
            Vec::new()
        },
        failovers: m.leases.failovers(),
    })
    .into_response()
}

/// Where this member's log and state stand; equal `state_hash` at equal
/// `applied_index` means equal state.
#[derive(Debug, Serialize)]
struct StateSummary {
    node: u64,
    leader: u64,
    term: u64,
    last_log_index: u64,
    committed_index: u64,
    applied_index: u64,
    /// The applied log id (leader term and node, index), as openraft prints it.
    applied_log_id: String,
    epoch: u64,
    sessions: u64,
    state_hash: String,
    buckets_owned: u32,
}

async fn state_summary(State(s): State<HttpState>) -> Response {
    let Some(m) = s.core.member() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "not a member yet\n").into_response();
    };
    let metrics = m.metrics();
    let state = m.sm.state();
    let applied = state.last_applied();
    Json(StateSummary {
        node: m.id.0,
        leader: metrics.current_leader.map(|l| l.0).unwrap_or(0),
        term: metrics.current_term,
        last_log_index: metrics.last_log_index.unwrap_or(0),
        committed_index: metrics.local_committed.map(|l| l.index).unwrap_or(0),
        applied_index: applied.map(|l| l.index).unwrap_or(0),
        applied_log_id: applied.map(|l| l.to_string()).unwrap_or_default(),
        epoch: state.epoch().0,
        sessions: state.session_count(),
        // A string: JSON numbers lose precision above 2^53.
        state_hash: format!("{:016x}", state.state_hash()),
        buckets_owned: state.buckets().count_owned_by(m.id),
    })
    .into_response()
}

async fn synthetic_sessions(
    State(s): State<HttpState>,
    Query(req): Query<LoadRequest>,
) -> Response {
    let (Some(member), Some(proposer)) = (s.core.member(), s.core.proposer()) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "not a member yet\n").into_response();
    };
    match synthetic::run(member, proposer, s.alloc.clone(), req).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

//! Prometheus metrics: Raft progress, ownership and session counts as gauges, session
//! proposals as counters and the commit latency as a histogram.
//!
//! Instrumentation goes through the `metrics` facade; the daemon installs the
//! Prometheus recorder and serves it on `/metrics`. Every series carries a `node` label
//! because several members may share one process (benchmark, simulation).

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::member::Member;

/// Commit-latency buckets in seconds: 100 µs to 1 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Installs the process-wide Prometheus recorder.
///
/// # Errors
/// When a recorder is already installed.
pub fn install_prometheus() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("mfplane_commit_latency_seconds".into()),
            LATENCY_BUCKETS,
        )?
        .install_recorder()
}

/// Records one committed (or failed) session batch.
pub fn record_commit(node: u64, sessions: usize, latency: Duration) {
    let node = node.to_string();
    counter!("mfplane_sessions_proposed_total", "node" => node.clone()).increment(sessions as u64);
    counter!("mfplane_session_batches_total", "node" => node.clone()).increment(1);
    histogram!("mfplane_commit_latency_seconds", "node" => node).record(latency.as_secs_f64());
}

/// Refreshes the gauges once a second until shutdown.
pub async fn export(member: Arc<Member>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        publish(&member);
    }
}

#[allow(
    clippy::cast_precision_loss,
    reason = "gauges are f64; counts stay far below 2^52"
)]
fn publish(member: &Member) {
    let node = member.id.to_string();
    let m = member.metrics();
    gauge!("mfplane_raft_term", "node" => node.clone()).set(m.current_term as f64);
    gauge!("mfplane_raft_commit_index", "node" => node.clone())
        .set(m.local_committed.map(|l| l.index).unwrap_or(0) as f64);
    gauge!("mfplane_raft_applied_index", "node" => node.clone())
        .set(m.last_applied.map(|l| l.index).unwrap_or(0) as f64);
    gauge!("mfplane_raft_last_log_index", "node" => node.clone())
        .set(m.last_log_index.unwrap_or(0) as f64);
    gauge!("mfplane_raft_leader", "node" => node.clone())
        .set(m.current_leader.map(|l| l.0).unwrap_or(0) as f64);
    gauge!("mfplane_raft_is_leader", "node" => node.clone()).set(
        if m.current_leader == Some(member.id) {
            1.0
        } else {
            0.0
        },
    );
    let lease = member
        .lease_remaining()
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    gauge!("mfplane_lease_remaining_seconds", "node" => node.clone()).set(lease);
    let state = member.state();
    gauge!("mfplane_epoch", "node" => node.clone()).set(state.epoch().0 as f64);
    gauge!("mfplane_buckets_owned", "node" => node.clone())
        .set(f64::from(state.buckets().count_owned_by(member.id)));
    // Owned buckets taken over from a suspect whose fence has not passed: this member
    // translates their sessions but opens no new ones there yet.
    let fenced = member
        .fences
        .allocatable(&state, member.id, tokio::time::Instant::now())
        .fenced
        .len();
    gauge!("mfplane_buckets_fenced", "node" => node.clone()).set(fenced as f64);
    gauge!("mfplane_sessions", "node" => node.clone()).set(state.session_count() as f64);
    gauge!("mfplane_sessions_owned", "node" => node).set(state.sessions_owned_by(member.id) as f64);
}

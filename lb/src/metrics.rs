//! Prometheus export of the program's counters and the agent's state.
//!
//! Names: `mfplane_lb_rx_packets_total`, `mfplane_lb_packets_total{verdict}`,
//! `mfplane_lb_drops_total{reason}`, `mfplane_lb_events_total{event}` (from the
//! per-CPU counters, summed; rx is the sum of the verdicts), `mfplane_lb_epoch`, `mfplane_lb_owners`,
//! `mfplane_lb_unowned_buckets`, `mfplane_lb_cluster_connected`,
//! `mfplane_lb_updates_total{result}` (from the watcher). Served on `/metrics` by
//! [`crate::http`].

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use mfplane_core::lb_maps::{CounterKind, LbCounter};

use crate::datapath::CounterSnapshot;

/// Installs the process-wide Prometheus recorder (once; later calls return the same
/// handle, so tests that start several agents in one process share it).
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "another metrics recorder is installed; /metrics will show no LB metrics"
                );
            }
            handle
        })
        .clone()
}

/// Publishes a counter snapshot (absolute values: the map holds totals).
pub fn publish(snapshot: &CounterSnapshot) {
    metrics::counter!("mfplane_lb_rx_packets_total").absolute(snapshot.received());
    for c in LbCounter::ALL {
        let v = snapshot.get(*c);
        let label = c.label();
        match c.kind() {
            CounterKind::Verdict => {
                metrics::counter!("mfplane_lb_packets_total", "verdict" => label).absolute(v)
            }
            CounterKind::Drop => {
                metrics::counter!("mfplane_lb_drops_total", "reason" => label).absolute(v)
            }
            CounterKind::Event => {
                metrics::counter!("mfplane_lb_events_total", "event" => label).absolute(v)
            }
        }
    }
}

//! Prometheus export of the program's counters and the agent's state.
//!
//! Names: `mfplane_lb_rx_packets_total`, `mfplane_lb_packets_total{verdict}`,
//! `mfplane_lb_drops_total{reason}`, `mfplane_lb_events_total{event}` (from the
//! per-CPU counters, summed; rx is the sum of the verdicts), `mfplane_lb_epoch`, `mfplane_lb_owners`,
//! `mfplane_lb_unowned_buckets`, `mfplane_lb_cluster_connected`,
//! `mfplane_lb_updates_total{result}` (from the watcher).

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;
use mfplane_core::lb_maps::{CounterKind, LbCounter};

use crate::datapath::CounterSnapshot;

/// Starts the HTTP listener that serves `/metrics`.
pub fn install(listen: SocketAddr) -> Result<(), metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()
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

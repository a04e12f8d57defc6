//! The operator's Prometheus metrics, through the `metrics` facade (the binary installs
//! the exporter). Names are constants so dashboards and tests agree on them.

use std::time::Duration;

/// Reconciles, by controller (`nat`, `node`).
pub const RECONCILES: &str = "mfplane_operator_reconciles_total";
/// Failed reconciles, by controller and error (`Error::metric_label`).
pub const FAILURES: &str = "mfplane_operator_reconcile_failures_total";
/// Reconcile duration in seconds, by controller.
pub const DURATION: &str = "mfplane_operator_reconcile_duration_seconds";
/// Membership changes made, by kind (`Join`, `Promote`, ...) and result (`ok`, `error`).
pub const CHANGES: &str = "mfplane_operator_membership_changes_total";
/// Members of a Nat's cluster, by Nat (`namespace/name`) and state (`desired`,
/// `members`, `voters`, `ready`).
pub const NAT_MEMBERS: &str = "mfplane_operator_nat_members";
/// 1 while a Nat is Degraded, by Nat.
pub const NAT_DEGRADED: &str = "mfplane_operator_nat_degraded";
/// 1 while this replica holds the leader lease.
pub const LEADER: &str = "mfplane_operator_leader";

/// Counts one reconcile and its duration.
pub fn reconciled(controller: &'static str, took: Duration) {
    metrics::counter!(RECONCILES, "controller" => controller).increment(1);
    metrics::histogram!(DURATION, "controller" => controller).record(took.as_secs_f64());
}

/// Counts one failed reconcile.
pub fn failed(controller: &'static str, error: &crate::Error) {
    metrics::counter!(FAILURES, "controller" => controller, "error" => error.metric_label())
        .increment(1);
}

/// Counts one membership change.
pub fn change(kind: &'static str, ok: bool) {
    metrics::counter!(CHANGES, "kind" => kind, "result" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// Records a Nat's size as the last reconcile saw it.
pub fn nat(key: &str, status: &crate::crd::NatStatus, desired: i32, voters: usize) {
    let key = key.to_owned();
    let g = |state: &'static str, v: f64| {
        metrics::gauge!(NAT_MEMBERS, "nat" => key.clone(), "state" => state).set(v)
    };
    g("desired", f64::from(desired));
    g("members", f64::from(status.replicas));
    g("voters", voters as f64);
    g("ready", f64::from(status.ready_replicas));
    let degraded = status.phase.as_deref() == Some("Degraded");
    metrics::gauge!(NAT_DEGRADED, "nat" => key).set(if degraded { 1.0 } else { 0.0 });
}

/// Records whether this replica leads.
pub fn leader(is_leader: bool) {
    metrics::gauge!(LEADER).set(if is_leader { 1.0 } else { 0.0 });
}

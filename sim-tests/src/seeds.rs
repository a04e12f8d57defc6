//! Which seeds a test runs, and how a failure is reported: with the seed and the exact
//! command that replays it.
//!
//! - default: the fixed CI set, seeds `1..=N` for the test's `N`;
//! - `SIM_SEEDS=N`: seeds `1..=N` (`SIM_SEED_FIRST=F`: `F..F+N`, to split a long run
//!   over several processes);
//! - `SIM_SEED=x`: only seed `x` (replay);
//! - `SIM_FLOWS=N`: flows per run (default 1000);
//! - `SIM_LOG=<filter>` (e.g. `SIM_LOG=mfplane_node=debug`): the node's logs on
//!   stderr, stamped with simulated time, to study a replayed seed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::harness::Report;

/// The seeds to run when the CI set has `ci` seeds.
pub fn seeds(ci: u64) -> Vec<u64> {
    if let Some(x) = std::env::var("SIM_SEED").ok().and_then(|v| v.parse().ok()) {
        return vec![x];
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci);
    let first: u64 = std::env::var("SIM_SEED_FIRST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    (first..first + n).collect()
}

/// Runs `run` on every seed; panics on the first failing one with its violations,
/// the seed and the replay command. Prints a summary (failover and rebalance times).
pub fn run_seeds(test: &str, ci: u64, run: impl Fn(u64) -> Report) -> Vec<Report> {
    init_logging();
    let started = Instant::now();
    let mut reports = Vec::new();
    for seed in seeds(ci) {
        let t = Instant::now();
        let report = match catch_unwind(AssertUnwindSafe(|| run(seed))) {
            Ok(r) => r,
            Err(p) => Report {
                seed,
                violations: vec![format!("panicked: {}", panic_message(&p))],
                ..Report::default()
            },
        };
        if !report.violations.is_empty() {
            panic!(
                "{test}: seed {seed} failed:\n  - {}\nreplay with:\n  SIM_SEED={seed} cargo test -p mfplane-sim-tests --test scenarios -- --exact {test} --nocapture",
                report.violations.join("\n  - ")
            );
        }
        eprintln!(
            "{test} seed {seed}: ok in {:?} wall, trace {:016x}, {:?} simulated, {} sessions committed, {} probes, {} replies, recoveries {}",
            t.elapsed(),
            report.trace_hash,
            report.sim_time,
            report.committed,
            report.probes,
            report.replies,
            report
                .recovered
                .iter()
                .map(|r| format!("{}={}ms", r.what, r.took.as_millis()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        reports.push(report);
    }
    eprintln!(
        "{test}: {} seeds passed in {:?}",
        reports.len(),
        started.elapsed()
    );
    print_times(test, &reports);
    reports
}

/// Prints p50/max of the timed recoveries, grouped by kind.
pub fn print_times(test: &str, reports: &[Report]) {
    let mut kinds: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    for r in reports {
        for rec in &r.recovered {
            // Group "crash of n2 (busiest owner)" and "crash of n3 ..." together.
            let kind: String = rec
                .what
                .split_whitespace()
                .filter(|w| {
                    !w.starts_with('n')
                        || w.len() > 3
                        || !w[1..].chars().all(|c| c.is_ascii_digit())
                })
                .collect::<Vec<_>>()
                .join(" ");
            kinds.entry(kind).or_default().push(rec.took);
        }
    }
    for (kind, mut v) in kinds {
        v.sort();
        let p50 = v[v.len() / 2];
        let max = v[v.len() - 1];
        eprintln!(
            "{test}: {kind}: n={} p50={}ms max={}ms",
            v.len(),
            p50.as_millis(),
            max.as_millis()
        );
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic)".into()
    }
}

/// Installs a log subscriber if `SIM_LOG` asks for one (once per process).
fn init_logging() {
    let Ok(filter) = std::env::var("SIM_LOG") else {
        return;
    };
    // Another test of this process may have installed it already.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_timer(SimTime)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Log timestamps in simulated milliseconds.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let t = turmoil::sim_elapsed().unwrap_or_default();
        write!(w, "t={}ms", t.as_millis())
    }
}

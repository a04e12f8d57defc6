//! The netns lab's drills as CI tests: a real cluster (three `mfplane-node` daemons and
//! the XDP load balancer `mfplane-lb`) in network namespaces, 50 long-lived TCP
//! connections streaming verifiable bytes through the NAT, and a fault in the middle.
//! Every connection must survive with its external endpoint unchanged, and the lab
//! must leave no namespace (and so no link or XDP attachment) behind.
//!
//! Needs root, and the `mfplane-lb` binary next to this crate's binaries (`cargo test
//! --workspace` builds it; with `-p mfplane-node` alone run `cargo build -p
//! mfplane-lb` first). Without root the tests fail and say so, unless
//! `MFPLANE_SKIP_NETNS=1` is set.
//!
//! The drills run one at a time: each spreads 100 userspace-NAT streams over a
//! 2-core machine, and two at once would measure each other.

use std::time::Duration;

use mfplane_node::lab::cluster::{Lab, LabSpec, sibling_binary};
use mfplane_node::lab::drill::{self, DrillOptions, DrillReport, Fault};
use mfplane_node::lab::netns;
use tokio::sync::Mutex;

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const CONNECTIONS: u32 = 50;

fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("MFPLANE_SKIP_NETNS").is_some() {
        eprintln!("SKIPPED: the lab drills need root (MFPLANE_SKIP_NETNS is set)");
        return false;
    }
    panic!(
        "the lab drills create network namespaces and attach XDP programs, so they need root: \
         run them as root, or set MFPLANE_SKIP_NETNS=1 to skip them"
    );
}

/// Runs one drill in a fresh lab named `prefix` and checks the lab is gone afterwards.
async fn drill(prefix: &str, fault: Fault) -> DrillReport {
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    for bin in ["mfplane-node", "mfplane-lb"] {
        let path = sibling_binary(bin);
        assert!(
            path.exists(),
            "{} is missing: build it first (`cargo build -p {bin}`), or point MFPLANE_{}_BIN at it",
            path.display(),
            bin.trim_start_matches("mfplane-").to_uppercase()
        );
    }
    let mut lab = Lab::up(LabSpec::new(prefix, 3)).expect("the lab comes up");
    let opts = DrillOptions {
        connections: CONNECTIONS,
        fault,
        warmup: Duration::from_secs(3),
        after: Duration::from_secs(6),
        ..DrillOptions::default()
    };
    let outcome = drill::run(&mut lab, &opts, |line| eprintln!("[{prefix}] {line}")).await;
    let logs = lab.spec.state_dir.clone();
    lab.down().expect("the lab comes down");
    let left = netns::list_with_prefix(prefix).expect("listing namespaces");
    assert!(
        left.is_empty(),
        "the lab left namespaces behind: {:?}",
        left.iter()
            .map(|n| n.name().to_string())
            .collect::<Vec<_>>()
    );
    let report = outcome.expect("the drill runs to its report");
    eprintln!("{report}");
    assert!(
        report.passed(),
        "{fault}: {} of {} connections survived with unchanged endpoints ({} of {} unchanged); daemon logs in {}",
        report.survived,
        report.total,
        report.endpoints_unchanged,
        report.endpoints_checked,
        logs.display()
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_survives_the_crash_of_the_busiest_worker() {
    if !require_root() {
        return;
    }
    let r = drill("mfpci-crash-", Fault::CrashBusiestWorker).await;
    assert_eq!(r.survived, CONNECTIONS);
    let owned = r.target.as_ref().map_or(0, |(_, owned)| *owned);
    assert!(
        owned > 0,
        "the crashed worker owned no connection: the drill proved nothing"
    );
    assert_eq!(
        r.moved, owned,
        "every connection of the crashed worker moves, and no other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_survives_the_crash_of_the_raft_leader() {
    if !require_root() {
        return;
    }
    let r = drill("mfpci-lead-", Fault::CrashLeader).await;
    assert_eq!(r.survived, CONNECTIONS);
    // The other owners renew their leases with the new leader in time, so only the
    // crashed leader's connections move.
    let owned = r.target.as_ref().map_or(0, |(_, owned)| *owned);
    assert_eq!(r.moved, owned, "only the crashed leader's connections move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_survives_a_scale_out_during_traffic() {
    if !require_root() {
        return;
    }
    let r = drill("mfpci-out-", Fault::ScaleOut).await;
    assert_eq!(r.survived, CONNECTIONS);
    assert!(
        r.moved > 0,
        "no connection moved to the new worker: the drill proved nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_survives_a_scale_in_during_traffic() {
    if !require_root() {
        return;
    }
    let r = drill("mfpci-in-", Fault::ScaleIn).await;
    assert_eq!(r.survived, CONNECTIONS);
    let owned = r.target.as_ref().map_or(0, |(_, owned)| *owned);
    assert!(
        owned > 0,
        "the removed worker owned no connection: the drill proved nothing"
    );
    assert!(
        r.moved >= owned,
        "the removed worker's connections all move"
    );
}

//! The integration tests' view of [`mfplane_node::local_cluster`]: a cluster in a temp
//! directory with the tests' timing, whose helpers panic (with the members' logs)
//! instead of returning errors.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]
#![allow(
    clippy::unwrap_used,
    reason = "test harness: a failure must panic the test"
)]

use std::ops::{Deref, DerefMut};
use std::time::Duration;

pub use mfplane_node::local_cluster::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_mfplane-node");
pub const CTL: &str = env!("CARGO_BIN_EXE_mfpctl");

/// Short enough to keep the tests quick, long enough for a loaded 2-core machine
/// running debug builds.
pub const HEARTBEAT: &str = "100ms";
pub const LEASE: Duration = Duration::from_millis(1500);
pub const LEASE_MARGIN: Duration = Duration::from_millis(500);

/// A [`LocalCluster`] in a temp directory, removed on drop after the processes die.
pub struct Cluster {
    inner: LocalCluster,
    pub dir: tempfile::TempDir,
}

impl Deref for Cluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.inner
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.inner
    }
}

impl Cluster {
    /// An empty cluster on 127.`net`.0.x with gRPC on `port` and HTTP on `port + 1`.
    pub fn new(net: u8, port: u16) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "--heartbeat",
            HEARTBEAT,
            "--lease",
            &format!("{}ms", LEASE.as_millis()),
            "--lease-margin",
            &format!("{}ms", LEASE_MARGIN.as_millis()),
            "--auto-promote",
            "--debug-synthetic-load",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Cluster {
            inner: LocalCluster::new(BIN, dir.path(), net, port, args),
            dir,
        }
    }

    pub fn start(&mut self, i: usize, extra: &[String]) {
        self.inner.start(i, extra).unwrap();
    }

    /// Starts a cluster of `n` with four external IPs (room for 250k sessions).
    pub async fn start_cluster(&mut self, n: usize) {
        let init = [
            "--external-ip".to_string(),
            "192.0.2.1,192.0.2.2,192.0.2.3,192.0.2.4".to_string(),
        ];
        if let Err(e) = self
            .inner
            .start_cluster(n, &init, Duration::from_secs(120))
            .await
        {
            panic!("{e}");
        }
    }

    pub async fn wait_balanced(&self, n: usize) {
        if let Err(e) = self.inner.wait_balanced(n, Duration::from_secs(90)).await {
            panic!("{e}");
        }
    }

    pub async fn wait_converged(&self, members: &[usize], within: Duration) -> StateSummary {
        match self.inner.wait_converged(members, within).await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    pub async fn load(&self, i: usize, count: u64, key_base: u64) -> LoadReport {
        match self
            .inner
            .load(i, count, key_base, "&deadline_ms=60000")
            .await
        {
            Ok(r) => r,
            Err(e) => panic!("load through n{}: {e}\n{}", i + 1, self.log_tail(i)),
        }
    }
}

/// Polls `f` every 200 ms until it holds; panics with `what` after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A GET or empty-body POST that must succeed.
pub async fn http(addr: &str, method: &str, path: &str) -> Option<String> {
    mfplane_node::local_cluster::http(addr, method, path, Duration::from_secs(120))
        .await
        .ok()
}

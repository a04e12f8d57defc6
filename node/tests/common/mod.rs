//! A cluster of real `mfplane-node` processes on loopback, for the integration tests.
//!
//! Every member gets its own 127.0.0.x address and a data directory under one temp
//! directory. The [`Cluster`] is a drop guard: whatever happens in the test, every
//! process it started is killed (SIGKILL) and the directory removed.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]
#![allow(
    clippy::unwrap_used,
    reason = "test harness: a failure must panic the test"
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mfplane_proto::admin::{ClusterStatus, StatusRequest, admin_client::AdminClient};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_mfplane-node");
pub const CTL: &str = env!("CARGO_BIN_EXE_mfpctl");

/// Timing used by the tests: short enough to keep them quick, long enough for a loaded
/// 2-core machine running debug builds.
pub const HEARTBEAT: &str = "100ms";
pub const LEASE: Duration = Duration::from_millis(1500);
pub const LEASE_MARGIN: Duration = Duration::from_millis(500);

/// One member's addresses.
#[derive(Debug, Clone)]
pub struct Addrs {
    pub ip: String,
    pub grpc: String,
    pub http: String,
}

/// Processes of one cluster; killed on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// Distinguishes this test's addresses from other tests running in parallel.
    net: u8,
    port: u16,
    pub procs: Vec<Option<Child>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// `/debug/state` of a member.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct StateSummary {
    pub node: u64,
    pub leader: u64,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub applied_log_id: String,
    pub epoch: u64,
    pub sessions: u64,
    pub state_hash: String,
    pub buckets_owned: u32,
}

/// `/debug/synthetic-sessions` result.
#[derive(Debug, Clone, Deserialize)]
pub struct LoadReport {
    pub requested: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub failed: u64,
    pub retries: u64,
    pub elapsed_ms: u64,
    pub sessions_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub sample_rejections: Vec<String>,
}

/// `/debug/leases` of a member.
#[derive(Debug, Clone, Deserialize)]
pub struct Leases {
    pub node: u64,
    pub is_leader: bool,
    pub lease_ms: u64,
    pub margin_ms: u64,
    pub failovers: Vec<Failover>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Failover {
    pub node: u64,
    pub buckets: usize,
    pub since_last_renew_ms: u64,
    pub lease_ms: u64,
    pub margin_ms: u64,
}

impl Cluster {
    /// An empty cluster on 127.`net`.0.x with gRPC on `port` and HTTP on `port + 1`.
    pub fn new(net: u8, port: u16) -> Cluster {
        Cluster {
            dir: tempfile::tempdir().unwrap(),
            net,
            port,
            procs: Vec::new(),
        }
    }

    pub fn addrs(&self, i: usize) -> Addrs {
        let ip = format!("127.{}.0.{}", self.net, i + 1);
        Addrs {
            grpc: format!("{ip}:{}", self.port),
            http: format!("{ip}:{}", self.port + 1),
            ip,
        }
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    /// The flags every member gets; `extra` adds --init or --join.
    fn args(&self, i: usize, extra: &[String]) -> Vec<String> {
        let a = self.addrs(i);
        let mut args: Vec<String> = [
            "--name",
            &format!("n{}", i + 1),
            "--data-dir",
            &self.data_dir(i).display().to_string(),
            "--listen",
            &a.grpc,
            "--http-listen",
            &a.http,
            "--data-ip",
            &format!("10.0.0.{}", i + 1),
            "--data-mac",
            &format!("02:00:00:00:00:{:02x}", i + 1),
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
        args.extend_from_slice(extra);
        args
    }

    /// Starts member `i` with `extra` flags (or restarts it on its data directory).
    pub fn start(&mut self, i: usize, extra: &[String]) {
        let log = std::fs::File::create(self.dir.path().join(format!("n{}.log", i + 1))).unwrap();
        let child = Command::new(BIN)
            .args(self.args(i, extra))
            .env("MFPLANE_LOG", "info,openraft=error")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        while self.procs.len() <= i {
            self.procs.push(None);
        }
        self.procs[i] = Some(child);
    }

    /// Starts the first member with --init and `n - 1` more with --join.
    pub async fn start_cluster(&mut self, n: usize) {
        self.start(
            0,
            &[
                "--init".into(),
                "--external-ip".into(),
                "192.0.2.1,192.0.2.2,192.0.2.3,192.0.2.4".into(),
            ],
        );
        wait_until(
            Duration::from_secs(60),
            "the first member to lead",
            || async { self.state(0).await.is_some_and(|s| s.leader == s.node) },
        )
        .await;
        for i in 1..n {
            let join = self.addrs(0).grpc;
            self.start(i, &["--join".into(), join]);
        }
        self.wait_balanced(n).await;
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.kill().unwrap();
            p.wait().unwrap();
        }
    }

    /// The last lines of member `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("n{}.log", i + 1)))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub async fn status(&self, i: usize) -> Option<ClusterStatus> {
        let ch = channel(&self.addrs(i).grpc).await?;
        let mut client = AdminClient::new(ch);
        tokio::time::timeout(Duration::from_secs(5), client.status(StatusRequest {}))
            .await
            .ok()?
            .ok()
            .map(|r| r.into_inner())
    }

    pub async fn state(&self, i: usize) -> Option<StateSummary> {
        let body = http(&self.addrs(i).http, "GET", "/debug/state").await?;
        serde_json::from_str(&body).ok()
    }

    pub async fn leases(&self, i: usize) -> Option<Leases> {
        let body = http(&self.addrs(i).http, "GET", "/debug/leases").await?;
        serde_json::from_str(&body).ok()
    }

    /// Proposes `count` synthetic sessions through member `i`'s real proposer.
    pub async fn load(&self, i: usize, count: u64, key_base: u64) -> LoadReport {
        let path = format!(
            "/debug/synthetic-sessions?count={count}&key_base={key_base}&deadline_ms=60000"
        );
        let body = http(&self.addrs(i).http, "POST", &path)
            .await
            .unwrap_or_else(|| panic!("load on n{} failed:\n{}", i + 1, self.log_tail(i)));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("load report {body:?}: {e}"))
    }

    /// Index of the member that leads, as member `ask` sees it.
    pub async fn leader_index(&self, ask: &[usize]) -> Option<usize> {
        for &i in ask {
            if let Some(s) = self.state(i).await
                && s.leader != 0
            {
                let st = self.status(i).await?;
                let m = st.members.iter().find(|m| m.node_id == s.leader)?;
                return (0..8).find(|&j| self.addrs(j).grpc == m.raft_addr);
            }
        }
        None
    }

    /// Waits until `n` voters hold floor(B/n) or ceil(B/n) buckets each.
    pub async fn wait_balanced(&self, n: usize) {
        wait_until(Duration::from_secs(90), "a balanced cluster", || async {
            let Some(st) = self.status(0).await.or(self.status(1).await) else {
                return false;
            };
            let b = 1u32 << st.bucket_bits;
            let (lo, hi) = (b / n as u32, b.div_ceil(n as u32));
            st.members.len() == n
                && st
                    .members
                    .iter()
                    .all(|m| m.role == 1 && (m.buckets == lo || m.buckets == hi))
        })
        .await;
    }

    /// Waits until `members` have applied the same log position and reached the same
    /// state, and returns it.
    pub async fn wait_converged(&self, members: &[usize], within: Duration) -> StateSummary {
        let deadline = Instant::now() + within;
        loop {
            let mut states = Vec::new();
            for &i in members {
                states.push(self.state(i).await);
            }
            if let Some(first) = states[0].clone()
                && states.iter().all(|s| {
                    s.as_ref().is_some_and(|s| {
                        s.applied_index == first.applied_index
                            && s.state_hash == first.state_hash
                            && s.applied_index == s.committed_index
                    })
                })
            {
                return first;
            }
            assert!(
                Instant::now() < deadline,
                "members {members:?} did not converge: {states:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Polls `f` every 200 ms until it holds; panics with `what` after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn channel(addr: &str) -> Option<Channel> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_secs(2));
    tokio::time::timeout(Duration::from_secs(3), ep.connect())
        .await
        .ok()?
        .ok()
}

/// A minimal HTTP/1.1 client (the tests need GET and an empty-body POST).
pub async fn http(addr: &str, method: &str, path: &str) -> Option<String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8(buf).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        // axum answers JSON with Content-Length; a chunked body is not expected here.
        Some(body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(120), fut)
        .await
        .ok()?
}

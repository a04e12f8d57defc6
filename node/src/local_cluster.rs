//! A cluster of real `mfplane-node` processes on loopback, for the integration tests,
//! the benchmark and demos.
//!
//! Every member gets its own `127.<net>.0.<i+1>` address, so several clusters (tests
//! running in parallel) never collide, and a data directory under one directory. The
//! [`LocalCluster`] is a drop guard: however the caller ends, every process it started
//! is killed (SIGKILL) and reaped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mfplane_proto::admin::{ClusterStatus, StatusRequest, admin_client::AdminClient};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::error::{Error, Result};
pub use crate::synthetic::LoadReport;

/// One member's addresses.
#[derive(Debug, Clone)]
pub struct Addrs {
    pub ip: String,
    pub grpc: String,
    pub http: String,
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

/// `/debug/leases` of a member.
#[derive(Debug, Clone, Deserialize)]
pub struct Leases {
    pub node: u64,
    pub is_leader: bool,
    pub lease_ms: u64,
    pub margin_ms: u64,
    pub failovers: Vec<FailoverRecord>,
}

/// One entry of [`Leases::failovers`].
#[derive(Debug, Clone, Deserialize)]
pub struct FailoverRecord {
    pub node: u64,
    pub buckets: usize,
    pub since_last_renew_ms: u64,
    pub lease_ms: u64,
    pub margin_ms: u64,
    /// Moved at once because it fell silent, behind a fence of lease + margin.
    pub fenced: bool,
}

/// Processes of one cluster; killed on drop.
#[derive(Debug)]
pub struct LocalCluster {
    bin: PathBuf,
    dir: PathBuf,
    net: u8,
    port: u16,
    /// Flags every member gets (timing, batching, ...).
    common_args: Vec<String>,
    procs: Vec<Option<Child>>,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl LocalCluster {
    /// A cluster of `bin` processes on `127.<net>.0.x`, gRPC on `port`, HTTP on
    /// `port + 1`, data and logs under `dir`; every member also gets `common_args`.
    pub fn new(
        bin: impl Into<PathBuf>,
        dir: impl Into<PathBuf>,
        net: u8,
        port: u16,
        common_args: Vec<String>,
    ) -> LocalCluster {
        LocalCluster {
            bin: bin.into(),
            dir: dir.into(),
            net,
            port,
            common_args,
            procs: Vec::new(),
        }
    }

    /// Member `i`'s addresses.
    pub fn addrs(&self, i: usize) -> Addrs {
        let ip = format!("127.{}.0.{}", self.net, i + 1);
        Addrs {
            grpc: format!("{ip}:{}", self.port),
            http: format!("{ip}:{}", self.port + 1),
            ip,
        }
    }

    /// Where the data and logs live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{}", i + 1))
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{}.log", i + 1))
    }

    fn args(&self, i: usize, extra: &[String]) -> Vec<String> {
        let a = self.addrs(i);
        let mut args: Vec<String> = vec![
            "--name".into(),
            format!("n{}", i + 1),
            "--data-dir".into(),
            self.data_dir(i).display().to_string(),
            "--listen".into(),
            a.grpc,
            "--http-listen".into(),
            a.http,
            "--data-ip".into(),
            format!("10.0.0.{}", i + 1),
            "--data-mac".into(),
            format!("02:00:00:00:00:{:02x}", i + 1),
        ];
        args.extend(self.common_args.iter().cloned());
        args.extend_from_slice(extra);
        args
    }

    /// Starts member `i` with `extra` flags (or restarts it on its data directory).
    ///
    /// # Errors
    /// [`Error::Io`] when the log file or the process cannot be created.
    pub fn start(&mut self, i: usize, extra: &[String]) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let child = Command::new(&self.bin)
            .args(self.args(i, extra))
            .env(
                "MFPLANE_LOG",
                std::env::var("MFPLANE_LOG").unwrap_or_else(|_| "info,openraft=error".into()),
            )
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?;
        while self.procs.len() <= i {
            self.procs.push(None);
        }
        if let Some(mut old) = self.procs[i].replace(child) {
            let _ = old.kill();
            let _ = old.wait();
        }
        Ok(())
    }

    /// Starts member 0 with `--init` and `init_args`, then `n - 1` members with
    /// `--join`, and waits until the table is balanced over `n` voters.
    ///
    /// # Errors
    /// When a process cannot start or the cluster does not form within `within`.
    pub async fn start_cluster(
        &mut self,
        n: usize,
        init_args: &[String],
        within: Duration,
    ) -> Result<()> {
        let mut first = vec!["--init".to_string()];
        first.extend_from_slice(init_args);
        self.start(0, &first)?;
        let deadline = Instant::now() + within;
        self.wait_until(deadline, "the first member to lead", async |c| {
            c.state(0).await.is_some_and(|s| s.leader == s.node)
        })
        .await?;
        for i in 1..n {
            let join = self.addrs(0).grpc;
            self.start(i, &["--join".into(), join])?;
        }
        self.wait_balanced(n, deadline.saturating_duration_since(Instant::now()))
            .await
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs.get_mut(i).and_then(Option::take) {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// The last lines of member `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Admin.Status of member `i`, if it answers.
    pub async fn status(&self, i: usize) -> Option<ClusterStatus> {
        let ch = channel(&self.addrs(i).grpc).await?;
        let mut client = AdminClient::new(ch);
        tokio::time::timeout(Duration::from_secs(5), client.status(StatusRequest {}))
            .await
            .ok()?
            .ok()
            .map(|r| r.into_inner())
    }

    /// `/debug/state` of member `i`, if it answers.
    pub async fn state(&self, i: usize) -> Option<StateSummary> {
        let body = http(
            &self.addrs(i).http,
            "GET",
            "/debug/state",
            Duration::from_secs(5),
        )
        .await
        .ok()?;
        serde_json::from_str(&body).ok()
    }

    /// `/debug/leases` of member `i`, if it answers.
    pub async fn leases(&self, i: usize) -> Option<Leases> {
        let body = http(
            &self.addrs(i).http,
            "GET",
            "/debug/leases",
            Duration::from_secs(5),
        )
        .await
        .ok()?;
        serde_json::from_str(&body).ok()
    }

    /// Proposes `count` synthetic sessions through member `i`'s real proposer
    /// (`query` adds parameters such as `&concurrency=128`).
    ///
    /// # Errors
    /// [`Error::Peer`] when the member does not answer or refuses.
    pub async fn load(
        &self,
        i: usize,
        count: u64,
        key_base: u64,
        query: &str,
    ) -> Result<LoadReport> {
        load(&self.addrs(i).http, count, key_base, query).await
    }

    /// Index of the leader, as the first answering member of `ask` sees it.
    pub async fn leader_index(&self, ask: &[usize]) -> Option<usize> {
        for &i in ask {
            if let Some(s) = self.state(i).await
                && s.leader != 0
            {
                let st = self.status(i).await?;
                let m = st.members.iter().find(|m| m.node_id == s.leader)?;
                return (0..self.procs.len().max(8)).find(|&j| self.addrs(j).grpc == m.raft_addr);
            }
        }
        None
    }

    /// Waits until `n` voters hold floor(B/n) or ceil(B/n) buckets each.
    ///
    /// # Errors
    /// [`Error::Peer`] on timeout.
    pub async fn wait_balanced(&self, n: usize, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        self.wait_until(deadline, "a balanced cluster", async move |c| {
            let mut st = None;
            for i in 0..c.procs.len() {
                st = c.status(i).await;
                if st.is_some() {
                    break;
                }
            }
            let Some(st) = st else { return false };
            let b = 1u32 << st.bucket_bits;
            let n32 = u32::try_from(n).unwrap_or(u32::MAX);
            let (lo, hi) = (b / n32, b.div_ceil(n32));
            st.members.len() == n
                && st.members.iter().all(|m| {
                    m.role == mfplane_proto::admin::Role::Voter as i32
                        && (m.buckets == lo || m.buckets == hi)
                })
        })
        .await
    }

    /// Waits until `members` have applied everything committed, at the same log id and
    /// with the same state hash, and returns that state.
    ///
    /// # Errors
    /// [`Error::Peer`] with every member's state on timeout.
    pub async fn wait_converged(
        &self,
        members: &[usize],
        within: Duration,
    ) -> Result<StateSummary> {
        let deadline = Instant::now() + within;
        loop {
            let mut states = Vec::new();
            for &i in members {
                states.push(self.state(i).await);
            }
            if let Some(first) = states[0].clone()
                && states.iter().all(|s| {
                    s.as_ref().is_some_and(|s| {
                        s.applied_log_id == first.applied_log_id
                            && s.state_hash == first.state_hash
                            && s.applied_index == s.committed_index
                    })
                })
            {
                return Ok(first);
            }
            if Instant::now() >= deadline {
                return Err(Error::Peer {
                    peer: format!("members {members:?}"),
                    message: format!("did not converge: {states:#?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        f: impl AsyncFn(&Self) -> bool,
    ) -> Result<()> {
        while !f(self).await {
            if Instant::now() >= deadline {
                let logs: Vec<String> = (0..self.procs.len())
                    .map(|i| format!("--- n{} ---\n{}", i + 1, self.log_tail(i)))
                    .collect();
                return Err(Error::Peer {
                    peer: "local cluster".into(),
                    message: format!("timed out waiting for {what}\n{}", logs.join("\n")),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
}

/// A channel to `addr`, if it accepts a connection within 3 s.
pub async fn channel(addr: &str) -> Option<Channel> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_secs(2));
    tokio::time::timeout(Duration::from_secs(3), ep.connect())
        .await
        .ok()?
        .ok()
}

/// Proposes synthetic sessions through the member whose HTTP port is `http_addr`.
///
/// # Errors
/// [`Error::Peer`] when it does not answer or refuses.
pub async fn load(http_addr: &str, count: u64, key_base: u64, query: &str) -> Result<LoadReport> {
    let path = format!("/debug/synthetic-sessions?count={count}&key_base={key_base}{query}");
    let body = http(http_addr, "POST", &path, Duration::from_secs(600)).await?;
    serde_json::from_str(&body).map_err(|e| Error::Peer {
        peer: http_addr.into(),
        message: format!("load report {body:?}: {e}"),
    })
}

/// A minimal HTTP/1.1 exchange with an empty request body.
///
/// # Errors
/// [`Error::Peer`] on connection failure, timeout or a status other than 200.
pub async fn http(addr: &str, method: &str, path: &str, within: Duration) -> Result<String> {
    let err = |message: String| Error::Peer {
        peer: addr.to_string(),
        message,
    };
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(within, fut)
        .await
        .map_err(|_| err(format!("no answer to {path} within {within:?}")))?
        .map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| err("malformed HTTP answer".into()))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(err(format!(
            "{}: {body}",
            head.lines().next().unwrap_or_default()
        )));
    }
    Ok(body.to_string())
}

//! The failover drill: long-lived TCP connections through the NAT, a fault in the
//! middle of them, and a report of what survived.
//!
//! A connection *survives* when neither side saw an error, both sides closed cleanly
//! at the end, and every byte each side sent was verified by the other. Its *stall* is
//! the longest gap between two arrivals on either side after the fault. Its external
//! endpoint is read twice, from the committed session table before the fault and after
//! it, and compared with what the server saw when it accepted the connection.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use mfplane_proto::sessions::{Endpoint as PbEndpoint, LookupRequest, lookup_request};
use tokio::sync::watch;
use tokio::time::Instant;

use super::cluster::{Lab, with_timeout};
use super::topology::SERVER_IP;
use super::traffic::{self, ClientConn, ClientTable, Hello, Pace, ServerConn, ServerTable};
use super::{LabError, Result};

/// The port the lab's server listens on.
pub const SERVER_PORT: u16 = 8080;

/// The fault a drill injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the worker that owns the most connections and take its link down.
    CrashBusiestWorker,
    /// SIGKILL the Raft leader and take its link down: the failover waits for an
    /// election too, and every other owner must renew its lease with the successor.
    CrashLeader,
    /// Add a worker while traffic flows (buckets move to it).
    ScaleOut,
    /// Drain and remove the newest worker while traffic flows.
    ScaleIn,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::CrashBusiestWorker => "crash of the busiest worker",
            Fault::CrashLeader => "crash of the Raft leader",
            Fault::ScaleOut => "scale-out by one worker",
            Fault::ScaleIn => "scale-in by one worker",
        })
    }
}

/// What a drill does.
#[derive(Clone, Debug)]
pub struct DrillOptions {
    pub connections: u32,
    pub fault: Fault,
    /// Traffic before the fault.
    pub warmup: Duration,
    /// Traffic after the fault.
    pub after: Duration,
    pub pace: Pace,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            connections: 100,
            fault: Fault::CrashBusiestWorker,
            warmup: Duration::from_secs(3),
            after: Duration::from_secs(8),
            pace: Pace::default(),
        }
    }
}

/// The outcome of a drill.
#[derive(Clone, Debug)]
pub struct DrillReport {
    pub fault: Fault,
    /// The worker the fault hit, and how many connections it owned then.
    pub target: Option<(String, u32)>,
    pub total: u32,
    pub survived: u32,
    /// Per-connection longest stall after the fault, percentiles across connections.
    pub stall_p50: Duration,
    pub stall_p99: Duration,
    pub stall_max: Duration,
    /// Bytes verified by the receivers, both directions, all connections.
    pub bytes_verified: u64,
    /// Connections whose external endpoint was read before and after the fault.
    pub endpoints_checked: u32,
    /// ... and found the same both times and equal to what the server saw.
    pub endpoints_unchanged: u32,
    /// Connections whose session changed owner (bucket moved) during the drill: the
    /// ones the fault actually put to the test.
    pub moved: u32,
    /// One line per connection that did not survive or changed its mapping.
    pub failures: Vec<String>,
}

impl DrillReport {
    /// Every connection survived with its mapping unchanged.
    pub fn passed(&self) -> bool {
        self.total > 0
            && self.survived == self.total
            && self.endpoints_checked == self.total
            && self.endpoints_unchanged == self.total
    }
}

impl fmt::Display for DrillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "drill: {}", self.fault)?;
        if let Some((name, owned)) = &self.target {
            writeln!(
                f,
                "  target worker:          {name} (owned {owned} connections)"
            )?;
        }
        writeln!(
            f,
            "  connections survived:   {} / {}",
            self.survived, self.total
        )?;
        writeln!(
            f,
            "  longest stall (ms):     p50 {}  p99 {}  max {}",
            self.stall_p50.as_millis(),
            self.stall_p99.as_millis(),
            self.stall_max.as_millis()
        )?;
        writeln!(f, "  bytes verified:         {}", self.bytes_verified)?;
        writeln!(
            f,
            "  external endpoints:     {} / {} unchanged",
            self.endpoints_unchanged, self.endpoints_checked
        )?;
        writeln!(f, "  moved to a new owner:   {}", self.moved)?;
        for line in self.failures.iter().take(20) {
            writeln!(f, "  ! {line}")?;
        }
        if self.failures.len() > 20 {
            writeln!(f, "  ! ... and {} more", self.failures.len() - 20)?;
        }
        write!(
            f,
            "  result:                 {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// Runs a drill on a lab that is up. `progress` receives a line about once a second.
pub async fn run(
    lab: &mut Lab,
    opts: &DrillOptions,
    mut progress: impl FnMut(&str),
) -> Result<DrillReport> {
    let workers = lab.topo.workers.len();
    progress(&format!(
        "waiting for {workers} voters with every bucket owned"
    ));
    lab.wait_converged(workers, Duration::from_secs(60)).await?;

    let listener = lab.topo.server.enter(|| {
        let l = std::net::TcpListener::bind((SERVER_IP, SERVER_PORT))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| LabError::Io {
        context: "registering the server's listener".into(),
        source,
    })?;
    let server_table = ServerTable::default();
    let client_table = ClientTable::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(traffic::serve(
        listener,
        server_table.clone(),
        opts.pace,
        stop_rx.clone(),
    ));

    progress(&format!(
        "opening {} connections through the NAT",
        opts.connections
    ));
    let mut clients = Vec::new();
    for id in 0..opts.connections {
        let stream = connect_through_nat(lab, Duration::from_secs(15)).await?;
        let hello = Hello {
            conn_id: id,
            seed: 0x6d66_0000_0000_0000 | u64::from(id),
        };
        clients.push(tokio::spawn(traffic::run_client(
            stream,
            hello,
            client_table.clone(),
            opts.pace,
            stop_rx.clone(),
        )));
    }

    tick_for(
        opts.warmup,
        &client_table,
        &server_table,
        &mut progress,
        "warm-up",
    )
    .await;
    let before = mappings(lab, &client_table).await;

    // The fault.
    traffic::reset_stalls(&client_table, |c| &mut c.stats);
    traffic::reset_stalls(&server_table, |c| &mut c.stats);
    let target = inject(lab, opts.fault, &before, &mut progress).await?;

    tick_for(
        opts.after,
        &client_table,
        &server_table,
        &mut progress,
        "after fault",
    )
    .await;
    let after = mappings(lab, &client_table).await;

    // Stop: writers close, readers drain what is in flight.
    let _ = stop_tx.send(true);
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    for c in clients {
        let _ = tokio::time::timeout_at(drain_deadline, c).await;
    }
    let _ = tokio::time::timeout_at(drain_deadline, server).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    Ok(report(
        opts,
        target,
        &client_table,
        &server_table,
        &before,
        &after,
    ))
}

/// Says which side of a connection never saw its peer's close, with the byte counts
/// that tell a lost FIN from data still stuck in flight.
fn unclean_close(cc: &ClientConn, sc: &ServerConn) -> Option<String> {
    let side = match (cc.stats.finished, sc.stats.finished) {
        (true, true) => return None,
        (false, false) => "neither side saw the other's close",
        (false, true) => "the client never saw the server's close",
        (true, false) => "the server never saw the client's close",
    };
    Some(format!(
        "did not close cleanly: {side} (client sent {} server verified {}; server sent {} client verified {})",
        cc.stats.sent, sc.stats.verified, sc.stats.sent, cc.stats.verified
    ))
}

/// Opens one connection from the client namespace to the server, retrying while the
/// NAT path comes up (the first SYN of a lab can race the LB's first table).
async fn connect_through_nat(lab: &Lab, within: Duration) -> Result<tokio::net::TcpStream> {
    let deadline = Instant::now() + within;
    loop {
        let client = lab.topo.client.clone();
        let attempt = tokio::task::spawn_blocking(move || {
            client.enter(|| {
                let addr = SocketAddr::V4(SocketAddrV4::new(SERVER_IP, SERVER_PORT));
                let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
        })
        .await
        .map_err(|e| LabError::Command {
            command: "connect".into(),
            detail: e.to_string(),
        })?;
        match attempt {
            Ok(s) => {
                return tokio::net::TcpStream::from_std(s).map_err(|source| LabError::Io {
                    context: "registering a client connection".into(),
                    source,
                });
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(LabError::Command {
                    command: format!("connect {SERVER_IP}:{SERVER_PORT} from the client"),
                    detail: format!("{e} (is the NAT path up? see the logs in the lab directory)"),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Lets traffic run for `span`, reporting progress once a second.
async fn tick_for(
    span: Duration,
    clients: &ClientTable,
    servers: &ServerTable,
    progress: &mut impl FnMut(&str),
    phase: &str,
) {
    let end = Instant::now() + span;
    let start = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1).min(end - Instant::now())).await;
        let (ok, bytes, worst) = {
            let c = clients.lock().unwrap_or_else(|p| p.into_inner());
            let s = servers.lock().unwrap_or_else(|p| p.into_inner());
            let ok = c.values().filter(|c| c.stats.error.is_none()).count();
            let bytes: u64 = c.values().map(|c| c.stats.verified).sum::<u64>()
                + s.values().map(|s| s.stats.verified).sum::<u64>();
            let worst = c
                .values()
                .map(|c| c.stats.max_stall)
                .chain(s.values().map(|s| s.stats.max_stall))
                .max()
                .unwrap_or_default();
            (ok, bytes, worst)
        };
        let total = clients.lock().unwrap_or_else(|p| p.into_inner()).len();
        progress(&format!(
            "{phase} {:>4.1}s: {ok}/{total} connections healthy, {:.1} MB verified, worst stall {} ms",
            start.elapsed().as_secs_f32(),
            bytes as f64 / 1e6,
            worst.as_millis()
        ));
    }
}

/// What the committed session table says about a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mapping {
    external: SocketAddr,
    owner: u64,
}

/// The committed mapping of every connection, keyed by connection id, looked up by
/// the client's inside endpoint on any running worker.
async fn mappings(lab: &Lab, clients: &ClientTable) -> BTreeMap<u32, Mapping> {
    let locals: Vec<(u32, SocketAddr)> = clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(id, c)| (*id, c.local))
        .collect();
    let mut out = BTreeMap::new();
    // A crashed worker would make every lookup wait for its timeout: ask live ones.
    for w in lab.running_workers() {
        let Ok(mut sessions) = lab.sessions(w) else {
            continue;
        };
        for (id, local) in &locals {
            if out.contains_key(id) {
                continue;
            }
            let req = LookupRequest {
                proto: "tcp".into(),
                by: Some(lookup_request::By::Inside(PbEndpoint {
                    ip: local.ip().to_string(),
                    port: u32::from(local.port()),
                })),
            };
            match with_timeout(sessions.lookup(req)).await {
                Ok(s) => {
                    if let (Ok(ip), Ok(port)) =
                        (s.external_ip.parse(), u16::try_from(s.external_port))
                    {
                        out.insert(
                            *id,
                            Mapping {
                                external: SocketAddr::V4(SocketAddrV4::new(ip, port)),
                                owner: s.owner,
                            },
                        );
                    }
                }
                // Silent worker: the next one answers for the rest.
                Err(LabError::Timeout { .. }) => break,
                Err(_) => {}
            }
        }
        if out.len() == locals.len() {
            break;
        }
    }
    out
}

/// Injects `fault` and returns the worker it hit with the connections it owned.
async fn inject(
    lab: &mut Lab,
    fault: Fault,
    before: &BTreeMap<u32, Mapping>,
    progress: &mut impl FnMut(&str),
) -> Result<Option<(String, u32)>> {
    match fault {
        Fault::CrashBusiestWorker | Fault::CrashLeader => {
            let status = lab.status().await?;
            let mut owned: BTreeMap<u64, u32> = BTreeMap::new();
            for m in before.values() {
                *owned.entry(m.owner).or_default() += 1;
            }
            let node = if fault == Fault::CrashLeader {
                status.leader_id
            } else {
                owned
                    .iter()
                    .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
                    .map(|(id, _)| *id)
                    .ok_or_else(|| LabError::Command {
                        command: "drill".into(),
                        detail:
                            "no connection has a committed session: the NAT did not replicate them"
                                .into(),
                    })?
            };
            let count = owned.get(&node).copied().unwrap_or(0);
            let name = status
                .members
                .iter()
                .find(|m| m.node_id == node)
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let index: u8 =
                name.trim_start_matches('w')
                    .parse()
                    .map_err(|_| LabError::Command {
                        command: "drill".into(),
                        detail: format!("node {node} ({name:?}) is not a lab worker"),
                    })?;
            progress(&format!(
                "crashing {name} (node {node}, owns {count} connections): SIGKILL + link down"
            ));
            lab.crash_worker(index)?;
            Ok(Some((name, count)))
        }
        Fault::ScaleOut => {
            let w = lab.add_worker()?;
            progress(&format!(
                "scaling out: started w{} and waiting for it to take buckets",
                w.index
            ));
            let n = lab.topo.workers.len();
            lab.wait_converged(n, Duration::from_secs(30)).await?;
            Ok(Some((format!("w{}", w.index), 0)))
        }
        Fault::ScaleIn => {
            let index = lab.topo.workers.iter().map(|w| w.index).max().unwrap_or(1);
            let name = format!("w{index}");
            let status = lab.status().await?;
            let node = status
                .members
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.node_id);
            let count = before.values().filter(|m| Some(m.owner) == node).count() as u32;
            progress(&format!(
                "scaling in: draining and removing {name} (owns {count} connections)"
            ));
            lab.remove_worker(index).await?;
            Ok(Some((name, count)))
        }
    }
}

fn report(
    opts: &DrillOptions,
    target: Option<(String, u32)>,
    clients: &ClientTable,
    servers: &ServerTable,
    before: &BTreeMap<u32, Mapping>,
    after: &BTreeMap<u32, Mapping>,
) -> DrillReport {
    let c = clients.lock().unwrap_or_else(|p| p.into_inner());
    let s = servers.lock().unwrap_or_else(|p| p.into_inner());
    let mut failures = Vec::new();
    let mut survived = 0;
    let mut stalls = Vec::new();
    let mut bytes = 0u64;
    let (mut checked, mut unchanged, mut moved) = (0, 0, 0);
    for id in 0..opts.connections {
        let (Some(cc), Some(sc)) = (c.get(&id), s.get(&id)) else {
            failures.push(format!("connection {id}: never reached the server"));
            continue;
        };
        bytes += cc.stats.verified + sc.stats.verified;
        stalls.push(cc.stats.max_stall.max(sc.stats.max_stall));
        let problem = cc
            .stats
            .error
            .as_ref()
            .map(|e| format!("client: {e}"))
            .or_else(|| sc.stats.error.as_ref().map(|e| format!("server: {e}")))
            .or_else(|| unclean_close(cc, sc))
            .or_else(|| {
                (sc.stats.verified != cc.stats.sent || cc.stats.verified != sc.stats.sent).then(|| {
                    format!(
                        "bytes lost: client sent {} server verified {}; server sent {} client verified {}",
                        cc.stats.sent, sc.stats.verified, sc.stats.sent, cc.stats.verified
                    )
                })
            });
        match problem {
            Some(p) => failures.push(format!("connection {id} ({}): {p}", cc.local)),
            None => survived += 1,
        }
        if let (Some(b), Some(a)) = (before.get(&id), after.get(&id)) {
            checked += 1;
            if b.owner != a.owner {
                moved += 1;
            }
            if b.external == a.external && b.external == sc.peer {
                unchanged += 1;
            } else {
                failures.push(format!(
                    "connection {id}: external endpoint {} before, {} after, server saw {}",
                    b.external, a.external, sc.peer
                ));
            }
        } else {
            failures.push(format!(
                "connection {id}: no committed session found before and after"
            ));
        }
    }
    stalls.sort();
    let pct = |p: f64| -> Duration {
        if stalls.is_empty() {
            return Duration::ZERO;
        }
        let i = ((stalls.len() as f64 - 1.0) * p).round() as usize;
        stalls[i.min(stalls.len() - 1)]
    };
    DrillReport {
        fault: opts.fault,
        target,
        total: opts.connections,
        survived,
        stall_p50: pct(0.50),
        stall_p99: pct(0.99),
        stall_max: stalls.last().copied().unwrap_or_default(),
        bytes_verified: bytes,
        endpoints_checked: checked,
        endpoints_unchanged: unchanged,
        moved,
        failures,
    }
}

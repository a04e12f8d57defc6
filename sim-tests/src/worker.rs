//! A worker host: the real node library (`Node::start` on turmoil TCP and in-memory
//! storage) plus the worker's data path around a real NAT [`Engine`].
//!
//! The data path is what the daemon's packet path does around the engine:
//! - it imports every committed session (from the state machine's `Applied` stream,
//!   after a full load at start), so any worker can take over any bucket;
//! - it lets the engine allocate only in the buckets this member owns in its applied
//!   table, and only while it holds a bucket lease;
//! - it forwards the first packet of a new session at once (optimistic commit) and
//!   proposes the new session through the real [`SessionProposer`] (group commit);
//! - a session the cluster refuses, or whose fate stays unknown once the lease is gone,
//!   is withdrawn from the engine; the committed mapping always wins.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mfplane_core::{BucketId, FlowHashKey, SessionRecord};
use mfplane_dataplane::engine::{Engine, EngineConfig, Timestamp, Verdict};
use mfplane_node::config::Args;
use mfplane_node::member::Member;
use mfplane_node::{Node, NodeConfig, Outcome, SessionProposer, Storage};
use mfplane_raft_store::{Applied, Epoch};
use tokio::sync::broadcast::error::RecvError;

use crate::net::{self, DATA_PORT, TRAFFIC};
use crate::packet::{Burst, frames};
use crate::world::{Bug, WorkerLive, World, lock};

/// The cluster's external IPs (TEST-NET-2).
pub const EXTERNAL_IPS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(198, 51, 100, 1),
    Ipv4Addr::new(198, 51, 100, 2),
];

/// Added to simulated time for the engine's millisecond clock (`created_ms`).
pub const CLOCK_BASE_MS: u64 = 1_700_000_000_000;

/// Member timings used in the simulation.
///
/// The daemon's heartbeat (100 ms), with a shorter lease than its default (600 ms
/// instead of 2 s, margin 200 ms instead of 500 ms) so that a failover takes two to
/// three simulated seconds and a scenario fits in about ten; the node's own rule
/// (lease >= 6 heartbeats) holds, and the simulated network's latency (1-4 ms) is far
/// below these, as on a LAN.
#[derive(Debug, Clone, Copy)]
pub struct SimTiming {
    pub heartbeat: Duration,
    pub lease: Duration,
    pub lease_margin: Duration,
    pub rpc_timeout: Duration,
    pub batch_delay: Duration,
}

impl Default for SimTiming {
    fn default() -> Self {
        SimTiming {
            heartbeat: Duration::from_millis(100),
            lease: Duration::from_millis(600),
            lease_margin: Duration::from_millis(200),
            rpc_timeout: Duration::from_millis(500),
            batch_delay: Duration::from_millis(2),
        }
    }
}

/// How one worker starts.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// 1-based index; the host is `n{index}`.
    pub index: usize,
    /// Bootstraps the cluster (the first worker only).
    pub init: bool,
    /// Members to join through (empty with `init`).
    pub join: Vec<String>,
    pub timing: SimTiming,
    /// Seeds openraft's RNG on this member.
    pub seed: u64,
    pub bug: Bug,
}

/// The simulated engine clock.
pub fn now() -> Timestamp {
    let ms = turmoil::sim_elapsed().unwrap_or_default().as_millis();
    Timestamp(CLOCK_BASE_MS + u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The member configuration, built through the daemon's own flag validation.
///
/// # Errors
/// The node's configuration error (a bad timing in `spec`).
pub fn node_config(spec: &WorkerSpec, data_ip: Ipv4Addr) -> mfplane_node::Result<NodeConfig> {
    let name = net::worker(spec.index);
    let t = spec.timing;
    let args = Args {
        name: Some(name.clone()),
        data_dir: Some(format!("/sim/{name}").into()),
        listen: Some(std::net::SocketAddr::from(([0, 0, 0, 0], net::GRPC_PORT))),
        advertise: Some(net::grpc_addr(&name)),
        join: spec.join.clone(),
        init: spec.init,
        bucket_bits: Some(8),
        external_ips: EXTERNAL_IPS.to_vec(),
        data_ip: Some(data_ip),
        data_mac: Some(format!("02:00:00:00:00:{:02x}", spec.index)),
        lease: Some(t.lease),
        lease_margin: Some(t.lease_margin),
        heartbeat: Some(t.heartbeat),
        rpc_timeout: Some(t.rpc_timeout),
        batch_delay: Some(t.batch_delay),
        ..Args::default()
    };
    args.validate(spec.seed)
}

/// The host software of one worker; turmoil runs it again on `bounce`.
///
/// # Errors
/// Start-up failures (the cluster refused to admit the member, bad configuration),
/// which end the simulation with that error.
pub async fn run(spec: WorkerSpec, world: Arc<World>) -> turmoil::Result {
    let slot = world.slot(spec.index);
    *lock(&slot.live) = None;
    let data_ip = match turmoil::lookup(net::worker(spec.index)) {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(_) => return Err("the simulation runs on IPv4".into()),
    };
    let config = node_config(&spec, data_ip)?;
    let transport = net::transport().await?;
    let storage = Storage::open_memory(&slot.backend);
    let node = Node::start(config, transport, storage).await?;
    let member = node.core.wait_member().await;
    let proposer = loop {
        if let Some(p) = node.proposer() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // A joining member learns the cluster configuration by replication.
    let engine_config = loop {
        if let Some(c) = member.state().config() {
            let mut e = EngineConfig::new(c.external_ips.clone());
            e.bucket_bits = c.bucket_bits;
            e.hash_key = FlowHashKey::DEFAULT;
            break e;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let engine = Arc::new(Mutex::new(Engine::new(engine_config)?));
    let sock = turmoil::net::UdpSocket::bind(("0.0.0.0", DATA_PORT)).await?;
    let mut events = member.sm.subscribe();
    if spec.bug != Bug::NoResyncOnBoot {
        resync(&member, &engine);
    }
    *lock(&slot.live) = Some(WorkerLive {
        member: member.clone(),
        engine: engine.clone(),
    });
    *lock(&slot.boots) += 1;
    let mut datapath = DataPath {
        member,
        proposer,
        engine,
        owned: None,
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut refresh = tokio::time::interval(Duration::from_millis(10));
    loop {
        tokio::select! {
            biased;
            ev = events.recv() => match ev {
                Ok(Applied::SessionsCreated(recs)) => datapath.import(&recs),
                Ok(Applied::SessionsRemoved(keys)) => {
                    let mut e = lock(&datapath.engine);
                    for k in keys {
                        e.remove(&k);
                    }
                }
                Ok(Applied::SnapshotInstalled) | Err(RecvError::Lagged(_)) => {
                    resync(&datapath.member, &datapath.engine);
                }
                Ok(_) => {}
                // The store is gone: the node is shutting down.
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            },
            r = sock.recv_from(&mut buf) => {
                let (n, _) = r?;
                datapath.refresh_ownership();
                let out = datapath.process(&buf[..n]);
                if !out.is_empty() {
                    sock.send_to(&out, (TRAFFIC, DATA_PORT)).await?;
                }
            }
            _ = refresh.tick() => datapath.refresh_ownership(),
        }
    }
}

/// Loads every committed session into the engine (start-up, snapshot, lag).
fn resync(member: &Member, engine: &Mutex<Engine>) {
    let mut recs: Vec<SessionRecord> = member.state().sessions().copied().collect();
    recs.sort_unstable_by_key(|r| r.key);
    let mut e = lock(engine);
    for r in recs {
        import_one(&mut e, r);
    }
}

/// Installs a committed session; the committed mapping replaces any local one that
/// disagrees with it (by key or by external endpoint).
fn import_one(e: &mut Engine, rec: SessionRecord) {
    use mfplane_dataplane::Error;
    match e.import(rec, now()) {
        Ok(()) => {}
        Err(Error::KeyConflict { .. }) => {
            e.remove(&rec.key);
            let _ = e.import(rec, now());
        }
        Err(Error::ExternalTaken { other, .. }) => {
            e.remove(&other);
            let _ = e.import(rec, now());
        }
        Err(err) => tracing::warn!(error = %err, "committed session not importable"),
    }
}

struct DataPath {
    member: Arc<Member>,
    proposer: SessionProposer,
    engine: Arc<Mutex<Engine>>,
    /// What the engine was last told it owns: the applied epoch and whether the lease
    /// was valid.
    owned: Option<(Epoch, bool)>,
}

impl DataPath {
    fn import(&self, recs: &[SessionRecord]) {
        let mut e = lock(&self.engine);
        for r in recs {
            import_one(&mut e, *r);
        }
    }

    /// Gives the engine the buckets this member owns, or none without a lease.
    fn refresh_ownership(&mut self) {
        let valid = self.member.lease_valid();
        let (epoch, buckets): (Epoch, Vec<BucketId>) = {
            let s = self.member.state();
            (s.epoch(), s.buckets().owned_by(self.member.id).collect())
        };
        if self.owned == Some((epoch, valid)) {
            return;
        }
        self.owned = Some((epoch, valid));
        let buckets = if valid { buckets } else { Vec::new() };
        lock(&self.engine).set_owned_buckets(buckets);
    }

    /// Translates one burst; returns the burst for the traffic generator and starts
    /// the confirmation of the sessions it created.
    fn process(&mut self, datagram: &[u8]) -> Vec<u8> {
        let now = now();
        let mut out = Burst::default();
        let created: Vec<SessionRecord> = {
            let mut e = lock(&self.engine);
            for frame in frames(datagram) {
                let mut f = frame.to_vec();
                if let Verdict::Translated(_) = e.process_ipv4(&mut f, now) {
                    out.push(&f);
                }
            }
            e.drain_created().collect()
        };
        if !created.is_empty() {
            tokio::spawn(confirm(
                self.member.clone(),
                self.proposer.clone(),
                self.engine.clone(),
                created,
            ));
        }
        out.take()
    }
}

/// Proposes locally allocated sessions until their fate is known, then withdraws the
/// refused ones (and those still unconfirmed once the lease is gone).
async fn confirm(
    member: Arc<Member>,
    proposer: SessionProposer,
    engine: Arc<Mutex<Engine>>,
    records: Vec<SessionRecord>,
) {
    loop {
        match proposer.propose(records.clone()).await {
            Ok(outcomes) => {
                for (r, o) in records.iter().zip(outcomes) {
                    if let Outcome::Rejected(why) = o {
                        tracing::debug!(key = ?r.key, ?why, "session refused; withdrawing it");
                        withdraw(&member, &engine, r);
                    }
                }
                return;
            }
            Err(e) => {
                if !member.lease_valid() {
                    tracing::debug!(error = %e, n = records.len(), "lease lost with sessions unconfirmed; withdrawing them");
                    for r in &records {
                        withdraw(&member, &engine, r);
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Removes a local allocation that did not (or may not have) commit; a committed
/// mapping for the key, if any, takes its place. If it commits later after all, the
/// `Applied` stream imports it again.
fn withdraw(member: &Member, engine: &Mutex<Engine>, r: &SessionRecord) {
    let committed = member.state().session(&r.key).copied();
    if committed == Some(*r) {
        return;
    }
    let mut e = lock(engine);
    if e.session(&r.key).is_some_and(|s| s.record == *r) {
        e.remove(&r.key);
    }
    if let Some(c) = committed {
        import_one(&mut e, c);
    }
}

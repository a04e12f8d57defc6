//! A worker host: the real node library (`Node::start` on turmoil TCP and in-memory
//! storage) and the daemon's data path, the node's own [`NatWorker`], fed with
//! simulated packets.
//!
//! The loop here is the daemon's packet loop (`mfplane_node::datapath::packet_loop`)
//! with a UDP socket in place of the packet socket and the simulated clock in place of
//! the wall clock: new sessions are forwarded at once (optimistic commit) and proposed
//! through the real [`SessionProposer`] with the loop's own [`packet_loop::propose`];
//! refused or unanswered ones are undone with [`NatWorker::reject`]; applied changes
//! are taken in with [`NatWorker::sync`]; ownership is re-checked on the same short
//! timer, and idle sessions are proposed for removal with
//! [`packet_loop::propose_removal`]. Everything the data path decides (imports,
//! ownership under the lease, committed-wins) is the node's code.
//!
//! One difference, for the checker: the worker sits behind a mutex so the checker can
//! read its engine between simulation steps, and therefore the loop waits for applied
//! changes on a subscription of its own (a wake-up only) instead of
//! [`NatWorker::wait_applied`], which would hold the worker across the wait.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mfplane_core::FlowHashKey;
use mfplane_dataplane::engine::{Timestamp, Verdict};
use mfplane_node::config::Args;
use mfplane_node::datapath::nat_worker::InjectedFault;
use mfplane_node::datapath::packet_loop::{self, Decided};
use mfplane_node::datapath::{NatWorker, WorkerOptions};
use mfplane_node::{Node, NodeConfig, SessionProposer, Storage};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::net::{self, DATA_PORT, TRAFFIC};
use crate::packet::{Burst, frames};
use crate::world::{Bug, WorkerLive, World, lock};

/// The cluster's external IPs (TEST-NET-2).
pub const EXTERNAL_IPS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(198, 51, 100, 1),
    Ipv4Addr::new(198, 51, 100, 2),
];

/// The cluster's flow-hash key: not the default one, so that a simulated LB or
/// engine that hashed with the default would steer flows to the wrong owners.
pub const FLOW_HASH_KEY: FlowHashKey =
    FlowHashKey::new(0x5eed_0f10_a5ca_1e00, 0x0b0c_7e75_4e11_2026);

/// Added to simulated time for the engine's millisecond clock (`created_ms`).
pub const CLOCK_BASE_MS: u64 = 1_700_000_000_000;

/// How often idle sessions are looked for, as the daemon's loop.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);
/// How many times longer than the leader's wait [`Bug::LeaseMismatch`]'s owner
/// believes its lease lasts.
const LEASE_MISMATCH_FACTOR: u32 = 5;

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
        flow_hash_key: spec.init.then(|| {
            FLOW_HASH_KEY
                .to_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }),
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
    if spec.bug == Bug::LeaseMismatch {
        member.own_lease.inject_overlong(LEASE_MISMATCH_FACTOR);
    }
    let proposer = loop {
        if let Some(p) = node.proposer() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // A joining member learns the cluster configuration by replication.
    while member.state().config().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let opts = WorkerOptions {
        fault: match spec.bug {
            Bug::NoResyncOnBoot => InjectedFault::SkipImportAtStart,
            Bug::NoFence => InjectedFault::IgnoreFences,
            Bug::None | Bug::LeaseMismatch => InjectedFault::None,
        },
        ..WorkerOptions::default()
    };
    // Subscribed before the worker subscribes itself, so every change the worker will
    // find also wakes this loop.
    let mut applied = member.sm.subscribe();
    let nat = Arc::new(Mutex::new(NatWorker::new(member.clone(), &opts, now())?));
    let sock = turmoil::net::UdpSocket::bind(("0.0.0.0", DATA_PORT)).await?;
    let (decided_tx, mut decided_rx) = mpsc::unbounded_channel::<Decided>();
    let datapath = DataPath {
        retry_for: member.config.timing.lease,
        nat: nat.clone(),
        proposer: proposer.clone(),
        decided: decided_tx,
    };
    *lock(&slot.live) = Some(WorkerLive {
        member,
        nat: nat.clone(),
    });
    *lock(&slot.boots) += 1;

    let mut buf = vec![0u8; 256 * 1024];
    let mut ownership = tokio::time::interval(packet_loop::OWNERSHIP_CHECK);
    ownership.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            Some(decided) = decided_rx.recv() => {
                let mut w = lock(&nat);
                for rec in &decided.refused {
                    w.reject(rec, now());
                }
            }
            ev = applied.recv() => match ev {
                Ok(_) | Err(RecvError::Lagged(_)) => lock(&nat).sync(now()),
                // The store is gone: the node is shutting down.
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            },
            _ = ownership.tick() => lock(&nat).refresh_ownership(),
            _ = expiry.tick() => {
                let keys = lock(&nat).expired(now());
                packet_loop::propose_removal(&proposer, keys);
            }
            r = sock.recv_from(&mut buf) => {
                let (n, _) = r?;
                let out = datapath.process(&buf[..n]);
                if !out.is_empty() {
                    sock.send_to(&out, (TRAFFIC, DATA_PORT)).await?;
                }
            }
        }
    }
}

/// What the packet branch of the loop needs.
struct DataPath {
    /// How long an unanswered proposal is retried (the lease, as in the daemon).
    retry_for: Duration,
    nat: Arc<Mutex<NatWorker>>,
    proposer: SessionProposer,
    decided: mpsc::UnboundedSender<Decided>,
}

impl DataPath {
    /// Translates one burst as the daemon's loop translates frames: every new session
    /// is proposed, and whatever was translated goes back
    /// to the traffic generator.
    fn process(&self, datagram: &[u8]) -> Vec<u8> {
        let now = now();
        let mut out = Burst::default();
        let mut w = lock(&self.nat);
        for frame in frames(datagram) {
            let mut f = frame.to_vec();
            let verdict = w.process_ipv4(&mut f, now);
            let created = w.take_created();
            if !created.is_empty() {
                packet_loop::propose(
                    &self.proposer,
                    created,
                    false,
                    self.retry_for,
                    self.decided.clone(),
                );
            }
            if let Verdict::Translated(_) = verdict {
                out.push(&f);
            }
        }
        out.take()
    }
}

//! What the simulated hosts publish for the invariant checker, which reads it between
//! simulation steps (same thread; the locks are never contended).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use mfplane_core::{Endpoint, SessionKey};
use mfplane_node::datapath::NatWorker;
use mfplane_node::member::Member;
use mfplane_raft_store::MemoryBackend;

/// Locks, ignoring poisoning: a panicking host fails the simulation anyway, and the
/// checker must still be able to print what it saw.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Deliberate bugs, switched on only by the tests that prove the checker can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bug {
    #[default]
    None,
    /// Members disagree on the lease: the partitioned owner believes its lease lasts
    /// far longer than the leader's fence on its buckets, so their new owners allocate
    /// before the owner's lease has expired (the node's hidden
    /// `OwnLease::inject_overlong` switch, on the affected member only).
    LeaseMismatch,
    /// A restarted worker serves packets without loading the committed sessions
    /// first, so it allocates anew for flows that already have a mapping (the data
    /// path's hidden `InjectedFault::SkipImportAtStart`).
    NoResyncOnBoot,
    /// The members that take over a suspect's buckets allocate in them at once,
    /// ignoring the failover fence, while the suspect may still hold its lease (the
    /// data path's hidden `InjectedFault::IgnoreFences`, on every member but n3).
    NoFence,
}

/// One worker's slot: its storage (survives crashes) and, while it runs, its member
/// and data path.
#[derive(Debug, Default)]
pub struct WorkerSlot {
    /// The member's persistent storage, kept outside the host so `bounce` finds it.
    pub backend: MemoryBackend,
    pub live: Mutex<Option<WorkerLive>>,
    /// Completed boots, for traces.
    pub boots: Mutex<u32>,
}

/// A running worker, as published by its host after start-up.
#[derive(Debug, Clone)]
pub struct WorkerLive {
    pub member: Arc<Member>,
    /// The data path, whose engine the checker inspects.
    pub nat: Arc<Mutex<NatWorker>>,
}

/// The simulated LB's current steering table.
#[derive(Debug, Default, Clone)]
pub struct LbView {
    pub epoch: u64,
    /// Owner node id per bucket (0: none).
    pub owners: Vec<u64>,
    /// Frames dropped because their bucket had no known owner.
    pub unsteered: u64,
    pub steered: u64,
}

/// One flow as the traffic generator sees it.
#[derive(Debug, Clone)]
pub struct FlowView {
    pub key: SessionKey,
    pub remote: Endpoint,
    /// Every mapping the remote saw, with the simulated time (ms) it first saw it; a
    /// change appends.
    pub mappings: Vec<(u64, Endpoint)>,
    /// Stamp (send time, ms) of the newest probe whose reply reached the inside host.
    pub last_ok_probe: Option<u64>,
    /// Simulated time (ms) the flow started.
    pub started_ms: u64,
}

/// What the traffic generator saw.
#[derive(Debug, Default, Clone)]
pub struct TrafficView {
    pub flows: Vec<FlowView>,
    pub probes_sent: u64,
    pub replies_delivered: u64,
    /// Data-path faults the generator can see by itself (a reply delivered to the wrong
    /// inside endpoint, a packet with a bad checksum, ...).
    pub violations: Vec<String>,
    /// Flows by key, index into `flows`.
    pub by_key: BTreeMap<SessionKey, usize>,
}

/// Everything shared between the hosts and the checker.
#[derive(Debug, Default)]
pub struct World {
    pub workers: Mutex<BTreeMap<usize, Arc<WorkerSlot>>>,
    pub lb: Mutex<LbView>,
    pub traffic: Mutex<TrafficView>,
}

impl World {
    /// The slot of worker `i`, created on first use.
    pub fn slot(&self, i: usize) -> Arc<WorkerSlot> {
        lock(&self.workers).entry(i).or_default().clone()
    }
}

//! The NAT engine of one member, kept in step with the replicated state.
//!
//! [`NatWorker`] is I/O-free: the daemon feeds it frames from a packet socket, the
//! simulation feeds it simulated packets, and both get the same behaviour:
//! - it **allocates only in buckets this member owns** in the applied bucket table, and
//!   only while its bucket lease is valid (DESIGN §2.3); without a lease it keeps
//!   translating the sessions it knows but opens none;
//! - it **translates every committed session of every bucket**: each committed session
//!   is imported as it is applied, so a member that is handed a bucket at failover
//!   already holds its sessions;
//! - sessions it allocates are handed out by [`NatWorker::take_created`] for the
//!   proposer; a rejected proposal is undone with [`NatWorker::reject`];
//! - expiry is decided here, for owned buckets only, and takes effect when the removal
//!   commits and comes back as an applied event.

use std::sync::Arc;

use mfplane_core::{BucketId, SessionKey, SessionRecord};
use mfplane_dataplane::engine::{Engine, EngineConfig, Ipv4Prefix, Timeouts, Timestamp, Verdict};
use mfplane_raft_store::{Applied, ClusterState, Epoch};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::error::{Error, Result};
use crate::member::Member;

/// Settings of the data path that are not part of the replicated cluster config.
/// `Default` is the engine's defaults, so a caller names only what it changes.
#[derive(Clone, Debug, Default)]
pub struct WorkerOptions {
    /// Sources that may open sessions; `None`: the engine's default (RFC 1918 and
    /// RFC 6598 space).
    pub inside_prefixes: Option<Vec<Ipv4Prefix>>,
    /// Session idle timeouts (`udp_timeout` etc.). Per member, not replicated: every
    /// member should be given the same, because expiry is decided by whichever member
    /// owns the bucket at the time.
    pub timeouts: Timeouts,
}

/// The engine of one member plus what keeps it consistent with the cluster.
#[derive(Debug)]
pub struct NatWorker {
    member: Arc<Member>,
    engine: Engine,
    applied: broadcast::Receiver<Applied>,
    /// The (epoch, lease valid) the owned buckets were last computed for.
    ownership: Option<(Epoch, bool)>,
}

impl NatWorker {
    /// Builds the engine from the replicated cluster configuration and imports every
    /// committed session.
    ///
    /// # Errors
    /// [`Error::FailedPrecondition`] if the cluster is not bootstrapped yet;
    /// [`Error::Config`] if the engine rejects the configuration (the message says
    /// which value).
    pub fn new(member: Arc<Member>, opts: &WorkerOptions) -> Result<Self> {
        // Subscribe before reading the state so that nothing applied in between is
        // missed (a duplicate import is harmless, a missed one is not).
        let applied = member.sm.subscribe();
        let engine = {
            let state = member.state();
            let cfg = engine_config(&state, opts)?;
            let mut engine = Engine::new(cfg).map_err(|e| Error::Config {
                flag: "--inside-prefix",
                message: format!("the data path cannot use the cluster configuration: {e}"),
            })?;
            import_all(&mut engine, &state);
            engine
        };
        let mut worker = NatWorker {
            member,
            engine,
            applied,
            ownership: None,
        };
        worker.refresh_ownership();
        Ok(worker)
    }

    /// The engine, for counters and inspection.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Translates one IPv4 packet (or Ethernet frame, see [`Engine::process`]) in place.
    ///
    /// Ownership is not re-read here: that takes the state lock and reads the clock,
    /// which the packet path must not do per frame. The caller refreshes it on applied
    /// changes ([`Self::sync`]) and on a short timer ([`Self::refresh_ownership`]),
    /// which bounds how long an expired lease goes unnoticed.
    pub fn process(&mut self, frame: &mut [u8], now: Timestamp) -> Verdict {
        self.engine.process(frame, now)
    }

    /// Sessions allocated since the last call, to be proposed for replication.
    pub fn take_created(&mut self) -> Vec<SessionRecord> {
        self.engine.drain_created().collect()
    }

    /// Undoes a session whose proposal the cluster refused: its mapping must not be
    /// used (another member may hold that endpoint).
    pub fn reject(&mut self, key: &SessionKey) {
        self.engine.remove(key);
    }

    /// Applies what the state machine applied since the last call: imports created
    /// sessions, removes removed ones, and recomputes ownership on a new bucket table.
    /// A lagging subscription or a snapshot install resyncs from the whole state.
    pub fn sync(&mut self, now: Timestamp) {
        loop {
            match self.applied.try_recv() {
                Ok(event) => self.on_applied(event, now),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                Err(TryRecvError::Lagged(_)) => self.resync(now),
            }
        }
        self.refresh_ownership();
    }

    /// Waits for the state machine's next applied change and takes it in; call
    /// [`Self::sync`] afterwards for whatever else arrived meanwhile.
    pub async fn wait_applied(&mut self, now: Timestamp) {
        match self.applied.recv().await {
            Ok(event) => self.on_applied(event, now),
            Err(broadcast::error::RecvError::Lagged(_)) => self.resync(now),
            // The state machine is gone: the member is shutting down.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    fn on_applied(&mut self, event: Applied, now: Timestamp) {
        match event {
            Applied::SessionsCreated(records) => {
                for rec in records {
                    // A session this member allocated itself is already there.
                    let _ = self.engine.import(rec, now);
                }
            }
            Applied::SessionsRemoved(keys) => {
                for key in keys {
                    self.engine.remove(&key);
                }
            }
            Applied::BucketsChanged(_) | Applied::MembersChanged | Applied::Configured => {
                self.ownership = None;
            }
            Applied::SnapshotInstalled => self.resync(now),
        }
    }

    /// Replaces the engine's sessions with the committed ones.
    fn resync(&mut self, now: Timestamp) {
        let committed: Vec<SessionRecord> = self.member.state().sessions().copied().collect();
        let mut keep = std::collections::HashSet::with_capacity(committed.len());
        for rec in &committed {
            keep.insert(rec.key);
            let _ = self.engine.import(*rec, now);
        }
        for rec in self.engine.export() {
            if !keep.contains(&rec.key) {
                self.engine.remove(&rec.key);
            }
        }
        self.ownership = None;
    }

    /// Points the engine's allocator at the buckets this member owns, if the table
    /// epoch or the lease changed since the last time.
    pub fn refresh_ownership(&mut self) {
        let valid = self.member.lease_valid();
        let state = self.member.state();
        let epoch = state.epoch();
        if self.ownership == Some((epoch, valid)) {
            return;
        }
        let me = self.member.id;
        let owned: Vec<BucketId> = if valid {
            state.buckets().owned_by(me).collect()
        } else {
            Vec::new()
        };
        drop(state);
        tracing::debug!(node = %me, epoch = %epoch, lease = valid, buckets = owned.len(), "data path ownership");
        self.engine.set_owned_buckets(owned);
        self.ownership = Some((epoch, valid));
    }

    /// Sessions of owned buckets that have expired by `now`, to be proposed for removal.
    pub fn expired(&self, now: Timestamp) -> Vec<SessionKey> {
        let mut out = Vec::new();
        self.engine.expired(now, &mut out);
        out
    }
}

fn engine_config(state: &ClusterState, opts: &WorkerOptions) -> Result<EngineConfig> {
    let cluster = state.config().ok_or_else(|| {
        Error::FailedPrecondition("the cluster has no configuration yet (not bootstrapped)".into())
    })?;
    let mut cfg = EngineConfig::new(cluster.external_ips.clone());
    cfg.bucket_bits = cluster.bucket_bits;
    if let Some(p) = &opts.inside_prefixes {
        cfg.inside_prefixes = p.clone();
    }
    cfg.timeouts = opts.timeouts;
    Ok(cfg)
}

fn import_all(engine: &mut Engine, state: &ClusterState) {
    for rec in state.sessions() {
        let _ = engine.import(*rec, Timestamp(rec.created_ms));
    }
}

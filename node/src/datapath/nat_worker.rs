//! The NAT engine of one member, kept in step with the replicated state.
//!
//! [`NatWorker`] is I/O-free: the daemon feeds it frames from a packet socket, the
//! simulation feeds it simulated packets, and both get the same behaviour:
//! - it **allocates only in buckets this member owns** in the applied bucket table, only
//!   while its bucket lease is valid, and not in a bucket taken over from a suspect
//!   until its fence has passed (DESIGN §2.3); without a lease it keeps translating
//!   the sessions it knows but opens none;
//! - it **translates every committed session of every bucket**: each committed session
//!   is imported as it is applied, so a member that is handed a bucket at failover
//!   already holds its sessions;
//! - sessions it allocates are handed out by [`NatWorker::take_created`] for the
//!   proposer; a rejected proposal is undone with [`NatWorker::reject`];
//! - expiry is decided here, for owned buckets only, and takes effect when the removal
//!   commits and comes back as an applied event.

use std::sync::Arc;

use mfplane_core::{BucketId, SessionKey, SessionRecord};
use mfplane_dataplane::Error as EngineError;
use mfplane_dataplane::engine::{
    Engine, EngineConfig, Ipv4Prefix, Origin, Timeouts, Timestamp, Verdict,
};
use mfplane_raft_store::{Applied, ClusterState, Epoch};
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::fences::Allocatable;
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
    /// Test-only: a deliberate fault, so that a test can prove its checker catches it.
    /// Always [`InjectedFault::None`] in the daemon, which has no flag for it.
    #[doc(hidden)]
    pub fault: InjectedFault,
}

/// Deliberate faults a test may switch on (see [`WorkerOptions::fault`]); none of them
/// is reachable from the daemon's configuration.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InjectedFault {
    #[default]
    None,
    /// [`NatWorker::new`] does not load the committed sessions, so a restarted member
    /// allocates anew for flows that already have a mapping.
    SkipImportAtStart,
    /// The allocator ignores failover fences: a member that takes over a suspect's
    /// buckets allocates in them while the suspect may still hold its lease.
    IgnoreFences,
}

/// The engine of one member plus what keeps it consistent with the cluster.
#[derive(Debug)]
pub struct NatWorker {
    member: Arc<Member>,
    engine: Engine,
    applied: broadcast::Receiver<Applied>,
    /// What the allocator's buckets were last computed from.
    ownership: Option<Ownership>,
    fault: InjectedFault,
}

/// The inputs of the last [`NatWorker::refresh_ownership`]: the answer holds until one
/// of them changes or the next fence ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ownership {
    epoch: Epoch,
    lease: bool,
    next_fence_end: Option<Instant>,
}

impl NatWorker {
    /// Builds the engine from the replicated cluster configuration and imports every
    /// committed session, as last seen at `now` (the sessions' idle timers start at
    /// `now`: when a flow last sent is not replicated, and expiring a live flow because
    /// its member restarted would lose it).
    ///
    /// # Errors
    /// [`Error::FailedPrecondition`] if the cluster is not bootstrapped yet;
    /// [`Error::Config`] if the engine rejects the configuration (the message says
    /// which value).
    pub fn new(member: Arc<Member>, opts: &WorkerOptions, now: Timestamp) -> Result<Self> {
        // Subscribe before reading the state so that nothing applied in between is
        // missed (a duplicate import is harmless, a missed one is not).
        let applied = member.sm.subscribe();
        let cfg = engine_config(&member.state(), opts)?;
        let engine = Engine::new(cfg).map_err(|e| Error::Config {
            flag: "--inside-prefix",
            message: format!("the data path cannot use the cluster configuration: {e}"),
        })?;
        let mut worker = NatWorker {
            member,
            engine,
            applied,
            ownership: None,
            fault: opts.fault,
        };
        if opts.fault != InjectedFault::SkipImportAtStart {
            worker.resync(now);
        }
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

    /// Translates one IPv4 packet without a link header (see [`Engine::process_ipv4`]),
    /// for callers whose transport carries bare packets, such as the simulation.
    pub fn process_ipv4(&mut self, packet: &mut [u8], now: Timestamp) -> Verdict {
        self.engine.process_ipv4(packet, now)
    }

    /// Sessions allocated since the last call, to be proposed for replication.
    pub fn take_created(&mut self) -> Vec<SessionRecord> {
        self.engine.drain_created().collect()
    }

    /// Withdraws a session this member allocated whose proposal the cluster refused,
    /// or whose fate is unknown (no answer): its mapping must not be used, another
    /// member may hold that endpoint.
    ///
    /// Only that exact mapping goes: a newer allocation for the same key is still on
    /// its way to commit, and a committed mapping for the key takes its place (the
    /// committed mapping always wins). If `rec` commits after all, the applied stream
    /// brings it back.
    pub fn reject(&mut self, rec: &SessionRecord, now: Timestamp) {
        let committed = self.member.state().session(&rec.key).copied();
        withdraw(&mut self.engine, rec, committed, now);
    }

    /// Applies what the state machine applied since the last call: imports created
    /// sessions, removes removed ones, and recomputes ownership on a new bucket table.
    /// A lagging subscription or a snapshot install resyncs from the whole state.
    pub fn sync(&mut self, now: Timestamp) {
        loop {
            match self.applied.try_recv() {
                Ok(event) => self.on_applied(event, now),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                Err(TryRecvError::Lagged(n)) => self.lagged(n, now),
            }
        }
        self.refresh_ownership();
    }

    /// Waits for the state machine's next applied change and takes it in; call
    /// [`Self::sync`] afterwards for whatever else arrived meanwhile.
    pub async fn wait_applied(&mut self, now: Timestamp) {
        match self.applied.recv().await {
            Ok(event) => self.on_applied(event, now),
            Err(broadcast::error::RecvError::Lagged(n)) => self.lagged(n, now),
            // The state machine is gone: the member is shutting down.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    fn on_applied(&mut self, event: Applied, now: Timestamp) {
        match event {
            Applied::SessionsCreated(records) => {
                for rec in records {
                    install_committed(&mut self.engine, rec, now);
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

    /// The subscription fell behind by `missed` events: they are gone, so start a
    /// fresh subscription and take the whole state instead. (Replaying what is still
    /// queued on top of the newer state would briefly resurrect removed sessions.)
    fn lagged(&mut self, missed: u64, now: Timestamp) {
        tracing::warn!(node = %self.member.id, missed, "data path fell behind the applied stream; reloading the committed sessions");
        self.applied = self.member.sm.subscribe();
        self.resync(now);
    }

    /// Makes the engine hold exactly the committed sessions plus its own pending ones
    /// (start, snapshot install, lag); see [`reconcile`].
    fn resync(&mut self, now: Timestamp) {
        let mut committed: Vec<SessionRecord> = self.member.state().sessions().copied().collect();
        // Key order, so the engine's resulting layout does not depend on the state's
        // internal order.
        committed.sort_unstable_by_key(|r| r.key);
        reconcile(&mut self.engine, &committed, now);
        self.ownership = None;
    }

    /// Points the engine's allocator at the buckets this member may allocate in (owned,
    /// not fenced, none without a lease; see [`crate::fences`]), if the table epoch or
    /// the lease changed, or a fence ended, since the last time.
    pub fn refresh_ownership(&mut self) {
        let lease = self.member.lease_valid();
        let epoch = self.member.applied_epoch();
        if let Some(last) = self.ownership
            && last.epoch == epoch
            && last.lease == lease
            && last.next_fence_end.is_none_or(|end| Instant::now() < end)
        {
            return;
        }
        // Asked even without a lease, so a fence starts counting when it is first seen.
        let mut a =
            self.member
                .fences
                .allocatable(&self.member.state(), self.member.id, Instant::now());
        if !lease {
            a = Allocatable::default();
        }
        if self.fault == InjectedFault::IgnoreFences {
            a.buckets.append(&mut a.fenced);
            a.next_fence_end = None;
        }
        tracing::debug!(node = %self.member.id, %epoch, lease, buckets = a.buckets.len(), fenced = a.fenced.len(), "data path ownership");
        self.engine.set_owned_buckets(a.buckets);
        self.ownership = Some(Ownership {
            epoch,
            lease,
            next_fence_end: a.next_fence_end,
        });
    }

    /// Whether the allocator last heard (at the last [`Self::refresh_ownership`]) that
    /// this member holds its lease: without one, no new session opens here even in the
    /// buckets the table gives it. Read by the simulation's convergence check.
    pub fn lease_held(&self) -> bool {
        self.ownership.is_some_and(|o| o.lease)
    }

    /// Whether the allocator opens new sessions in `bucket` now (as of the last
    /// [`Self::refresh_ownership`]). Read by the simulation's check that no two
    /// members ever allocate in one bucket at once.
    pub fn allocates_in(&self, bucket: BucketId) -> bool {
        self.engine.owns(bucket)
    }

    /// Sessions of owned buckets that have expired by `now`, to be proposed for removal.
    pub fn expired(&self, now: Timestamp) -> Vec<SessionKey> {
        let mut out = Vec::new();
        self.engine.expired(now, &mut out);
        out
    }
}

/// Installs a committed session. The committed mapping wins over a local one that
/// contradicts it, by key (the key maps elsewhere) or by external endpoint (another
/// key holds it): such a local mapping was allocated tentatively and its proposal will
/// be refused, while the committed one is what every member translates.
fn install_committed(engine: &mut Engine, rec: SessionRecord, now: Timestamp) {
    // At most two local mappings can stand in the way: one by key, one by endpoint.
    for attempt in 0..3 {
        let displaced = match engine.import(rec, now) {
            Ok(()) => return,
            Err(EngineError::KeyConflict { key }) if attempt < 2 => key,
            Err(EngineError::ExternalTaken { other, .. }) if attempt < 2 => other,
            Err(e) => {
                metrics::counter!("mfplane_datapath_sessions_unimportable_total").increment(1);
                tracing::warn!(key = ?rec.key, error = %e, "a committed session cannot be installed in the data path");
                return;
            }
        };
        metrics::counter!("mfplane_datapath_sessions_displaced_total").increment(1);
        tracing::debug!(key = ?displaced, by = ?rec.key, "a committed session displaces a local mapping");
        engine.remove(&displaced);
    }
}

/// Removes the local allocation `rec` (refused, or its fate unknown) unless it is what
/// committed; `committed` is the cluster's mapping for the key, which takes its place.
fn withdraw(
    engine: &mut Engine,
    rec: &SessionRecord,
    committed: Option<SessionRecord>,
    now: Timestamp,
) {
    if committed == Some(*rec) {
        return;
    }
    if engine.session(&rec.key).is_some_and(|s| s.record == *rec) {
        engine.remove(&rec.key);
    }
    if let Some(c) = committed {
        install_committed(engine, c, now);
    }
}

/// Brings `engine` in line with `committed` (sorted by key): installs every committed
/// session and removes imported ones the cluster no longer has (their removal was
/// missed). Sessions allocated here that are not committed stay: their proposal may
/// still be in flight, and [`NatWorker::reject`] withdraws them if it fails.
fn reconcile(engine: &mut Engine, committed: &[SessionRecord], now: Timestamp) {
    for rec in committed {
        install_committed(engine, *rec, now);
    }
    for rec in engine.export() {
        let stale = committed.binary_search_by_key(&rec.key, |c| c.key).is_err()
            && engine
                .session(&rec.key)
                .is_some_and(|s| s.origin == Origin::Imported);
        if stale {
            engine.remove(&rec.key);
        }
    }
}

fn engine_config(state: &ClusterState, opts: &WorkerOptions) -> Result<EngineConfig> {
    let cluster = state.config().ok_or_else(|| {
        Error::FailedPrecondition("the cluster has no configuration yet (not bootstrapped)".into())
    })?;
    let mut cfg = EngineConfig::new(cluster.external_ips.clone());
    cfg.bucket_bits = cluster.bucket_bits;
    // The LBs steer with this key: the engine must put a new session in the bucket
    // its flow is steered by.
    cfg.hash_key = cluster.flow_hash_key;
    if let Some(p) = &opts.inside_prefixes {
        cfg.inside_prefixes = p.clone();
    }
    cfg.timeouts = opts.timeouts;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use mfplane_core::{Endpoint, Proto};
    use mfplane_dataplane::wire::build;

    use super::*;

    const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const NOW: Timestamp = Timestamp(1_000);

    /// An engine that owns every bucket, as a bucket owner's does.
    fn owner_engine() -> Engine {
        let mut e = Engine::new(EngineConfig::new(vec![EXT])).unwrap();
        let buckets = e.config().bucket_bits.count();
        e.set_owned_buckets((0..buckets).map(|b| BucketId(b as u16)));
        e
    }

    fn key(port: u16) -> SessionKey {
        SessionKey {
            proto: Proto::Udp,
            inside: Endpoint::new(u32::from(Ipv4Addr::new(10, 0, 0, 1)), port),
        }
    }

    /// Sends one outbound UDP packet of `key` through `e` and returns the tentative
    /// local mapping it allocated (as `take_created` would hand it to the proposer).
    fn allocate(e: &mut Engine, key: SessionKey) -> SessionRecord {
        let dns = Endpoint::new(u32::from(Ipv4Addr::new(203, 0, 113, 9)), 53);
        let mut buf = build::udp_packet(key.inside, dns, &[0; 4]);
        assert!(matches!(
            e.process_ipv4(&mut buf, NOW),
            Verdict::Translated(_)
        ));
        let created: Vec<SessionRecord> = e.drain_created().collect();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].key, key);
        created[0]
    }

    /// Another external port in the same bucket as `rec`'s (what a different member
    /// owning that bucket earlier may have committed).
    fn other_port_in_bucket(rec: &SessionRecord, bits: u32) -> Endpoint {
        let step = 1u16 << bits;
        let port = rec.external.port;
        let moved = if port.checked_add(step).is_some() {
            port + step
        } else {
            port - step
        };
        Endpoint::new(rec.external.ip, moved)
    }

    fn assert_holds_committed(e: &Engine, c: &SessionRecord) {
        let s = e
            .session(&c.key)
            .expect("the committed session is installed");
        assert_eq!(s.record, *c, "the committed mapping wins");
        assert_eq!(s.origin, Origin::Imported);
        assert_eq!(
            e.session_by_external(&c.external_key())
                .map(|s| s.record.key),
            Some(c.key)
        );
    }

    #[test]
    fn a_committed_mapping_replaces_a_local_one_for_the_same_key() {
        let mut e = owner_engine();
        let bits = u32::from(e.config().bucket_bits.get());
        let local = allocate(&mut e, key(5000));
        let committed = SessionRecord {
            external: other_port_in_bucket(&local, bits),
            ..local
        };
        assert!(matches!(
            e.import(committed, NOW),
            Err(EngineError::KeyConflict { .. })
        ));
        install_committed(&mut e, committed, NOW);
        assert_holds_committed(&e, &committed);
        assert!(
            e.session_by_external(&local.external_key()).is_none(),
            "the local endpoint is free again"
        );
        assert_eq!(e.session_count(), 1);
    }

    #[test]
    fn a_committed_mapping_takes_its_endpoint_from_a_local_session_of_another_key() {
        let mut e = owner_engine();
        let local = allocate(&mut e, key(5000));
        let committed = SessionRecord {
            key: key(6000),
            ..local
        };
        assert!(matches!(
            e.import(committed, NOW),
            Err(EngineError::ExternalTaken { .. })
        ));
        install_committed(&mut e, committed, NOW);
        assert_holds_committed(&e, &committed);
        assert!(e.session(&local.key).is_none(), "the local session is gone");
        assert_eq!(e.session_count(), 1);
    }

    #[test]
    fn a_committed_mapping_displaces_a_conflict_by_key_and_one_by_endpoint_at_once() {
        let mut e = owner_engine();
        let a = allocate(&mut e, key(5000));
        let b = allocate(&mut e, key(6000));
        // The cluster gave a's key b's endpoint.
        let committed = SessionRecord { key: a.key, ..b };
        install_committed(&mut e, committed, NOW);
        assert_holds_committed(&e, &committed);
        assert!(e.session(&b.key).is_none());
        assert_eq!(e.session_count(), 1);
    }

    #[test]
    fn installing_the_same_committed_session_twice_changes_nothing() {
        let mut e = owner_engine();
        let local = allocate(&mut e, key(5000));
        install_committed(&mut e, local, NOW);
        assert_eq!(e.session(&local.key).map(|s| s.record), Some(local));
        assert_eq!(
            e.session(&local.key).map(|s| s.origin),
            Some(Origin::Local),
            "our own session coming back committed stays ours"
        );
    }

    #[test]
    fn withdrawing_removes_only_that_mapping_and_restores_the_committed_one() {
        let mut e = owner_engine();
        let bits = u32::from(e.config().bucket_bits.get());
        let refused = allocate(&mut e, key(5000));
        withdraw(&mut e, &refused, None, NOW);
        assert!(e.session(&refused.key).is_none(), "a refused mapping goes");

        // A newer allocation for the key is not touched by the old refusal.
        let newer = allocate(&mut e, key(5000));
        let stale = SessionRecord {
            external: other_port_in_bucket(&newer, bits),
            ..newer
        };
        withdraw(&mut e, &stale, None, NOW);
        assert_eq!(e.session(&newer.key).map(|s| s.record), Some(newer));

        // What committed instead replaces the refused one.
        let committed = SessionRecord {
            external: other_port_in_bucket(&newer, bits),
            ..newer
        };
        withdraw(&mut e, &newer, Some(committed), NOW);
        assert_holds_committed(&e, &committed);

        // A proposal whose answer was lost but which committed stays.
        withdraw(&mut e, &committed, Some(committed), NOW);
        assert_holds_committed(&e, &committed);
    }

    #[test]
    fn reconcile_drops_missed_removals_and_keeps_pending_local_sessions() {
        let mut e = owner_engine();
        let pending = allocate(&mut e, key(5000));
        let removed_meanwhile = allocate(&mut e, key(6000));
        e.remove(&removed_meanwhile.key);
        e.import(removed_meanwhile, NOW).unwrap();
        let kept = allocate(&mut e, key(7000));
        e.remove(&kept.key);
        e.import(kept, NOW).unwrap();
        let mut committed = vec![kept];
        committed.sort_unstable_by_key(|r| r.key);
        reconcile(&mut e, &committed, NOW);
        assert!(
            e.session(&removed_meanwhile.key).is_none(),
            "an imported session the cluster no longer has is removed"
        );
        assert_eq!(e.session(&kept.key).map(|s| s.record), Some(kept));
        assert_eq!(
            e.session(&pending.key).map(|s| s.record),
            Some(pending),
            "a local session on its way to commit stays"
        );
    }
}

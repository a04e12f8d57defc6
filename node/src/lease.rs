//! Bucket leases: an owner allocates only while it holds one. The leader moves the
//! buckets of an owner that fell silent at once, but fenced: their new owners allocate
//! in them only once lease + margin has passed (see `mfplane_raft_store::fence`); and it
//! moves a lapsed owner's buckets unfenced only after its lease has surely expired.
//! Either way a partitioned old owner never allocates in a bucket at the same time as
//! its new owner (DESIGN §2.3).
//!
//! # How a lease is renewed, and why this way
//! A follower renews by asking the leader (`ForwardRequest::RenewLease`) and, on an
//! answer, holds its lease until *the time it sent the request* plus the lease
//! duration. The leader records *the time it received the request*, which is later, and
//! waits lease + margin past that before it moves the owner's buckets. Both ends
//! therefore measure from one exchange the leader saw, and the owner's lease always
//! ends first (given clocks that run at about the same rate; the margin absorbs the
//! difference). Leases derived from AppendEntries alone would not be safe: with a
//! one-way partition a follower keeps receiving appends (and would keep renewing) while
//! the leader sees no acknowledgements.
//!
//! A new leader does not know when the old one last renewed anybody, so it treats every
//! member as renewed at the start of its term. The leader's own lease is its last
//! quorum acknowledgement (openraft's `last_quorum_acked`) plus the lease duration: once
//! it cannot reach a quorum it stops allocating before any successor can have been
//! elected and waited out the lease.
//!
//! All times are `tokio::time::Instant`, so the simulation controls them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mfplane_raft_store::{Epoch, NodeId};
use serde::Serialize;
use tokio::time::Instant;

use crate::config::Timing;

/// The leader's record of when each member last renewed its lease.
#[derive(Debug, Default)]
pub struct LeaseTable {
    // std Mutex: short critical sections, never held across an await.
    inner: Mutex<LeaderLeases>,
}

#[derive(Debug, Default)]
struct LeaderLeases {
    /// Term this record belongs to; a new term starts a fresh record.
    term: u64,
    term_start: Option<Instant>,
    last_renew: BTreeMap<NodeId, Instant>,
    failovers: Vec<Failover>,
}

/// Buckets moved away from an owner that fell silent (fenced) or whose lease expired;
/// kept so tests and operators can check how each failover was made.
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    pub node: NodeId,
    pub buckets: usize,
    /// Time from the owner's last renewal (or the term start) to the proposal.
    pub since_last_renew_ms: u64,
    pub lease_ms: u64,
    pub margin_ms: u64,
    /// Epoch the moves were proposed on top of.
    pub base_epoch: Epoch,
    pub term: u64,
    /// Whether the owner was only suspected (silent, its lease possibly still running):
    /// then its buckets moved at once, behind an allocation fence of lease + margin.
    pub fenced: bool,
}

/// One member's lease as the leader sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerLease {
    pub node: NodeId,
    /// Milliseconds since its last renewal (or the term start, if none yet).
    pub since_renew_ms: u64,
    /// Whether its lease may still be valid (then its buckets stay put).
    pub maybe_valid: bool,
}

impl LeaseTable {
    /// Starts a new record when leadership (re)starts in `term`.
    pub fn begin_term(&self, term: u64, now: Instant) {
        let mut l = self.lock();
        if l.term != term || l.term_start.is_none() {
            l.term = term;
            l.term_start = Some(now);
            l.last_renew.clear();
        }
    }

    /// When this member's current term as leader began, as far as the leases go.
    pub fn term_started(&self) -> Option<Instant> {
        self.lock().term_start
    }

    /// Records a renewal received from `node` at `now`.
    pub fn renew(&self, node: NodeId, now: Instant) {
        self.lock().last_renew.insert(node, now);
    }

    /// When `node`'s lease began at the latest, as far as this leader knows.
    fn last_contact(l: &LeaderLeases, node: NodeId) -> Option<Instant> {
        match (l.term_start, l.last_renew.get(&node)) {
            (Some(start), Some(&renew)) => Some(start.max(renew)),
            (start, renew) => start.or(renew.copied()),
        }
    }

    /// Whether `node`'s lease may still be valid at `now`: true until lease + margin
    /// have passed since its last renewal (or since this term began).
    pub fn maybe_valid(
        &self,
        node: NodeId,
        now: Instant,
        lease: Duration,
        margin: Duration,
    ) -> bool {
        let l = self.lock();
        match Self::last_contact(&l, node) {
            Some(t) => now < t + lease + margin,
            // No term started: we are not the leader and decide nothing.
            None => true,
        }
    }

    /// Records that `buckets` of `node` are being moved because its lease expired, or,
    /// when `fenced`, because it fell silent.
    pub fn record_failover(
        &self,
        node: NodeId,
        buckets: usize,
        base_epoch: Epoch,
        now: Instant,
        timing: &Timing,
        fenced: bool,
    ) {
        let mut l = self.lock();
        let since = Self::last_contact(&l, node)
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        let term = l.term;
        l.failovers.push(Failover {
            node,
            buckets,
            since_last_renew_ms: millis(since),
            lease_ms: millis(timing.lease),
            margin_ms: millis(timing.lease_margin),
            base_epoch,
            term,
            fenced,
        });
    }

    /// Every failover recorded by this member while it led.
    pub fn failovers(&self) -> Vec<Failover> {
        self.lock().failovers.clone()
    }

    /// The leases of `nodes` as seen now.
    pub fn peers(
        &self,
        nodes: impl IntoIterator<Item = NodeId>,
        now: Instant,
        lease: Duration,
        margin: Duration,
    ) -> Vec<PeerLease> {
        let l = self.lock();
        nodes
            .into_iter()
            .map(|node| {
                let since = Self::last_contact(&l, node).map(|t| now.saturating_duration_since(t));
                PeerLease {
                    node,
                    since_renew_ms: since.map(millis).unwrap_or(0),
                    maybe_valid: since.is_none_or(|s| s < lease + margin),
                }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaderLeases> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// This member's own lease as a bucket owner.
#[derive(Debug, Default)]
pub struct OwnLease {
    inner: Mutex<Option<Grant>>,
    /// Test-only fault (see [`Self::inject_overlong`]); 0 in the daemon.
    overlong: AtomicU32,
}

#[derive(Debug, Clone, Copy)]
struct Grant {
    until: Instant,
    /// The lease counts only once the local state has applied this epoch.
    min_epoch: Epoch,
}

impl OwnLease {
    /// Records a renewal answered by the leader for a request sent at `sent_at`. The
    /// lease lasts the shorter of this member's setting (`own`) and the leader's
    /// (`leader`): members configured differently must not hold a lease longer than
    /// the one the leader waits out and fences for.
    pub fn grant(&self, sent_at: Instant, own: Duration, leader: Duration, min_epoch: Epoch) {
        let lease = own.min(leader);
        let lease = match self.overlong.load(Ordering::Relaxed) {
            0 => lease,
            factor => lease * factor,
        };
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let until = sent_at + lease;
        if g.is_none_or(|old| old.until < until) {
            *g = Some(Grant { until, min_epoch });
        }
    }

    /// Test-only: a deliberate fault, so that a test can prove its checker catches it.
    /// From now on this member believes every lease it is granted lasts `factor` times
    /// longer than the leader waits before moving its buckets, i.e. the leader moves
    /// them while this owner still allocates in them. The daemon never calls this.
    #[doc(hidden)]
    pub fn inject_overlong(&self, factor: u32) {
        self.overlong.store(factor, Ordering::Relaxed);
    }

    /// Drops the lease (leadership changed hands, shutdown).
    pub fn revoke(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// How long the lease still runs, if it is valid at `now` with `applied` applied.
    pub fn remaining(&self, now: Instant, applied: Epoch) -> Option<Duration> {
        let g = (*self.inner.lock().unwrap_or_else(|p| p.into_inner()))?;
        (now < g.until && applied >= g.min_epoch).then(|| g.until - now)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(2);
    const MARGIN: Duration = Duration::from_millis(500);

    #[tokio::test(start_paused = true)]
    async fn leader_waits_lease_plus_margin_from_term_start_or_last_renewal() {
        let t = LeaseTable::default();
        let n = NodeId(2);
        assert!(
            t.maybe_valid(n, Instant::now(), LEASE, MARGIN),
            "no term: decide nothing"
        );
        t.begin_term(5, Instant::now());
        tokio::time::advance(Duration::from_millis(2400)).await;
        assert!(
            t.maybe_valid(n, Instant::now(), LEASE, MARGIN),
            "a new leader assumes a renewal at its term start"
        );
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!t.maybe_valid(n, Instant::now(), LEASE, MARGIN));
        t.renew(n, Instant::now());
        assert!(t.maybe_valid(n, Instant::now(), LEASE, MARGIN));
        t.begin_term(5, Instant::now());
        assert!(
            t.maybe_valid(n, Instant::now(), LEASE, MARGIN),
            "same term keeps the record"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn owner_lease_ends_before_the_leader_moves_anything_even_if_configured_longer() {
        let (leader, owner) = (LeaseTable::default(), OwnLease::default());
        leader.begin_term(1, Instant::now());
        let sent = Instant::now();
        tokio::time::advance(Duration::from_millis(30)).await; // request in flight
        leader.renew(NodeId(2), Instant::now());
        tokio::time::advance(Duration::from_millis(30)).await; // reply in flight
        owner.grant(sent, LEASE * 2, LEASE, Epoch(3)); // configured longer than the leader
        assert!(
            owner.remaining(Instant::now(), Epoch(2)).is_none(),
            "lagging owner: no lease"
        );
        assert!(owner.remaining(Instant::now(), Epoch(3)).is_some());
        // Step in 10 ms increments: whenever the leader may move, the owner has no lease.
        for _ in 0..400 {
            tokio::time::advance(Duration::from_millis(10)).await;
            if !leader.maybe_valid(NodeId(2), Instant::now(), LEASE, MARGIN) {
                assert!(owner.remaining(Instant::now(), Epoch(3)).is_none());
            }
        }
        assert!(owner.remaining(Instant::now(), Epoch(3)).is_none());
    }
}

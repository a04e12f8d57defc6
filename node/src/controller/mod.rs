//! The cluster controller: runs on the leader and makes every placement decision
//! (DESIGN §2.3).
//!
//! Each tick it promotes caught-up learners (when `--auto-promote` is on) and balances
//! the bucket table over the members that may own buckets: voters that are registered,
//! not draining, not retired, that answer Raft and whose bucket lease may still be
//! valid. An owner that has acknowledged nothing for `suspect_after` (a few heartbeats)
//! loses its buckets at once, behind an allocation fence that outlasts its lease
//! (`FailOverBuckets`), so its flows stall for about the detection time instead of the
//! lease; one whose lease has surely expired loses them unfenced. An owner that comes
//! back and renews gets its share back. Every change is one committed command,
//! proposed under the member's change lock, so controller steps and admin operations
//! never interleave.
//!
//! # Layout
//! - [`assignment`]: the pure balanced, minimal-movement assignment.

pub mod assignment;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mfplane_raft_store::{Command, Epoch, NodeId, Rejection, Response};
use openraft::ChangeMembers;
use openraft_rt::WatchReceiver;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::member::Member;

/// How far behind the leader's log a learner may be and still count as caught up.
pub const CAUGHT_UP_ENTRIES: u64 = 64;

/// Runs the controller until `shutdown` turns true. Does nothing while not leader.
pub async fn run(member: Arc<Member>, mut shutdown: watch::Receiver<bool>) {
    // Every heartbeat: a silent owner is acted on within one heartbeat of being
    // suspected (the daemon's heartbeat is at least 10 ms, so this stays cheap).
    let period = member.config.timing.heartbeat;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let span = tracing::info_span!("controller", node = %member.id);
    async move {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = tick.tick() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            if !member.is_leader() {
                continue;
            }
            let term = member.metrics().current_term;
            member.leases.begin_term(term, Instant::now());
            if let Err(e) = step(&member).await {
                metrics::counter!("mfplane_controller_failures_total", "reason" => e.metric_label()).increment(1);
                tracing::debug!(error = %e, "controller step failed; retrying next tick");
            }
        }
    }
    .instrument(span)
    .await
}

/// One controller pass: promotion, then balancing.
///
/// # Errors
/// Whatever the proposal of a change failed with.
pub async fn step(member: &Arc<Member>) -> Result<()> {
    let _guard = member.change_lock.lock().await;
    if member.state().config().is_none() {
        return Ok(());
    }
    if member.config.auto_promote {
        promote_caught_up(member).await?;
    }
    rebalance_locked(member).await?;
    Ok(())
}

/// Who may own buckets right now, as the leader sees it.
#[derive(Debug, Default)]
pub(crate) struct Eligibility {
    /// Voters that may own buckets.
    pub ok: BTreeSet<NodeId>,
    /// Voters whose lease has surely expired: their buckets move without a fence.
    pub lapsed: BTreeSet<NodeId>,
    /// Voters silent for `suspect_after` whose lease may still run: their buckets move
    /// at once, behind a fence (see `mfplane_raft_store::fence`).
    pub suspected: BTreeSet<NodeId>,
}

/// Sorts the voters that are registered, not draining and not retired by whether they
/// may own buckets.
pub(crate) fn eligible(member: &Member) -> Eligibility {
    let voters = member.voters();
    let timing = member.config.timing;
    let now = Instant::now();
    let silence = Silence::of(member, now);
    let state = member.state();
    let mut e = Eligibility::default();
    for (&id, rec) in state.nodes() {
        if rec.retired || rec.draining || !voters.contains(&id) {
            continue;
        }
        if id == member.id {
            e.ok.insert(id);
        } else if !member
            .leases
            .maybe_valid(id, now, timing.lease, timing.lease_margin)
        {
            e.lapsed.insert(id);
        } else if silence.of_node(id) >= timing.suspect_after {
            e.suspected.insert(id);
        } else {
            e.ok.insert(id);
        }
    }
    e
}

/// How long each follower has been silent, from openraft's record of the last
/// acknowledged heartbeat or append (leader only).
struct Silence {
    /// Node -> time since its last acknowledgement, for those that acknowledged.
    acked: std::collections::BTreeMap<NodeId, Duration>,
    /// Time since this leader's term began: nobody counts as silent for longer, since
    /// nothing was expected of them before...
    term: Duration,
    /// ...except the previous leader: this member last heard from it this long ago
    /// (it was elected because that leader fell silent).
    previous_leader: Option<(NodeId, Duration)>,
}

impl Silence {
    fn of(member: &Member, now: Instant) -> Self {
        let m = member.raft.metrics();
        let m = m.borrow_watched();
        let acked = m
            .heartbeat
            .iter()
            .flatten()
            .filter_map(|(id, at)| {
                // openraft's instant wraps tokio's clock, so this is simulated time too.
                let at = at.as_ref()?;
                Some((*id, openraft::Instant::elapsed(&**at)))
            })
            .collect();
        let term = member
            .leases
            .term_started()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let previous_leader = (*member
            .last_leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner()))
        .map(|(id, at)| (id, now.saturating_duration_since(at)));
        Silence {
            acked,
            term,
            previous_leader,
        }
    }

    fn of_node(&self, id: NodeId) -> Duration {
        match (self.acked.get(&id), self.previous_leader) {
            (Some(acked), _) => (*acked).min(self.term),
            (None, Some((leader, since))) if leader == id => since.max(self.term),
            (None, _) => self.term,
        }
    }
}

/// Balances the table; the caller holds the change lock.
///
/// # Returns
/// The epoch of the applied table afterwards.
///
/// # Errors
/// The proposal failed; a `StaleEpoch` refusal is not an error (someone else moved
/// buckets first, and the next pass works from the new table).
pub async fn rebalance_locked(member: &Arc<Member>) -> Result<Epoch> {
    let e = eligible(member);
    let (owners, epoch) = {
        let state = member.state();
        (state.buckets().owners().to_vec(), state.epoch())
    };
    let moves = assignment::rebalance(&owners, &e.ok);
    if moves.is_empty() {
        return Ok(epoch);
    }
    let timing = member.config.timing;
    let mut suspects = Vec::new();
    for (&node, fenced) in e
        .lapsed
        .iter()
        .map(|n| (n, false))
        .chain(e.suspected.iter().map(|n| (n, true)))
    {
        let n = moves
            .iter()
            .filter(|(b, _)| owners[usize::from(b.0)] == Some(node))
            .count();
        if n == 0 {
            continue;
        }
        member
            .leases
            .record_failover(node, n, epoch, Instant::now(), &timing, fenced);
        let kind = if fenced { "fenced" } else { "lease_expired" };
        metrics::counter!("mfplane_failover_buckets_total", "kind" => kind).increment(n as u64);
        if fenced {
            suspects.push(node);
            tracing::warn!(%node, buckets = n, %epoch, "owner silent: moving its buckets now, fenced");
        } else {
            tracing::warn!(%node, buckets = n, %epoch, "lease expired: moving the owner's buckets");
        }
    }
    tracing::info!(moves = moves.len(), base_epoch = %epoch, eligible = ?e.ok, "rebalancing buckets");
    let cmd = if suspects.is_empty() {
        Command::AssignBuckets {
            base_epoch: epoch,
            moves,
        }
    } else {
        Command::FailOverBuckets {
            base_epoch: epoch,
            moves,
            suspects,
            // The suspect's lease ends within `lease` of this proposal; the margin
            // covers clock-rate drift and the time until the new owner applies.
            fence: timing.lease + timing.lease_margin,
        }
    };
    match member.write(cmd).await? {
        (_, Response::Epoch(e)) => Ok(e),
        (_, Response::Rejected(Rejection::StaleEpoch { current })) => Ok(current),
        (_, Response::Rejected(r)) => Err(Error::Rejected(r)),
        (_, other) => Err(Error::Raft(format!(
            "unexpected response to a bucket move: {other:?}"
        ))),
    }
}

/// Promotes registered learners that have caught up with the leader's log, one per
/// pass (membership changes are serialized).
async fn promote_caught_up(member: &Arc<Member>) -> Result<()> {
    let m = member.metrics();
    let last = m.last_log_index.unwrap_or(0);
    let learners: Vec<NodeId> = m.membership_config.membership().learner_ids().collect();
    let Some(replication) = m.replication.as_ref() else {
        return Ok(());
    };
    for id in learners {
        let registered = member.state().node(id).is_some_and(|r| !r.retired);
        let matched = replication
            .get(&id)
            .and_then(|l| l.as_ref())
            .map(|l| l.index)
            .unwrap_or(0);
        if registered && matched + CAUGHT_UP_ENTRIES >= last {
            tracing::info!(node = %id, matched, last, "promoting caught-up learner to voter");
            promote_locked(member, id).await?;
            return Ok(());
        }
    }
    Ok(())
}

/// Makes learner `id` a voter; the caller holds the change lock.
///
/// # Errors
/// openraft's refusal (e.g. not a learner), as [`Error::Raft`].
pub async fn promote_locked(member: &Member, id: NodeId) -> Result<()> {
    member
        .raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;
    Ok(())
}

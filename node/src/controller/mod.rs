//! The cluster controller: runs on the leader and makes every placement decision
//! (DESIGN §2.3).
//!
//! Each tick it promotes caught-up learners (when `--auto-promote` is on) and balances
//! the bucket table over the members that may own buckets: voters that are registered,
//! not draining, not retired, and whose bucket lease may still be valid. An owner whose
//! lease has surely expired loses its buckets; one that comes back and renews gets its
//! share back. Every change is one committed command, proposed under the member's
//! change lock, so controller steps and admin operations never interleave.
//!
//! # Layout
//! - [`assignment`]: the pure balanced, minimal-movement assignment.

pub mod assignment;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mfplane_raft_store::{Command, Epoch, NodeId, Rejection, Response};
use openraft::ChangeMembers;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::member::Member;

/// How far behind the leader's log a learner may be and still count as caught up.
pub const CAUGHT_UP_ENTRIES: u64 = 64;

/// Runs the controller until `shutdown` turns true. Does nothing while not leader.
pub async fn run(member: Arc<Member>, mut shutdown: watch::Receiver<bool>) {
    let period = member
        .config
        .timing
        .heartbeat
        .max(Duration::from_millis(50));
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

/// Members that may own buckets right now, with the reason each excluded voter with
/// buckets is excluded (for failover records).
pub(crate) fn eligible(member: &Member) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
    let voters = member.voters();
    let timing = member.config.timing;
    let now = Instant::now();
    let state = member.state();
    let mut ok = BTreeSet::new();
    let mut lapsed = BTreeSet::new();
    for (&id, rec) in state.nodes() {
        if rec.retired || rec.draining || !voters.contains(&id) {
            continue;
        }
        if id == member.id
            || member
                .leases
                .maybe_valid(id, now, timing.lease, timing.lease_margin)
        {
            ok.insert(id);
        } else {
            lapsed.insert(id);
        }
    }
    (ok, lapsed)
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
    let (eligible, lapsed) = eligible(member);
    let (owners, epoch) = {
        let state = member.state();
        (state.buckets().owners().to_vec(), state.epoch())
    };
    let moves = assignment::rebalance(&owners, &eligible);
    if moves.is_empty() {
        return Ok(epoch);
    }
    let timing = member.config.timing;
    for &node in &lapsed {
        let n = moves
            .iter()
            .filter(|(b, _)| owners[usize::from(b.0)] == Some(node))
            .count();
        if n > 0 {
            member.leases.record_failover(
                node,
                n,
                epoch,
                Instant::now(),
                timing.lease,
                timing.lease_margin,
            );
            tracing::warn!(%node, buckets = n, %epoch, "lease expired: moving the owner's buckets");
        }
    }
    tracing::info!(moves = moves.len(), base_epoch = %epoch, eligible = ?eligible, "rebalancing buckets");
    match member
        .write(Command::AssignBuckets {
            base_epoch: epoch,
            moves,
        })
        .await?
    {
        (_, Response::Epoch(e)) => Ok(e),
        (_, Response::Rejected(Rejection::StaleEpoch { current })) => Ok(current),
        (_, Response::Rejected(r)) => Err(Error::Rejected(r)),
        (_, other) => Err(Error::Raft(format!(
            "unexpected response to AssignBuckets: {other:?}"
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

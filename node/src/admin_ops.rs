//! Cluster changes requested through the Admin API, as the leader carries them out.
//!
//! Each runs under the member's change lock, so it never interleaves with a controller
//! pass or another admin change, and each checks its preconditions first, so a bad
//! request changes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use mfplane_raft_store::{Command, Epoch, MemberInfo, NodeId, Response};
use openraft::ChangeMembers;

use crate::controller;
use crate::error::{Error, Result};
use crate::member::Member;

/// Registers a new member and adds it as a learner.
///
/// # Errors
/// [`Error::Rejected`] with `NameTaken` for a second join of a name; [`Error::Raft`]
/// when the learner could not be added.
pub async fn join(member: &Arc<Member>, info: MemberInfo) -> Result<NodeId> {
    let _guard = member.change_lock.lock().await;
    if member.state().config().is_none() {
        return Err(Error::Starting(
            "the cluster is not bootstrapped yet; retry in a moment".into(),
        ));
    }
    let id = match member
        .write(Command::RegisterNode { info: info.clone() })
        .await?
        .1
    {
        Response::NodeRegistered(id) => id,
        Response::Rejected(r) => return Err(Error::Rejected(r)),
        other => {
            return Err(Error::Raft(format!(
                "unexpected response to RegisterNode: {other:?}"
            )));
        }
    };
    member
        .raft
        .add_learner(id, info.clone(), false)
        .await
        .map_err(|e| Error::Raft(format!("adding node {id} as a learner: {e}")))?;
    tracing::info!(node = %id, name = %info.name, addr = %info.raft_addr, "member joined as a learner");
    Ok(id)
}

/// Checks that `id` names a registered, live member.
fn live(member: &Member, id: NodeId) -> Result<()> {
    match member.state().node(id) {
        None => Err(Error::UnknownNode(id)),
        Some(r) if r.retired => Err(Error::FailedPrecondition(format!(
            "node {id} was removed from the cluster; its id is retired"
        ))),
        Some(_) => Ok(()),
    }
}

/// Makes learner `id` a voter.
///
/// # Returns
/// What happened, for people.
///
/// # Errors
/// [`Error::UnknownNode`] for an id the cluster does not know.
pub async fn promote(member: &Arc<Member>, id: NodeId) -> Result<String> {
    live(member, id)?;
    let _guard = member.change_lock.lock().await;
    if member.voters().contains(&id) {
        return Ok(format!("node {id} is already a voter"));
    }
    if !member.raft_nodes().iter().any(|(n, _)| *n == id) {
        return Err(Error::FailedPrecondition(format!(
            "node {id} is registered but not a learner yet; wait for its join to complete"
        )));
    }
    controller::promote_locked(member, id).await?;
    Ok(format!("node {id} is now a voter"))
}

/// Moves every bucket away from `id` and stops giving it new ones.
///
/// # Returns
/// The epoch of the table without `id`'s buckets.
///
/// # Errors
/// [`Error::UnknownNode`]; [`Error::FailedPrecondition`] when no other member could take
/// the buckets.
pub async fn drain(member: &Arc<Member>, id: NodeId) -> Result<Epoch> {
    live(member, id)?;
    let _guard = member.change_lock.lock().await;
    drain_locked(member, id).await
}

async fn drain_locked(member: &Arc<Member>, id: NodeId) -> Result<Epoch> {
    let owned = member.state().buckets().count_owned_by(id);
    let mut takers = controller::eligible(member).ok;
    takers.remove(&id);
    if owned > 0 && takers.is_empty() {
        // Refuse before marking it draining: a refused request changes nothing.
        return Err(Error::FailedPrecondition(format!(
            "node {id} still owns {owned} buckets and no other voter can take them: add and promote a member first"
        )));
    }
    let draining = member.state().node(id).is_some_and(|r| r.draining);
    if !draining {
        match member
            .write(Command::SetDraining {
                node: id,
                draining: true,
            })
            .await?
            .1
        {
            Response::Ok => {}
            Response::Rejected(r) => return Err(Error::Rejected(r)),
            other => {
                return Err(Error::Raft(format!(
                    "unexpected response to SetDraining: {other:?}"
                )));
            }
        }
    }
    let epoch = controller::rebalance_locked(member).await?;
    let left = member.state().buckets().count_owned_by(id);
    if left > 0 {
        return Err(Error::FailedPrecondition(format!(
            "node {id} is draining but still owns {left} buckets: no other voter can take them (add or promote a member first)"
        )));
    }
    Ok(epoch)
}

/// Removes `id` from the cluster: drains it, takes it out of the Raft configuration
/// and retires its id.
///
/// # Errors
/// [`Error::UnknownNode`]; [`Error::FailedPrecondition`] for the last voter, or for the
/// leader itself (hand leadership over first; `mfpctl remove` does that).
pub async fn remove(member: &Arc<Member>, id: NodeId) -> Result<Epoch> {
    live(member, id)?;
    let _guard = member.change_lock.lock().await;
    let voters = member.voters();
    if voters.len() == 1 && voters.contains(&id) {
        return Err(Error::FailedPrecondition(format!(
            "node {id} is the last voter: removing it would leave no cluster; add and promote another member first"
        )));
    }
    if id == member.id {
        return Err(Error::FailedPrecondition(format!(
            "node {id} is the leader; transfer leadership first (Admin.TransferLeader), then remove it through the new leader"
        )));
    }
    let epoch = drain_locked(member, id).await?;
    let change = if voters.contains(&id) {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    if member.raft_nodes().iter().any(|(n, _)| *n == id) {
        member
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| Error::Raft(format!("removing node {id} from Raft: {e}")))?;
    }
    match member.write(Command::RetireNode { node: id }).await?.1 {
        Response::Ok => {}
        Response::Rejected(r) => return Err(Error::Rejected(r)),
        other => {
            return Err(Error::Raft(format!(
                "unexpected response to RetireNode: {other:?}"
            )));
        }
    }
    if let Some(rec) = member.state().node(id) {
        member.channels.forget(&rec.info.raft_addr);
    }
    tracing::info!(node = %id, "member removed and retired");
    Ok(epoch)
}

/// Hands leadership to voter `id` and waits until it has taken over.
///
/// # Errors
/// [`Error::UnknownNode`]; [`Error::FailedPrecondition`] when `id` is not a voter;
/// [`Error::Raft`] when it did not take over in time.
pub async fn transfer_leader(member: &Arc<Member>, id: NodeId) -> Result<String> {
    live(member, id)?;
    if !member.voters().contains(&id) {
        return Err(Error::FailedPrecondition(format!(
            "node {id} is not a voter; promote it first"
        )));
    }
    if id == member.id {
        return Ok(format!("node {id} already leads"));
    }
    member
        .raft
        .trigger()
        .transfer_leader(id)
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;
    member
        .wait_for(
            member.config.timing.heartbeat * 30,
            "the new leader",
            move |m| m.current_leader == Some(id),
        )
        .await
        .map_err(|_| {
            Error::Raft(format!(
                "node {id} did not take over leadership in time; see `mfpctl status`"
            ))
        })?;
    Ok(format!("node {id} is now the leader"))
}

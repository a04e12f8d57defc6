//! A running cluster member: the Raft handle plus everything the services, the
//! controller and the proposer share.

use std::collections::BTreeSet;
use std::sync::Arc;

use mfplane_raft_store::typ::RaftMetrics;
use mfplane_raft_store::{ClusterState, Command, Epoch, MemberInfo, NodeId, Response};
use openraft::ServerState;
use openraft_rt::WatchReceiver;
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::fences::FenceClock;
use crate::lease::{LeaseTable, OwnLease};
use crate::network::{Channels, ForwardReply, ForwardRequest, forward};
use crate::store::{self, Raft, StateMachineStore};

/// One member of the cluster, with a node id and a running Raft instance.
#[derive(Debug)]
pub struct Member {
    pub id: NodeId,
    pub config: NodeConfig,
    pub raft: Raft,
    /// Read handle on the applied state (the Raft instance owns the writing side).
    pub sm: StateMachineStore,
    pub channels: Channels,
    /// The leader's record of its members' leases (meaningful while leader).
    pub leases: LeaseTable,
    /// This member's own bucket lease.
    pub own_lease: OwnLease,
    /// When the fences on buckets this member took over from a suspect end.
    pub fences: FenceClock,
    /// The last leader this member heard from as a follower, and when. Should this
    /// member be elected next, that leader has been silent since then, not only since
    /// the election: the controller suspects it without waiting again.
    pub last_leader_contact: std::sync::Mutex<Option<(NodeId, Instant)>>,
    /// Serializes cluster changes (membership, bucket moves, drains) made by this
    /// member: openraft allows concurrent membership changes but they may interleave
    /// into a joint configuration, and two bucket proposals on one epoch would make the
    /// second fail its compare-and-set.
    pub change_lock: AsyncMutex<()>,
}

/// Where the leader is, as this member knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub id: NodeId,
    pub addr: String,
}

impl Member {
    /// Reads the applied state.
    pub fn state(&self) -> impl std::ops::Deref<Target = ClusterState> + '_ {
        store::read_state(&self.sm)
    }

    /// Epoch of the applied bucket table.
    pub fn applied_epoch(&self) -> Epoch {
        self.state().epoch()
    }

    /// A copy of openraft's current metrics.
    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Waits until `pred` holds for the metrics, at most `within`.
    ///
    /// # Errors
    /// [`Error::Raft`] on timeout, naming `what` was awaited.
    pub async fn wait_for(
        &self,
        within: std::time::Duration,
        what: &str,
        pred: impl Fn(&RaftMetrics) -> bool + Send,
    ) -> Result<RaftMetrics> {
        self.raft
            .wait(Some(within))
            .metrics(pred, what)
            .await
            .map_err(|e| Error::Raft(format!("waiting for {what}: {e}")))
    }

    /// Whether this member is the leader right now.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// The current leader and its address, if one is known.
    pub fn leader(&self) -> Option<LeaderInfo> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some(LeaderInfo {
            id,
            addr: node.raft_addr.clone(),
        })
    }

    /// Voters of the current (possibly joint) configuration.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Every member in the Raft configuration with its address.
    pub fn raft_nodes(&self) -> Vec<(NodeId, MemberInfo)> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect()
    }

    /// Whether this member may allocate sessions now: it holds a bucket lease.
    pub fn lease_valid(&self) -> bool {
        self.lease_remaining().is_some()
    }

    /// How long this member's lease still runs.
    pub fn lease_remaining(&self) -> Option<std::time::Duration> {
        let now = Instant::now();
        let lease = self.config.timing.lease;
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        if m.state == ServerState::Leader && m.current_leader == Some(self.id) {
            let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
            if voters.len() == 1 && voters.contains(&self.id) {
                // A single voter is its own quorum.
                return Some(lease);
            }
            // openraft's instant wraps tokio's clock, so `elapsed` is simulated time too.
            let since = openraft::Instant::elapsed(&**m.last_quorum_acked.as_ref()?);
            return lease.checked_sub(since).filter(|d| !d.is_zero());
        }
        drop(m);
        self.own_lease.remaining(now, self.applied_epoch())
    }

    /// Records that `leader` just sent this member an AppendEntries (see
    /// [`Self::last_leader_contact`]).
    pub fn heard_from_leader(&self, leader: NodeId) {
        *self
            .last_leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((leader, Instant::now()));
    }

    /// Proposes `cmd` through Raft and waits until it has been applied, on the leader:
    /// locally when this member leads, otherwise forwarded to the leader.
    ///
    /// # Returns
    /// The log index of the entry and the state machine's response.
    ///
    /// # Errors
    /// [`Error::NoLeader`] when no leader is known; [`Error::Peer`] when forwarding
    /// failed; [`Error::Raft`] on a local Raft failure.
    pub async fn write(&self, cmd: Command) -> Result<(u64, Response)> {
        if self.is_leader() {
            match self.raft.client_write(cmd.clone()).await {
                Ok(r) => return Ok((r.log_id.index, r.data)),
                Err(e) if e.forward_to_leader().is_some() => {}
                Err(e) => return Err(Error::Raft(e.to_string())),
            }
        }
        let leader = self.leader().ok_or(Error::NoLeader)?;
        if leader.id == self.id {
            // Leadership is changing under us; the caller retries.
            return Err(Error::NoLeader);
        }
        match forward::send(
            &self.channels,
            &leader.addr,
            &ForwardRequest::Write(cmd),
            self.config.timing.rpc_timeout,
        )
        .await?
        {
            ForwardReply::Written { index, response } => Ok((index, response)),
            other => Err(Error::Raft(format!("unexpected forward reply {other:?}"))),
        }
    }

    /// Serves a [`ForwardRequest`] from another member; only the leader does.
    ///
    /// # Errors
    /// [`Error::NoLeader`]/[`Error::Peer`] with the leader's address when this member
    /// is not the leader (the gRPC layer turns this into `UNAVAILABLE` + metadata).
    pub async fn serve_forward(&self, req: ForwardRequest) -> Result<ForwardReply> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        match req {
            ForwardRequest::Write(cmd) => match self.raft.client_write(cmd).await {
                Ok(r) => Ok(ForwardReply::Written {
                    index: r.log_id.index,
                    response: r.data,
                }),
                Err(e) if e.forward_to_leader().is_some() => Err(self.not_leader()),
                Err(e) => Err(Error::Raft(e.to_string())),
            },
            ForwardRequest::RenewLease { node } => {
                let m = self.metrics();
                self.leases.begin_term(m.current_term, Instant::now());
                self.leases.renew(node, Instant::now());
                Ok(ForwardReply::Lease {
                    epoch: self.applied_epoch(),
                    term: m.current_term,
                    lease: self.config.timing.lease,
                })
            }
        }
    }

    /// The error for "ask the leader instead".
    pub fn not_leader(&self) -> Error {
        match self.leader() {
            Some(l) if l.id != self.id => Error::Peer {
                peer: l.addr.clone(),
                message: format!("leader={}", l.addr),
            },
            _ => Error::NoLeader,
        }
    }

    /// Whether this member's Raft instance is a voter, learner, or neither.
    pub fn role_of(&self, id: NodeId) -> Option<crate::grpc::convert::Role> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        if membership.voter_ids().any(|v| v == id) {
            Some(crate::grpc::convert::Role::Voter)
        } else if membership.learner_ids().any(|v| v == id) {
            Some(crate::grpc::convert::Role::Learner)
        } else {
            None
        }
    }

    /// Renews this member's lease with the leader once.
    pub async fn renew_lease(self: &Arc<Self>) -> Result<()> {
        if self.is_leader() {
            return Ok(());
        }
        let leader = self.leader().ok_or(Error::NoLeader)?;
        let sent = Instant::now();
        // An answer later than the next renewal is worth nothing, and waiting longer
        // on a leader that just died would keep this member from renewing with its
        // successor: a lapsed lease here makes the new leader move live buckets.
        let timing = &self.config.timing;
        let reply = forward::send_to(
            &self.channels,
            &leader.addr,
            &ForwardRequest::RenewLease { node: self.id },
            timing.rpc_timeout.min(timing.renew_interval()),
        )
        .await?;
        if let ForwardReply::Lease { epoch, lease, .. } = reply {
            self.own_lease
                .grant(sent, self.config.timing.lease, lease, epoch);
        }
        Ok(())
    }
}

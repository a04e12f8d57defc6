//! The operator's view of a cluster's Admin gRPC API (`mfplane.admin.v1.Admin`), behind
//! [`ClusterAdmin`] so the orchestration runs unchanged against the real cluster
//! ([`GrpcAdmin`]) and against a scripted fake in tests.
//!
//! Only what the orchestration decides on is modelled: who is a member, in which role,
//! how far behind the leader, and whether a member answered at all.

#[cfg(test)]
pub mod fake;
mod grpc;

use std::collections::BTreeSet;
use std::fmt;

use futures::future::BoxFuture;

pub use grpc::GrpcAdmin;

use crate::Result;

/// A Raft node id, allocated by the cluster and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which cluster to talk to: the Nat's key and its workers' gRPC addresses by pod name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    /// `namespace/name` of the Nat (logs and the fake's key).
    pub nat: String,
    /// `(pod, host:port)` of every worker pod that exists, lowest ordinal first.
    pub members: Vec<(String, String)>,
}

/// Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Votes.
    Voter,
    /// Receives the log, does not vote.
    Learner,
}

/// One member as the answering node (ideally the leader) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Raft node id.
    pub id: NodeId,
    /// Unique name (the pod name).
    pub name: String,
    /// Voter or learner.
    pub role: Role,
    /// Whether buckets are being moved away from it.
    pub draining: bool,
    /// Buckets it owns in the committed table.
    pub buckets: u32,
    /// Committed sessions in its buckets.
    pub sessions: u64,
    /// Highest log index replicated to it (leader's view; 0 if unknown).
    pub matched_index: u64,
    /// Whether the leader heard from it within the lease.
    pub reachable: bool,
}

/// The cluster as one member reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Pod that answered.
    pub answered_by: String,
    /// Node id of the leader, if one is known.
    pub leader: Option<NodeId>,
    /// Bucket-table epoch.
    pub epoch: u64,
    /// The leader's last log index (the catch-up target).
    pub last_log_index: u64,
    /// Committed sessions.
    pub sessions: u64,
    /// Whether the answering member is the leader, i.e. `matched_index` and
    /// `reachable` are meaningful.
    pub from_leader: bool,
    /// Every member, voters and learners.
    pub members: Vec<MemberView>,
}

impl ClusterView {
    /// The member registered under `name`.
    pub fn member(&self, name: &str) -> Option<&MemberView> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The leader's member record.
    pub fn leader_member(&self) -> Option<&MemberView> {
        let leader = self.leader?;
        self.members.iter().find(|m| m.id == leader)
    }

    /// Number of voters.
    pub fn voters(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.role == Role::Voter)
            .count()
    }
}

/// What asking every worker for its status found. A probe never fails as a whole:
/// unreachable members are data for the decision, not errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// The cluster, from the leader when it answered, else from any member.
    pub view: Option<ClusterView>,
    /// Pods that answered and belong to no cluster yet.
    pub pristine: BTreeSet<String>,
    /// Pods that did not answer, with the error.
    pub unreachable: Vec<(String, String)>,
}

/// What a Join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Registered now, as a learner, with this id.
    Joined(NodeId),
    /// The name was already registered (the pod joined itself, or an earlier attempt
    /// of this operator succeeded before it restarted).
    AlreadyMember,
}

/// A member to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Unique name (the pod name).
    pub name: String,
    /// host:port of its gRPC server.
    pub raft_addr: String,
    /// IPv4 address of its data interface.
    pub data_ip: String,
    /// MAC of its data interface.
    pub data_mac: String,
}

/// The Admin API calls the orchestration makes. Every call that changes the cluster is
/// sent to the leader (a member that is not the leader forwards it anyway).
pub trait ClusterAdmin: Send + Sync + 'static {
    /// Asks every pod of `target` for its status.
    fn probe<'a>(&'a self, target: &'a ClusterTarget) -> BoxFuture<'a, Probe>;
    /// Makes `pod` the first voter of a new cluster.
    fn initialize<'a>(
        &'a self,
        target: &'a ClusterTarget,
        pod: &'a str,
    ) -> BoxFuture<'a, Result<NodeId>>;
    /// Registers a new member as a learner.
    fn join<'a>(
        &'a self,
        target: &'a ClusterTarget,
        request: &'a JoinRequest,
    ) -> BoxFuture<'a, Result<JoinOutcome>>;
    /// Makes a learner a voter; returns the bucket epoch after the change.
    fn promote<'a>(&'a self, target: &'a ClusterTarget, node: NodeId)
    -> BoxFuture<'a, Result<u64>>;
    /// Moves every bucket away from a member; returns once the new table committed.
    fn drain<'a>(&'a self, target: &'a ClusterTarget, node: NodeId) -> BoxFuture<'a, Result<u64>>;
    /// Removes a member; its id is retired.
    fn remove<'a>(&'a self, target: &'a ClusterTarget, node: NodeId) -> BoxFuture<'a, Result<u64>>;
}

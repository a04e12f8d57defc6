//! The replicated commands (openraft's `D`), their responses (`R`) and the reasons a
//! command or a batch entry is refused.
//!
//! Compatibility rule: these enums are serialized positionally (postcard) inside the Raft
//! log and snapshots. New variants go at the **end**; existing variants and fields are
//! never reordered or removed. A format that cannot be read that way gets a new storage
//! format byte (see `codec`).

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use mfplane_core::{BucketBits, BucketId, Endpoint, FlowHashKey, SessionKey, SessionRecord};
use serde::{Deserialize, Serialize};

use crate::ids::{Epoch, NodeId};
use crate::member::MemberInfo;

/// Cluster-wide settings, fixed by the first command (`Bootstrap`). The bucket count
/// cannot change later: every session's external port encodes its bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub bucket_bits: BucketBits,
    /// The NAT's public addresses; every bucket owns a slice of each one's port space.
    pub external_ips: Vec<Ipv4Addr>,
    /// Key of the outbound flow hash, shared by every LB and worker (LBs receive it
    /// with the steering table). A secret random key keeps anyone who can pick their
    /// source ports from aiming every flow at one bucket, and so at one worker. Fixed
    /// for the cluster's life: changing it would re-steer established flows.
    pub flow_hash_key: FlowHashKey,
}

/// A change to the replicated cluster state. Every check happens at apply time, with no
/// clock and no randomness, so all members reach the same decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Fixes the cluster configuration; refused once configured.
    Bootstrap { config: ClusterConfig },
    /// Registers a member and assigns it the next id from a replicated counter.
    RegisterNode { info: MemberInfo },
    /// Marks a member as draining (or not): the controller empties it.
    SetDraining { node: NodeId, draining: bool },
    /// Retires a member for good; its id is never reused. Refused while it owns buckets.
    RetireNode { node: NodeId },
    /// Moves buckets (`None` = unowned) and advances the epoch; a compare-and-set on
    /// `base_epoch` so two concurrent controllers cannot interleave.
    AssignBuckets {
        base_epoch: Epoch,
        moves: Vec<(BucketId, Option<NodeId>)>,
    },
    /// A batch of sessions allocated by `owner`, checked entry by entry.
    CreateSessions {
        owner: NodeId,
        /// The bucket-table epoch the owner allocated under (diagnostics: ownership is
        /// checked against the table current at apply time).
        epoch: Epoch,
        sessions: Vec<SessionRecord>,
    },
    /// Removes sessions of buckets `owner` owns (expiry, close).
    RemoveSessions {
        owner: NodeId,
        keys: Vec<SessionKey>,
    },
    /// Moves buckets like `AssignBuckets`, for a failover that does not wait for the
    /// old owners' leases to run out: each bucket taken from one of `suspects` gets a
    /// [`Fence`](crate::Fence) of `fence`, so its new owner translates at once but
    /// allocates in it only after the suspect's lease has surely ended.
    FailOverBuckets {
        base_epoch: Epoch,
        moves: Vec<(BucketId, Option<NodeId>)>,
        suspects: Vec<NodeId>,
        fence: Duration,
    },
}

impl fmt::Display for Command {
    /// A one-line summary for logs (a session batch is not printed record by record).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Bootstrap { config } => write!(
                f,
                "Bootstrap(bucket_bits={}, external_ips={})",
                config.bucket_bits.get(),
                config.external_ips.len()
            ),
            Command::RegisterNode { info } => write!(f, "RegisterNode({})", info.name),
            Command::SetDraining { node, draining } => {
                write!(f, "SetDraining(node={node}, draining={draining})")
            }
            Command::RetireNode { node } => write!(f, "RetireNode(node={node})"),
            Command::AssignBuckets { base_epoch, moves } => {
                write!(
                    f,
                    "AssignBuckets(base_epoch={base_epoch}, moves={})",
                    moves.len()
                )
            }
            Command::CreateSessions {
                owner,
                epoch,
                sessions,
            } => write!(
                f,
                "CreateSessions(owner={owner}, epoch={epoch}, n={})",
                sessions.len()
            ),
            Command::RemoveSessions { owner, keys } => {
                write!(f, "RemoveSessions(owner={owner}, n={})", keys.len())
            }
            Command::FailOverBuckets {
                base_epoch,
                moves,
                suspects,
                fence,
            } => write!(
                f,
                "FailOverBuckets(base_epoch={base_epoch}, moves={}, suspects={suspects:?}, fence={fence:?})",
                moves.len()
            ),
        }
    }
}

/// The outcome of applying one command, returned to the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The command took effect (also the response to blank and membership entries).
    Ok,
    /// `RegisterNode`: the new member's id.
    NodeRegistered(NodeId),
    /// `AssignBuckets`, `FailOverBuckets`: the new epoch.
    Epoch(Epoch),
    /// `CreateSessions`: how many entries were accepted (identical duplicates count as
    /// accepted) and why the others were refused.
    Sessions {
        accepted: u32,
        rejected: Vec<(SessionKey, Rejection)>,
    },
    /// `RemoveSessions`: how many were removed, how many keys were unknown (already gone),
    /// and which were refused because `owner` does not own their bucket.
    SessionsRemoved {
        removed: u32,
        unknown: u32,
        refused: Vec<(SessionKey, Rejection)>,
    },
    /// The whole command was refused; the state is unchanged.
    Rejected(Rejection),
}

/// Why a command, or one entry of a batch, was refused. Deterministic: every member
/// computes the same rejection for the same log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("the cluster is already bootstrapped")]
    AlreadyConfigured,
    #[error("the cluster is not bootstrapped yet: propose Bootstrap first")]
    NotConfigured,
    #[error("invalid cluster configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid member: {0}")]
    InvalidMember(String),
    #[error("the name is already registered as node {0}")]
    NameTaken(NodeId),
    #[error("node {0} is not registered")]
    UnknownNode(NodeId),
    #[error("node {0} is retired")]
    NodeRetired(NodeId),
    #[error("node {node} still owns {buckets} buckets: move them away first")]
    NodeOwnsBuckets { node: NodeId, buckets: u32 },
    #[error("stale epoch: the bucket table is at epoch {current}")]
    StaleEpoch { current: Epoch },
    #[error("bucket {bucket} does not exist (the cluster has {count} buckets)")]
    BucketOutOfRange { bucket: BucketId, count: u32 },
    #[error("bucket {bucket} is moved twice in one command")]
    DuplicateMove { bucket: BucketId },
    #[error(
        "external port {port} does not belong to bucket {bucket} (ports below 1024 are reserved)"
    )]
    PortNotInBucket { port: u16, bucket: BucketId },
    #[error("external address {0} is not one of the cluster's external IPs")]
    UnknownExternalIp(Ipv4Addr),
    #[error("bucket {bucket} is owned by {owner:?}, not by the proposer")]
    NotOwner {
        bucket: BucketId,
        owner: Option<NodeId>,
    },
    #[error("the external endpoint is taken by another session ({by:?})")]
    ExternalTaken { by: SessionKey },
    #[error("the session already maps to {existing}")]
    KeyMapped { existing: Endpoint },
}

//! Notifications of what the state machine applied, for the node's data path, steering
//! stream and controller.

use mfplane_core::{SessionKey, SessionRecord};

use crate::ids::Epoch;

/// One change that just became part of the committed (and applied) state.
///
/// Delivered through a bounded `tokio::sync::broadcast` channel: a subscriber that falls
/// behind gets `RecvError::Lagged` and must resync from `StateMachineStore::state()`,
/// exactly as after [`Applied::SnapshotInstalled`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The cluster configuration was set (`Bootstrap`).
    Configured,
    /// Sessions that were newly created by one `CreateSessions` entry (rejected entries
    /// and idempotent duplicates are not repeated here).
    SessionsCreated(Vec<SessionRecord>),
    /// Sessions removed by one `RemoveSessions` entry.
    SessionsRemoved(Vec<SessionKey>),
    /// The bucket table changed; this is its new epoch.
    BucketsChanged(Epoch),
    /// The member records or the Raft membership changed (register, drain, retire,
    /// openraft membership entry).
    MembersChanged,
    /// The whole state was replaced by a snapshot: resync everything from `state()`.
    SnapshotInstalled,
}

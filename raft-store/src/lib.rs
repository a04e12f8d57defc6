//! Replicated state of an mfplane NAT cluster: the openraft type configuration, the
//! deterministic state machine (members, bucket table, sessions) and its durable storage.
//!
//! Every worker is a Raft member. Bucket owners propose session batches; the state
//! machine accepts or rejects each entry at apply time, deterministically, so a double
//! allocation can never commit (DESIGN §2.2–2.4).
//!
//! # Using it
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mfplane_raft_store::{NodeId, open_sled};
//! let (log, sm) = open_sled("/var/lib/mfplane")?; // refuses foreign/corrupt/newer dirs
//! let me: Option<NodeId> = sm.node_identity()?.map(|i| i.node); // who we were
//! let mut events = sm.subscribe(); // Applied::{SessionsCreated, ..} for the data path
//! let mut epoch = sm.epoch_watch(); // steering: the bucket table changed
//! // typ::Raft::new(id, config, network, log, sm.clone()), created and driven inside
//! // Runtime::scope(seed, ..) so openraft's RNG is seeded.
//! let sessions = sm.state().session_count(); // reads go through a short-lived guard
//! # let _ = (log, me, &mut events, &mut epoch, sessions); Ok(()) }
//! ```
//!
//! # Durability
//! Appends and votes are acknowledged only after the backend's flush. sled 0.34 flushes
//! with `sync_file_range` on Linux, which survives a process crash (kill -9) but not
//! necessarily a power loss on a disk with a volatile write cache; the narrow
//! [`Backend`] trait is there so the log can move to another engine if that matters.
//! The state machine is in memory and persisted by openraft snapshots; after a restart
//! openraft re-applies the committed entries that follow the last snapshot.
//!
//! # Layout
//! - [`ids`]: `NodeId`, `Epoch`, `MacAddr`.
//! - [`member`]: `MemberInfo` (openraft's `Node`) and `NodeRecord`.
//! - [`command`]: `Command`, `Response`, `Rejection`, `ClusterConfig`.
//! - [`bucket_table`]: the bucket -> owner table.
//! - [`fence`]: `Fence`, the allocation fence on a bucket taken from a suspected owner.
//! - [`state`]: `ClusterState` and its apply.
//! - [`error`]: `Error` and `Result`.
//! - `codec`: the versioned record encoding (format byte + postcard).
//! - [`backend`]: the storage interface (ordered trees, batches, flush);
//!   [`sled_backend`] and [`memory_backend`] implement it.
//! - `flusher`: durable, in-order acknowledgement of appends (group flush).
//! - [`log_store`]: openraft's `RaftLogStorage` / `RaftLogReader`.
//! - [`state_machine`]: openraft's `RaftStateMachine`, snapshots, subscriptions, node
//!   identity.
//! - `open`: `open_sled`, `open_memory`, `open_backend`.
//! - [`applied`]: `Applied` notifications for subscribers.
//! - `session_index`: sessions by key and by external endpoint (packed integer keys).
//! - `stable_hash`: the platform-independent hash behind `state_hash`.

pub mod applied;
pub mod backend;
pub mod bucket_table;
mod codec;
pub mod command;
pub mod error;
pub mod fence;
mod flusher;
pub mod ids;
pub mod log_store;
pub mod member;
pub mod memory_backend;
mod open;
mod session_index;
pub mod sled_backend;
mod stable_hash;
pub mod state;
pub mod state_machine;

pub use applied::Applied;
pub use backend::Backend;
pub use bucket_table::BucketTable;
pub use codec::RECORD_FORMAT;
pub use command::{ClusterConfig, Command, Rejection, Response};
pub use error::{Error, Result};
pub use fence::Fence;
pub use ids::{Epoch, InvalidMacAddr, MacAddr, NodeId};
pub use log_store::{LogReader, LogStore};
pub use member::{MemberInfo, NodeRecord};
pub use memory_backend::MemoryBackend;
pub use open::{open_backend, open_memory, open_sled};
pub use sled_backend::{STORE_FORMAT, SledBackend};
pub use state::ClusterState;
pub use state_machine::{NodeIdentity, SnapshotBuilder, StateGuard, StateMachineStore};

/// The async runtime openraft runs on: tokio, with openraft's RNG (election timeouts)
/// drawn from a task-local seed so a simulation is a pure function of its seed.
/// Production enters it with `DeterministicRng::<TokioRuntime>::scope(random_seed, fut)`
/// around everything that creates or drives the Raft instance.
pub type Runtime =
    openraft_rt::deterministic_rng::DeterministicRng<openraft_rt_tokio::TokioRuntime>;

openraft::declare_raft_types!(
    /// openraft type configuration of an mfplane cluster.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = MemberInfo,
        AsyncRuntime = Runtime,
);

/// Short names for the openraft types instantiated with [`TypeConfig`].
pub mod typ {
    use crate::TypeConfig;

    pub type Entry = openraft::alias::EntryOf<TypeConfig>;
    pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
    pub type Vote = openraft::alias::VoteOf<TypeConfig>;
    pub type LeaderId = openraft::alias::LeaderIdOf<TypeConfig>;
    pub type Membership = openraft::Membership<crate::NodeId, crate::MemberInfo>;
    pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
    pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
    pub type EntryPayload = openraft::alias::EntryPayloadOf<TypeConfig>;
    pub type SnapshotData = std::io::Cursor<Vec<u8>>;
    pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
    pub type Raft = openraft::Raft<TypeConfig, crate::StateMachineStore>;
    pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
    pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;
    pub type RaftError<E = openraft::errors::Infallible> =
        openraft::errors::RaftError<TypeConfig, E>;
    pub type ClientWriteError = openraft::errors::ClientWriteError<TypeConfig>;
}

//! The node's view of `mfplane-raft-store`: opening storage, the Raft handle type,
//! snapshot bytes, reading the applied state and the persisted identity.
//!
//! Kept in one module so the rest of the node depends on a handful of names, not on
//! the store's internals.

use std::path::Path;

pub use mfplane_raft_store::typ::{Raft, SnapshotData};
use mfplane_raft_store::{Epoch, NodeId};
pub use mfplane_raft_store::{LogStore, MemoryBackend, StateGuard, StateMachineStore};

use crate::error::{Error, Result};

/// A snapshot's bytes, for streaming to a peer.
pub fn snapshot_bytes(data: &SnapshotData) -> &[u8] {
    data.get_ref()
}

/// A snapshot received from a peer.
pub fn snapshot_from_bytes(bytes: Vec<u8>) -> SnapshotData {
    std::io::Cursor::new(bytes)
}

/// Reads the applied state. Hold it briefly: apply waits while it is held.
pub fn read_state(sm: &StateMachineStore) -> StateGuard<'_> {
    sm.state()
}

/// A receiver that changes whenever the applied bucket-table epoch does.
pub fn watch_epoch(sm: &StateMachineStore) -> tokio::sync::watch::Receiver<Epoch> {
    sm.epoch_watch()
}

/// Persists this member's id in the store's identity record.
///
/// # Errors
/// [`Error::DataDir`] when the write fails.
pub fn save_identity(sm: &StateMachineStore, id: NodeId) -> Result<()> {
    sm.set_node_identity(id, None).map_err(|e| Error::DataDir {
        path: "(identity record)".into(),
        message: e.to_string(),
    })
}

/// A member's storage: the Raft log and the state machine.
#[derive(Debug)]
pub struct Storage {
    log: LogStore,
    sm: StateMachineStore,
}

impl Storage {
    /// The durable store in `dir` (created if missing).
    ///
    /// # Errors
    /// [`Error::DataDir`] naming the directory when it is unusable (a file, foreign or
    /// corrupt data, newer format); nothing in it is overwritten.
    pub fn open_sled(dir: &Path) -> Result<Storage> {
        let (log, sm) = mfplane_raft_store::open_sled(dir).map_err(|e| Error::DataDir {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Storage { log, sm })
    }

    /// In-memory storage for simulation; a clone of `backend` survives a simulated crash.
    pub fn open_memory(backend: &MemoryBackend) -> Storage {
        let (log, sm) = mfplane_raft_store::open_memory(backend);
        Storage { log, sm }
    }

    /// The id this store was given when its member joined, if any.
    ///
    /// # Errors
    /// [`Error::DataDir`] when the record is unreadable.
    pub fn identity(&self) -> Result<Option<NodeId>> {
        let id = self.sm.node_identity().map_err(|e| Error::DataDir {
            path: "(identity record)".into(),
            message: e.to_string(),
        })?;
        Ok(id.map(|i| i.node))
    }

    /// A read handle on the state machine.
    pub fn state_machine(&self) -> StateMachineStore {
        self.sm.clone()
    }

    pub(crate) fn into_parts(self) -> (LogStore, StateMachineStore) {
        (self.log, self.sm)
    }
}

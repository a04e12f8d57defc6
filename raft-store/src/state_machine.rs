//! openraft's state machine: applies committed entries to the [`ClusterState`], builds
//! and installs snapshots, and tells the node what changed.
//!
//! The state lives in memory and is made durable by snapshots; after a restart openraft
//! re-applies the committed log entries that follow the last snapshot (the log store
//! keeps the committed marker for that). So apply does no disk I/O at all, which keeps a
//! 1024-session batch cheap.

use std::io::{self, Cursor};
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::TypeConfig;
use crate::applied::Applied;
use crate::backend::{Backend, Batch, Tree};
use crate::codec::{decode, encode, encode_state};
use crate::command::Response;
use crate::error::{Error, Result};
use crate::ids::{Epoch, NodeId};
use crate::state::{ClusterState, StateWire};
use crate::typ;

const SNAPSHOT_META_KEY: &[u8] = b"meta";
const SNAPSHOT_DATA_KEY: &[u8] = b"data";
const IDENTITY_KEY: &[u8] = b"identity";

/// How many [`Applied`] events a slow subscriber may fall behind before it gets
/// `Lagged` (and resyncs from `state()`). Bounded so a stuck subscriber costs memory
/// proportional to this, not to the log.
pub const EVENT_CAPACITY: usize = 1024;

/// Who this data directory belongs to, persisted so a restarted member knows its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub node: NodeId,
    /// Identifies the cluster the id was assigned in, if the deployment names clusters.
    pub cluster_id: Option<String>,
}

#[derive(Debug, Default)]
struct SmData {
    state: ClusterState,
    last_applied: Option<typ::LogId>,
    membership: typ::StoredMembership,
}

#[derive(Debug)]
struct Shared {
    backend: Arc<dyn Backend>,
    data: RwLock<SmData>,
    /// Meta of the stored snapshot; its data stays in the backend until requested.
    snapshot_meta: Mutex<Option<typ::SnapshotMeta>>,
    events: broadcast::Sender<Applied>,
    epoch: watch::Sender<Epoch>,
}

/// The state machine. Clones are handles to the same state: give one to `Raft::new` and
/// keep another for reads, subscriptions and the node identity.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

/// Read access to the applied state. Hold it briefly: apply waits while it is held.
#[derive(Debug)]
pub struct StateGuard<'a>(RwLockReadGuard<'a, SmData>);

impl Deref for StateGuard<'_> {
    type Target = ClusterState;
    fn deref(&self) -> &ClusterState {
        &self.0.state
    }
}

impl StateGuard<'_> {
    /// The log id of the last applied entry (what this state reflects).
    pub fn last_applied(&self) -> Option<typ::LogId> {
        self.0.last_applied
    }

    /// The Raft membership as of the last applied membership entry.
    pub fn membership(&self) -> &typ::StoredMembership {
        &self.0.membership
    }
}

/// Builds a snapshot of the current state (openraft runs it off the apply path).
#[derive(Debug)]
pub struct SnapshotBuilder {
    sm: StateMachineStore,
}

async fn durable_flush(backend: &Arc<dyn Backend>) -> Result<()> {
    if backend.flush_is_slow() {
        let b = Arc::clone(backend);
        tokio::task::spawn_blocking(move || b.flush())
            .await
            .map_err(|e| Error::Backend(format!("flush task failed: {e}")))?
    } else {
        backend.flush()
    }
}

impl StateMachineStore {
    /// Loads the last snapshot (if any) from `backend`.
    pub(crate) fn open(backend: Arc<dyn Backend>) -> Result<Self> {
        let meta: Option<typ::SnapshotMeta> = backend
            .get(Tree::Snapshot, SNAPSHOT_META_KEY)?
            .map(|b| decode("snapshot meta", &b))
            .transpose()?;
        let mut data = SmData::default();
        if let Some(meta) = &meta {
            let bytes = backend
                .get(Tree::Snapshot, SNAPSHOT_DATA_KEY)?
                .ok_or_else(|| Error::Decode {
                    what: "snapshot",
                    why: "snapshot meta without data".into(),
                })?;
            data.state = ClusterState::from_bytes(&bytes)?;
            data.last_applied = meta.last_log_id;
            data.membership = meta.last_membership.clone();
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (epoch, _) = watch::channel(data.state.epoch());
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                backend,
                data: RwLock::new(data),
                snapshot_meta: Mutex::new(meta),
                events,
                epoch,
            }),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, SmData> {
        // apply never panics while holding the lock, and each update is a complete
        // assignment, so a poisoned lock still guards consistent data.
        self.shared
            .data
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, SmData> {
        self.shared
            .data
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The applied state, for reads (steering tables, lookups, status).
    pub fn state(&self) -> StateGuard<'_> {
        StateGuard(self.read())
    }

    /// What gets applied from now on. Subscribe *before* reading the initial state from
    /// [`state`](Self::state) (applying an event twice is harmless, missing one is not).
    /// After `Lagged` or [`Applied::SnapshotInstalled`], resync from `state()`.
    pub fn subscribe(&self) -> broadcast::Receiver<Applied> {
        self.shared.events.subscribe()
    }

    /// The current bucket-table epoch, updated after every apply that changes it.
    pub fn epoch_watch(&self) -> watch::Receiver<Epoch> {
        self.shared.epoch.subscribe()
    }

    /// The identity stored in this data directory, if the node has registered before.
    pub fn node_identity(&self) -> Result<Option<NodeIdentity>> {
        self.shared
            .backend
            .get(Tree::Meta, IDENTITY_KEY)?
            .map(|b| decode("node identity", &b))
            .transpose()
    }

    /// Persists (and flushes) this member's identity. Blocks on the disk: call it at
    /// startup or right after registration, not on a hot path.
    pub fn set_node_identity(&self, node: NodeId, cluster_id: Option<String>) -> Result<()> {
        let id = NodeIdentity { node, cluster_id };
        let mut batch = Batch::default();
        batch.insert(IDENTITY_KEY, encode("node identity", &id)?);
        self.shared.backend.apply(Tree::Meta, batch)?;
        self.shared.backend.flush()
    }

    fn publish(&self, events: &mut Vec<Applied>) {
        for ev in events.drain(..) {
            // No receiver is fine: nobody is listening right now.
            let _ = self.shared.events.send(ev);
        }
    }

    fn publish_epoch(&self, epoch: Epoch) {
        self.shared.epoch.send_if_modified(|e| {
            let changed = *e != epoch;
            *e = epoch;
            changed
        });
    }

    async fn store_snapshot(&self, meta: &typ::SnapshotMeta, data: &[u8]) -> Result<()> {
        let mut batch = Batch::with_capacity(2);
        batch.insert(SNAPSHOT_META_KEY, encode("snapshot meta", meta)?);
        batch.insert(SNAPSHOT_DATA_KEY, data.to_vec());
        self.shared.backend.apply(Tree::Snapshot, batch)?;
        durable_flush(&self.shared.backend).await?;
        *self
            .shared
            .snapshot_meta
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(meta.clone());
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> io::Result<typ::Snapshot> {
        let (meta, copy) = {
            let d = self.sm.read();
            let meta = typ::SnapshotMeta {
                last_log_id: d.last_applied,
                last_membership: d.membership.clone(),
            };
            (meta, StateWire::from_state(&d.state))
        };
        let data = encode_state(&copy)?;
        drop(copy);
        self.sm.store_snapshot(&meta, &data).await?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "built snapshot");
        Ok(typ::Snapshot {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<typ::LogId>, typ::StoredMembership)> {
        let d = self.read();
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let mut events = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let want_events = self.shared.events.receiver_count() > 0;
            let (response, epoch) = {
                let mut d = self.write();
                d.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Ok,
                    EntryPayload::Normal(cmd) => {
                        d.state.apply(cmd, want_events.then_some(&mut events))
                    }
                    EntryPayload::Membership(m) => {
                        d.membership = typ::StoredMembership::new(Some(entry.log_id), m);
                        if want_events {
                            events.push(Applied::MembersChanged);
                        }
                        Response::Ok
                    }
                };
                (response, d.state.epoch())
            };
            self.publish(&mut events);
            self.publish_epoch(epoch);
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder { sm: self.clone() }
    }

    async fn install_snapshot(
        &mut self,
        meta: &typ::SnapshotMeta,
        snapshot: Cursor<Vec<u8>>,
    ) -> io::Result<()> {
        let bytes = snapshot.into_inner();
        // Decode and validate fully before touching anything: a bad snapshot leaves the
        // current state and the stored snapshot as they were.
        let state = ClusterState::from_bytes(&bytes)?;
        self.store_snapshot(meta, &bytes).await?;
        let epoch = state.epoch();
        {
            let mut d = self.write();
            d.state = state;
            d.last_applied = meta.last_log_id;
            d.membership = meta.last_membership.clone();
        }
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "installed snapshot");
        self.publish(&mut vec![Applied::SnapshotInstalled]);
        self.publish_epoch(epoch);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<typ::Snapshot>> {
        let meta = self
            .shared
            .snapshot_meta
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(meta) = meta else {
            return Ok(None);
        };
        let data = self
            .shared
            .backend
            .get(Tree::Snapshot, SNAPSHOT_DATA_KEY)?
            .ok_or_else(|| io::Error::other("snapshot meta without data"))?;
        Ok(Some(typ::Snapshot {
            meta,
            snapshot: Cursor::new(data),
        }))
    }
}

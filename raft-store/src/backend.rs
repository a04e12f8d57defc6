//! The small storage interface the Raft log and the state machine are written against:
//! a few ordered key-value trees with atomic batch writes and a durable flush.
//!
//! Two implementations: [`SledBackend`](crate::sled_backend::SledBackend) for production
//! and [`MemoryBackend`](crate::memory_backend::MemoryBackend) for simulation. Keeping the
//! interface this narrow is what lets the log be moved to another engine if sled's
//! durability gaps (see TOOLCHAIN.md) ever matter.

use std::fmt::Debug;
use std::ops::Bound;

use crate::error::Result;

/// The trees the store uses. Each batch targets one tree and is atomic within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tree {
    /// Store header, vote, committed and last-purged markers, node identity.
    Meta,
    /// Raft log entries keyed by big-endian u64 index (byte order = numeric order).
    Log,
    /// The last snapshot: its meta and its data, replaced together.
    Snapshot,
}

impl Tree {
    /// All trees, in a fixed order.
    pub const ALL: [Tree; 3] = [Tree::Meta, Tree::Log, Tree::Snapshot];

    /// The on-disk name; prefixed so a foreign sled database is recognizable.
    pub const fn name(self) -> &'static str {
        match self {
            Tree::Meta => "mfplane/meta",
            Tree::Log => "mfplane/log",
            Tree::Snapshot => "mfplane/snapshot",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Tree::Meta => 0,
            Tree::Log => 1,
            Tree::Snapshot => 2,
        }
    }
}

/// One write in a [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Insert(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// Writes applied to one tree atomically, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn with_capacity(n: usize) -> Self {
        Batch {
            ops: Vec::with_capacity(n),
        }
    }

    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.ops.push(Op::Insert(key.into(), value));
    }

    pub fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Remove(key.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key range, owned so it can cross threads.
pub type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Key-value pairs as stored.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Ordered KV trees with atomic batches and a durable flush.
///
/// Writes are visible to reads as soon as the call returns; they are durable only after
/// a later [`Backend::flush`] returns. The Raft log relies on exactly that split: it
/// acknowledges appends and votes only after a flush.
pub trait Backend: Send + Sync + Debug + 'static {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Up to `limit` pairs of `range`, in key order.
    fn range(&self, tree: Tree, range: KeyRange, limit: usize) -> Result<Pairs>;

    /// The pair with the greatest key.
    fn last(&self, tree: Tree) -> Result<Option<(Vec<u8>, Vec<u8>)>>;

    /// Applies `batch` to `tree` atomically.
    fn apply(&self, tree: Tree, batch: Batch) -> Result<()>;

    /// Removes every key in `range` (not necessarily atomically: callers only use it where
    /// a partial removal is safe to redo).
    fn remove_range(&self, tree: Tree, range: KeyRange) -> Result<()>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<()>;

    /// True when `flush` waits for the disk, so it belongs on a background thread rather
    /// than on the async task that called `append`.
    fn flush_is_slow(&self) -> bool;
}

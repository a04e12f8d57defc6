//! openraft's Raft log storage on a [`Backend`]: entries keyed by big-endian index, the
//! vote, and the committed and last-purged markers.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};

use crate::TypeConfig;
use crate::backend::{Backend, Batch, KeyRange, Tree};
use crate::codec::{decode, encode};
use crate::error::Result;
use crate::flusher::Flusher;
use crate::typ;

pub(crate) const VOTE_KEY: &[u8] = b"vote";
pub(crate) const COMMITTED_KEY: &[u8] = b"committed";
pub(crate) const LAST_PURGED_KEY: &[u8] = b"last_purged";

type Entry = <TypeConfig as RaftTypeConfig>::Entry;

fn index_key(index: u64) -> Vec<u8> {
    index.to_be_bytes().to_vec()
}

fn key_bound(b: Bound<&u64>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn index_range<RB: RangeBounds<u64>>(range: &RB) -> KeyRange {
    (key_bound(range.start_bound()), key_bound(range.end_bound()))
}

fn read_meta<T: serde::de::DeserializeOwned>(
    backend: &dyn Backend,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>> {
    backend
        .get(Tree::Meta, key)?
        .map(|bytes| decode(what, &bytes))
        .transpose()
}

fn read_entries<RB: RangeBounds<u64>>(backend: &dyn Backend, range: &RB) -> Result<Vec<Entry>> {
    backend
        .range(Tree::Log, index_range(range), usize::MAX)?
        .into_iter()
        .map(|(_, v)| decode("log entry", &v))
        .collect()
}

/// The Raft log. Hand it to `Raft::new`; reads for replication go through [`LogReader`].
#[derive(Debug)]
pub struct LogStore {
    backend: Arc<dyn Backend>,
    flusher: Flusher,
}

impl LogStore {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Result<Self> {
        let flusher = Flusher::new(Arc::clone(&backend))?;
        Ok(LogStore { backend, flusher })
    }

    fn write_meta<T: serde::Serialize>(&self, key: &[u8], what: &'static str, v: &T) -> Result<()> {
        let mut batch = Batch::default();
        batch.insert(key, encode(what, v)?);
        self.backend.apply(Tree::Meta, batch)
    }
}

/// A cheap reader of the log, used by openraft's replication tasks.
#[derive(Debug, Clone)]
pub struct LogReader {
    backend: Arc<dyn Backend>,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        Ok(read_entries(&*self.backend, &range)?)
    }

    async fn read_vote(&mut self) -> io::Result<Option<typ::Vote>> {
        Ok(read_meta(&*self.backend, VOTE_KEY, "vote")?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<typ::LogId> =
            read_meta(&*self.backend, LAST_PURGED_KEY, "last purged log id")?;
        let last_log_id = match self.backend.last(Tree::Log)? {
            Some((_, v)) => {
                let e: Entry = decode("log entry", &v)?;
                Some(e.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            backend: Arc::clone(&self.backend),
        }
    }

    async fn save_vote(&mut self, vote: &typ::Vote) -> io::Result<()> {
        self.write_meta(VOTE_KEY, "vote", vote)?;
        // A vote must survive a crash before it is acted upon (no double voting).
        self.flusher.flush().await?;
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<typ::LogId>) -> io::Result<()> {
        // Not flushed on its own: a lost or older marker only means fewer entries are
        // re-applied at startup; the leader re-sends the commit index.
        match committed {
            Some(c) => self.write_meta(COMMITTED_KEY, "committed log id", &c)?,
            None => {
                let mut batch = Batch::default();
                batch.remove(COMMITTED_KEY);
                self.backend.apply(Tree::Meta, batch)?;
            }
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<typ::LogId>> {
        Ok(read_meta(
            &*self.backend,
            COMMITTED_KEY,
            "committed log id",
        )?)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut batch = Batch::with_capacity(entries.size_hint().0);
        for e in entries {
            batch.insert(index_key(e.log_id.index), encode("log entry", &e)?);
        }
        // Readable on return; acknowledged (in order) once durable.
        self.backend.apply(Tree::Log, batch)?;
        self.flusher.ack_when_durable(callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<typ::LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |l| l.index.saturating_add(1));
        self.backend.remove_range(
            Tree::Log,
            (Bound::Included(index_key(from)), Bound::Unbounded),
        )?;
        // Conflicting entries must not come back after a crash and be mistaken for
        // entries of the new leader.
        self.flusher.flush().await?;
        Ok(())
    }

    async fn purge(&mut self, log_id: typ::LogId) -> io::Result<()> {
        // Marker first: if we crash in between, the extra entries are harmless, while
        // entries missing below a stale marker would look like a hole.
        self.write_meta(LAST_PURGED_KEY, "last purged log id", &log_id)?;
        self.backend.remove_range(
            Tree::Log,
            (Bound::Unbounded, Bound::Included(index_key(log_id.index))),
        )?;
        Ok(())
    }
}

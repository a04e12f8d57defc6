//! Opening a store: a sled data directory for production, a [`MemoryBackend`] for
//! simulation, or any [`Backend`].

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use crate::TypeConfig;
use crate::backend::{Backend, Tree};
use crate::codec::decode;
use crate::error::{Error, Result};
use crate::log_store::{COMMITTED_KEY, LAST_PURGED_KEY, LogStore, VOTE_KEY};
use crate::memory_backend::MemoryBackend;
use crate::sled_backend::SledBackend;
use crate::state_machine::StateMachineStore;
use crate::typ;

/// Opens (creating if needed) the store in the data directory `path`.
///
/// Refuses, with an error naming the path and before writing anything: a file, a
/// directory that is not a sled database, a sled database that is not an mfplane store,
/// a store of a newer format, and a store whose records do not decode.
pub fn open_sled(path: impl AsRef<Path>) -> Result<(LogStore, StateMachineStore)> {
    let path = path.as_ref();
    let backend = SledBackend::open(path)?;
    open_backend(Arc::new(backend)).map_err(|e| name_path(path, e))
}

/// Opens a store on `backend`; the data survives as long as some clone of the backend
/// does (a simulated host crash drops the stores, not the backend).
pub fn open_memory(backend: &MemoryBackend) -> (LogStore, StateMachineStore) {
    #[allow(clippy::expect_used)] // reason: the memory backend holds only what this
    // process wrote after encoding and validating it, and starting its flusher spawns no
    // thread; a failure here is a bug in this crate, not bad input.
    open_backend(Arc::new(backend.clone())).expect("in-memory store is always readable")
}

/// Opens a store on any backend, checking that everything openraft will read at startup
/// decodes (so a damaged store fails here, clearly, rather than inside Raft).
pub fn open_backend(backend: Arc<dyn Backend>) -> Result<(LogStore, StateMachineStore)> {
    check_readable(&*backend)?;
    let sm = StateMachineStore::open(Arc::clone(&backend))?;
    let log = LogStore::new(backend)?;
    Ok((log, sm))
}

fn check_readable(backend: &dyn Backend) -> Result<()> {
    if let Some(v) = backend.get(Tree::Meta, VOTE_KEY)? {
        decode::<typ::Vote>("vote", &v)?;
    }
    if let Some(v) = backend.get(Tree::Meta, COMMITTED_KEY)? {
        decode::<typ::LogId>("committed log id", &v)?;
    }
    if let Some(v) = backend.get(Tree::Meta, LAST_PURGED_KEY)? {
        decode::<typ::LogId>("last purged log id", &v)?;
    }
    let all = (Bound::Unbounded, Bound::Unbounded);
    let first = backend.range(Tree::Log, all, 1)?;
    let last = backend.last(Tree::Log)?;
    for (_, v) in first.iter().chain(last.iter()) {
        decode::<<TypeConfig as openraft::RaftTypeConfig>::Entry>("log entry", v)?;
    }
    Ok(())
}

/// Record-level errors don't know the directory; add it.
fn name_path(path: &Path, e: Error) -> Error {
    match e {
        Error::Decode { what, why } => Error::Corrupt {
            path: path.to_path_buf(),
            why: format!("{what}: {why}"),
        },
        Error::UnsupportedRecord {
            found, supported, ..
        } if found > supported => Error::NewerFormat {
            path: path.to_path_buf(),
            found,
            supported,
        },
        Error::UnsupportedRecord { what, found, .. } => Error::Corrupt {
            path: path.to_path_buf(),
            why: format!("{what} has unknown format {found}"),
        },
        other => other,
    }
}

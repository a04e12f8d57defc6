//! sled 0.34 [`Backend`]: the production store, one sled database per data directory.
//!
//! Opening is careful about what is already in the directory: a file, a directory that
//! holds something other than a sled database, a sled database without mfplane's header,
//! or one written by a newer store format are all refused with an error naming the path,
//! before anything is written.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Batch, KeyRange, Op, Pairs, Tree};
use crate::error::{Error, Result};

/// Layout version of a data directory (trees and keys). Independent of the record
/// encoding ([`RECORD_FORMAT`](crate::RECORD_FORMAT)).
pub const STORE_FORMAT: u8 = 1;

/// Meta key of the header that marks a directory as an mfplane store.
pub(crate) const HEADER_KEY: &[u8] = b"store";
const HEADER_MAGIC: &[u8] = b"mfplane-raft-store:";

/// sled's page cache (a soft limit; sled's default is 1 GiB). The hot data is the log tail
/// and the last snapshot, and several members may share one host in a lab.
const CACHE_BYTES: u64 = 256 << 20;

/// Files sled 0.34 always creates in its directory.
const SLED_FILES: [&str; 2] = ["conf", "db"];

/// The sled-backed store.
#[derive(Debug)]
pub struct SledBackend {
    path: PathBuf,
    db: sled::Db,
    trees: [sled::Tree; 3],
}

fn header() -> Vec<u8> {
    let mut h = HEADER_MAGIC.to_vec();
    h.push(STORE_FORMAT);
    h
}

/// What was found at the path before opening.
enum Existing {
    Nothing,
    SledFiles,
}

fn inspect(path: &Path) -> Result<Existing> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.is_dir() {
        return Err(Error::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        names.push(
            entry
                .map_err(io)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    if names.is_empty() {
        return Ok(Existing::Nothing);
    }
    let missing: Vec<&str> = SLED_FILES
        .iter()
        .copied()
        .filter(|f| !names.iter().any(|n| n == f))
        .collect();
    if !missing.is_empty() {
        names.sort();
        names.truncate(5);
        return Err(Error::Foreign {
            path: path.to_path_buf(),
            why: format!(
                "no sled database (missing {}; found {})",
                missing.join(", "),
                names.join(", ")
            ),
        });
    }
    Ok(Existing::SledFiles)
}

fn sled_error(path: &Path, e: sled::Error) -> Error {
    match e {
        sled::Error::Corruption { at, .. } => Error::Corrupt {
            path: path.to_path_buf(),
            why: format!("sled reports corruption at {at:?}"),
        },
        // sled takes an exclusive advisory lock on its `db` file.
        sled::Error::Io(source) if source.to_string().contains("could not acquire lock") => {
            Error::Locked {
                path: path.to_path_buf(),
            }
        }
        sled::Error::Io(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        other => Error::Sled {
            path: path.to_path_buf(),
            source: other,
        },
    }
}

/// How long to wait for a lock that a just-closed store in this process may still hold:
/// sled's background flusher releases the database a moment after the last handle drops.
const LOCK_WAIT: Duration = Duration::from_secs(2);

fn open_db(path: &Path) -> Result<sled::Db> {
    let start = Instant::now();
    loop {
        match sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| sled_error(path, e))
        {
            Err(Error::Locked { .. }) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl SledBackend {
    /// Opens (or creates) the store in `path`. See the module docs for what is refused.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let existing = inspect(path)?;
        let db = open_db(path)?;
        let err = |e| sled_error(path, e);

        let names = db.tree_names();
        let has_meta = names.iter().any(|n| &n[..] == Tree::Meta.name().as_bytes());
        let fresh = match existing {
            Existing::Nothing => true,
            // A sled database we created but crashed before writing the header looks like
            // this: only sled's default tree, empty. Anything else without our meta tree
            // belongs to someone else.
            Existing::SledFiles if !has_meta => {
                let only_default = names.iter().all(|n| &n[..] == b"__sled__default");
                if only_default && db.is_empty() {
                    true
                } else {
                    return Err(Error::Foreign {
                        path: path.to_path_buf(),
                        why: "a sled database without mfplane's trees".into(),
                    });
                }
            }
            Existing::SledFiles => false,
        };

        if !fresh {
            let meta = db.open_tree(Tree::Meta.name()).map_err(err)?;
            check_header(path, meta.get(HEADER_KEY).map_err(err)?.as_deref())?;
        }
        let trees = [
            db.open_tree(Tree::Meta.name()).map_err(err)?,
            db.open_tree(Tree::Log.name()).map_err(err)?,
            db.open_tree(Tree::Snapshot.name()).map_err(err)?,
        ];
        if fresh {
            trees[Tree::Meta.index()]
                .insert(HEADER_KEY, header())
                .map_err(err)?;
            db.flush().map_err(err)?;
            tracing::info!(path = %path.display(), "created a new mfplane store");
        }
        Ok(SledBackend {
            path: path.to_path_buf(),
            db,
            trees,
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.index()]
    }

    fn err(&self, e: sled::Error) -> Error {
        sled_error(&self.path, e)
    }
}

fn check_header(path: &Path, header: Option<&[u8]>) -> Result<()> {
    let Some(h) = header else {
        return Err(Error::Foreign {
            path: path.to_path_buf(),
            why: "the store header is missing".into(),
        });
    };
    let Some(format) = h.strip_prefix(HEADER_MAGIC) else {
        return Err(Error::Foreign {
            path: path.to_path_buf(),
            why: "the store header is not mfplane's".into(),
        });
    };
    match format {
        [f] if *f == STORE_FORMAT => Ok(()),
        [f] if *f > STORE_FORMAT => Err(Error::NewerFormat {
            path: path.to_path_buf(),
            found: *f,
            supported: STORE_FORMAT,
        }),
        _ => Err(Error::Corrupt {
            path: path.to_path_buf(),
            why: format!("unreadable store format {format:?}"),
        }),
    }
}

fn to_sled_bound(b: Bound<Vec<u8>>) -> Bound<sled::IVec> {
    match b {
        Bound::Included(k) => Bound::Included(k.into()),
        Bound::Excluded(k) => Bound::Excluded(k.into()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn to_range(range: KeyRange) -> (Bound<sled::IVec>, Bound<sled::IVec>) {
    (to_sled_bound(range.0), to_sled_bound(range.1))
}

impl Backend for SledBackend {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    fn range(&self, tree: Tree, range: KeyRange, limit: usize) -> Result<Pairs> {
        let mut out = Vec::new();
        for kv in self.tree(tree).range(to_range(range)).take(limit) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn last(&self, tree: Tree) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .tree(tree)
            .last()
            .map_err(|e| self.err(e))?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn apply(&self, tree: Tree, batch: Batch) -> Result<()> {
        let mut b = sled::Batch::default();
        for op in batch.ops {
            match op {
                Op::Insert(k, v) => b.insert(k, v),
                Op::Remove(k) => b.remove(k),
            }
        }
        self.tree(tree).apply_batch(b).map_err(|e| self.err(e))
    }

    fn remove_range(&self, tree: Tree, range: KeyRange) -> Result<()> {
        let t = self.tree(tree);
        let mut b = sled::Batch::default();
        for k in t.range(to_range(range)).keys() {
            b.remove(k.map_err(|e| self.err(e))?);
        }
        t.apply_batch(b).map_err(|e| self.err(e))
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))
    }

    fn flush_is_slow(&self) -> bool {
        true
    }
}

//! Errors of opening and using the store.

use std::path::PathBuf;

/// What can go wrong with a data directory or the stored data. Every variant that comes
/// from a directory names it, so a startup failure tells the operator which path to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data directory {path}: is a file, not a directory; point --data-dir at a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "data directory {path}: not an mfplane store ({why}); refusing to touch it: use an empty or new directory"
    )]
    Foreign { path: PathBuf, why: String },
    #[error(
        "data directory {path}: written by a newer mfplane (store format {found}, this build reads up to {supported}); upgrade this binary"
    )]
    NewerFormat {
        path: PathBuf,
        found: u8,
        supported: u8,
    },
    #[error(
        "data directory {path}: in use by another process (or by a store still open in this one); stop it first"
    )]
    Locked { path: PathBuf },
    #[error("data directory {path}: corrupt: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {path}: sled: {source}")]
    Sled {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("stored record {what}: {why}")]
    Decode { what: &'static str, why: String },
    #[error("stored record {what} has format {found}; this build reads up to {supported}")]
    UnsupportedRecord {
        what: &'static str,
        found: u8,
        supported: u8,
    },
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("the store's flusher thread has stopped")]
    FlusherGone,
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for std::io::Error {
    /// openraft's storage traits speak `io::Error`; keep the message.
    fn from(e: Error) -> Self {
        match e {
            Error::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        }
    }
}

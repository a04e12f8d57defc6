//! Errors of the dataplane crate's control operations (configuration, import).
//! Packet drops are not errors: they are counted verdicts (see `engine::DropReason`).

use mfplane_core::{BucketId, SessionKey};

/// What went wrong, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine configuration is invalid.
    #[error("invalid NAT configuration: {0}")]
    Config(String),
    /// An imported session's external port does not belong to its bucket.
    #[error("session {key:?}: external port {port} is not in bucket {bucket}")]
    PortNotInBucket {
        key: SessionKey,
        port: u16,
        bucket: BucketId,
    },
    /// An imported session's external IP is not one of this NAT's external IPs.
    #[error("session {key:?}: external IP {ip} is not configured on this NAT")]
    UnknownExternalIp {
        key: SessionKey,
        ip: std::net::Ipv4Addr,
    },
    /// The external endpoint is already mapped to another inside endpoint.
    #[error("session {key:?}: external endpoint is already used by {other:?}")]
    ExternalTaken { key: SessionKey, other: SessionKey },
    /// The inside endpoint already has a different mapping.
    #[error("session {key:?} already maps to a different external endpoint")]
    KeyConflict { key: SessionKey },
    /// The session table is full.
    #[error("session table full ({0} sessions): raise max_sessions")]
    TableFull(usize),
}

impl Error {
    /// A stable label for a failures counter (for example of rejected imports).
    pub const fn metric_label(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::PortNotInBucket { .. } => "port_not_in_bucket",
            Error::UnknownExternalIp { .. } => "unknown_external_ip",
            Error::ExternalTaken { .. } => "external_taken",
            Error::KeyConflict { .. } => "key_conflict",
            Error::TableFull(_) => "table_full",
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

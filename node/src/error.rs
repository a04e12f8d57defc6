//! The node's error type: expected conditions are variants so callers (and gRPC status
//! mapping) can tell "not the leader" from "bad request" from "broken storage".

use mfplane_raft_store::{NodeId, Rejection};

/// Everything that can go wrong in the node library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration setting is missing or wrong; `flag` is what to change.
    #[error("{flag}: {message}")]
    Config { flag: &'static str, message: String },
    /// The data directory cannot be used (corrupt, foreign, unreadable).
    #[error("data directory {path}: {message}")]
    DataDir { path: String, message: String },
    /// No leader is known right now (election in progress, or no quorum).
    #[error(
        "no leader is known: the cluster is electing one or has lost its quorum; retry shortly"
    )]
    NoLeader,
    /// The cluster is still starting up (e.g. not bootstrapped yet); retry shortly.
    #[error("{0}")]
    Starting(String),
    /// The member has not joined or initialized a cluster yet.
    #[error(
        "this member has not joined a cluster yet: start it with --init or --join, or call Admin.Initialize"
    )]
    NotMember,
    /// The request names a node the cluster does not know.
    #[error("node {0} is not a member: see `mfpctl status` for the member ids")]
    UnknownNode(NodeId),
    /// The request is malformed; the message says what to fix.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request conflicts with the cluster's state (second join, last voter, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The state machine refused the command.
    #[error("refused by the cluster: {0}")]
    Rejected(#[from] Rejection),
    /// This owner holds no valid bucket lease, so it may not allocate.
    #[error("no valid bucket lease: this member has lost contact with the leader")]
    NoLease,
    /// A peer could not be reached or answered with an error.
    #[error("peer {peer}: {message}")]
    Peer { peer: String, message: String },
    /// openraft reported an error (storage failure, shutdown, ...).
    #[error("raft: {0}")]
    Raft(String),
    /// The node is shutting down.
    #[error("the member is shutting down")]
    ShuttingDown,
    /// Encoding or decoding an internal payload failed.
    #[error("payload: {0}")]
    Codec(#[from] postcard::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The netns lab failed to build, run or clean up.
    #[error("lab: {0}")]
    Lab(#[from] crate::lab::LabError),
    /// The data path's packet I/O failed.
    #[error("data path: {0}")]
    PacketIo(#[from] mfplane_dataplane::io::IoError),
}

impl Error {
    /// A short, stable label for the failures counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Config { .. } => "config",
            Error::DataDir { .. } => "data_dir",
            Error::NoLeader => "no_leader",
            Error::NotMember => "not_member",
            Error::Starting(_) => "starting",
            Error::UnknownNode(_) => "unknown_node",
            Error::InvalidRequest(_) => "invalid_request",
            Error::FailedPrecondition(_) => "failed_precondition",
            Error::Rejected(_) => "rejected",
            Error::NoLease => "no_lease",
            Error::Peer { .. } => "peer",
            Error::Raft(_) => "raft",
            Error::ShuttingDown => "shutting_down",
            Error::Codec(_) => "codec",
            Error::Io(_) => "io",
            Error::Lab(_) => "lab",
            Error::PacketIo(_) => "packet_io",
        }
    }
}

/// `Result` with the node's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The netns lab: a real mfplane cluster in network namespaces on one machine, with
//! traffic and a failover drill (`mfpctl lab up | drill | down`).
//!
//! # Layout
//! - [`netns`]: namespaces and the `ip` commands that shape them.
//! - [`topology`]: the lab's network (client, server, router/LB, fabric, workers).
//! - [`procs`]: the daemons the lab starts, their logs, and how they are killed.
//! - [`traffic`]: verifiable long-lived TCP streams and their stall measurement.
//! - [`cluster`]: a running lab: daemons, load balancer, gRPC clients into the lab.
//! - [`drill`]: connections, a fault (crash, scale-out, scale-in), and the report.
//! - [`cli`]: the `mfpctl lab` subcommands.
//!
//! Everything the lab creates carries its name prefix, and a guard removes it all when
//! the lab ends, on error paths and panics included.

pub mod cli;
pub mod cluster;
pub mod drill;
pub mod netns;
pub mod procs;
pub mod topology;
pub mod traffic;

/// What can go wrong while building or running the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab creates namespaces and attaches XDP programs.
    #[error(
        "the lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF): run it as root or with sudo"
    )]
    NotRoot,
    /// A command the lab ran failed.
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The cluster did not reach the expected state in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        what: String,
        after: std::time::Duration,
    },
    /// SIGINT or SIGTERM arrived during a drill: the lab was removed, no report.
    #[error("interrupted by a signal; the lab was removed")]
    Interrupted,
}

/// Lab results.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

//! The gRPC API of mfplane, generated from `proto/mfplane/v1/*.proto`.
//!
//! # Layout
//! - [`raft`]: the internal member-to-member transport (Raft RPCs, forwarded commands).
//! - [`admin`]: cluster administration for `mfpctl`, the operator and joining members.
//! - [`steering`]: the bucket -> owner table as a stream, for load balancers.
//! - [`sessions`]: read access to the committed sessions, for tools.
//!
//! Conversions between these messages and the domain types live with the domain types'
//! users (`mfplane-node`), so this crate stays a thin, dependency-light API definition.

/// Metadata key carrying the leader's gRPC address when a member that is not the
/// leader refuses a call that only the leader can serve.
pub const LEADER_METADATA_KEY: &str = "x-mfplane-leader";

#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod raft {
    tonic::include_proto!("mfplane.raft.v1");
}

#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod admin {
    tonic::include_proto!("mfplane.admin.v1");
}

#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod steering {
    tonic::include_proto!("mfplane.steering.v1");
}

#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod sessions {
    tonic::include_proto!("mfplane.sessions.v1");
}

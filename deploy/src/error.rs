//! The operator's error type. Expected conditions of a live cluster (a member that does
//! not answer, a name already registered) are variants, not strings, because callers
//! decide on them; variant names also label the failure metrics.

use std::time::Duration;

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),

    /// Adding or removing a finalizer, or the cleanup behind it, failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// The cluster's Admin API refused or failed a call.
    #[error("admin {call} via {target}: {code:?}: {message}")]
    Admin {
        /// The RPC, e.g. `Promote`.
        call: &'static str,
        /// Address that was asked.
        target: String,
        /// What kind of failure.
        code: AdminCode,
        /// The server's or transport's words.
        message: String,
    },

    /// No member of the cluster answered the Admin API.
    #[error("no member of {nat} answered the admin API ({details})")]
    ClusterUnreachable {
        /// `namespace/name` of the Nat.
        nat: String,
        /// Each address and its error.
        details: String,
    },

    /// An object could not be (de)serialized; a bug or an incompatible API server.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's words.
        message: String,
    },

    /// The object lacks something every stored object has (name, namespace).
    #[error("object is missing {0}")]
    MissingField(&'static str),

    /// Leadership was lost or could not be renewed in time.
    #[error("lost the leader lease {lease}: {reason}")]
    LostLeadership {
        /// `namespace/name` of the Lease.
        lease: String,
        /// Why.
        reason: String,
    },

    /// A wait took longer than allowed.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
}

/// Kinds of Admin API failures the orchestration tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCode {
    /// Could not connect, or the member is not able to serve (e.g. no leader).
    Unavailable,
    /// The name is already registered (Join) or the cluster exists (Initialize).
    AlreadyExists,
    /// Unknown node id.
    NotFound,
    /// The change is not allowed now (e.g. removing the last voter).
    FailedPrecondition,
    /// The call did not finish in time.
    DeadlineExceeded,
    /// Anything else.
    Other,
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl Error {
    /// Short snake_case name of the variant, for the `error` label of failure metrics
    /// (bounded cardinality: never includes messages).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Admin { .. } => "admin",
            Error::ClusterUnreachable { .. } => "cluster_unreachable",
            Error::Encode { .. } => "encode",
            Error::MissingField(_) => "missing_field",
            Error::LostLeadership { .. } => "lost_leadership",
            Error::Timeout { .. } => "timeout",
        }
    }

    /// Whether the API server answered 409 Conflict (a concurrent writer won).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 409)
    }

    /// Whether the API server answered 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 404)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_are_short_and_fixed() {
        let e = Error::Admin {
            call: "Promote",
            target: "demo-0".into(),
            code: AdminCode::Unavailable,
            message: "connection refused".into(),
        };
        assert_eq!(e.metric_label(), "admin");
        assert!(e.to_string().contains("Promote"));
        assert_eq!(
            Error::MissingField("metadata.name").metric_label(),
            "missing_field"
        );
    }
}

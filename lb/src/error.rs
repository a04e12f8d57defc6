//! The error type of the `mfplane-lb` library.

/// Everything that can go wrong while loading, configuring or feeding the LB program.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This build embeds no eBPF object (`MFPLANE_SKIP_EBPF_BUILD=1`).
    #[error(
        "this build has no LB eBPF object (built with MFPLANE_SKIP_EBPF_BUILD=1): run \
         scripts/setup.sh and rebuild mfplane-lb"
    )]
    ObjectMissing,
    /// The kernel refused the object or a map in it.
    #[error("loading the LB eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// The program could not be found, loaded, attached or detached.
    #[error("XDP program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    /// The object lacks a map this agent needs (object and agent out of sync).
    #[error("map {0} is missing from the LB eBPF object")]
    MapMissing(&'static str),
    /// Attaching to an interface failed (nothing is attached there).
    #[error("--attach {iface}: attaching XDP failed: {source}")]
    Attach {
        iface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The HTTP listener (`/healthz`, `/readyz`, `/metrics`) could not start.
    #[error("--http-listen {listen}: {source}")]
    Http {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The `--config` file cannot be used.
    #[error(transparent)]
    Config(#[from] crate::config_file::FileError),
    /// A setting (flag or file key) cannot be used or is missing.
    #[error(transparent)]
    Setting(#[from] crate::config::SettingError),
    /// A steering table that contradicts the configured cluster parameters; it is not
    /// installed.
    #[error(
        "the cluster's steering table has {setting} {cluster}, but this LB is configured          with {setting} {configured}: either the cluster list points at another cluster or          {setting} is wrong in the configuration; the table is not installed"
    )]
    ClusterMismatch {
        setting: &'static str,
        configured: String,
        cluster: String,
    },
    /// A map operation failed.
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    /// Setting the fabric device map failed.
    #[error("device map {name}: {source}")]
    DevMap {
        name: &'static str,
        #[source]
        source: aya::maps::xdp::XdpMapError,
    },
    /// A named interface does not exist or lacks what the LB needs from it.
    #[error("interface {iface}: {reason}")]
    Interface { iface: String, reason: String },
    /// A Steering update that cannot be applied; the table in use stays.
    #[error("steering update for epoch {epoch} rejected: {reason}")]
    InvalidUpdate { epoch: u64, reason: String },
    /// More owners in one table than the owner map holds.
    #[error("{count} owners in one table; the LB supports at most {max}")]
    TooManyOwners { count: usize, max: u32 },
    /// More external IPs than the external-IP map holds.
    #[error("{count} external IPs; the LB supports at most {max}")]
    TooManyExternalIps { count: usize, max: u32 },
    /// The external IPs could not be placed in the program's external-IP set.
    #[error("{count} external IPs cannot be placed in the LB's external-IP set: {reason}")]
    ExternalSetUnplaceable { count: usize, reason: &'static str },
}

impl Error {
    /// Shorthand for map errors, which always name the map.
    pub(crate) fn map(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
        move |source| Error::Map { name, source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

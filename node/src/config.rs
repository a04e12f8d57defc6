//! Daemon configuration: command-line flags, environment variables and an optional
//! TOML file, merged in that order of precedence and validated into a [`NodeConfig`].
//!
//! Every setting can come from all three places so that the same binary runs by hand,
//! in a systemd unit and in a Kubernetes pod. Validation names the flag that is wrong,
//! because that is what the operator has to change.
//!
//! `data_interface` is the one switch of the packet data path: it turns it on and
//! supplies the member's data address; `inside_sources`, `commit_mode`, the session
//! timeouts and `next_hop_mac` configure that path and are refused without it. The
//! Kubernetes operator's `node.toml` is exactly such a file (checked against its
//! rendering by `tests/config_operator_files.rs`).
//!
//! Everything is read once, when the member starts: a changed file takes effect at
//! the next start (the data path's engine is built with its timeouts and prefixes,
//! and `bucket_bits`/`external_ips` matter only when a cluster is initialized).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use mfplane_core::{BucketBits, FlowHashKey};
use mfplane_dataplane::engine::config::{
    MIN_ICMP_TIMEOUT, MIN_TCP_ESTABLISHED_TIMEOUT, MIN_TCP_TRANSITORY_TIMEOUT, MIN_UDP_TIMEOUT,
};
use mfplane_dataplane::engine::{Ipv4Prefix, Timeouts};
use mfplane_raft_store::MacAddr;
use serde::Deserialize;

use crate::datapath::interface;
use crate::error::{Error, Result};

/// Flags of `mfplane-node`. Every flag also reads `MFPLANE_<FLAG>` from the environment
/// and, below both, the same key (with `_` for `-`) from `--config <file>`.
#[derive(Debug, Default, Clone, Parser, Deserialize)]
#[command(
    name = "mfplane-node",
    version,
    about = "mfplane NAT worker: Raft member, cluster controller and gRPC services"
)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Args {
    /// TOML file with any of these settings (flags and environment win over it).
    #[arg(long, env = "MFPLANE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Unique, stable member name (the pod name in Kubernetes).
    #[arg(long, env = "MFPLANE_NAME")]
    pub name: Option<String>,
    /// Directory of the member's Raft log and state (created if missing).
    #[arg(long, env = "MFPLANE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address (Raft transport, Admin, Steering, Sessions).
    #[arg(long, env = "MFPLANE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// host:port other members and tools use to reach `--listen` (default: `--listen`).
    #[arg(long, env = "MFPLANE_ADVERTISE")]
    pub advertise: Option<String>,
    /// HTTP listen address for /healthz, /readyz and /metrics (none: not served).
    #[arg(long, env = "MFPLANE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Members (host:port) to ask for admission, tried in turn; comma-separated.
    #[arg(long, env = "MFPLANE_JOIN", value_delimiter = ',')]
    #[serde(default)]
    pub join: Vec<String>,
    /// Bootstrap a new cluster with this member as its first voter.
    #[arg(long, env = "MFPLANE_INIT")]
    #[serde(default)]
    pub init: bool,
    /// Bucket bits of a new cluster (4..=12; only used with --init).
    #[arg(long, env = "MFPLANE_BUCKET_BITS")]
    pub bucket_bits: Option<u8>,
    /// External (public) IPv4 addresses of a new cluster (repeatable; only with --init).
    #[arg(
        long = "external-ip",
        env = "MFPLANE_EXTERNAL_IPS",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub external_ips: Vec<Ipv4Addr>,
    /// Secret key of the outbound flow hash of a new cluster: 32 hex digits (only with
    /// --init; default: drawn at random). Set it from a secret store when a cluster
    /// must be re-created with the same steering, otherwise leave it out.
    #[arg(long, env = "MFPLANE_FLOW_HASH_KEY", hide_env_values = true)]
    pub flow_hash_key: Option<String>,
    /// IPv4 address of this member's data-plane interface.
    #[arg(long, env = "MFPLANE_DATA_IP")]
    pub data_ip: Option<Ipv4Addr>,
    /// MAC address of this member's data-plane interface (aa:bb:cc:dd:ee:ff).
    #[arg(long, env = "MFPLANE_DATA_MAC")]
    pub data_mac: Option<String>,
    /// How long a bucket lease lasts after the owner's last contact with the leader.
    #[arg(long, env = "MFPLANE_LEASE", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
    /// Extra time the leader waits past an unreachable owner's lease before moving its
    /// buckets (covers clock-rate drift and scheduling delays).
    #[arg(long, env = "MFPLANE_LEASE_MARGIN", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub lease_margin: Option<Duration>,
    /// Largest session batch proposed as one Raft entry.
    #[arg(long, env = "MFPLANE_BATCH_MAX")]
    pub batch_max: Option<usize>,
    /// Longest a session waits for its batch to fill before it is proposed anyway.
    #[arg(long, env = "MFPLANE_BATCH_DELAY", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub batch_delay: Option<Duration>,
    /// Raft heartbeat interval; elections time out after 4-8 heartbeats.
    #[arg(long, env = "MFPLANE_HEARTBEAT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub heartbeat: Option<Duration>,
    /// How long the leader goes without any acknowledgement from a bucket owner before
    /// it suspects it and moves its buckets at once, fenced, instead of waiting out its
    /// lease. Default: 3 heartbeats. A value of lease + margin or more turns early
    /// failover off.
    #[arg(long, env = "MFPLANE_SUSPECT_AFTER", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub suspect_after: Option<Duration>,
    /// Timeout of one RPC to another member (connects, forwards, admin calls).
    #[arg(long, env = "MFPLANE_RPC_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub rpc_timeout: Option<Duration>,
    /// Data-plane interface (`AF_PACKET`): the member translates the frames steered to
    /// it there, and reads its data IPv4 address and MAC from it when `--data-ip` and
    /// `--data-mac` are not given. Without it the member runs the control plane only.
    #[arg(
        long = "data-interface",
        alias = "data-iface",
        env = "MFPLANE_DATA_INTERFACE"
    )]
    #[serde(alias = "data_iface")]
    pub data_interface: Option<String>,
    /// MAC of the next hop that every translated frame is sent to (the router on the
    /// data network). Default: the default gateway via `--data-interface`, resolved
    /// when the data path starts.
    #[arg(long, env = "MFPLANE_NEXT_HOP_MAC")]
    pub next_hop_mac: Option<String>,
    /// Inside networks that may open sessions, e.g. 10.0.0.0/8 (repeatable; default:
    /// RFC 1918 and RFC 6598 space).
    #[arg(
        long = "inside-source",
        alias = "inside-prefix",
        env = "MFPLANE_INSIDE_SOURCES",
        value_delimiter = ','
    )]
    #[serde(default, alias = "inside_prefixes")]
    pub inside_sources: Vec<String>,
    /// When the first packet of a new session leaves: `optimistic` (at once) or
    /// `strict` (once its mapping has committed).
    #[arg(long, env = "MFPLANE_COMMIT_MODE", value_enum)]
    pub commit_mode: Option<CommitMode>,
    /// UDP mapping idle timeout (RFC 4787 REQ-5: at least 2 min; default 5 min).
    #[arg(long, env = "MFPLANE_UDP_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub udp_timeout: Option<Duration>,
    /// Established TCP idle timeout (RFC 5382 REQ-5: at least 2h 4min, the default).
    #[arg(long, env = "MFPLANE_TCP_ESTABLISHED_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub tcp_established_timeout: Option<Duration>,
    /// Transitory TCP idle timeout: handshake and closing (RFC 5382: at least 4 min,
    /// the default).
    #[arg(long, env = "MFPLANE_TCP_TRANSITORY_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub tcp_transitory_timeout: Option<Duration>,
    /// ICMP query idle timeout (RFC 5508: at least 60 s, the default).
    #[arg(long, env = "MFPLANE_ICMP_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub icmp_timeout: Option<Duration>,
    /// Let the controller promote caught-up learners to voters on its own.
    #[arg(long, env = "MFPLANE_AUTO_PROMOTE")]
    #[serde(default)]
    pub auto_promote: bool,
    /// Serve POST /debug/synthetic-sessions on the HTTP port: allocates and proposes
    /// synthetic sessions through the real batching path (tests and demos only).
    #[arg(long, env = "MFPLANE_DEBUG_SYNTHETIC_LOAD", hide = true)]
    #[serde(default)]
    pub debug_synthetic_load: bool,
}

/// Validated configuration of one member.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// What other members dial; stored in the member's replicated record.
    pub advertise: String,
    pub http_listen: Option<SocketAddr>,
    pub join: Vec<String>,
    pub init: bool,
    pub bucket_bits: BucketBits,
    pub external_ips: Vec<Ipv4Addr>,
    /// The flow-hash key a new cluster is bootstrapped with; `None`: a random one.
    pub flow_hash_key: Option<FlowHashKey>,
    pub data_ip: Ipv4Addr,
    pub data_mac: MacAddr,
    pub timing: Timing,
    pub auto_promote: bool,
    pub debug_synthetic_load: bool,
    /// The packet data path, when `--data-interface` is given.
    pub datapath: Option<DatapathSettings>,
    /// Seeds openraft's RNG (election jitter); the daemon uses an OS-random seed, the
    /// simulation a fixed one.
    pub seed: u64,
}

/// Where the data path reads and sends frames, and how it translates.
#[derive(Debug, Clone)]
pub struct DatapathSettings {
    pub iface: String,
    /// `None`: the default gateway via `iface`, resolved when the data path starts.
    pub next_hop_mac: Option<MacAddr>,
    /// `None`: the engine's default inside space.
    pub inside_prefixes: Option<Vec<Ipv4Prefix>>,
    pub commit_mode: CommitMode,
    /// Session idle timeouts, within the RFC minimums.
    pub timeouts: Timeouts,
}

/// When the first packet of a new session is forwarded (DESIGN §2.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitMode {
    /// At once; the mapping commits within a batch interval. Lowest latency; a mapping
    /// the cluster refuses (rare: a bucket moved meanwhile) has been used by one or a
    /// few packets.
    #[default]
    Optimistic,
    /// Held until the mapping has committed, and dropped if it is refused: no packet
    /// ever leaves with a mapping the cluster does not hold, at the cost of one commit
    /// latency on each new session's first packets.
    Strict,
}

/// The time knobs, kept together because they constrain each other (see
/// [`Timing::validate`]).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lease: Duration,
    pub lease_margin: Duration,
    pub batch_max: usize,
    pub batch_delay: Duration,
    pub heartbeat: Duration,
    /// Silence after which the leader fails an owner over without waiting for its
    /// lease (see [`crate::controller`]).
    pub suspect_after: Duration,
    pub rpc_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease: Duration::from_secs(2),
            lease_margin: Duration::from_millis(500),
            batch_max: 1024,
            batch_delay: Duration::from_millis(1),
            heartbeat: Duration::from_millis(100),
            suspect_after: Duration::from_millis(300),
            rpc_timeout: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// How often an owner renews its lease: a third of the lease, so two renewals can be
    /// lost before the lease lapses.
    pub fn renew_interval(&self) -> Duration {
        self.lease / 3
    }

    fn validate(&self) -> Result<()> {
        let bad = |flag: &'static str, why: String| Err(Error::Config { flag, message: why });
        if self.heartbeat < Duration::from_millis(10) {
            return bad(
                "--heartbeat",
                format!("{:?} is too short: use at least 10ms", self.heartbeat),
            );
        }
        if self.lease < self.heartbeat * 6 {
            return bad(
                "--lease",
                format!(
                    "{:?} must be at least 6 heartbeats ({:?}) so an owner can renew it through a leader election",
                    self.lease,
                    self.heartbeat * 6
                ),
            );
        }
        if self.suspect_after < self.heartbeat * 2 {
            return bad(
                "--suspect-after",
                format!(
                    "{:?} is shorter than 2 heartbeats ({:?}): live owners would be suspected between heartbeats; use at least 3 heartbeats",
                    self.suspect_after,
                    self.heartbeat * 2
                ),
            );
        }
        if self.batch_max == 0 || self.batch_max > 65_536 {
            return bad(
                "--batch-max",
                format!("{} is out of range: use 1..=65536", self.batch_max),
            );
        }
        if self.batch_delay > Duration::from_secs(1) {
            return bad(
                "--batch-delay",
                format!("{:?} is too long: use at most 1s", self.batch_delay),
            );
        }
        if self.rpc_timeout < Duration::from_millis(50) {
            return bad(
                "--rpc-timeout",
                format!("{:?} is too short: use at least 50ms", self.rpc_timeout),
            );
        }
        Ok(())
    }
}

impl Args {
    /// Reads `--config` (if given) under the flags and environment already parsed.
    ///
    /// # Errors
    /// [`Error::Config`] naming `--config` when the file cannot be read or parsed.
    pub fn merge_file(self) -> Result<Args> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let file = read_file(&path)?;
        Ok(Args {
            config: self.config,
            name: self.name.or(file.name),
            data_dir: self.data_dir.or(file.data_dir),
            listen: self.listen.or(file.listen),
            advertise: self.advertise.or(file.advertise),
            http_listen: self.http_listen.or(file.http_listen),
            join: if self.join.is_empty() {
                file.join
            } else {
                self.join
            },
            init: self.init || file.init,
            bucket_bits: self.bucket_bits.or(file.bucket_bits),
            external_ips: if self.external_ips.is_empty() {
                file.external_ips
            } else {
                self.external_ips
            },
            flow_hash_key: self.flow_hash_key.or(file.flow_hash_key),
            data_ip: self.data_ip.or(file.data_ip),
            data_mac: self.data_mac.or(file.data_mac),
            lease: self.lease.or(file.lease),
            lease_margin: self.lease_margin.or(file.lease_margin),
            batch_max: self.batch_max.or(file.batch_max),
            batch_delay: self.batch_delay.or(file.batch_delay),
            heartbeat: self.heartbeat.or(file.heartbeat),
            suspect_after: self.suspect_after.or(file.suspect_after),
            rpc_timeout: self.rpc_timeout.or(file.rpc_timeout),
            data_interface: self.data_interface.or(file.data_interface),
            next_hop_mac: self.next_hop_mac.or(file.next_hop_mac),
            inside_sources: if self.inside_sources.is_empty() {
                file.inside_sources
            } else {
                self.inside_sources
            },
            commit_mode: self.commit_mode.or(file.commit_mode),
            udp_timeout: self.udp_timeout.or(file.udp_timeout),
            tcp_established_timeout: self
                .tcp_established_timeout
                .or(file.tcp_established_timeout),
            tcp_transitory_timeout: self.tcp_transitory_timeout.or(file.tcp_transitory_timeout),
            icmp_timeout: self.icmp_timeout.or(file.icmp_timeout),
            auto_promote: self.auto_promote || file.auto_promote,
            debug_synthetic_load: self.debug_synthetic_load || file.debug_synthetic_load,
        })
    }

    /// Checks every setting and fills in defaults.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first flag that is missing or wrong.
    pub fn validate(self, seed: u64) -> Result<NodeConfig> {
        let bad = |flag: &'static str, message: String| Error::Config { flag, message };
        // Checked here, while `self` is whole; reported in flag order below.
        let datapath = validate_datapath(&self);
        let name = self
            .name
            .ok_or_else(|| bad("--name", "missing: every member needs a unique name".into()))?;
        if name.is_empty()
            || name.len() > 253
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(
                "--name",
                format!("{name:?} is not valid: use 1-253 of [A-Za-z0-9._-]"),
            ));
        }
        let data_dir = self.data_dir.ok_or_else(|| {
            bad(
                "--data-dir",
                "missing: give the directory for the Raft log and state".into(),
            )
        })?;
        let listen = self.listen.ok_or_else(|| {
            bad(
                "--listen",
                "missing: give the gRPC listen address, e.g. 127.0.0.1:7001".into(),
            )
        })?;
        let advertise = match self.advertise {
            Some(a) => a,
            None if listen.ip().is_unspecified() => {
                return Err(bad(
                    "--advertise",
                    format!(
                        "needed because --listen {listen} is a wildcard address: give the host:port others dial"
                    ),
                ));
            }
            None => listen.to_string(),
        };
        if !advertise.contains(':') {
            return Err(bad(
                "--advertise",
                format!("{advertise:?} is not host:port"),
            ));
        }
        if self.init && !self.join.is_empty() {
            return Err(bad(
                "--init",
                "cannot be combined with --join: a member either starts a cluster or joins one"
                    .into(),
            ));
        }
        let bucket_bits = match self.bucket_bits {
            None => BucketBits::DEFAULT,
            Some(b) => BucketBits::new(b)
                .ok_or_else(|| bad("--bucket-bits", format!("{b} is out of range: use 4..=12")))?,
        };
        if self.init && self.external_ips.is_empty() {
            return Err(bad(
                "--external-ip",
                "missing: a new cluster (--init) needs at least one external IP".into(),
            ));
        }
        let flow_hash_key = self
            .flow_hash_key
            .as_deref()
            .map(parse_flow_hash_key)
            .transpose()
            .map_err(|m| bad("--flow-hash-key", m))?;
        if flow_hash_key.is_some() && !self.init {
            return Err(bad(
                "--flow-hash-key",
                "is only used with --init: a joining member takes the cluster's key".into(),
            ));
        }
        let datapath = datapath?;
        let mut external_ips = self.external_ips;
        let before = external_ips.len();
        external_ips.sort();
        external_ips.dedup();
        if external_ips.len() != before {
            return Err(bad("--external-ip", "lists the same address twice".into()));
        }
        // The data interface supplies whichever of the data addresses is not given.
        let from_interface = match &datapath {
            Some(d) if self.data_ip.is_none() || self.data_mac.is_none() => Some(
                interface::read(&d.iface).map_err(|e| bad("--data-interface", e.to_string()))?,
            ),
            _ => None,
        };
        let data_ip = self
            .data_ip
            .or(from_interface.map(|i| i.ipv4))
            .ok_or_else(|| {
                bad(
                    "--data-ip",
                    "missing: give the IPv4 address of the data-plane interface, or --data-interface to read it from".into(),
                )
            })?;
        let data_mac = match (self.data_mac, from_interface) {
            (Some(m), _) => m
                .parse::<MacAddr>()
                .map_err(|e| bad("--data-mac", e.to_string()))?,
            (None, Some(i)) => i.mac,
            (None, None) => {
                return Err(bad(
                    "--data-mac",
                    "missing: give the MAC of the data-plane interface (aa:bb:cc:dd:ee:ff), or --data-interface to read it from".into(),
                ));
            }
        };
        let d = Timing::default();
        let heartbeat = self.heartbeat.unwrap_or(d.heartbeat);
        let timing = Timing {
            lease: self.lease.unwrap_or(d.lease),
            lease_margin: self.lease_margin.unwrap_or(d.lease_margin),
            batch_max: self.batch_max.unwrap_or(d.batch_max),
            batch_delay: self.batch_delay.unwrap_or(d.batch_delay),
            heartbeat,
            suspect_after: self.suspect_after.unwrap_or(heartbeat * 3),
            rpc_timeout: self.rpc_timeout.unwrap_or(d.rpc_timeout),
        };
        timing.validate()?;
        Ok(NodeConfig {
            name,
            data_dir,
            listen,
            advertise,
            http_listen: self.http_listen,
            join: self.join,
            init: self.init,
            bucket_bits,
            external_ips,
            flow_hash_key,
            data_ip,
            data_mac,
            timing,
            auto_promote: self.auto_promote,
            debug_synthetic_load: self.debug_synthetic_load,
            datapath,
            seed,
        })
    }
}

/// Parses 32 hex digits into a flow-hash key (the first 8 bytes are `k0`, the next 8
/// `k1`, each little-endian, as [`FlowHashKey::from_bytes`] reads them).
fn parse_flow_hash_key(text: &str) -> std::result::Result<FlowHashKey, String> {
    let digits = text.trim();
    if digits.len() != 32 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "must be 32 hex digits (a 128-bit key), got {} characters; e.g. `openssl rand -hex 16`",
            digits.len()
        ));
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
            .map_err(|e| format!("not hex: {e}"))?;
    }
    Ok(FlowHashKey::from_bytes(bytes))
}

/// Settings that only the data path uses, by flag: given without
/// `--data-interface` they would silently do nothing.
fn datapath_only_settings(a: &Args) -> Option<&'static str> {
    [
        ("--next-hop-mac", a.next_hop_mac.is_some()),
        ("--inside-source", !a.inside_sources.is_empty()),
        ("--commit-mode", a.commit_mode.is_some()),
        ("--udp-timeout", a.udp_timeout.is_some()),
        (
            "--tcp-established-timeout",
            a.tcp_established_timeout.is_some(),
        ),
        (
            "--tcp-transitory-timeout",
            a.tcp_transitory_timeout.is_some(),
        ),
        ("--icmp-timeout", a.icmp_timeout.is_some()),
    ]
    .into_iter()
    .find_map(|(flag, given)| given.then_some(flag))
}

fn validate_datapath(a: &Args) -> Result<Option<DatapathSettings>> {
    let bad = |flag: &'static str, message: String| Error::Config { flag, message };
    let Some(iface) = a.data_interface.clone() else {
        if let Some(flag) = datapath_only_settings(a) {
            return Err(bad(
                "--data-interface",
                format!(
                    "missing: {flag} configures the data path, which runs only on a data interface (data_interface in the file)"
                ),
            ));
        }
        return Ok(None);
    };
    interface::check_name(&iface).map_err(|e| bad("--data-interface", e.to_string()))?;
    let next_hop_mac = a
        .next_hop_mac
        .as_deref()
        .map(|m| {
            let mac = m
                .parse::<MacAddr>()
                .map_err(|e| bad("--next-hop-mac", e.to_string()))?;
            // A router has a unicast MAC: a group bit or all zeros is a typo.
            if mac.0[0] & 1 != 0 || mac.0 == [0; 6] {
                return Err(bad(
                    "--next-hop-mac",
                    format!(
                        "next_hop_mac = {m:?} is not a unicast MAC: give the router's own MAC (ip neigh on the data network shows it)"
                    ),
                ));
            }
            Ok(mac)
        })
        .transpose()?;
    let inside_prefixes = if a.inside_sources.is_empty() {
        None
    } else {
        Some(
            a.inside_sources
                .iter()
                .map(|p| {
                    p.parse::<Ipv4Prefix>()
                        .map_err(|e| bad("--inside-source", format!("inside_sources: {e}")))
                })
                .collect::<Result<Vec<_>>>()?,
        )
    };
    Ok(Some(DatapathSettings {
        iface,
        next_hop_mac,
        inside_prefixes,
        commit_mode: a.commit_mode.unwrap_or_default(),
        timeouts: session_timeouts(a)?,
    }))
}

/// The session idle timeouts, each between its RFC minimum (the engine's) and an upper
/// bound that keeps idle mappings from holding ports for days. The bounds are the ones
/// the operator's Nat resource enforces.
fn session_timeouts(a: &Args) -> Result<Timeouts> {
    const DAY: Duration = Duration::from_secs(86_400);
    let d = Timeouts::default();
    let t = Timeouts {
        udp: a.udp_timeout.unwrap_or(d.udp),
        tcp_established: a.tcp_established_timeout.unwrap_or(d.tcp_established),
        tcp_transitory: a.tcp_transitory_timeout.unwrap_or(d.tcp_transitory),
        icmp: a.icmp_timeout.unwrap_or(d.icmp),
    };
    let checks = [
        (
            "--udp-timeout",
            "udp_timeout",
            t.udp,
            MIN_UDP_TIMEOUT,
            DAY,
            "RFC 4787 REQ-5",
        ),
        (
            "--tcp-established-timeout",
            "tcp_established_timeout",
            t.tcp_established,
            MIN_TCP_ESTABLISHED_TIMEOUT,
            7 * DAY,
            "RFC 5382 REQ-5",
        ),
        (
            "--tcp-transitory-timeout",
            "tcp_transitory_timeout",
            t.tcp_transitory,
            MIN_TCP_TRANSITORY_TIMEOUT,
            DAY,
            "RFC 5382 REQ-5",
        ),
        (
            "--icmp-timeout",
            "icmp_timeout",
            t.icmp,
            MIN_ICMP_TIMEOUT,
            DAY,
            "RFC 5508",
        ),
    ];
    let show = |d: Duration| humantime::format_duration(d).to_string();
    for (flag, key, value, min, max, rfc) in checks {
        let why = if value < min {
            format!(
                "is below the {} minimum of {rfc} (a NAT that forgets idle mappings early breaks applications)",
                show(min)
            )
        } else if value > max {
            format!(
                "is above {} (an idle mapping would hold its port that long)",
                show(max)
            )
        } else {
            continue;
        };
        return Err(Error::Config {
            flag,
            message: format!(
                "{key} = {:?} {why}: use a value from {:?} to {:?}",
                show(value),
                show(min),
                show(max)
            ),
        });
    }
    Ok(t)
}

fn read_file(path: &Path) -> Result<Args> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
        flag: "--config",
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    toml::from_str(&text).map_err(|e| Error::Config {
        flag: "--config",
        message: format!("{} is not a valid configuration: {e}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec![
            "mfplane-node",
            "--name",
            "n1",
            "--data-dir",
            "/tmp/x",
            "--listen",
            "127.0.0.1:7001",
            "--data-ip",
            "10.0.0.1",
            "--data-mac",
            "02:00:00:00:00:01",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    fn flag_of(r: Result<NodeConfig>) -> &'static str {
        match r {
            Err(Error::Config { flag, .. }) => flag,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_fill_in() {
        let c = args(&["--init", "--external-ip", "192.0.2.1"])
            .validate(1)
            .unwrap();
        assert_eq!(c.advertise, "127.0.0.1:7001");
        assert_eq!(c.bucket_bits, BucketBits::DEFAULT);
        assert_eq!(c.timing.batch_max, 1024);
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(flag_of(args(&["--init"]).validate(1)), "--external-ip");
        assert_eq!(
            flag_of(args(&["--bucket-bits", "13"]).validate(1)),
            "--bucket-bits"
        );
        let mut a = args(&[]);
        a.data_mac = Some("02:00".into());
        assert_eq!(flag_of(a.validate(1)), "--data-mac");
        assert_eq!(
            flag_of(args(&["--init", "--join", "a:1", "--external-ip", "192.0.2.1"]).validate(1)),
            "--init"
        );
        assert_eq!(flag_of(args(&["--lease", "100ms"]).validate(1)), "--lease");
        assert_eq!(
            flag_of(args(&["--heartbeat", "50ms", "--suspect-after", "90ms"]).validate(1)),
            "--suspect-after"
        );
        let c = args(&["--heartbeat", "50ms"]).validate(1).unwrap();
        assert_eq!(
            c.timing.suspect_after,
            Duration::from_millis(150),
            "3 heartbeats by default"
        );
        let mut a = args(&[]);
        a.name = Some("bad name".into());
        assert_eq!(flag_of(a.validate(1)), "--name");
        let mut a = args(&[]);
        a.listen = Some("0.0.0.0:7001".parse().unwrap());
        assert_eq!(flag_of(a.validate(1)), "--advertise");
    }

    #[test]
    fn flow_hash_key_is_32_hex_digits_and_only_for_a_new_cluster() {
        let init = ["--init", "--external-ip", "192.0.2.1", "--flow-hash-key"];
        let key = "000102030405060708090a0b0c0d0e0f";
        let c = args(&[&init[..], &[key]].concat()).validate(1).unwrap();
        assert_eq!(
            c.flow_hash_key,
            Some(FlowHashKey::new(
                0x0706_0504_0302_0100,
                0x0f0e_0d0c_0b0a_0908
            ))
        );
        assert_eq!(
            args(&init[..3]).validate(1).unwrap().flow_hash_key,
            None,
            "no key: the bootstrap draws one"
        );
        for bad in ["0102", "zz0102030405060708090a0b0c0d0e0f", ""] {
            let r = args(&[&init[..], &[bad]].concat()).validate(1);
            let Err(Error::Config { flag, message }) = r else {
                panic!("{bad:?} accepted");
            };
            assert_eq!(flag, "--flow-hash-key");
            assert!(message.contains("32 hex digits"), "{message}");
            assert!(
                !message.contains(bad) || bad.is_empty(),
                "the secret is not echoed: {message}"
            );
        }
        assert_eq!(
            flag_of(args(&["--flow-hash-key", key]).validate(1)),
            "--flow-hash-key"
        );
    }

    #[test]
    fn file_is_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "name = \"from-file\"\nbucket_bits = 6\nlease = \"3s\"\nexternal_ips = [\"192.0.2.7\"]\n").unwrap();
        let mut a = args(&["--bucket-bits", "5"]);
        a.config = Some(path.clone());
        let c = a.merge_file().unwrap().validate(1).unwrap();
        assert_eq!(c.name, "n1", "the flag wins over the file");
        assert_eq!(c.bucket_bits.get(), 5);
        assert_eq!(c.timing.lease, Duration::from_secs(3));
        assert_eq!(c.external_ips, vec![Ipv4Addr::new(192, 0, 2, 7)]);

        std::fs::write(&path, "nmae = \"typo\"\n").unwrap();
        let mut a = args(&[]);
        a.config = Some(path);
        match a.merge_file() {
            Err(Error::Config {
                flag: "--config",
                message,
            }) => assert!(message.contains("nmae"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    fn message_of(r: Result<NodeConfig>) -> (&'static str, String) {
        match r {
            Err(Error::Config { flag, message }) => (flag, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    fn datapath(c: &NodeConfig) -> &DatapathSettings {
        c.datapath.as_ref().expect("the data path is configured")
    }

    #[test]
    fn data_path_keys_from_flags() {
        let c = args(&[
            "--data-interface",
            "lo",
            "--next-hop-mac",
            "02:00:00:00:00:fe",
            "--inside-source",
            "10.0.0.0/8,172.16.0.0/12",
            "--inside-source",
            "100.64.0.0/10",
            "--commit-mode",
            "strict",
            "--udp-timeout",
            "10m",
            "--tcp-established-timeout",
            "3h",
            "--tcp-transitory-timeout",
            "300s",
            "--icmp-timeout",
            "90s",
        ])
        .validate(1)
        .unwrap();
        let d = datapath(&c);
        assert_eq!(d.iface, "lo");
        assert_eq!(d.next_hop_mac, Some(MacAddr([2, 0, 0, 0, 0, 0xfe])));
        let prefixes: Vec<String> = d
            .inside_prefixes
            .iter()
            .flatten()
            .map(ToString::to_string)
            .collect();
        assert_eq!(prefixes, ["10.0.0.0/8", "172.16.0.0/12", "100.64.0.0/10"]);
        assert_eq!(d.commit_mode, CommitMode::Strict);
        assert_eq!(
            d.timeouts,
            Timeouts {
                udp: Duration::from_secs(600),
                tcp_established: Duration::from_secs(3 * 3600),
                tcp_transitory: Duration::from_secs(300),
                icmp: Duration::from_secs(90),
            }
        );
        assert_eq!(
            c.data_ip,
            Ipv4Addr::new(10, 0, 0, 1),
            "--data-ip wins over the interface"
        );
    }

    #[test]
    fn data_path_defaults_and_old_flag_names() {
        let c = args(&["--data-iface", "lo", "--inside-prefix", "10.0.0.0/8"])
            .validate(1)
            .unwrap();
        let d = datapath(&c);
        assert_eq!(d.iface, "lo");
        assert_eq!(d.inside_prefixes.as_ref().map(Vec::len), Some(1));
        assert_eq!(d.commit_mode, CommitMode::Optimistic);
        assert_eq!(d.timeouts, Timeouts::default());
        assert_eq!(d.next_hop_mac, None, "resolved from the gateway at start");
        assert!(args(&[]).validate(1).unwrap().datapath.is_none());
    }

    #[test]
    fn the_data_interface_supplies_the_data_address() {
        let mut a = args(&["--data-interface", "lo"]);
        a.data_ip = None;
        a.data_mac = None;
        let c = a.validate(1).unwrap();
        assert_eq!(c.data_ip, Ipv4Addr::LOCALHOST);
        assert_eq!(c.data_mac, MacAddr([0; 6]));

        let mut a = args(&["--data-interface", "mfp-none0"]);
        a.data_mac = None;
        let (flag, message) = message_of(a.validate(1));
        assert_eq!(flag, "--data-interface");
        assert!(
            message.contains("mfp-none0") && message.contains("present: "),
            "{message}"
        );

        let mut a = args(&[]);
        a.data_ip = None;
        let (flag, message) = message_of(a.validate(1));
        assert_eq!(flag, "--data-ip");
        assert!(message.contains("--data-interface"), "{message}");

        let (flag, message) = message_of(args(&["--data-interface", "a/b"]).validate(1));
        assert_eq!(flag, "--data-interface");
        assert!(message.contains("not an interface name"), "{message}");
    }

    #[test]
    fn timeouts_out_of_bounds_name_the_key_and_the_range() {
        let cases = [
            ("--udp-timeout", "udp_timeout", "119s", "2m"),
            ("--udp-timeout", "udp_timeout", "0s", "2m"),
            ("--udp-timeout", "udp_timeout", "25h", "1day"),
            (
                "--tcp-established-timeout",
                "tcp_established_timeout",
                "2h",
                "2h 4m",
            ),
            (
                "--tcp-established-timeout",
                "tcp_established_timeout",
                "8days",
                "7days",
            ),
            (
                "--tcp-transitory-timeout",
                "tcp_transitory_timeout",
                "239s",
                "4m",
            ),
            ("--icmp-timeout", "icmp_timeout", "59s", "1m"),
            ("--icmp-timeout", "icmp_timeout", "2days", "1day"),
        ];
        for (flag, key, value, bound) in cases {
            let (got, message) =
                message_of(args(&["--data-interface", "lo", flag, value]).validate(1));
            assert_eq!(got, flag, "{value}");
            assert!(
                message.starts_with(key)
                    && message.contains(bound)
                    && message.contains("use a value from"),
                "{flag} {value}: {message}"
            );
        }
        assert!(
            Args::try_parse_from(["mfplane-node", "--udp-timeout", "soon"]).is_err(),
            "not a duration"
        );
    }

    #[test]
    fn bad_commit_mode_and_inside_source_are_named() {
        let e = Args::try_parse_from(["mfplane-node", "--commit-mode", "lazy"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--commit-mode") && e.contains("optimistic") && e.contains("strict"),
            "{e}"
        );
        let (flag, message) = message_of(
            args(&["--data-interface", "lo", "--inside-source", "10.0.0/8"]).validate(1),
        );
        assert_eq!(flag, "--inside-source");
        assert!(
            message.contains("inside_sources") && message.contains("10.0.0/8"),
            "{message}"
        );
    }

    #[test]
    fn the_next_hop_must_be_a_unicast_mac() {
        for bad in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "02:00",
        ] {
            let (flag, message) =
                message_of(args(&["--data-interface", "lo", "--next-hop-mac", bad]).validate(1));
            assert_eq!(flag, "--next-hop-mac", "{bad}");
            assert!(!message.is_empty());
        }
    }

    #[test]
    fn data_path_keys_need_the_data_interface() {
        for extra in [
            &["--commit-mode", "strict"][..],
            &["--udp-timeout", "5m"],
            &["--tcp-established-timeout", "3h"],
            &["--tcp-transitory-timeout", "5m"],
            &["--icmp-timeout", "1m"],
            &["--inside-source", "10.0.0.0/8"],
            &["--next-hop-mac", "02:00:00:00:00:fe"],
        ] {
            let (flag, message) = message_of(args(extra).validate(1));
            assert_eq!(flag, "--data-interface", "{extra:?}");
            assert!(message.contains(extra[0]), "{extra:?}: {message}");
        }
    }

    fn from_file(text: &str, extra: &[&str]) -> Result<NodeConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        let mut a = args(extra);
        a.config = Some(path);
        a.merge_file()?.validate(1)
    }

    #[test]
    fn data_path_keys_from_the_file_under_the_flags() {
        let text = r#"
inside_sources = ["10.0.0.0/8"]
commit_mode = "strict"
udp_timeout = "300s"
tcp_established_timeout = "7440s"
tcp_transitory_timeout = "240s"
icmp_timeout = "60s"
data_interface = "lo"
next_hop_mac = "02:00:00:00:00:fe"
"#;
        let c = from_file(text, &[]).unwrap();
        let d = datapath(&c);
        assert_eq!(d.iface, "lo");
        assert_eq!(d.commit_mode, CommitMode::Strict);
        assert_eq!(d.timeouts, Timeouts::default());
        assert_eq!(d.inside_prefixes.as_ref().map(Vec::len), Some(1));

        let c = from_file(
            text,
            &[
                "--commit-mode",
                "optimistic",
                "--udp-timeout",
                "10m",
                "--inside-source",
                "192.168.0.0/16,10.0.0.0/8",
            ],
        )
        .unwrap();
        let d = datapath(&c);
        assert_eq!(d.commit_mode, CommitMode::Optimistic, "the flag wins");
        assert_eq!(d.timeouts.udp, Duration::from_secs(600));
        assert_eq!(d.timeouts.icmp, Duration::from_secs(60), "from the file");
        assert_eq!(d.inside_prefixes.as_ref().map(Vec::len), Some(2));

        // The file's old spellings still work.
        let c = from_file(
            "data_iface = \"lo\"\ninside_prefixes = [\"10.0.0.0/8\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(datapath(&c).iface, "lo");
    }

    #[test]
    fn bad_file_values_name_the_key() {
        for (text, key) in [
            (
                "data_interface = \"lo\"\ncommit_mode = \"lazy\"\n",
                "commit_mode",
            ),
            (
                "data_interface = \"lo\"\nudp_timeout = \"soon\"\n",
                "udp_timeout",
            ),
            (
                "data_interface = \"lo\"\nicmp_timeout = 60\n",
                "icmp_timeout",
            ),
            ("data_interface = 5\n", "data_interface"),
            ("inside_sources = \"10.0.0.0/8\"\n", "inside_sources"),
            ("udp_timeuot = \"5m\"\n", "udp_timeuot"),
        ] {
            let (flag, message) = message_of(from_file(text, &[]));
            assert_eq!(flag, "--config", "{text}");
            assert!(message.contains(key), "{text}: {message}");
        }
        let (flag, message) = message_of(from_file(
            "data_interface = \"lo\"\ntcp_transitory_timeout = \"1m\"\n",
            &[],
        ));
        assert_eq!(flag, "--tcp-transitory-timeout");
        assert!(message.starts_with("tcp_transitory_timeout"), "{message}");
    }
}

//! Daemon configuration: command-line flags, environment variables and an optional
//! TOML file, merged in that order of precedence and validated into a [`NodeConfig`].
//!
//! Every setting can come from all three places so that the same binary runs by hand,
//! in a systemd unit and in a Kubernetes pod. Validation names the flag that is wrong,
//! because that is what the operator has to change.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use mfplane_core::BucketBits;
use mfplane_dataplane::engine::Ipv4Prefix;
use mfplane_raft_store::MacAddr;
use serde::Deserialize;

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
    /// Raft heartbeat interval; elections time out after 3-6 heartbeats.
    #[arg(long, env = "MFPLANE_HEARTBEAT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub heartbeat: Option<Duration>,
    /// Timeout of one RPC to another member (connects, forwards, admin calls).
    #[arg(long, env = "MFPLANE_RPC_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub rpc_timeout: Option<Duration>,
    /// Data-plane interface whose steered frames this member translates (`AF_PACKET`).
    /// Without it the member runs the control plane only.
    #[arg(long, env = "MFPLANE_DATA_IFACE")]
    pub data_iface: Option<String>,
    /// MAC of the next hop that every translated frame is sent to (the router on the
    /// data network); required with `--data-iface`.
    #[arg(long, env = "MFPLANE_NEXT_HOP_MAC")]
    pub next_hop_mac: Option<String>,
    /// Inside prefixes that may open sessions, e.g. 10.0.0.0/8 (repeatable; default:
    /// RFC 1918 and RFC 6598 space).
    #[arg(
        long = "inside-prefix",
        env = "MFPLANE_INSIDE_PREFIXES",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub inside_prefixes: Vec<String>,
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
    pub data_ip: Ipv4Addr,
    pub data_mac: MacAddr,
    pub timing: Timing,
    pub auto_promote: bool,
    pub debug_synthetic_load: bool,
    /// The packet data path, when `--data-iface` is given.
    pub datapath: Option<DatapathSettings>,
    /// Seeds openraft's RNG (election jitter); the daemon uses an OS-random seed, the
    /// simulation a fixed one.
    pub seed: u64,
}

/// Where the data path reads and sends frames, and what it translates.
#[derive(Debug, Clone)]
pub struct DatapathSettings {
    pub iface: String,
    pub next_hop_mac: MacAddr,
    /// `None`: the engine's default inside space.
    pub inside_prefixes: Option<Vec<Ipv4Prefix>>,
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
            data_ip: self.data_ip.or(file.data_ip),
            data_mac: self.data_mac.or(file.data_mac),
            lease: self.lease.or(file.lease),
            lease_margin: self.lease_margin.or(file.lease_margin),
            batch_max: self.batch_max.or(file.batch_max),
            batch_delay: self.batch_delay.or(file.batch_delay),
            heartbeat: self.heartbeat.or(file.heartbeat),
            rpc_timeout: self.rpc_timeout.or(file.rpc_timeout),
            data_iface: self.data_iface.or(file.data_iface),
            next_hop_mac: self.next_hop_mac.or(file.next_hop_mac),
            inside_prefixes: if self.inside_prefixes.is_empty() {
                file.inside_prefixes
            } else {
                self.inside_prefixes
            },
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
        let mut external_ips = self.external_ips;
        let before = external_ips.len();
        external_ips.sort();
        external_ips.dedup();
        if external_ips.len() != before {
            return Err(bad("--external-ip", "lists the same address twice".into()));
        }
        let data_ip = self.data_ip.ok_or_else(|| {
            bad(
                "--data-ip",
                "missing: give the IPv4 address of the data-plane interface".into(),
            )
        })?;
        let data_mac = match self.data_mac {
            None => {
                return Err(bad(
                    "--data-mac",
                    "missing: give the MAC of the data-plane interface (aa:bb:cc:dd:ee:ff)".into(),
                ));
            }
            Some(m) => m
                .parse::<MacAddr>()
                .map_err(|e| bad("--data-mac", e.to_string()))?,
        };
        let d = Timing::default();
        let timing = Timing {
            lease: self.lease.unwrap_or(d.lease),
            lease_margin: self.lease_margin.unwrap_or(d.lease_margin),
            batch_max: self.batch_max.unwrap_or(d.batch_max),
            batch_delay: self.batch_delay.unwrap_or(d.batch_delay),
            heartbeat: self.heartbeat.unwrap_or(d.heartbeat),
            rpc_timeout: self.rpc_timeout.unwrap_or(d.rpc_timeout),
        };
        timing.validate()?;
        let datapath =
            validate_datapath(self.data_iface, self.next_hop_mac, &self.inside_prefixes)?;
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

fn validate_datapath(
    iface: Option<String>,
    next_hop_mac: Option<String>,
    inside: &[String],
) -> Result<Option<DatapathSettings>> {
    let bad = |flag: &'static str, message: String| Error::Config { flag, message };
    let Some(iface) = iface else {
        if next_hop_mac.is_some() || !inside.is_empty() {
            return Err(bad(
                "--data-iface",
                "missing: --next-hop-mac and --inside-prefix configure the data path, which needs an interface".into(),
            ));
        }
        return Ok(None);
    };
    if iface.is_empty() || iface.len() > 15 || iface.contains('/') {
        return Err(bad(
            "--data-iface",
            format!("{iface:?} is not an interface name"),
        ));
    }
    let next_hop_mac = next_hop_mac
        .ok_or_else(|| {
            bad(
                "--next-hop-mac",
                "missing: the data path needs the MAC of the router translated frames go to".into(),
            )
        })?
        .parse::<MacAddr>()
        .map_err(|e| bad("--next-hop-mac", e.to_string()))?;
    let inside_prefixes = if inside.is_empty() {
        None
    } else {
        Some(
            inside
                .iter()
                .map(|p| {
                    p.parse::<Ipv4Prefix>()
                        .map_err(|e| bad("--inside-prefix", e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?,
        )
    };
    Ok(Some(DatapathSettings {
        iface,
        next_hop_mac,
        inside_prefixes,
    }))
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
        let mut a = args(&[]);
        a.name = Some("bad name".into());
        assert_eq!(flag_of(a.validate(1)), "--name");
        let mut a = args(&[]);
        a.listen = Some("0.0.0.0:7001".parse().unwrap());
        assert_eq!(flag_of(a.validate(1)), "--advertise");
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
}

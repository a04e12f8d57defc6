//! The agent's settings: command-line flags over the `--config` file, validated into
//! an [`AgentConfig`].
//!
//! Every setting can come from a flag or from the file's key of the same name (`_`
//! for `-`; `--attach` is `[[interfaces]]`, `--inside-prefix` is `inside_sources`). A
//! flag given on the command line wins over the file; for a list (`--attach`,
//! `--inside-prefix`, `--cluster`, `--external-ip`) the flag's list replaces the
//! file's. Values are typed as they are parsed, so a bad value fails before anything
//! is loaded or attached, with a message that names the flag or the key.
//!
//! Interface sides: the program classifies a packet by its addresses (from an
//! inside prefix to outside them: outbound; to an external IP: inbound), not by the
//! interface it arrived on, so every attached interface runs the same program. The
//! side an interface is declared with (`inside`, `outside`, `both`) records how the
//! machine is wired: it picks the default fabric, shows in the logs and `/readyz`,
//! and `outside` turns on the one check that depends on the interface: a packet from
//! an inside prefix arriving on an outside-only interface is spoofed (an inside
//! address cannot come from the internet) and is dropped and counted, instead of
//! taking a NAT session. `inside` and `both` accept everything.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, ValueEnum};
use mfplane_core::BucketBits;
use mfplane_core::lb_maps::{
    Ipv4Prefix, LB_FLAG_REDIRECT_ON_FABRIC, LbSettings, MAX_INSIDE_PREFIXES, MAX_OUTSIDE_IFACES,
    SteerMode,
};

use crate::config_file::{ConfigFile, parse_interface_name};
use crate::datapath::XdpModeChoice;
use crate::expect::ClusterExpectation;
use crate::iface::Interface;
use crate::table::MacAddr;

/// Where `/healthz`, `/readyz` and `/metrics` are served when neither `--http-listen`
/// nor the file says.
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// mfplane load balancer: steers NAT traffic to the worker that owns its bucket.
///
/// Every setting can also come from the `--config` file (key = flag name with `_` for
/// `-`); flags win over the file.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "mfplane-lb", version)]
pub struct Args {
    /// TOML file with any of these settings (flags win over it). If it does not exist
    /// yet, the agent waits for it to appear.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Interfaces to attach the XDP program to, each with the traffic it carries:
    /// `inside`, `outside` or `both` (the default). Comma-separated or repeated.
    /// File: `[[interfaces]]` with `name` and `side`.
    #[arg(long, value_delimiter = ',', value_name = "IF[:SIDE][,...]", value_parser = parse_attach)]
    pub attach: Vec<AttachSpec>,

    /// XDP attach mode: `auto` tries native and falls back to generic with a warning
    /// [default: auto].
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeChoice>,

    /// The interface towards the workers; steered packets leave through it. Default:
    /// the only attached interface, or the only one whose side is `both`.
    #[arg(long, value_name = "IF", value_parser = parse_interface_name)]
    pub fabric: Option<String>,

    /// The LB's address on the fabric (outer source in ipip mode). Default: the first
    /// IPv4 address of the fabric interface.
    #[arg(long, value_name = "IPV4")]
    pub fabric_ip: Option<Ipv4Addr>,

    /// ipip mode: MAC of the fabric's next-hop router. Default: each owner's own MAC.
    #[arg(long, value_name = "MAC", value_parser = MacAddr::from_str)]
    pub next_hop_mac: Option<MacAddr>,

    /// An inside prefix: traffic from it to outside it is NATed (repeatable).
    /// File: `inside_sources`.
    #[arg(
        long = "inside-prefix",
        visible_alias = "inside-source",
        value_name = "CIDR"
    )]
    pub inside_prefixes: Vec<Ipv4Cidr>,

    /// How steered packets reach their owner [default: l2].
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,

    /// mfplane-node gRPC endpoints (Steering.Watch), comma-separated or repeated.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT[,...]", value_parser = parse_endpoint)]
    pub cluster: Vec<String>,

    /// The cluster's bucket bits, if known: a steering table with other bits is refused
    /// (the LB would be following another cluster).
    #[arg(long, value_name = "4..12", value_parser = parse_bucket_bits)]
    pub bucket_bits: Option<BucketBits>,

    /// The cluster's external IPs, if known (comma-separated or repeated): a steering
    /// table with other IPs is refused. File: `external_ips`.
    #[arg(long = "external-ip", value_delimiter = ',', value_name = "IPV4[,...]")]
    pub external_ips: Vec<Ipv4Addr>,

    /// Where to serve `/healthz`, `/readyz` and Prometheus `/metrics`
    /// [default: 127.0.0.1:9464]. `--metrics-listen` is the same flag.
    #[arg(long, visible_alias = "metrics-listen", value_name = "ADDR:PORT")]
    pub http_listen: Option<SocketAddr>,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ModeArg {
    /// Rewrite MAC addresses; owners share the L2 fabric.
    #[default]
    L2,
    /// IP-in-IP encapsulation to the owner's IPv4 address.
    Ipip,
}

impl From<ModeArg> for SteerMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::L2 => SteerMode::L2,
            ModeArg::Ipip => SteerMode::IpIp,
        }
    }
}

/// Which traffic an attached interface carries (how the machine is wired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Side {
    /// Towards the inside hosts: outbound traffic arrives here.
    Inside,
    /// Towards the internet: return traffic to the external IPs arrives here.
    Outside,
    /// Both (a one-armed LB).
    #[default]
    Both,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Inside => "inside",
            Side::Outside => "outside",
            Side::Both => "both",
        })
    }
}

/// An interface to attach to, by name, and its side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachSpec {
    pub name: String,
    pub side: Side,
}

/// An IPv4 prefix written `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not an IPv4 prefix: write it as a.b.c.d/len, e.g. 10.0.0.0/24");
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(format!("{s:?}: prefix length {len} is over 32"));
        }
        Ok(Ipv4Cidr { addr, len })
    }
}

impl Ipv4Cidr {
    fn prefix(self) -> Ipv4Prefix {
        // Length validated in `from_str`.
        Ipv4Prefix::new(u32::from(self.addr), self.len).unwrap_or_default()
    }
}

/// One of `T`'s values by its lower-case name; the error lists them all.
pub(crate) fn parse_choice<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_owned())
            .collect();
        format!("{s:?} is not one of {}", names.join(", "))
    })
}

/// An XDP mode; `offload` (which the operator's Node objects may name) gets a reason.
pub(crate) fn parse_xdp_mode(s: &str) -> Result<XdpModeChoice, String> {
    if s == "offload" {
        return Err(
            "\"offload\" is not supported: the LB program uses per-CPU maps and XDP \
             redirect, which a NIC cannot run; use native (or generic where the driver \
             lacks XDP)"
                .to_owned(),
        );
    }
    parse_choice(s)
}

/// `IF` or `IF:SIDE`.
fn parse_attach(s: &str) -> Result<AttachSpec, String> {
    let (name, side) = match s.split_once(':') {
        Some((name, side)) => (name, parse_choice::<Side>(side)?),
        None => (s, Side::Both),
    };
    Ok(AttachSpec {
        name: parse_interface_name(name)?,
        side,
    })
}

pub(crate) fn parse_bucket_bits(s: &str) -> Result<BucketBits, String> {
    s.parse::<u8>()
        .ok()
        .and_then(BucketBits::new)
        .ok_or_else(|| format!("{s} is not a bucket bit count: use 4 to 12 (the cluster's value)"))
}

pub(crate) fn parse_endpoint(s: &str) -> Result<String, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} has no port: write host:port, e.g. 10.0.0.1:7000"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has no host: write host:port"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{s:?}: port {port:?} is not a number 0-65535"))?;
    Ok(s.to_owned())
}

/// A setting that parsed but cannot be used (or is missing). Names the flag or the
/// file key it came from.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct SettingError {
    /// `--flag`, or `key in <file>`.
    pub setting: String,
    pub reason: String,
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone)]
enum Origin<'a> {
    Flag(&'static str),
    File { key: String, path: &'a ConfigFile },
}

impl Origin<'_> {
    fn error(&self, reason: impl Into<String>) -> SettingError {
        SettingError {
            setting: self.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "--{flag}"),
            Origin::File { key, path } => write!(f, "{key} in {}", path.path.display()),
        }
    }
}

/// An interface the program is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub iface: Interface,
    pub side: Side,
}

/// The validated configuration, resolved against this machine's interfaces.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub attach: Vec<Attachment>,
    pub xdp_mode: XdpModeChoice,
    pub fabric: Interface,
    pub settings: LbSettings,
    /// gRPC endpoints as URIs (`http://host:port`).
    pub cluster: Vec<String>,
    /// What the cluster's tables must agree with.
    pub expect: ClusterExpectation,
    pub http_listen: SocketAddr,
}

/// A flag's value if given, else the file's, with where it came from.
fn pick<'a, T: Clone>(
    flag: Option<&T>,
    flag_name: &'static str,
    file: Option<&'a ConfigFile>,
    from_file: impl FnOnce(&'a ConfigFile) -> Option<T>,
    key: &str,
) -> Option<(T, Origin<'a>)> {
    if let Some(v) = flag {
        return Some((v.clone(), Origin::Flag(flag_name)));
    }
    let f = file?;
    from_file(f).map(|v| {
        (
            v,
            Origin::File {
                key: key.to_owned(),
                path: f,
            },
        )
    })
}

/// A list flag if given (it replaces the file's list), else the file's list.
fn pick_list<'a, T: Clone + 'a>(
    flag: &[T],
    flag_name: &'static str,
    file: Option<&'a ConfigFile>,
    from_file: impl FnOnce(&'a ConfigFile) -> &'a [T],
    key: &str,
) -> Option<(Vec<T>, Origin<'a>)> {
    let flag = (!flag.is_empty()).then(|| flag.to_vec());
    pick(
        flag.as_ref(),
        flag_name,
        file,
        |f| {
            let v = from_file(f);
            (!v.is_empty()).then(|| v.to_vec())
        },
        key,
    )
}

fn missing(flag: &'static str, key: &str, what: &str) -> SettingError {
    SettingError {
        setting: format!("--{flag}"),
        reason: format!("missing: {what}; give --{flag} or set {key} in the --config file"),
    }
}

impl Args {
    /// Resolves the flags alone (no `--config` file).
    ///
    /// # Errors
    /// As [`Args::resolve_with`].
    pub fn resolve(&self) -> Result<AgentConfig, SettingError> {
        self.resolve_with(None)
    }

    /// Resolves the flags over `file`: looks the interfaces up and builds the program
    /// settings.
    ///
    /// # Errors
    /// A [`SettingError`] naming the flag or file key whose value cannot be used, or the
    /// setting that is missing.
    pub fn resolve_with(&self, file: Option<&ConfigFile>) -> Result<AgentConfig, SettingError> {
        self.resolve_using(file, &Interface::by_name)
    }

    /// [`Args::resolve_with`] with `lookup` in place of this machine's interfaces: the
    /// operator-contract tests resolve files written for other machines.
    ///
    /// # Errors
    /// As [`Args::resolve_with`].
    pub fn resolve_using(
        &self,
        file: Option<&ConfigFile>,
        lookup: &dyn Fn(&str) -> crate::Result<Interface>,
    ) -> Result<AgentConfig, SettingError> {
        let (specs, origin) = pick_list(
            &self.attach,
            "attach",
            file,
            |f| &f.interfaces,
            "interfaces",
        )
        .ok_or_else(|| {
            missing(
                "attach",
                "[[interfaces]]",
                "the interfaces to attach to (IF[:inside|outside|both])",
            )
        })?;
        let mut attach: Vec<Attachment> = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            // Errors name the entry: `interfaces[1].name in <file>`.
            let at = match &origin {
                Origin::Flag(_) => origin.clone(),
                Origin::File { path, .. } => Origin::File {
                    key: format!("interfaces[{i}].name"),
                    path,
                },
            };
            if attach.iter().any(|a| a.iface.name == spec.name) {
                return Err(at.error(format!(
                    "{:?} is listed twice: list each interface once",
                    spec.name
                )));
            }
            let iface = lookup(&spec.name).map_err(|e| at.error(e.to_string()))?;
            attach.push(Attachment {
                iface,
                side: spec.side,
            });
        }

        let fabric = match pick(
            self.fabric.as_ref(),
            "fabric",
            file,
            |f| f.fabric.clone(),
            "fabric",
        ) {
            Some((name, origin)) => lookup(&name).map_err(|e| origin.error(e.to_string()))?,
            None => default_fabric(&attach)?,
        };

        let mode = pick(self.mode.as_ref(), "mode", file, |f| f.mode, "mode")
            .map(|(m, _)| m)
            .unwrap_or_default();
        let xdp_mode = pick(
            self.xdp_mode.as_ref(),
            "xdp-mode",
            file,
            |f| f.xdp_mode,
            "xdp_mode",
        )
        .map(|(m, _)| m)
        .unwrap_or_default();
        let fabric_ip = match (
            pick(
                self.fabric_ip.as_ref(),
                "fabric-ip",
                file,
                |f| f.fabric_ip,
                "fabric_ip",
            ),
            fabric.ipv4,
            mode,
        ) {
            (Some((ip, _)), _, _) | (None, Some(ip), _) => ip,
            (None, None, ModeArg::L2) => Ipv4Addr::UNSPECIFIED,
            (None, None, ModeArg::Ipip) => {
                return Err(SettingError {
                    setting: "--fabric-ip".to_owned(),
                    reason: format!(
                        "ipip mode needs the LB's fabric address and {} has no IPv4 address: \
                         give --fabric-ip or set fabric_ip in the --config file",
                        fabric.name
                    ),
                });
            }
        };
        let next_hop_mac = pick(
            self.next_hop_mac.as_ref(),
            "next-hop-mac",
            file,
            |f| f.next_hop_mac,
            "next_hop_mac",
        )
        .map(|(m, _)| m);

        let (inside, inside_origin) = pick_list(
            &self.inside_prefixes,
            "inside-prefix",
            file,
            |f| &f.inside_sources,
            "inside_sources",
        )
        .ok_or_else(|| {
            missing(
                "inside-prefix",
                "inside_sources",
                "the inside prefixes whose traffic is NATed",
            )
        })?;
        if inside.len() > MAX_INSIDE_PREFIXES {
            return Err(inside_origin.error(format!(
                "{} prefixes given; at most {MAX_INSIDE_PREFIXES} are supported (aggregate them)",
                inside.len()
            )));
        }

        let (cluster, _) = pick_list(&self.cluster, "cluster", file, |f| &f.cluster, "cluster")
            .ok_or_else(|| {
                missing(
                    "cluster",
                    "cluster",
                    "the mfplane-node gRPC addresses to follow the steering table from",
                )
            })?;

        let expect = ClusterExpectation {
            bucket_bits: pick(
                self.bucket_bits.as_ref(),
                "bucket-bits",
                file,
                |f| f.bucket_bits,
                "bucket_bits",
            )
            .map(|(b, _)| b),
            external_ips: pick_list(
                &self.external_ips,
                "external-ip",
                file,
                |f| &f.external_ips,
                "external_ips",
            )
            .map(|(ips, _)| ips.into_iter().collect::<BTreeSet<_>>()),
        };
        let http_listen = pick(
            self.http_listen.as_ref(),
            "http-listen",
            file,
            |f| f.http_listen,
            "http_listen",
        )
        .map_or(DEFAULT_HTTP_LISTEN, |(a, _)| a);

        let mut settings = LbSettings {
            mode: SteerMode::from(mode) as u32,
            fabric_ifindex: fabric.index,
            fabric_ip: u32::from(fabric_ip),
            inside_count: inside.len() as u32,
            fabric_mac: fabric.mac.0,
            next_hop_mac: next_hop_mac.unwrap_or_default().0,
            ..LbSettings::default()
        };
        if fabric.driver.as_deref() == Some("veth") {
            // veth's XDP_TX only wakes a peer that runs XDP itself; redirect instead.
            settings.flags |= LB_FLAG_REDIRECT_ON_FABRIC;
        }
        let outside: Vec<u32> = attach
            .iter()
            .filter(|a| a.side == Side::Outside)
            .map(|a| a.iface.index)
            .collect();
        if outside.len() > MAX_OUTSIDE_IFACES {
            return Err(origin.error(format!(
                "{} interfaces have side outside; at most {MAX_OUTSIDE_IFACES} can be \
                 (bond them, or declare some both)",
                outside.len()
            )));
        }
        for (slot, ifindex) in settings.outside_ifindex.iter_mut().zip(outside) {
            *slot = ifindex;
        }
        for (slot, cidr) in settings.inside.iter_mut().zip(&inside) {
            *slot = cidr.prefix();
        }
        Ok(AgentConfig {
            attach,
            xdp_mode,
            fabric,
            settings,
            cluster: cluster.iter().map(|e| format!("http://{e}")).collect(),
            expect,
            http_listen,
        })
    }
}

/// The fabric when none is named: the only attached interface (a one-armed LB), or
/// the only one carrying both sides (a two-armed LB whose workers sit behind it).
fn default_fabric(attach: &[Attachment]) -> Result<Interface, SettingError> {
    if let [only] = attach {
        return Ok(only.iface.clone());
    }
    let both: Vec<&Attachment> = attach.iter().filter(|a| a.side == Side::Both).collect();
    if let [only] = both.as_slice() {
        return Ok(only.iface.clone());
    }
    let names: Vec<String> = attach
        .iter()
        .map(|a| format!("{} ({})", a.iface.name, a.side))
        .collect();
    Err(SettingError {
        setting: "--fabric".to_owned(),
        reason: format!(
            "missing: the interface towards the workers; the LB attaches to {} and \
             {} of them has side \"both\", so none is the obvious one: give --fabric or \
             set fabric in the --config file",
            names.join(", "),
            if both.is_empty() {
                "none"
            } else {
                "more than one"
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::try_parse_from(std::iter::once("mfplane-lb").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    const GOOD: &[&str] = &[
        "--attach",
        "lo",
        "--fabric",
        "lo",
        "--inside-prefix",
        "10.0.0.0/8",
        "--cluster",
        "127.0.0.1:7000,localhost:7001",
        "--mode",
        "ipip",
    ];

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("/etc/mfplane/lb-m1.toml"), text).unwrap()
    }

    #[test]
    fn good_flags_resolve() {
        let a = parse(GOOD).unwrap();
        assert_eq!(a.cluster.len(), 2);
        let c = a.resolve().unwrap();
        assert_eq!(c.cluster[1], "http://localhost:7001");
        assert_eq!(c.settings.mode, SteerMode::IpIp as u32);
        assert_eq!(c.settings.fabric_ip, u32::from(Ipv4Addr::LOCALHOST));
        assert!(c.settings.is_inside(0x0a01_0203));
        assert!(!c.settings.is_inside(0x0b01_0203));
        assert_eq!(c.attach[0].side, Side::Both);
        assert_eq!(c.http_listen, DEFAULT_HTTP_LISTEN);
        assert_eq!(c.expect, ClusterExpectation::default());
        assert_eq!(c.xdp_mode, XdpModeChoice::Auto);
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let mut v = GOOD.to_vec();
        v[5] = "10.0.0.0/33";
        let e = parse(&v).unwrap_err();
        assert!(
            e.contains("--inside-prefix") && e.contains("over 32"),
            "{e}"
        );
        let mut v = GOOD.to_vec();
        v[7] = "127.0.0.1";
        let e = parse(&v).unwrap_err();
        assert!(e.contains("--cluster") && e.contains("no port"), "{e}");
        let mut v = GOOD.to_vec();
        v[9] = "vxlan";
        let e = parse(&v).unwrap_err();
        assert!(e.contains("--mode"), "{e}");
        let mut v = GOOD.to_vec();
        v[3] = "mfp-nope0";
        let e = parse(&v).unwrap().resolve().unwrap_err().to_string();
        assert!(e.starts_with("--fabric:") && e.contains("mfp-nope0"), "{e}");
        let mut v = GOOD.to_vec();
        v.extend(["--xdp-mode", "turbo"]);
        assert!(parse(&v).unwrap_err().contains("--xdp-mode"));
        let e = parse(&GOOD[2..])
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--attach: missing"), "{e}");
        let e = parse(&["--attach", "lo:north"]).unwrap_err();
        assert!(
            e.contains("--attach") && e.contains("inside, outside, both"),
            "{e}"
        );
        let e = parse(&["--bucket-bits", "3"]).unwrap_err();
        assert!(e.contains("--bucket-bits") && e.contains("4 to 12"), "{e}");
        let mut v = GOOD.to_vec();
        v.extend(["--attach", "lo:inside"]);
        let e = parse(&v).unwrap().resolve().unwrap_err().to_string();
        assert!(e.starts_with("--attach:") && e.contains("twice"), "{e}");
    }

    #[test]
    fn attach_takes_a_side() {
        let a = parse(&["--attach", "lo:inside", "--inside-source", "10.0.0.0/8"]).unwrap();
        assert_eq!(
            a.attach,
            vec![AttachSpec {
                name: "lo".into(),
                side: Side::Inside
            }]
        );
        assert_eq!(a.inside_prefixes.len(), 1, "--inside-source is an alias");
        let a = parse(&["--metrics-listen", "127.0.0.1:1"]).unwrap();
        assert_eq!(
            a.http_listen,
            Some("127.0.0.1:1".parse().unwrap()),
            "--metrics-listen is an alias"
        );
    }

    /// The operator's file alone is a complete configuration.
    #[test]
    fn file_alone_resolves() {
        let f = file(
            r#"
mode = "ipip"
xdp_mode = "generic"
bucket_bits = 8
external_ips = ["203.0.113.10"]
inside_sources = ["10.0.0.0/8"]
cluster = ["demo-0.demo.default.svc:7700", "demo-1.demo.default.svc:7700"]
fabric_ip = "192.0.2.7"
next_hop_mac = "02:00:00:00:00:09"
http_listen = "127.0.0.1:9190"
[[interfaces]]
name = "lo"
side = "inside"
"#,
        );
        let c = Args::default().resolve_with(Some(&f)).unwrap();
        assert_eq!(c.attach.len(), 1);
        assert_eq!(c.attach[0].side, Side::Inside);
        assert_eq!(
            c.settings.outside_ifindex, [0; MAX_OUTSIDE_IFACES],
            "no outside-only interface"
        );
        assert_eq!(c.fabric.name, "lo", "the only interface is the fabric");
        assert_eq!(c.xdp_mode, XdpModeChoice::Generic);
        assert_eq!(c.settings.mode, SteerMode::IpIp as u32);
        assert_eq!(c.settings.fabric_ip, u32::from(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(c.settings.next_hop_mac, [2, 0, 0, 0, 0, 9]);
        assert!(c.settings.is_inside(0x0a01_0203));
        assert_eq!(c.cluster[0], "http://demo-0.demo.default.svc:7700");
        assert_eq!(c.expect.bucket_bits, BucketBits::new(8));
        assert_eq!(
            c.expect.external_ips,
            Some(BTreeSet::from([Ipv4Addr::new(203, 0, 113, 10)]))
        );
        assert_eq!(c.http_listen, "127.0.0.1:9190".parse().unwrap());
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = file(
            r#"
mode = "ipip"
xdp_mode = "generic"
bucket_bits = 8
external_ips = ["203.0.113.10"]
inside_sources = ["10.0.0.0/8"]
cluster = ["file-host:7700"]
fabric = "mfp-nope0"
fabric_ip = "192.0.2.7"
next_hop_mac = "02:00:00:00:00:09"
http_listen = "127.0.0.1:9190"
[[interfaces]]
name = "mfp-nope1"
"#,
        );
        let a = parse(&[
            "--attach",
            "lo:outside",
            "--fabric",
            "lo",
            "--mode",
            "l2",
            "--xdp-mode",
            "native",
            "--bucket-bits",
            "10",
            "--external-ip",
            "198.51.100.1,198.51.100.2",
            "--inside-prefix",
            "172.16.0.0/12",
            "--cluster",
            "flag-host:7000",
            "--fabric-ip",
            "192.0.2.8",
            "--next-hop-mac",
            "02:00:00:00:00:0a",
            "--http-listen",
            "127.0.0.1:9999",
        ])
        .unwrap();
        let c = a.resolve_with(Some(&f)).unwrap();
        assert_eq!(c.attach[0].iface.name, "lo");
        assert_eq!(c.attach[0].side, Side::Outside);
        assert!(c.settings.is_outside_only(1));
        assert_eq!(c.fabric.name, "lo");
        assert_eq!(c.settings.mode, SteerMode::L2 as u32);
        assert_eq!(c.xdp_mode, XdpModeChoice::Native);
        assert_eq!(c.expect.bucket_bits, BucketBits::new(10));
        assert_eq!(c.expect.external_ips.as_ref().map(BTreeSet::len), Some(2));
        assert!(c.settings.is_inside(0xac10_0001));
        assert!(
            !c.settings.is_inside(0x0a00_0001),
            "the flag's list replaces the file's"
        );
        assert_eq!(c.cluster, vec!["http://flag-host:7000"]);
        assert_eq!(c.settings.fabric_ip, u32::from(Ipv4Addr::new(192, 0, 2, 8)));
        assert_eq!(c.settings.next_hop_mac, [2, 0, 0, 0, 0, 0x0a]);
        assert_eq!(c.http_listen, "127.0.0.1:9999".parse().unwrap());

        // Without the flags, the file's values are used, and its errors name the key.
        let e = Args::default()
            .resolve_with(Some(&f))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("interfaces[0].name in /etc/mfplane/lb-m1.toml: ")
                && e.contains("mfp-nope1"),
            "{e}"
        );
        let a = parse(&["--attach", "lo"]).unwrap();
        let e = a.resolve_with(Some(&f)).unwrap_err().to_string();
        assert!(
            e.starts_with("fabric in /etc/mfplane/lb-m1.toml: ") && e.contains("mfp-nope0"),
            "{e}"
        );
    }

    #[test]
    fn missing_settings_say_where_to_set_them() {
        let f = file("[[interfaces]]\nname = \"lo\"");
        let e = Args::default()
            .resolve_with(Some(&f))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--inside-prefix: missing") && e.contains("inside_sources"),
            "{e}"
        );
        let f = file("inside_sources = [\"10.0.0.0/8\"]\n[[interfaces]]\nname = \"lo\"");
        let e = Args::default()
            .resolve_with(Some(&f))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--cluster: missing"), "{e}");
    }

    #[test]
    fn fabric_defaults_only_when_obvious() {
        let lo = Interface::by_name("lo").unwrap();
        let at = |side| Attachment {
            iface: lo.clone(),
            side,
        };
        assert_eq!(default_fabric(&[at(Side::Inside)]).unwrap().name, "lo");
        assert_eq!(
            default_fabric(&[at(Side::Inside), at(Side::Both)])
                .unwrap()
                .name,
            "lo"
        );
        let e = default_fabric(&[at(Side::Inside), at(Side::Outside)])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--fabric: missing") && e.contains("lo (inside), lo (outside)"),
            "{e}"
        );
        assert!(e.contains("set fabric in the --config file"), "{e}");
    }
}

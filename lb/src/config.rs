//! The agent's command line and its validation.
//!
//! Every flag is parsed into a typed value here, so a bad flag fails before anything
//! is loaded or attached, with a message that names the flag.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;

use clap::Parser;
use mfplane_core::lb_maps::{
    Ipv4Prefix, LB_FLAG_REDIRECT_ON_FABRIC, LbSettings, MAX_INSIDE_PREFIXES, SteerMode,
};

use crate::datapath::XdpModeChoice;
use crate::iface::Interface;
use crate::table::MacAddr;

/// mfplane load balancer: steers NAT traffic to the worker that owns its bucket.
#[derive(Debug, Clone, Parser)]
#[command(name = "mfplane-lb", version)]
pub struct Args {
    /// Interfaces to attach the XDP program to (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', required = true, value_name = "IF[,IF]")]
    pub attach: Vec<String>,

    /// XDP attach mode: native falls back to generic with a warning in `auto`.
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    pub xdp_mode: XdpModeChoice,

    /// The interface towards the workers; steered packets leave through it.
    #[arg(long, value_name = "IF")]
    pub fabric: String,

    /// The LB's address on the fabric (outer source in ipip mode). Default: the first
    /// IPv4 address of --fabric.
    #[arg(long, value_name = "IPV4")]
    pub fabric_ip: Option<Ipv4Addr>,

    /// ipip mode: MAC of the fabric's next-hop router. Default: each owner's own MAC.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub next_hop_mac: Option<MacAddr>,

    /// An inside prefix: traffic from it to outside it is NATed (repeatable).
    #[arg(long = "inside-prefix", value_name = "CIDR", required = true)]
    pub inside_prefixes: Vec<Ipv4Cidr>,

    /// How steered packets reach their owner.
    #[arg(long, value_enum, default_value_t = ModeArg::L2)]
    pub mode: ModeArg,

    /// mfplane-node gRPC endpoints (Steering.Watch), comma-separated or repeated.
    #[arg(long, value_delimiter = ',', required = true, value_name = "HOST:PORT[,...]", value_parser = parse_endpoint)]
    pub cluster: Vec<String>,

    /// Where to serve Prometheus metrics (`/metrics`).
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR:PORT")]
    pub metrics_listen: SocketAddr,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Rewrite MAC addresses; owners share the L2 fabric.
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

fn parse_mac(s: &str) -> Result<MacAddr, String> {
    s.parse()
}

fn parse_endpoint(s: &str) -> Result<String, String> {
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

/// A flag that parsed but cannot be used on this machine.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {reason}")]
pub struct FlagError {
    pub flag: &'static str,
    pub reason: String,
}

/// The validated configuration, resolved against this machine's interfaces.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub attach: Vec<Interface>,
    pub xdp_mode: XdpModeChoice,
    pub fabric: Interface,
    pub settings: LbSettings,
    /// gRPC endpoints as URIs (`http://host:port`).
    pub cluster: Vec<String>,
    pub metrics_listen: SocketAddr,
}

impl Args {
    /// Resolves interfaces and builds the program settings.
    ///
    /// # Errors
    /// A [`FlagError`] naming the flag whose value cannot be used.
    pub fn resolve(&self) -> Result<AgentConfig, FlagError> {
        let attach = self
            .attach
            .iter()
            .map(|name| {
                Interface::by_name(name).map_err(|e| FlagError {
                    flag: "attach",
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fabric = Interface::by_name(&self.fabric).map_err(|e| FlagError {
            flag: "fabric",
            reason: e.to_string(),
        })?;
        let fabric_ip = match (self.fabric_ip, fabric.first_ipv4(), self.mode) {
            (Some(ip), _, _) => ip,
            (None, Some(ip), _) => ip,
            (None, None, ModeArg::L2) => Ipv4Addr::UNSPECIFIED,
            (None, None, ModeArg::Ipip) => {
                return Err(FlagError {
                    flag: "fabric-ip",
                    reason: format!(
                        "ipip mode needs the LB's fabric address and {} has no IPv4 address: give --fabric-ip",
                        fabric.name
                    ),
                });
            }
        };
        if self.inside_prefixes.len() > MAX_INSIDE_PREFIXES {
            return Err(FlagError {
                flag: "inside-prefix",
                reason: format!(
                    "{} prefixes given; at most {MAX_INSIDE_PREFIXES} are supported (aggregate them)",
                    self.inside_prefixes.len()
                ),
            });
        }
        let mut settings = LbSettings {
            mode: SteerMode::from(self.mode) as u32,
            fabric_ifindex: fabric.index,
            fabric_ip: u32::from(fabric_ip),
            inside_count: self.inside_prefixes.len() as u32,
            fabric_mac: fabric.mac.0,
            next_hop_mac: self.next_hop_mac.unwrap_or_default().0,
            ..LbSettings::default()
        };
        if fabric.driver().as_deref() == Some("veth") {
            // veth's XDP_TX only wakes a peer that runs XDP itself; redirect instead.
            settings.flags |= LB_FLAG_REDIRECT_ON_FABRIC;
        }
        for (slot, cidr) in settings.inside.iter_mut().zip(&self.inside_prefixes) {
            *slot = cidr.prefix();
        }
        Ok(AgentConfig {
            attach,
            xdp_mode: self.xdp_mode,
            fabric,
            settings,
            cluster: self.cluster.iter().map(|e| format!("http://{e}")).collect(),
            metrics_listen: self.metrics_listen,
        })
    }
}

#[cfg(test)]
mod tests {
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
        assert!(parse(&GOOD[2..]).unwrap_err().contains("--attach"));
    }
}

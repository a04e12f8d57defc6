//! The NAT engine's configuration and its validation.
//!
//! Defaults follow the RFCs: endpoint-independent mapping and filtering (RFC 4787
//! REQ-1, REQ-8), paired address pooling (REQ-2), UDP 5 min (REQ-5), TCP
//! established 2 h 4 min and transitory 4 min (RFC 5382 REQ-5), ICMP query 60 s
//! (RFC 5508). Validation refuses values below the RFC minimums, because a NAT that
//! drops mappings early breaks applications in ways that are very hard to debug.

use std::net::Ipv4Addr;
use std::time::Duration;

use mfplane_core::{BucketBits, FlowHashKey};

use crate::error::{Error, Result};

/// RFC 4787 REQ-5: a UDP mapping timer MUST NOT expire in less than 2 minutes.
pub const MIN_UDP_TIMEOUT: Duration = Duration::from_secs(120);
/// RFC 5382 REQ-5: the established idle timeout MUST NOT be less than 2 h 4 min.
pub const MIN_TCP_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(2 * 3600 + 4 * 60);
/// RFC 5382 REQ-5: the transitory idle timeout MUST NOT be less than 4 minutes.
pub const MIN_TCP_TRANSITORY_TIMEOUT: Duration = Duration::from_secs(4 * 60);
/// RFC 5508 (ICMP query session timer): MUST NOT expire in less than 60 s.
pub const MIN_ICMP_TIMEOUT: Duration = Duration::from_secs(60);

/// Which inbound packets a mapping admits (RFC 4787 section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Filtering {
    /// Any remote may send to the mapping (transparent for P2P; RFC 4787 REQ-8's
    /// recommendation when transparency matters most).
    #[default]
    EndpointIndependent,
    /// Only a remote address and port the inside endpoint has sent to.
    AddressAndPortDependent,
}

/// How external IPs are chosen for an inside host (RFC 4787 REQ-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Every session of one inside host uses the same external IP (chosen by a keyed
    /// hash of the inside IP, so every worker picks the same one).
    #[default]
    Paired,
    /// Prefer the paired IP, but fall back to the others when its ports of the
    /// bucket are exhausted.
    Arbitrary,
}

/// Idle timeouts per protocol state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_established: Duration,
    pub tcp_transitory: Duration,
    pub udp: Duration,
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: MIN_TCP_ESTABLISHED_TIMEOUT,
            tcp_transitory: MIN_TCP_TRANSITORY_TIMEOUT,
            udp: Duration::from_secs(300),
            icmp: MIN_ICMP_TIMEOUT,
        }
    }
}

/// An IPv4 prefix (`10.0.0.0/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Prefix {
    addr: u32,
    len: u8,
}

impl Ipv4Prefix {
    /// `None` if `len > 32`. Host bits of `addr` are cleared.
    pub const fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        if len > 32 {
            return None;
        }
        let a = addr.to_bits();
        Some(Ipv4Prefix {
            addr: a & Self::mask_of(len),
            len,
        })
    }

    const fn mask_of(len: u8) -> u32 {
        if len == 0 { 0 } else { u32::MAX << (32 - len) }
    }

    /// `(network, mask)`, host order.
    pub const fn network_and_mask(&self) -> (u32, u32) {
        (self.addr, Self::mask_of(self.len))
    }

    /// `true` if host-order `ip` lies in the prefix.
    #[inline]
    pub const fn contains(&self, ip: u32) -> bool {
        ip & Self::mask_of(self.len) == self.addr
    }
}

impl std::str::FromStr for Ipv4Prefix {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Config(format!("{s:?} is not an IPv4 prefix like 10.0.0.0/8"));
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        Ipv4Prefix::new(addr, len).ok_or_else(bad)
    }
}

impl std::fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from_bits(self.addr), self.len)
    }
}

/// Everything the engine needs to know; see the field docs for the defaults.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Bucket bits of the cluster (must match the LB and the other workers).
    pub bucket_bits: BucketBits,
    /// Flow hash key of the cluster (must match the LB and the other workers).
    pub hash_key: FlowHashKey,
    /// The cluster's external IPs; at least one.
    pub external_ips: Vec<Ipv4Addr>,
    /// Sources that may open sessions (outbound). Default: RFC 1918 and RFC 6598.
    pub inside_prefixes: Vec<Ipv4Prefix>,
    pub filtering: Filtering,
    pub pooling: Pooling,
    pub timeouts: Timeouts,
    /// Whether inbound packets refresh a mapping's idle timer (RFC 4787 REQ-6 makes
    /// outbound refresh mandatory and inbound refresh optional).
    pub inbound_refresh: bool,
    /// Translate inside -> own external endpoint -> inside (RFC 4787 REQ-9).
    pub hairpinning: bool,
    /// Most sessions one inside IP may hold, so one host cannot exhaust a bucket.
    pub max_sessions_per_host: u32,
    /// Most sessions in the table (memory bound).
    pub max_sessions: usize,
    /// First fragments remembered for their later fragments.
    pub fragment_slots: usize,
    /// How long a first fragment's decision is kept.
    pub fragment_timeout: Duration,
}

impl EngineConfig {
    /// A configuration with the defaults and the given external IPs.
    pub fn new(external_ips: Vec<Ipv4Addr>) -> Self {
        let p = |a: [u8; 4], l| {
            Ipv4Prefix::new(Ipv4Addr::from(a), l).unwrap_or(Ipv4Prefix { addr: 0, len: 32 })
        };
        EngineConfig {
            bucket_bits: BucketBits::DEFAULT,
            hash_key: FlowHashKey::DEFAULT,
            external_ips,
            inside_prefixes: vec![
                p([10, 0, 0, 0], 8),
                p([172, 16, 0, 0], 12),
                p([192, 168, 0, 0], 16),
                p([100, 64, 0, 0], 10),
            ],
            filtering: Filtering::default(),
            pooling: Pooling::default(),
            timeouts: Timeouts::default(),
            inbound_refresh: true,
            hairpinning: true,
            max_sessions_per_host: 4096,
            max_sessions: 1 << 20,
            fragment_slots: 8192,
            fragment_timeout: Duration::from_secs(30),
        }
    }

    /// Checks the configuration; the error says which value is wrong and why.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(Error::Config(m));
        if self.external_ips.is_empty() {
            return err(
                "external_ips is empty: give the NAT at least one external IPv4 address".into(),
            );
        }
        let mut seen = self.external_ips.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return err(format!("external IP {} is listed twice", w[0]));
        }
        if self.external_ips.len() > usize::from(u8::MAX) {
            return err(format!(
                "{} external IPs: at most 255 are supported",
                self.external_ips.len()
            ));
        }
        for ip in &self.external_ips {
            if let Some(p) = self
                .inside_prefixes
                .iter()
                .find(|p| p.contains(ip.to_bits()))
            {
                return err(format!(
                    "external IP {ip} lies inside the inside prefix {p}: traffic direction would be ambiguous"
                ));
            }
        }
        if self.inside_prefixes.is_empty() {
            return err("inside_prefixes is empty: no host could open a session".into());
        }
        let t = &self.timeouts;
        let checks = [
            ("udp", t.udp, MIN_UDP_TIMEOUT, "RFC 4787 REQ-5"),
            (
                "tcp_established",
                t.tcp_established,
                MIN_TCP_ESTABLISHED_TIMEOUT,
                "RFC 5382 REQ-5",
            ),
            (
                "tcp_transitory",
                t.tcp_transitory,
                MIN_TCP_TRANSITORY_TIMEOUT,
                "RFC 5382 REQ-5",
            ),
            (
                "icmp",
                t.icmp,
                MIN_ICMP_TIMEOUT,
                "RFC 5508 (query session timer)",
            ),
        ];
        for (name, v, min, rfc) in checks {
            if v < min {
                return err(format!(
                    "timeouts.{name} = {}s is below the {}s minimum of {rfc}",
                    v.as_secs(),
                    min.as_secs()
                ));
            }
        }
        if self.max_sessions_per_host == 0 {
            return err("max_sessions_per_host is 0: no host could open a session".into());
        }
        if self.max_sessions == 0 || self.max_sessions > u32::MAX as usize {
            return err(format!(
                "max_sessions = {} must be in 1..=2^32-1",
                self.max_sessions
            ));
        }
        if self.fragment_slots == 0 {
            return err(
                "fragment_slots is 0: use at least 1 (fragments would always be dropped)".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EngineConfig {
        EngineConfig::new(vec![Ipv4Addr::new(198, 51, 100, 1)])
    }

    #[test]
    fn defaults_are_valid_and_rfc_compliant() {
        let c = cfg();
        c.validate().unwrap();
        assert_eq!(c.timeouts.tcp_established, Duration::from_secs(7440));
        assert_eq!(c.timeouts.udp, Duration::from_secs(300));
        assert_eq!(c.timeouts.icmp, Duration::from_secs(60));
    }

    #[test]
    fn rfc4787_req5_udp_timeout_never_below_two_minutes() {
        let mut c = cfg();
        c.timeouts.udp = Duration::from_secs(119);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("timeouts.udp") && e.contains("REQ-5"), "{e}");
        c.timeouts.udp = Duration::from_secs(120);
        c.validate().unwrap();
    }

    #[test]
    fn rfc5382_req5_tcp_timeouts_have_minimums() {
        let mut c = cfg();
        c.timeouts.tcp_established = Duration::from_secs(7439);
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.timeouts.tcp_transitory = Duration::from_secs(239);
        assert!(c.validate().is_err());
    }

    #[test]
    fn rejects_bad_external_ips() {
        let mut c = cfg();
        c.external_ips.clear();
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.external_ips.push(Ipv4Addr::new(198, 51, 100, 1));
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
        let mut c = cfg();
        c.external_ips.push(Ipv4Addr::new(10, 1, 1, 1));
        assert!(c.validate().unwrap_err().to_string().contains("ambiguous"));
    }

    #[test]
    fn prefix_parse_and_contains() {
        let p: Ipv4Prefix = "10.1.2.3/8".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.0.0/8");
        assert!(p.contains(0x0aff_ffff));
        assert!(!p.contains(0x0b00_0000));
        assert!("10.0.0.0/33".parse::<Ipv4Prefix>().is_err());
        assert!("nope".parse::<Ipv4Prefix>().is_err());
        let all: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(0xdead_beef));
    }
}

//! The MAC every translated frame is sent to, when the configuration does not give one
//! (`next_hop_mac`): the default gateway of the data interface.
//!
//! A pod knows its router only through what the CNI installed: a default route via the
//! data interface and, once something has talked to it, the gateway's neighbour entry.
//! Both are read from `/proc/net/route` and `/proc/net/arp` (per network namespace, no
//! netlink); if the neighbour entry is missing, one UDP datagram to the gateway's
//! discard port makes the kernel resolve it. The MAC is read once, when the data path
//! starts: a router whose MAC can change should be given as `next_hop_mac` (a VRRP
//! virtual MAC, for instance).

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use mfplane_raft_store::MacAddr;

const ROUTE_TABLE: &str = "/proc/net/route";
const NEIGHBOUR_TABLE: &str = "/proc/net/arp";
/// `ATF_COM`: the neighbour entry is complete (resolved).
const ATF_COM: u32 = 0x2;
/// RFC 863 discard: a probe datagram that nobody answers.
const DISCARD_PORT: u16 = 9;
const POLL: Duration = Duration::from_millis(100);

/// Why the next hop could not be found.
#[derive(Debug, thiserror::Error)]
pub enum NextHopError {
    /// No default route leaves through the data interface.
    #[error(
        "no default route via {iface} in this network namespace: give the router's MAC as next_hop_mac (--next-hop-mac), or give {iface} a default route (the attachment's IPAM)"
    )]
    NoDefaultRoute { iface: String },
    /// The gateway never answered ARP.
    #[error(
        "the default gateway {gateway} via {iface} did not answer ARP within {waited:?}: check the data network, or give next_hop_mac (--next-hop-mac)"
    )]
    Unresolved {
        gateway: Ipv4Addr,
        iface: String,
        waited: Duration,
    },
    /// A kernel table could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The default gateway via `iface` and its MAC, probing for the MAC for at most `wait`.
///
/// # Errors
/// No default route via `iface`, the gateway does not answer ARP in time, or the
/// kernel tables cannot be read.
pub async fn resolve_gateway(
    iface: &str,
    wait: Duration,
) -> Result<(Ipv4Addr, MacAddr), NextHopError> {
    let routes = read_table(ROUTE_TABLE)?;
    let gateway = default_gateway(&routes, iface).ok_or_else(|| NextHopError::NoDefaultRoute {
        iface: iface.to_owned(),
    })?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut probed = false;
    loop {
        if let Some(mac) = neighbour_mac(&read_table(NEIGHBOUR_TABLE)?, gateway, iface) {
            return Ok((gateway, mac));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(NextHopError::Unresolved {
                gateway,
                iface: iface.to_owned(),
                waited: wait,
            });
        }
        if !probed {
            probe(gateway);
            probed = true;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn read_table(path: &'static str) -> Result<String, NextHopError> {
    std::fs::read_to_string(path).map_err(|source| NextHopError::Read { path, source })
}

/// Makes the kernel resolve `gateway`: a datagram to it needs its MAC. Failures only
/// mean no resolution, which the caller reports.
fn probe(gateway: Ipv4Addr) {
    let sent = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.send_to(&[0], (gateway, DISCARD_PORT)));
    if let Err(e) = sent {
        tracing::debug!(%gateway, error = %e, "ARP probe to the gateway failed");
    }
}

/// The gateway of the lowest-metric default route via `iface` in `/proc/net/route`
/// text (addresses are hex in the kernel's byte order).
fn default_gateway(table: &str, iface: &str) -> Option<Ipv4Addr> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || f[0] != iface {
                return None;
            }
            let hex = |s: &str| u32::from_str_radix(s, 16).ok();
            let (dest, gw, mask, metric) = (hex(f[1])?, hex(f[2])?, hex(f[7])?, f[6]);
            let metric: u32 = metric.parse().ok()?;
            (dest == 0 && mask == 0 && gw != 0).then(|| (metric, Ipv4Addr::from(gw.to_ne_bytes())))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, gw)| gw)
}

/// The resolved MAC of `ip` on `iface` in `/proc/net/arp` text.
fn neighbour_mac(table: &str, ip: Ipv4Addr, iface: &str) -> Option<MacAddr> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != iface || f[0].parse::<Ipv4Addr>().ok()? != ip {
            return None;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
        let mac: MacAddr = f[3].parse().ok()?;
        (flags & ATF_COM != 0 && mac.0 != [0; 6]).then_some(mac)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two default routes (eth0 and the Multus net1, as a pod with an IPAM route on
    // the attachment has them) plus link routes; 0101A8C0 is 192.168.1.1 on a
    // little-endian machine.
    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100590A\t0003\t0\t0\t0\t00000000\t0\t0\t0
net1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0
net1\t00000000\t0201A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
net1\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    const NEIGHBOURS: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
192.168.1.2      0x1         0x0         00:00:00:00:00:00     *        net1
192.168.1.1      0x1         0x2         02:aa:bb:cc:dd:01     *        net1
192.168.1.1      0x1         0x2         02:aa:bb:cc:dd:99     *        eth0
10.89.0.1        0x1         0x2         ee:ee:ee:ee:ee:ee     *        eth0
";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn the_lowest_metric_default_route_of_the_interface_wins() {
        if cfg!(target_endian = "little") {
            assert_eq!(default_gateway(ROUTES, "net1"), Some(ip("192.168.1.2")));
            assert_eq!(default_gateway(ROUTES, "eth0"), Some(ip("10.89.0.1")));
        }
        assert_eq!(default_gateway(ROUTES, "net2"), None);
        assert_eq!(default_gateway("garbage\nnet1 x y\n", "net1"), None);
    }

    #[test]
    fn only_complete_neighbour_entries_of_the_interface_count() {
        assert_eq!(
            neighbour_mac(NEIGHBOURS, ip("192.168.1.1"), "net1"),
            Some("02:aa:bb:cc:dd:01".parse().unwrap())
        );
        assert_eq!(
            neighbour_mac(NEIGHBOURS, ip("192.168.1.2"), "net1"),
            None,
            "incomplete"
        );
        assert_eq!(neighbour_mac(NEIGHBOURS, ip("10.89.0.1"), "net1"), None);
    }

    #[tokio::test]
    async fn an_interface_without_a_default_route_says_to_set_next_hop_mac() {
        let e = resolve_gateway("mfp-none0", Duration::from_millis(10))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, NextHopError::NoDefaultRoute { .. }) && text.contains("next_hop_mac"),
            "{text}"
        );
    }
}

//! The addresses of the member's data interface, read from the kernel.
//!
//! In a pod the data address is whatever the CNI (or Multus) assigned to `net1` or
//! `eth0` at start, so the operator cannot write it into the configuration: the member
//! reads it here (`data_interface`). One `getifaddrs(3)` walk gives both the IPv4
//! address (`AF_INET` entries) and the MAC (`AF_PACKET` entries), so nothing depends on
//! `/sys` being mounted or on netlink.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use mfplane_raft_store::MacAddr;

/// Longest interface name Linux accepts (`IFNAMSIZ` - 1).
const MAX_NAME: usize = 15;

/// Why an interface's addresses cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// The name cannot be an interface name.
    #[error("{0:?} is not an interface name: use 1-15 characters without '/', ':' or spaces")]
    BadName(String),
    /// No interface of that name in this network namespace.
    #[error(
        "no interface {name:?} in this network namespace (present: {present}): check the Multus attachment, or name one of these"
    )]
    Missing { name: String, present: String },
    /// The interface exists but has no IPv4 address (yet).
    #[error(
        "interface {0:?} has no IPv4 address: assign one (the attachment's IPAM) or give --data-ip"
    )]
    NoIpv4(String),
    /// The interface has no Ethernet address (a tunnel or point-to-point device).
    #[error(
        "interface {0:?} has no Ethernet MAC address: the data path needs an Ethernet interface (or give --data-mac)"
    )]
    NoMac(String),
    /// `getifaddrs` failed.
    #[error("listing the interfaces failed: {0}")]
    Os(#[source] std::io::Error),
}

/// The data address of one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddrs {
    /// The first (primary) IPv4 address.
    pub ipv4: Ipv4Addr,
    pub mac: MacAddr,
}

/// What one `getifaddrs` walk found for one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Found {
    mac: Option<MacAddr>,
    ipv4: Vec<Ipv4Addr>,
}

/// Checks that `name` can be a Linux interface name.
///
/// # Errors
/// [`InterfaceError::BadName`].
pub fn check_name(name: &str) -> Result<(), InterfaceError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        Err(InterfaceError::BadName(name.to_owned()))
    } else {
        Ok(())
    }
}

/// Reads the IPv4 address and MAC of `name` in the current network namespace.
///
/// # Errors
/// The name is invalid, the interface is missing, or it has no IPv4 address or MAC;
/// each message says what to fix.
pub fn read(name: &str) -> Result<InterfaceAddrs, InterfaceError> {
    check_name(name)?;
    pick(name, &list()?)
}

fn pick(name: &str, found: &BTreeMap<String, Found>) -> Result<InterfaceAddrs, InterfaceError> {
    let Some(f) = found.get(name) else {
        let present: Vec<&str> = found.keys().map(String::as_str).collect();
        return Err(InterfaceError::Missing {
            name: name.to_owned(),
            present: if present.is_empty() {
                "none".to_owned()
            } else {
                present.join(", ")
            },
        });
    };
    let ipv4 = *f
        .ipv4
        .first()
        .ok_or_else(|| InterfaceError::NoIpv4(name.to_owned()))?;
    let mac = f
        .mac
        .ok_or_else(|| InterfaceError::NoMac(name.to_owned()))?;
    Ok(InterfaceAddrs { ipv4, mac })
}

/// Every interface with its MAC and IPv4 addresses, by name.
fn list() -> Result<BTreeMap<String, Found>, InterfaceError> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success the list is freed below.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(InterfaceError::Os(std::io::Error::last_os_error()));
    }
    let mut out: BTreeMap<String, Found> = BTreeMap::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let entry = out.entry(name).or_default();
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says its real type.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: family AF_INET means the sockaddr is a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                entry
                    .ipv4
                    .push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            libc::AF_PACKET => {
                // SAFETY: family AF_PACKET means the sockaddr is a sockaddr_ll.
                let sll = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_ll>() };
                if usize::from(sll.sll_halen) == 6 {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&sll.sll_addr[..6]);
                    entry.mac = Some(MacAddr(mac));
                }
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["eth0", "net1", "ens1f0np0", "a-b_c.d", "123456789012345"] {
            check_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "eth0:1", "a b", "1234567890123456"] {
            assert!(
                matches!(check_name(bad), Err(InterfaceError::BadName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn loopback_is_read_from_the_kernel() {
        let lo = read("lo").unwrap();
        assert_eq!(lo.ipv4, Ipv4Addr::LOCALHOST);
        assert_eq!(lo.mac, MacAddr([0; 6]));
    }

    #[test]
    fn a_missing_interface_lists_the_present_ones() {
        let e = read("mfp-none0").unwrap_err();
        assert!(matches!(e, InterfaceError::Missing { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("mfp-none0") && text.contains("lo"), "{text}");
    }

    #[test]
    fn an_interface_without_ipv4_or_mac_is_refused_with_the_fix() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let found = BTreeMap::from([
            (
                "net1".to_owned(),
                Found {
                    mac: Some(mac),
                    ipv4: vec![],
                },
            ),
            (
                "tun0".to_owned(),
                Found {
                    mac: None,
                    ipv4: vec![Ipv4Addr::new(10, 9, 0, 1)],
                },
            ),
            (
                "net2".to_owned(),
                Found {
                    mac: Some(mac),
                    ipv4: vec![Ipv4Addr::new(192, 0, 2, 5), Ipv4Addr::new(192, 0, 2, 6)],
                },
            ),
        ]);
        let e = pick("net1", &found).unwrap_err();
        assert!(matches!(e, InterfaceError::NoIpv4(_)), "{e:?}");
        assert!(e.to_string().contains("--data-ip"), "{e}");
        assert!(matches!(
            pick("tun0", &found),
            Err(InterfaceError::NoMac(_))
        ));
        assert_eq!(
            pick("net2", &found).unwrap(),
            InterfaceAddrs {
                ipv4: Ipv4Addr::new(192, 0, 2, 5),
                mac
            },
            "the primary (first) address"
        );
    }
}

//! What the agent needs to know about a network interface: index, MAC, IPv4.

use std::ffi::CString;
use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::table::MacAddr;

/// A network interface of this namespace, as it was when looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: MacAddr,
    /// Its first IPv4 address, if any.
    pub ipv4: Option<Ipv4Addr>,
    /// The kernel driver behind it (`veth`, `mlx5_core`, ...), if it says.
    pub driver: Option<String>,
}

impl Interface {
    /// Looks `name` up.
    ///
    /// # Errors
    /// [`Error::Interface`] if it does not exist or has no Ethernet address.
    pub fn by_name(name: &str) -> Result<Self> {
        let bad = |reason: String| Error::Interface {
            iface: name.to_owned(),
            reason,
        };
        let c = CString::new(name).map_err(|_| bad("name contains a NUL byte".into()))?;
        // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            return Err(bad("no such interface in this network namespace".into()));
        }
        let mac = hardware_address(&c).map_err(|e| bad(format!("reading its MAC address: {e}")))?;
        Ok(Interface {
            name: name.to_owned(),
            index,
            mac,
            ipv4: first_ipv4(name),
            driver: driver_name(name).ok(),
        })
    }
}

/// The first IPv4 address configured on interface `iface`, if any.
fn first_ipv4(iface: &str) -> Option<Ipv4Addr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null, NUL-terminated name owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: non-null sockaddr owned by the list.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if name.to_bytes() == iface.as_bytes() && i32::from(family) == libc::AF_INET {
            // SAFETY: AF_INET addresses are sockaddr_in.
            let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;

/// The driver name via `SIOCETHTOOL`/`ETHTOOL_GDRVINFO`.
fn driver_name(name: &str) -> std::io::Result<String> {
    let c = CString::new(name).map_err(|_| std::io::Error::other("NUL in name"))?;
    // SAFETY: plain data structs; all-zero is valid.
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = ifreq_for(&c)?;
    req.ifr_ifru.ifru_data = (&raw mut info).cast();
    with_socket(|fd| {
        // SAFETY: `req` points at `info`, which lives across the call.
        unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut req) }
    })?;
    let end = info
        .driver
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(info.driver.len());
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// An `ifreq` naming interface `name`.
fn ifreq_for(name: &CString) -> std::io::Result<libc::ifreq> {
    let bytes = name.as_bytes_with_nul();
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if bytes.len() > req.ifr_name.len() {
        return Err(std::io::Error::other("interface name too long"));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// Runs an ioctl on a throwaway socket of the caller's network namespace.
fn with_socket(ioctl: impl FnOnce(libc::c_int) -> libc::c_int) -> std::io::Result<()> {
    // SAFETY: plain socket(2) call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let rc = ioctl(fd);
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the fd opened above, once.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(err);
    }
    Ok(())
}

/// The interface's hardware address via `SIOCGIFHWADDR`, asked through a socket so
/// the answer comes from the caller's network namespace (sysfs shows the namespace
/// it was mounted in).
fn hardware_address(name: &CString) -> std::io::Result<MacAddr> {
    let mut req = ifreq_for(name)?;
    with_socket(|fd| {
        // SAFETY: `req` is a valid ifreq for SIOCGIFHWADDR.
        unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) }
    })?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(MacAddr(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_unknown_is_named() {
        let lo = Interface::by_name("lo").unwrap();
        assert_eq!(lo.index, 1);
        assert_eq!(lo.ipv4, Some(Ipv4Addr::LOCALHOST));
        let e = Interface::by_name("mfp-nonexistent")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mfp-nonexistent") && e.contains("no such interface"),
            "{e}"
        );
    }
}

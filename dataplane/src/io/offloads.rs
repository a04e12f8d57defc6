//! Receive offloads that a frame-at-a-time NAT cannot live with.
//!
//! With GRO (or LRO) on, the kernel merges consecutive TCP segments of a flow into one
//! super-frame before a packet socket sees it: up to 64 KiB, far above the MTU. The
//! engine would translate it and the send would fail (or the receive buffer would
//! truncate it), so every merged segment is lost. Merging only happens when segments
//! arrive back to back, which is exactly when a flow catches up after a stall, such as
//! a failover: the connections a failover should save are the ones it would cut.
//!
//! So the worker turns both off on its data interface, as packet-capture tools do,
//! through the ethtool ioctl (no `ethtool` binary needed).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::IoError;

const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
/// `ETH_FLAG_LRO` in the legacy flags word.
const ETH_FLAG_LRO: u32 = 1 << 15;

/// `struct ethtool_value`: a command and one 32-bit value.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Which receive offloads [`disable_receive_offloads`] had to turn off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Disabled {
    pub gro: bool,
    pub lro: bool,
}

/// Turns GRO and LRO off on `ifname` (in the caller's network namespace) and says
/// which were on. A driver that has no LRO setting at all is fine; one that refuses to
/// turn GRO off is an error, because the data path would lose merged segments.
///
/// # Errors
/// [`IoError::BadInterface`] for an unknown name; [`IoError::Os`] when the ioctl
/// fails (e.g. without `CAP_NET_ADMIN`), naming the offload and the fix.
pub fn disable_receive_offloads(ifname: &str) -> Result<Disabled, IoError> {
    let sock = control_socket()?;
    let mut disabled = Disabled::default();

    if ethtool(&sock, ifname, ETHTOOL_GGRO, 0)? != 0 {
        ethtool(&sock, ifname, ETHTOOL_SGRO, 0).map_err(|e| with_fix(e, ifname, "gro"))?;
        disabled.gro = true;
    }
    // Legacy flags word: not every driver implements it; no answer means no LRO.
    if let Ok(flags) = ethtool(&sock, ifname, ETHTOOL_GFLAGS, 0)
        && flags & ETH_FLAG_LRO != 0
    {
        ethtool(&sock, ifname, ETHTOOL_SFLAGS, flags & !ETH_FLAG_LRO)
            .map_err(|e| with_fix(e, ifname, "lro"))?;
        disabled.lro = true;
    }
    Ok(disabled)
}

fn with_fix(e: IoError, ifname: &str, offload: &str) -> IoError {
    match e {
        IoError::Os { context, source } => IoError::Os {
            context: format!(
                "{context} (the worker needs CAP_NET_ADMIN, or run `ethtool -K {ifname} {offload} off` before starting it)"
            ),
            source,
        },
        other => other,
    }
}

fn control_socket() -> Result<OwnedFd, IoError> {
    // SAFETY: socket(2) with constant arguments; the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(IoError::os("opening a socket for ethtool requests".into()));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One `SIOCETHTOOL` request carrying an `ethtool_value`; returns the value the
/// kernel wrote back (the current setting, for the get commands).
fn ethtool(sock: &OwnedFd, ifname: &str, cmd: u32, data: u32) -> Result<u32, IoError> {
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(IoError::BadInterface(ifname.to_string()));
    }
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL reads and writes the ethtool_value that `req` points to,
    // which lives until the call returns.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if rc != 0 {
        let source = std::io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::ENODEV) {
            return Err(IoError::BadInterface(ifname.to_string()));
        }
        return Err(IoError::Os {
            context: format!("ethtool request {cmd:#x} on {ifname}"),
            source,
        });
    }
    Ok(value.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_malformed_names_are_bad_interfaces() {
        for name in ["", "no-such-mfp0", "a-name-longer-than-ifnamsiz"] {
            match disable_receive_offloads(name) {
                Err(IoError::BadInterface(n)) => assert_eq!(n, name),
                other => panic!("{name:?}: expected BadInterface, got {other:?}"),
            }
        }
    }
}

//! `AF_PACKET` raw sockets: the first, portable packet I/O backend of a worker.
//!
//! Every frame that arrives on the interface is read whole, Ethernet header included,
//! and translated frames are written whole. It works on any Linux interface with no
//! eBPF at all, at slow-path rates (one system call per frame); AF_XDP and the XDP
//! fast path replace it behind the same [`PacketIo`](super::PacketIo) trait.
//!
//! Frames the socket itself sent are not read back (`PACKET_IGNORE_OUTGOING`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::{IoError, PacketIo};

/// `ETH_P_ALL` in network byte order, as `socket(2)` and `bind(2)` want it.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

/// A raw socket bound to one interface.
#[derive(Debug)]
pub struct AfPacket {
    fd: AsyncFd<OwnedFd>,
    ifname: String,
    ifindex: u32,
}

impl AfPacket {
    /// Opens a raw socket on `ifname`. Needs `CAP_NET_RAW`.
    ///
    /// Must be called inside a tokio runtime (the socket registers with its reactor).
    pub fn open(ifname: &str) -> Result<Self, IoError> {
        let ifindex = if_index(ifname)?;
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL_BE),
            )
        };
        if raw < 0 {
            return Err(IoError::os(format!("opening a raw socket on {ifname}")));
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(IoError::os(format!("PACKET_IGNORE_OUTGOING on {ifname}")));
        }

        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL_BE;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: bind(2) with a pointer to a live sockaddr_ll and its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(IoError::os(format!("binding a raw socket to {ifname}")));
        }
        // SAFETY: the OwnedFd is open and AsyncFd owns it from here on, so the raw
        // descriptor stays valid and unchanged for the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| IoError::Os {
            context: format!("registering the raw socket of {ifname}"),
            source: std::io::Error::from(e),
        })?;
        Ok(AfPacket {
            fd,
            ifname: ifname.to_string(),
            ifindex,
        })
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    fn raw(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}

impl AfPacket {
    /// Runs the non-blocking socket call `op` once the socket is ready for `interest`,
    /// and again each time the kernel says it would block. Returns what `op` returned,
    /// or the error named by `waiting` (for readiness) or `doing` (for the call) and
    /// the interface.
    async fn when_ready(
        &self,
        interest: Interest,
        (waiting, doing): (&str, &str),
        mut op: impl FnMut(RawFd) -> isize,
    ) -> Result<usize, IoError> {
        loop {
            let mut guard = self
                .fd
                .ready(interest)
                .await
                .map_err(|source| IoError::Os {
                    context: format!("{waiting} on {}", self.ifname),
                    source,
                })?;
            if let Ok(n) = usize::try_from(op(self.raw())) {
                return Ok(n);
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                guard.clear_ready();
                continue;
            }
            return Err(IoError::Os {
                context: format!("{doing} on {}", self.ifname),
                source: err,
            });
        }
    }
}

impl PacketIo for AfPacket {
    async fn recv(&mut self, buf: &mut [u8]) -> Result<usize, IoError> {
        let cap = buf.len();
        let read = |fd| {
            // SAFETY: recv(2) into a live, writable buffer of the given length.
            unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), cap, libc::MSG_TRUNC) }
        };
        let n = self
            .when_ready(
                Interest::READABLE,
                ("waiting for frames", "receiving"),
                read,
            )
            .await?;
        if n > cap {
            // MSG_TRUNC reports the real length: the frame did not fit.
            return Err(IoError::Truncated { len: n, buf: cap });
        }
        Ok(n)
    }

    async fn send(&mut self, frame: &[u8]) -> Result<(), IoError> {
        let write = |fd| {
            // SAFETY: send(2) from a live buffer of the given length.
            unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) }
        };
        self.when_ready(Interest::WRITABLE, ("waiting to send", "sending"), write)
            .await
            .map(drop)
    }
}

/// The index of interface `name`.
pub fn if_index(name: &str) -> Result<u32, IoError> {
    let c = CString::new(name).map_err(|_| IoError::BadInterface(name.to_string()))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(IoError::BadInterface(name.to_string()));
    }
    Ok(idx)
}

//! Packet I/O: how a worker receives steered frames and sends translated ones.
//!
//! The NAT engine never touches a socket; a worker moves whole Ethernet frames between
//! a [`PacketIo`] backend and the engine. [`af_packet`] is the portable backend; AF_XDP
//! (and, for established flows, the XDP fast path) fit behind the same trait.
//! [`offloads`] turns off the receive offloads (GRO, LRO) that hand a packet socket
//! merged super-frames instead of the frames on the wire.

pub mod af_packet;
pub mod offloads;

pub use af_packet::AfPacket;

/// A source and sink of whole Ethernet frames on one interface.
#[allow(async_fn_in_trait, reason = "used with concrete types, never as dyn")]
pub trait PacketIo {
    /// Receives the next frame into `buf` and returns its length.
    async fn recv(&mut self, buf: &mut [u8]) -> Result<usize, IoError>;
    /// Sends one frame.
    async fn send(&mut self, frame: &[u8]) -> Result<(), IoError>;
}

/// Packet I/O failures.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The interface does not exist (in this network namespace).
    #[error(
        "no interface named {0:?} here: check the name with `ip link` in the worker's namespace"
    )]
    BadInterface(String),
    /// A frame was larger than the receive buffer and was dropped.
    #[error("a {len}-byte frame did not fit the {buf}-byte receive buffer (raise the MTU buffer)")]
    Truncated { len: usize, buf: usize },
    /// A system call failed.
    #[error("{context}: {source}")]
    Os {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl IoError {
    fn os(context: String) -> Self {
        IoError::Os {
            context,
            source: std::io::Error::last_os_error(),
        }
    }

    /// Whether the error concerns one frame only, so the worker should count it and go
    /// on, rather than stop its I/O loop.
    pub fn is_per_frame(&self) -> bool {
        matches!(self, IoError::Truncated { .. })
    }
}

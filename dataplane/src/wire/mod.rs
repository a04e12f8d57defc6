//! Zero-copy packet views for userspace, in the style of smoltcp's `wire` module.
//!
//! Each protocol file has a `Packet<T: AsRef<[u8]>>` view with a private `field`
//! module of byte ranges, `new_unchecked` / `new_checked` / `check_len` /
//! `into_inner`, getters on `AsRef<[u8]>`, setters on `AsMut<[u8]>`, and a `Repr`
//! with `parse`, `buffer_len` and `emit`. The constructors and the plain field
//! accessors are declared once, by `view!` (in `view.rs`); a protocol file writes
//! its length check and the accessors particular to it.
//!
//! **The contract**: after `check_len` (or `new_checked`) succeeds, no getter or
//! setter of that packet panics. Use `new_checked` on untrusted input; `new_unchecked`
//! is for buffers the caller has sized itself (emitting).
//!
//! [`build`] composes whole packets from the `Repr`s for benches, tests and
//! simulations.
//!
//! The eBPF programs do not use these views (the verifier rejects slice indexing at
//! variable offsets); they share the header structs and the rewrite in
//! `mfplane_core` instead, and so does the engine, so the translation itself has one
//! definition.

pub mod build;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;
mod view;

pub use ethernet::{EtherType, Frame as EthernetFrame, Repr as EthernetRepr};
pub use icmp::{Message as IcmpMessage, Packet as IcmpPacket, Repr as IcmpRepr};
pub use ipv4::{Packet as Ipv4Packet, Protocol as IpProtocol, Repr as Ipv4Repr};
pub use tcp::{Packet as TcpPacket, Repr as TcpRepr};
pub use udp::{Packet as UdpPacket, Repr as UdpRepr};

/// Why a buffer is not a valid packet. Each variant is a distinct drop reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer ends inside a header.
    #[error("truncated: the buffer ends inside a header")]
    Truncated,
    /// A length field disagrees with the buffer or the header (e.g. IPv4 total length
    /// shorter than the header, TCP data offset below 5).
    #[error("bad length field")]
    BadLength,
    /// IPv4 header length (IHL) below 5 words.
    #[error("IPv4 header length below 20 bytes")]
    BadIhl,
    /// The IP version is not 4.
    #[error("not IPv4")]
    BadVersion,
    /// A checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// A well-formed packet using a feature this parser does not handle.
    #[error("unsupported")]
    Unsupported,
}

/// Result of the wire parsers.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Declares a `u8`/`u16`-backed enum with an `Unknown` variant, `From` both ways, and
/// [`Field`](view::Field) so a view can declare a field of that type.
macro_rules! enum_with_unknown {
    (
        $(#[$enum_attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$variant_attr:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$enum_attr])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$variant_attr])* $variant ),*,
            /// A value without a name here.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant ),*,
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value ),*,
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $crate::wire::view::Field for $name {
            #[inline(always)]
            fn read(bytes: &[u8]) -> Self {
                $name::from(<$ty as $crate::wire::view::Field>::read(bytes))
            }
            #[inline(always)]
            fn write(self, bytes: &mut [u8]) {
                <$ty as $crate::wire::view::Field>::write(self.into(), bytes)
            }
        }
    };
}
pub(crate) use enum_with_unknown;

//! Fixed-size `#[repr(C)]` packet headers for pointer-checked access.
//!
//! Every field is a byte or a byte array, so every struct has alignment 1 and no
//! padding: an eBPF program can cast a bounds-checked packet pointer
//! (`ptr_at::<Ipv4Hdr>(ctx, off)`) to it, and userspace can view a slice the same
//! way with [`from_bytes`]. The verifier only accepts packet reads it can bound by a
//! pointer comparison with `data_end`, which is why these are fixed-size structs and
//! not slice views (those live in the userspace `wire` module of `mfplane-dataplane`).
//!
//! Multi-byte fields are big-endian on the wire; the accessors convert to host order.

/// EtherType of IPv4.
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ) service tag; not unwrapped by mfplane.
pub const ETH_P_8021AD: u16 = 0x88a8;
/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;

/// ICMP types the NAT handles.
pub mod icmp_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// Marker for the header structs: `#[repr(C)]`, alignment 1, any bit pattern valid.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs made of `u8` and `[u8; N]` fields.
pub unsafe trait Header: Copy {
    /// The header's size on the wire.
    const LEN: usize = core::mem::size_of::<Self>();
}

/// A view of the start of `bytes` as header `H`, or `None` if `bytes` is too short.
#[inline(always)]
pub fn from_bytes<H: Header>(bytes: &[u8]) -> Option<&H> {
    if bytes.len() < H::LEN {
        return None;
    }
    // SAFETY: length checked above; `H: Header` has alignment 1 and no invalid bit
    // patterns, so any `H::LEN` bytes are a valid `H`.
    Some(unsafe { &*bytes.as_ptr().cast::<H>() })
}

/// Mutable form of [`from_bytes`].
#[inline(always)]
pub fn from_bytes_mut<H: Header>(bytes: &mut [u8]) -> Option<&mut H> {
    if bytes.len() < H::LEN {
        return None;
    }
    // SAFETY: as in `from_bytes`; the exclusive borrow of `bytes` is carried over.
    Some(unsafe { &mut *bytes.as_mut_ptr().cast::<H>() })
}

/// Ethernet II header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}
// SAFETY: repr(C), byte fields only.
unsafe impl Header for EthHdr {}

impl EthHdr {
    pub const fn ether_type(&self) -> u16 {
        u16::from_be_bytes(self.ether_type)
    }
}

/// The 4 bytes that follow the MAC addresses when an 802.1Q tag is present: the tag
/// control information and the inner EtherType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct VlanHdr {
    pub tci: [u8; 2],
    pub ether_type: [u8; 2],
}
// SAFETY: repr(C), byte fields only.
unsafe impl Header for VlanHdr {}

impl VlanHdr {
    /// The 12-bit VLAN identifier.
    pub const fn vid(&self) -> u16 {
        u16::from_be_bytes(self.tci) & 0x0fff
    }
    pub const fn ether_type(&self) -> u16 {
        u16::from_be_bytes(self.ether_type)
    }
}

/// The fixed 20-byte part of an IPv4 header (options follow when `ihl > 5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub proto: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}
// SAFETY: repr(C), byte fields only.
unsafe impl Header for Ipv4Hdr {}

/// The "more fragments" flag in the host-order `frag_off` word.
pub const IP_MF: u16 = 0x2000;
/// The "don't fragment" flag.
pub const IP_DF: u16 = 0x4000;
/// The fragment offset mask (in units of 8 bytes).
pub const IP_OFFSET_MASK: u16 = 0x1fff;

impl Ipv4Hdr {
    pub const fn version(&self) -> u8 {
        self.version_ihl >> 4
    }
    /// Header length in 32-bit words (5..=15 in a valid header).
    pub const fn ihl(&self) -> u8 {
        self.version_ihl & 0x0f
    }
    /// Header length in bytes.
    pub const fn header_len(&self) -> usize {
        (self.ihl() as usize) * 4
    }
    pub const fn total_len(&self) -> u16 {
        u16::from_be_bytes(self.total_len)
    }
    pub const fn id(&self) -> u16 {
        u16::from_be_bytes(self.id)
    }
    pub const fn frag_word(&self) -> u16 {
        u16::from_be_bytes(self.frag_off)
    }
    /// Fragment offset in bytes.
    pub const fn frag_offset(&self) -> u32 {
        ((self.frag_word() & IP_OFFSET_MASK) as u32) * 8
    }
    pub const fn more_fragments(&self) -> bool {
        self.frag_word() & IP_MF != 0
    }
    /// `true` for any fragment, first or later.
    pub const fn is_fragment(&self) -> bool {
        self.frag_word() & (IP_MF | IP_OFFSET_MASK) != 0
    }
    /// `true` for a fragment that carries no L4 header (offset > 0).
    pub const fn is_later_fragment(&self) -> bool {
        self.frag_word() & IP_OFFSET_MASK != 0
    }
    pub const fn src_addr(&self) -> u32 {
        u32::from_be_bytes(self.src)
    }
    pub const fn dst_addr(&self) -> u32 {
        u32::from_be_bytes(self.dst)
    }
    pub const fn checksum(&self) -> u16 {
        u16::from_be_bytes(self.check)
    }
    /// Basic sanity that every environment applies before trusting the header: IPv4,
    /// IHL >= 5, total length covers the header. The caller still checks the total
    /// length against the bytes it has.
    pub const fn is_sane(&self) -> bool {
        self.version() == 4 && self.ihl() >= 5 && self.total_len() as usize >= self.header_len()
    }
}

/// TCP header without options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct TcpHdr {
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    pub seq: [u8; 4],
    pub ack: [u8; 4],
    /// Data offset (high 4 bits) and flags (low 12 bits).
    pub off_flags: [u8; 2],
    pub window: [u8; 2],
    pub check: [u8; 2],
    pub urgent: [u8; 2],
}
// SAFETY: repr(C), byte fields only.
unsafe impl Header for TcpHdr {}

/// TCP flag bits in the low byte of `off_flags`.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

impl TcpHdr {
    pub const fn src_port(&self) -> u16 {
        u16::from_be_bytes(self.src_port)
    }
    pub const fn dst_port(&self) -> u16 {
        u16::from_be_bytes(self.dst_port)
    }
    /// Header length in bytes (data offset * 4).
    pub const fn header_len(&self) -> usize {
        ((self.off_flags[0] >> 4) as usize) * 4
    }
    pub const fn flags(&self) -> u8 {
        self.off_flags[1]
    }
}

/// UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct UdpHdr {
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    pub len: [u8; 2],
    pub check: [u8; 2],
}
// SAFETY: repr(C), byte fields only.
unsafe impl Header for UdpHdr {}

impl UdpHdr {
    pub const fn src_port(&self) -> u16 {
        u16::from_be_bytes(self.src_port)
    }
    pub const fn dst_port(&self) -> u16 {
        u16::from_be_bytes(self.dst_port)
    }
    /// The UDP length field (header plus payload).
    pub const fn udp_len(&self) -> u16 {
        u16::from_be_bytes(self.len)
    }
}

/// The leading 8 bytes of an ICMP message. For echo request/reply `id` and `seq` are
/// the identifier and sequence number; for errors these 4 bytes are unused (or carry
/// the next-hop MTU or a pointer) and the quoted IP header follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct IcmpHdr {
    pub icmp_type: u8,
    pub code: u8,
    pub check: [u8; 2],
    pub id: [u8; 2],
    pub seq: [u8; 2],
}
// SAFETY: repr(C), byte fields only.
unsafe impl Header for IcmpHdr {}

impl IcmpHdr {
    pub const fn is_echo(&self) -> bool {
        self.icmp_type == icmp_type::ECHO_REQUEST || self.icmp_type == icmp_type::ECHO_REPLY
    }
    /// The ICMP errors that quote the offending packet and are translated per RFC 5508.
    pub const fn is_error(&self) -> bool {
        matches!(
            self.icmp_type,
            icmp_type::DEST_UNREACHABLE
                | icmp_type::SOURCE_QUENCH
                | icmp_type::REDIRECT
                | icmp_type::TIME_EXCEEDED
                | icmp_type::PARAMETER_PROBLEM
        )
    }
    /// Echo identifier (meaningful for echo messages only).
    pub const fn echo_id(&self) -> u16 {
        u16::from_be_bytes(self.id)
    }
    pub const fn echo_seq(&self) -> u16 {
        u16::from_be_bytes(self.seq)
    }
}

/// The first 8 bytes of an L4 header as four big-endian words: all that an ICMP error
/// is guaranteed to quote (RFC 792). TCP: ports in `w0`/`w1`; UDP: ports in
/// `w0`/`w1`, checksum in `w3`; ICMP: checksum in `w1`, echo identifier in `w2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct L4Lead {
    pub w0: [u8; 2],
    pub w1: [u8; 2],
    pub w2: [u8; 2],
    pub w3: [u8; 2],
}
// SAFETY: repr(C), byte fields only.
unsafe impl Header for L4Lead {}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn sizes_match_the_wire() {
        assert_eq!(size_of::<EthHdr>(), 14);
        assert_eq!(size_of::<VlanHdr>(), 4);
        assert_eq!(size_of::<Ipv4Hdr>(), 20);
        assert_eq!(size_of::<TcpHdr>(), 20);
        assert_eq!(size_of::<UdpHdr>(), 8);
        assert_eq!(size_of::<IcmpHdr>(), 8);
        assert_eq!(size_of::<L4Lead>(), 8);
        assert_eq!(core::mem::align_of::<Ipv4Hdr>(), 1);
    }

    #[test]
    fn ipv4_accessors() {
        let b = [
            0x45, 0x00, 0x00, 0x73, 0x12, 0x34, 0x20, 0x03, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let h: &Ipv4Hdr = from_bytes(&b).unwrap();
        assert_eq!(h.version(), 4);
        assert_eq!(h.header_len(), 20);
        assert_eq!(h.total_len(), 0x73);
        assert_eq!(h.id(), 0x1234);
        assert!(h.more_fragments() && h.is_fragment() && h.is_later_fragment());
        assert_eq!(h.frag_offset(), 24);
        assert_eq!(h.src_addr(), 0xc0a8_0001);
        assert_eq!(h.dst_addr(), 0xc0a8_00c7);
        assert!(h.is_sane());
        assert!(from_bytes::<Ipv4Hdr>(&b[..19]).is_none());
    }
}

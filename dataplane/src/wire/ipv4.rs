//! IPv4 packets, with options and fragments.
//!
//! Options are carried (the header length covers them) but not interpreted; a NAT
//! forwards them unchanged. Fragments are visible through [`Packet::more_frags`] and
//! [`Packet::frag_offset`]; what the engine does with them is its fragment policy
//! (see `engine::frag`).

use mfplane_core::csum;

use super::view::{Field, view};
use super::{Error, Result, enum_with_unknown};

enum_with_unknown! {
    /// The IPv4 protocol field.
    pub enum Protocol(u8) {
        Icmp = 1,
        Tcp = 6,
        Udp = 17,
    }
}

mod field {
    use core::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOS: Range<usize> = 1..2;
    pub(super) const LENGTH: Range<usize> = 2..4;
    pub(super) const IDENT: Range<usize> = 4..6;
    pub(super) const FLG_OFF: Range<usize> = 6..8;
    pub(super) const TTL: Range<usize> = 8..9;
    pub(super) const PROTOCOL: Range<usize> = 9..10;
    pub(super) const CHECKSUM: Range<usize> = 10..12;
    pub(super) const SRC_ADDR: Range<usize> = 12..16;
    pub(super) const DST_ADDR: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

view! {
    /// A view of an IPv4 packet.
    pub struct Packet;
    fields {
        tos, set_tos: u8 = field::TOS;
        total_len, set_total_len: u16 = field::LENGTH;
        ident, set_ident: u16 = field::IDENT;
        ttl, set_ttl: u8 = field::TTL;
        protocol, set_protocol: Protocol = field::PROTOCOL;
        checksum, set_checksum: u16 = field::CHECKSUM;
        /// Source address, host order.
        src_addr, set_src_addr: u32 = field::SRC_ADDR;
        /// Destination address, host order.
        dst_addr, set_dst_addr: u32 = field::DST_ADDR;
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view of an IPv4 header quoted inside an ICMP error: the quote may end before
    /// the total length says (RFC 792 quotes the header and 8 bytes), so only the
    /// header itself must be present. [`payload`](Packet::payload) then returns what
    /// was quoted.
    pub fn new_quoted(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_header_len()?;
        if (p.total_len() as usize) < p.header_len() {
            return Err(Error::BadLength);
        }
        Ok(p)
    }

    fn check_header_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.header_len() < HEADER_LEN {
            return Err(Error::BadIhl);
        }
        if self.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Checks the buffer against the header length and the total length: IHL >= 5,
    /// header present, `header_len <= total_len <= buffer length`. Bytes after the
    /// total length (Ethernet padding) are allowed and ignored.
    ///
    /// Stale after `set_header_len` or `set_total_len`.
    pub fn check_len(&self) -> Result<()> {
        self.check_header_len()?;
        let total = self.total_len() as usize;
        if total < self.header_len() || total > self.buffer.as_ref().len() {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The flags and fragment offset word.
    #[inline]
    fn frag_word(&self) -> u16 {
        u16::read(&self.buffer.as_ref()[field::FLG_OFF])
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.frag_word() & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.frag_word() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.frag_word() & OFFSET_MASK) << 3
    }

    /// `true` for any fragment (first or later).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// `true` if the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        csum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload: up to the total length, or to the end of a quoted (cut) packet.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let d = self.buffer.as_ref();
        let end = (self.total_len() as usize).min(d.len());
        &d[self.header_len()..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version_and_header_len(&mut self, version: u8, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets DF, MF and the offset (bytes, a multiple of 8).
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut w = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            w |= FLAG_DF;
        }
        if more_frags {
            w |= FLAG_MF;
        }
        w.write(&mut self.buffer.as_mut()[field::FLG_OFF]);
    }

    /// Recomputes the header checksum over the header (options included).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = csum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    /// The payload, mutable (up to the total length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, total) = (self.header_len(), self.total_len() as usize);
        let d = self.buffer.as_mut();
        let end = total.min(d.len());
        &mut d[hl..end]
    }
}

/// A high-level representation of an IPv4 header without options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: u32,
    pub dst_addr: u32,
    pub protocol: Protocol,
    pub payload_len: usize,
    pub ttl: u8,
    pub ident: u16,
    pub tos: u8,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes.
    pub frag_offset: u16,
}

impl Repr {
    /// Parses a checked packet; rejects other versions and bad checksums. Options are
    /// skipped.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Self> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error::BadVersion);
        }
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() as usize - packet.header_len(),
            ttl: packet.ttl(),
            ident: packet.ident(),
            tos: packet.tos(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Header length when emitted (no options).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with a correct checksum into a buffer of at least
    /// `buffer_len() + payload_len` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_and_header_len(4, HEADER_LEN);
        packet.set_tos(self.tos);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(self.ident);
        packet.set_frag(self.dont_frag, self.more_frags, self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 192.168.0.1 -> 192.168.0.199, UDP, id 0x1234, DF, 4 payload bytes.
    static PACKET_BYTES: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7, 0xaa, 0xbb, 0xcc, 0xdd,
    ];

    fn packet_bytes() -> Vec<u8> {
        let mut b = PACKET_BYTES.to_vec();
        let c = csum::checksum(&b[..20]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b
    }

    fn repr() -> Repr {
        Repr {
            src_addr: 0xc0a8_0001,
            dst_addr: 0xc0a8_00c7,
            protocol: Protocol::Udp,
            payload_len: 4,
            ttl: 64,
            ident: 0x1234,
            tos: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    #[test]
    fn test_deconstruct() {
        let b = packet_bytes();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), Protocol::Udp);
        assert_eq!(p.src_addr(), 0xc0a8_0001);
        assert_eq!(p.dst_addr(), 0xc0a8_00c7);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn test_construct() {
        let mut b = vec![0u8; 24];
        let mut p = Packet::new_unchecked(&mut b[..]);
        repr().emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(b, packet_bytes());
    }

    #[test]
    fn test_parse_and_emit() {
        let b = packet_bytes();
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r, repr());
        let mut bad = b.clone();
        bad[11] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bad[..])).unwrap_err(),
            Error::BadChecksum
        );
    }

    #[test]
    fn test_options_are_kept() {
        // IHL 6: one word of options (NOP NOP NOP EOL).
        let mut b = vec![
            0x46, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        b.extend_from_slice(&[1, 1, 1, 0, 9, 9, 9, 9]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[9, 9, 9, 9]);
        assert!(Repr::parse(&p).is_ok());
    }

    #[test]
    fn test_fragments() {
        let mut b = packet_bytes();
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_frag(false, true, 1480);
        assert!(p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn test_impossible_len() {
        let b = packet_bytes();
        assert_eq!(Packet::new_checked(&b[..19]).unwrap_err(), Error::Truncated);
        let mut bad = b.clone();
        bad[0] = 0x44;
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::BadIhl);
        let mut bad = b.clone();
        bad[0] = 0x4f; // 60-byte header in a 24-byte buffer
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Truncated);
        let mut bad = b.clone();
        bad[2..4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::BadLength);
        bad[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::BadLength);
        // A quote may be cut after the header.
        let mut cut = b.clone();
        cut[2..4].copy_from_slice(&1500u16.to_be_bytes());
        let q = Packet::new_quoted(&cut[..22]).unwrap();
        assert_eq!(q.payload(), &[0xaa, 0xbb]);
    }
}

//! TCP segments. The NAT reads ports and flags and rewrites a port; it never touches
//! sequence numbers or options.

use super::view::{pseudo_header_sum, view};
use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const SEQ_NUM: Range<usize> = 4..8;
    pub(super) const ACK_NUM: Range<usize> = 8..12;
    pub(super) const FLAGS: Range<usize> = 12..14;
    pub(super) const WIN_SIZE: Range<usize> = 14..16;
    pub(super) const CHECKSUM: Range<usize> = 16..18;
    pub(super) const URGENT: Range<usize> = 18..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// TCP flags (the low byte of the flags word).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: Flags = Flags(0x01);
    pub const SYN: Flags = Flags(0x02);
    pub const RST: Flags = Flags(0x04);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(0x10);

    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    #[must_use]
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

view! {
    /// A view of a TCP segment (header and payload).
    pub struct Packet;
    fields {
        src_port, set_src_port: u16 = field::SRC_PORT;
        dst_port, set_dst_port: u16 = field::DST_PORT;
        seq_number, set_seq_number: u32 = field::SEQ_NUM;
        ack_number, set_ack_number: u32 = field::ACK_NUM;
        window_len, set_window_len: u16 = field::WIN_SIZE;
        checksum, set_checksum: u16 = field::CHECKSUM;
        urgent, set_urgent: u16 = field::URGENT;
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the fixed header is present, the data offset is at least 5 words
    /// and the options fit. Stale after `set_header_len`.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::BadLength);
        }
        if hl > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }

    #[inline]
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS.start + 1])
    }

    /// `true` if the checksum over pseudo-header and segment verifies.
    pub fn verify_checksum(&self, src: u32, dst: u32) -> bool {
        pseudo_header_sum(src, dst, 6, self.buffer.as_ref()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the data offset (bytes, multiple of 4) and the flags.
    pub fn set_header_len_and_flags(&mut self, header_len: usize, flags: Flags) {
        let d = self.buffer.as_mut();
        d[field::FLAGS.start] = ((header_len / 4) as u8) << 4;
        d[field::FLAGS.start + 1] = flags.0;
    }

    /// Computes the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, src: u32, dst: u32) {
        self.set_checksum(0);
        let c = !pseudo_header_sum(src, dst, 6, self.buffer.as_ref());
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// A high-level representation of a TCP header without options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: Flags,
    pub window_len: u16,
    pub payload_len: usize,
}

impl Repr {
    /// Parses a segment whose checksum verifies for `src`/`dst`; options are skipped.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>, src: u32, dst: u32) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            payload_len: packet.payload().len(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the caller writes the payload, then calls
    /// [`Packet::fill_checksum`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len_and_flags(HEADER_LEN, self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent(0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::view::with_checksum;
    use super::*;

    const SRC: u32 = 0x0a00_0001;
    const DST: u32 = 0x0a00_0002;

    /// SYN 40000 -> 80, seq 1, window 65535, checksum computed in `bytes()`.
    static PACKET_BYTES: [u8; 24] = [
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xff,
        0xff, 0x00, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef,
    ];

    fn bytes() -> Vec<u8> {
        with_checksum(&PACKET_BYTES, SRC, DST, 6, 16..18)
    }

    fn repr() -> Repr {
        Repr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 1,
            ack_number: 0,
            flags: Flags::SYN,
            window_len: 0xffff,
            payload_len: 4,
        }
    }

    #[test]
    fn test_deconstruct() {
        let b = bytes();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 80));
        assert_eq!(p.seq_number(), 1);
        assert_eq!(p.header_len(), 20);
        assert!(p.flags().contains(Flags::SYN) && !p.flags().contains(Flags::ACK));
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, DST + 1));
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn test_construct() {
        let mut b = vec![0u8; 24];
        let mut p = Packet::new_unchecked(&mut b[..]);
        repr().emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum(SRC, DST);
        assert_eq!(b, bytes());
    }

    #[test]
    fn test_parse_and_emit() {
        let b = bytes();
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap(), SRC, DST).unwrap();
        assert_eq!(r, repr());
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap(), SRC, 1).unwrap_err(),
            Error::BadChecksum
        );
    }

    #[test]
    fn test_impossible_len() {
        let b = bytes();
        assert_eq!(Packet::new_checked(&b[..19]).unwrap_err(), Error::Truncated);
        let mut bad = b.clone();
        bad[12] = 0x40; // data offset 4
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::BadLength);
        bad[12] = 0xf0; // 60-byte header in 24 bytes
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::Truncated);
    }
}

//! UDP datagrams. A checksum of 0 means "not computed" (RFC 768) and verifies.

use super::view::{pseudo_header_sum, view};
use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const LENGTH: Range<usize> = 4..6;
    pub(super) const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

view! {
    /// A view of a UDP datagram.
    pub struct Packet;
    fields {
        src_port, set_src_port: u16 = field::SRC_PORT;
        dst_port, set_dst_port: u16 = field::DST_PORT;
        /// The length field (header and payload).
        #[allow(
            clippy::len_without_is_empty,
            reason = "a header field, not a container"
        )]
        len, set_len: u16 = field::LENGTH;
        checksum, set_checksum: u16 = field::CHECKSUM;
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the header is present and `8 <= length field <= buffer length`. Stale
    /// after `set_len`.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = self.len() as usize;
        if field_len < HEADER_LEN || field_len > len {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    /// `true` if the checksum is absent (0) or verifies over the pseudo-header and
    /// the datagram (up to the length field).
    pub fn verify_checksum(&self, src: u32, dst: u32) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = &self.buffer.as_ref()[..self.len() as usize];
        pseudo_header_sum(src, dst, 17, d) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, up to the length field.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes the checksum (a computed 0 is sent as `0xffff`).
    pub fn fill_checksum(&mut self, src: u32, dst: u32) {
        self.set_checksum(0);
        let d = &self.buffer.as_ref()[..self.len() as usize];
        let c = match !pseudo_header_sum(src, dst, 17, d) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }
}

/// A high-level representation of a UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>, src: u32, dst: u32) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.len() as usize - HEADER_LEN,
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
        packet.set_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::view::with_checksum;
    use super::*;

    const SRC: u32 = 0xc0a8_0001;
    const DST: u32 = 0xc0a8_00c7;

    /// 40000 -> 53, 4 payload bytes, checksum precomputed by hand-independent code in
    /// `bytes()`.
    static PACKET_BYTES: [u8; 12] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0xaa, 0xbb, 0xcc, 0xdd,
    ];

    fn bytes() -> Vec<u8> {
        with_checksum(&PACKET_BYTES, SRC, DST, 17, 6..8)
    }

    #[test]
    fn test_deconstruct() {
        let b = bytes();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (40000, 53, 12));
        assert!(p.verify_checksum(SRC, DST));
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn test_construct() {
        let mut b = vec![0u8; 12];
        let mut p = Packet::new_unchecked(&mut b[..]);
        Repr {
            src_port: 40000,
            dst_port: 53,
            payload_len: 4,
        }
        .emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        p.fill_checksum(SRC, DST);
        assert_eq!(b, bytes());
    }

    #[test]
    fn test_parse_and_emit() {
        let b = bytes();
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap(), SRC, DST).unwrap();
        assert_eq!(
            r,
            Repr {
                src_port: 40000,
                dst_port: 53,
                payload_len: 4
            }
        );
        let mut zero = b.clone();
        zero[6..8].copy_from_slice(&[0, 0]);
        assert!(Repr::parse(&Packet::new_checked(&zero[..]).unwrap(), 1, 2).is_ok());
        let mut bad = b.clone();
        bad[9] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&bad[..]).unwrap(), SRC, DST).unwrap_err(),
            Error::BadChecksum
        );
    }

    #[test]
    fn test_impossible_len() {
        let b = bytes();
        assert_eq!(Packet::new_checked(&b[..7]).unwrap_err(), Error::Truncated);
        let mut bad = b.clone();
        bad[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::BadLength);
        bad[4..6].copy_from_slice(&13u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&bad[..]).unwrap_err(), Error::BadLength);
    }
}

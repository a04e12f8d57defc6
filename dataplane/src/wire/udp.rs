//! UDP datagrams. A checksum of 0 means "not computed" (RFC 768) and verifies.

use mfplane_core::csum;

use super::{Error, Result, be16};

mod field {
    use core::ops::Range;
    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const LENGTH: Range<usize> = 4..6;
    pub(super) const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// [`new_unchecked`](Self::new_unchecked) followed by [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

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

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The length field (header and payload).
    #[inline]
    #[allow(
        clippy::len_without_is_empty,
        reason = "a header field, not a container"
    )]
    pub fn len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// `true` if the checksum is absent (0) or verifies over the pseudo-header and
    /// the datagram (up to the length field).
    pub fn verify_checksum(&self, src: u32, dst: u32) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = &self.buffer.as_ref()[..self.len() as usize];
        let ph = csum::pseudo_header_sum(src, dst, 17, d.len() as u16);
        csum::fold(csum::sum_bytes(ph, d)) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, up to the length field.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Computes the checksum (a computed 0 is sent as `0xffff`).
    pub fn fill_checksum(&mut self, src: u32, dst: u32) {
        self.set_checksum(0);
        let len = self.len() as usize;
        let d = &self.buffer.as_ref()[..len];
        let ph = csum::pseudo_header_sum(src, dst, 17, len as u16);
        let c = match !csum::fold(csum::sum_bytes(ph, d)) {
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
    use super::*;

    const SRC: u32 = 0xc0a8_0001;
    const DST: u32 = 0xc0a8_00c7;

    /// 40000 -> 53, 4 payload bytes, checksum precomputed by hand-independent code in
    /// `bytes()`.
    static PACKET_BYTES: [u8; 12] = [
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0xaa, 0xbb, 0xcc, 0xdd,
    ];

    fn bytes() -> Vec<u8> {
        let mut b = PACKET_BYTES.to_vec();
        let ph = csum::pseudo_header_sum(SRC, DST, 17, 12);
        let c = !csum::fold(csum::sum_bytes(ph, &b));
        b[6..8].copy_from_slice(&c.to_be_bytes());
        b
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

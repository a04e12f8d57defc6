//! Ethernet II frames with at most one 802.1Q tag.
//!
//! A tag is recognised by the TPID `0x8100` at offset 12; the "EtherType" of the
//! frame is then the inner one, and the payload starts at 18. Stacked tags (QinQ,
//! `0x88a8`) are reported as their EtherType and not unwrapped.

use super::view::{Field, view};
use super::{Error, Result, enum_with_unknown};

enum_with_unknown! {
    /// The EtherType field.
    pub enum EtherType(u16) {
        Ipv4 = 0x0800,
        Arp = 0x0806,
        Vlan = 0x8100,
        Ipv6 = 0x86dd,
    }
}

mod field {
    use core::ops::Range;
    pub(super) const DST: Range<usize> = 0..6;
    pub(super) const SRC: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
    pub(super) const VLAN_TCI: Range<usize> = 14..16;
    pub(super) const VLAN_ETHERTYPE: Range<usize> = 16..18;
}

/// Length of an untagged header.
pub const HEADER_LEN: usize = field::ETHERTYPE.end;
/// Length of a header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = field::VLAN_ETHERTYPE.end;

view! {
    /// A view of an Ethernet frame.
    pub struct Frame;
    fields {
        dst_addr, set_dst_addr: [u8; 6] = field::DST;
        src_addr, set_src_addr: [u8; 6] = field::SRC;
    }
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks that the buffer holds the whole header, including the VLAN tag when the
    /// outer EtherType announces one.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.has_vlan() && len < TAGGED_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// `true` if the frame carries an 802.1Q tag.
    #[inline]
    pub fn has_vlan(&self) -> bool {
        EtherType::read(&self.buffer.as_ref()[field::ETHERTYPE]) == EtherType::Vlan
    }

    /// The tag control information (PCP, DEI, VID) when tagged.
    #[inline]
    pub fn vlan_tci(&self) -> Option<u16> {
        self.has_vlan()
            .then(|| u16::read(&self.buffer.as_ref()[field::VLAN_TCI]))
    }

    /// The EtherType of the payload (the inner one when tagged).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let field = if self.has_vlan() {
            field::VLAN_ETHERTYPE
        } else {
            field::ETHERTYPE
        };
        EtherType::read(&self.buffer.as_ref()[field])
    }

    /// Header length: 14, or 18 with a tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.has_vlan() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Frame<&'a T> {
    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let hl = self.header_len();
        &self.buffer.as_ref()[hl..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// The bytes after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// A high-level representation of an Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: [u8; 6],
    pub dst_addr: [u8; 6],
    /// Tag control information of an 802.1Q tag, if any.
    pub vlan_tci: Option<u16>,
    pub ethertype: EtherType,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &Frame<&T>) -> Result<Self> {
        frame.check_len()?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan_tci: frame.vlan_tci(),
            ethertype: frame.ethertype(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        if self.vlan_tci.is_some() {
            TAGGED_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header into a buffer of at least [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        let d = frame.buffer.as_mut();
        match self.vlan_tci {
            Some(tci) => {
                EtherType::Vlan.write(&mut d[field::ETHERTYPE]);
                tci.write(&mut d[field::VLAN_TCI]);
                self.ethertype.write(&mut d[field::VLAN_ETHERTYPE]);
            }
            None => self.ethertype.write(&mut d[field::ETHERTYPE]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME_BYTES: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0xaa,
        0xbb, 0xcc, 0xdd,
    ];

    static TAGGED_BYTES: [u8; 20] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x81, 0x00, 0x20,
        0x0a, 0x08, 0x00, 0xaa, 0xbb,
    ];

    fn repr(vlan: Option<u16>) -> Repr {
        Repr {
            dst_addr: [2, 0, 0, 0, 0, 1],
            src_addr: [2, 0, 0, 0, 0, 2],
            vlan_tci: vlan,
            ethertype: EtherType::Ipv4,
        }
    }

    #[test]
    fn test_deconstruct() {
        let f = Frame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.vlan_tci(), None);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn test_deconstruct_tagged() {
        let f = Frame::new_checked(&TAGGED_BYTES[..]).unwrap();
        assert_eq!(f.vlan_tci().map(|t| t & 0x0fff), Some(10));
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0u8; 18];
        let mut f = Frame::new_unchecked(&mut bytes[..]);
        repr(None).emit(&mut f);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(bytes, FRAME_BYTES);
        let mut bytes = [0u8; 20];
        let mut f = Frame::new_unchecked(&mut bytes[..]);
        repr(Some(0x200a)).emit(&mut f);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(bytes, TAGGED_BYTES);
    }

    #[test]
    fn test_parse_and_emit() {
        let f = Frame::new_checked(&TAGGED_BYTES[..]).unwrap();
        let r = Repr::parse(&f).unwrap();
        assert_eq!(r, repr(Some(0x200a)));
        assert_eq!(r.buffer_len(), 18);
    }

    #[test]
    fn test_impossible_len() {
        assert_eq!(
            Frame::new_checked(&FRAME_BYTES[..13]).unwrap_err(),
            Error::Truncated
        );
        // The tag is announced but cut off.
        assert_eq!(
            Frame::new_checked(&TAGGED_BYTES[..16]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn unknown_ethertype_round_trips() {
        assert_eq!(EtherType::from(0x1234), EtherType::Unknown(0x1234));
        assert_eq!(u16::from(EtherType::Unknown(0x1234)), 0x1234);
    }
}

//! ICMP messages: echo request/reply (the identifier is what a NAT maps) and the
//! error messages that quote the offending packet's IP header and at least 8 bytes
//! of its L4 header (RFC 792), which RFC 5508 requires a NAT to translate.

use mfplane_core::csum;

use super::ipv4;
use super::view::view;
use super::{Error, Result, enum_with_unknown};

enum_with_unknown! {
    /// ICMP message types.
    pub enum Message(u8) {
        EchoReply = 0,
        DstUnreachable = 3,
        SourceQuench = 4,
        Redirect = 5,
        EchoRequest = 8,
        TimeExceeded = 11,
        ParamProblem = 12,
        Timestamp = 13,
        TimestampReply = 14,
    }
}

impl Message {
    /// Echo request or reply: a query whose identifier a NAT maps.
    pub fn is_echo(self) -> bool {
        matches!(self, Message::EchoRequest | Message::EchoReply)
    }

    /// An error that quotes the packet that caused it.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Message::DstUnreachable
                | Message::SourceQuench
                | Message::Redirect
                | Message::TimeExceeded
                | Message::ParamProblem
        )
    }
}

mod field {
    use core::ops::Range;
    pub(super) const TYPE: Range<usize> = 0..1;
    pub(super) const CODE: Range<usize> = 1..2;
    pub(super) const CHECKSUM: Range<usize> = 2..4;
    pub(super) const ECHO_IDENT: Range<usize> = 4..6;
    pub(super) const ECHO_SEQNO: Range<usize> = 6..8;
    pub(super) const REST: Range<usize> = 4..8;
}

/// Length of the fixed header (type, code, checksum and 4 type-specific bytes).
pub const HEADER_LEN: usize = field::REST.end;

view! {
    /// A view of an ICMP message.
    pub struct Packet;
    fields {
        msg_type, set_msg_type: Message = field::TYPE;
        msg_code, set_msg_code: u8 = field::CODE;
        checksum, set_checksum: u16 = field::CHECKSUM;
        /// Echo identifier (echo messages).
        echo_ident, set_echo_ident: u16 = field::ECHO_IDENT;
        /// Echo sequence number (echo messages).
        echo_seq_no, set_echo_seq_no: u16 = field::ECHO_SEQNO;
        /// The 4 type-specific bytes (unused, MTU, pointer, gateway).
        rest, set_rest: [u8; 4] = field::REST;
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the 8-byte header is present; for errors, that an IPv4 header is quoted.
    pub fn check_len(&self) -> Result<()> {
        let d = self.buffer.as_ref();
        if d.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.msg_type().is_error() && d.len() < HEADER_LEN + ipv4::HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// `true` if the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        csum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The bytes after the 8-byte header: echo data, or the quoted packet of an error.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The quoted IPv4 header of an error message.
    pub fn quoted(&self) -> Result<ipv4::Packet<&'a [u8]>> {
        ipv4::Packet::new_quoted(self.data())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = csum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// A high-level representation of an ICMP message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data_len: usize,
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data_len: usize,
    },
    /// An error quoting `data_len` bytes of the offending packet.
    Error {
        kind: Message,
        code: u8,
        rest: [u8; 4],
        data_len: usize,
    },
}

impl Repr {
    /// Parses a message whose checksum verifies; other query types are
    /// [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        let data_len = packet.data().len();
        match packet.msg_type() {
            Message::EchoRequest => Ok(Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            }),
            Message::EchoReply => Ok(Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            }),
            kind if kind.is_error() => Ok(Repr::Error {
                kind,
                code: packet.msg_code(),
                rest: packet.rest(),
                data_len,
            }),
            _ => Err(Error::Unsupported),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        match *self {
            Repr::EchoRequest { data_len, .. }
            | Repr::EchoReply { data_len, .. }
            | Repr::Error { data_len, .. } => HEADER_LEN + data_len,
        }
    }

    /// Writes the header; the caller writes the data, then calls
    /// [`Packet::fill_checksum`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        match *self {
            Repr::EchoRequest { ident, seq_no, .. } | Repr::EchoReply { ident, seq_no, .. } => {
                let kind = if matches!(self, Repr::EchoRequest { .. }) {
                    Message::EchoRequest
                } else {
                    Message::EchoReply
                };
                packet.set_msg_type(kind);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
            }
            Repr::Error {
                kind, code, rest, ..
            } => {
                packet.set_msg_type(kind);
                packet.set_msg_code(code);
                packet.set_rest(rest);
            }
        }
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echo request id 0x1234 seq 1, data "abcd"; checksum filled by `echo_bytes()`.
    static ECHO_BYTES: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    ];

    fn echo_bytes() -> Vec<u8> {
        let mut b = ECHO_BYTES.to_vec();
        let c = csum::checksum(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    /// Port unreachable quoting a UDP packet 10.0.0.1:40000 -> 10.0.0.2:53 (8 bytes).
    fn error_bytes() -> Vec<u8> {
        let mut b = vec![0x03, 0x03, 0, 0, 0, 0, 0, 0];
        let mut ip = vec![
            0x45, 0, 0, 36, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = csum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        b.extend_from_slice(&ip);
        b.extend_from_slice(&[0x9c, 0x40, 0x00, 0x35, 0x00, 0x10, 0x00, 0x00]);
        let c = csum::checksum(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn test_deconstruct() {
        let b = echo_bytes();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        assert!(p.verify_checksum());
        assert_eq!(p.data(), b"abcd");
    }

    #[test]
    fn test_deconstruct_error() {
        let b = error_bytes();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.msg_type().is_error());
        let q = p.quoted().unwrap();
        assert_eq!(q.src_addr(), 0x0a00_0001);
        assert_eq!(q.payload().len(), 8);
        assert!(p.verify_checksum());
    }

    #[test]
    fn test_construct() {
        let mut b = vec![0u8; 12];
        let mut p = Packet::new_unchecked(&mut b[..]);
        Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
            data_len: 4,
        }
        .emit(&mut p);
        p.data_mut().copy_from_slice(b"abcd");
        p.fill_checksum();
        assert_eq!(b, echo_bytes());
    }

    #[test]
    fn test_parse_and_emit() {
        let b = echo_bytes();
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data_len: 4
            }
        );
        assert_eq!(r.buffer_len(), 12);
        let e = error_bytes();
        let r = Repr::parse(&Packet::new_checked(&e[..]).unwrap()).unwrap();
        assert!(matches!(
            r,
            Repr::Error {
                kind: Message::DstUnreachable,
                code: 3,
                ..
            }
        ));
        let mut bad = b.clone();
        bad[9] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&bad[..]).unwrap()).unwrap_err(),
            Error::BadChecksum
        );
    }

    #[test]
    fn test_impossible_len() {
        assert_eq!(
            Packet::new_checked(&echo_bytes()[..7]).unwrap_err(),
            Error::Truncated
        );
        // An error that quotes less than an IPv4 header.
        assert_eq!(
            Packet::new_checked(&error_bytes()[..20]).unwrap_err(),
            Error::Truncated
        );
    }
}

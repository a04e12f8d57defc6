//! Simulated packets: real IPv4/UDP/TCP bytes (built and parsed with the dataplane's
//! wire views, checksums included) carried in bursts over turmoil UDP.
//!
//! A burst is what one sender hands one receiver in one go (like an AF_XDP batch):
//! frames prefixed by a big-endian `u16` length. Batching keeps the number of
//! simulated messages, and so the cost of a simulated second, independent of the
//! number of flows, while every frame still goes through the engine on its own.

use mfplane_core::{Endpoint, Proto};
use mfplane_dataplane::wire::tcp::Flags;
use mfplane_dataplane::wire::{
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr, ipv4, tcp, udp,
};

/// Bytes of every probe's payload: the simulated time (ms) its first packet left the
/// inside host, echoed by the remote, so a delivered reply says which probe completed.
pub const PAYLOAD_LEN: usize = 8;

/// Largest burst in bytes; senders split longer ones.
pub const MAX_BURST: usize = 48 * 1024;

/// One parsed simulated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub proto: Proto,
    pub src: Endpoint,
    pub dst: Endpoint,
    /// TCP flags (`None` for UDP).
    pub flags: Option<Flags>,
    /// The probe stamp carried in the payload.
    pub stamp: u64,
}

impl Packet {
    /// The packet's bytes, with valid IPv4 and L4 checksums.
    pub fn encode(&self) -> Vec<u8> {
        let l4_header = match self.proto {
            Proto::Tcp => tcp::HEADER_LEN,
            _ => udp::HEADER_LEN,
        };
        let l4_len = l4_header + PAYLOAD_LEN;
        let mut buf = vec![0u8; ipv4::HEADER_LEN + l4_len];
        let protocol = match self.proto {
            Proto::Tcp => IpProtocol::Tcp,
            Proto::Udp => IpProtocol::Udp,
            Proto::Icmp => IpProtocol::Icmp,
        };
        Ipv4Repr {
            src_addr: self.src.ip,
            dst_addr: self.dst.ip,
            protocol,
            payload_len: l4_len,
            ttl: 64,
            // Any value works: the engine does not reassemble unfragmented packets.
            ident: (self.stamp as u16) ^ self.src.port,
            tos: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let stamp = self.stamp.to_be_bytes();
        let l4 = &mut buf[ipv4::HEADER_LEN..];
        match self.proto {
            Proto::Tcp => {
                let mut p = TcpPacket::new_unchecked(l4);
                TcpRepr {
                    src_port: self.src.port,
                    dst_port: self.dst.port,
                    seq_number: self.stamp as u32,
                    ack_number: 0,
                    flags: self.flags.unwrap_or(Flags::ACK),
                    window_len: 65_535,
                    payload_len: PAYLOAD_LEN,
                }
                .emit(&mut p);
                p.payload_mut().copy_from_slice(&stamp);
                p.fill_checksum(self.src.ip, self.dst.ip);
            }
            _ => {
                let mut p = UdpPacket::new_unchecked(l4);
                UdpRepr {
                    src_port: self.src.port,
                    dst_port: self.dst.port,
                    payload_len: PAYLOAD_LEN,
                }
                .emit(&mut p);
                p.payload_mut().copy_from_slice(&stamp);
                p.fill_checksum(self.src.ip, self.dst.ip);
            }
        }
        buf
    }

    /// Parses `bytes`, verifying every checksum; `None` for anything malformed (a NAT
    /// that emits a bad checksum fails the simulation through this).
    pub fn decode(bytes: &[u8]) -> Option<Packet> {
        let ip = Ipv4Packet::new_checked(bytes).ok()?;
        if !ip.verify_checksum() {
            return None;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let l4 = &bytes[ip.header_len()..usize::from(ip.total_len())];
        let (proto, sport, dport, flags, payload) = match ip.protocol() {
            IpProtocol::Tcp => {
                let p = TcpPacket::new_checked(l4).ok()?;
                if !p.verify_checksum(src, dst) {
                    return None;
                }
                (
                    Proto::Tcp,
                    p.src_port(),
                    p.dst_port(),
                    Some(p.flags()),
                    p.payload(),
                )
            }
            IpProtocol::Udp => {
                let p = UdpPacket::new_checked(l4).ok()?;
                if !p.verify_checksum(src, dst) {
                    return None;
                }
                (Proto::Udp, p.src_port(), p.dst_port(), None, p.payload())
            }
            _ => return None,
        };
        let stamp = u64::from_be_bytes(payload.get(..PAYLOAD_LEN)?.try_into().ok()?);
        Some(Packet {
            proto,
            src: Endpoint::new(src, sport),
            dst: Endpoint::new(dst, dport),
            flags,
            stamp,
        })
    }
}

/// Frames collected for one receiver.
#[derive(Debug, Default, Clone)]
pub struct Burst {
    bytes: Vec<u8>,
    frames: usize,
}

impl Burst {
    /// Appends one frame.
    pub fn push(&mut self, frame: &[u8]) {
        let len = u16::try_from(frame.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes
            .extend_from_slice(&frame[..usize::from(len).min(frame.len())]);
        self.frames += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    pub fn len(&self) -> usize {
        self.frames
    }

    /// Whether the burst should be sent before it grows further.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= MAX_BURST
    }

    /// The datagram, leaving the burst empty.
    pub fn take(&mut self) -> Vec<u8> {
        self.frames = 0;
        std::mem::take(&mut self.bytes)
    }
}

/// The frames of a received burst; stops at the first inconsistent length.
pub fn frames(datagram: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
        let frame = rest.get(2..2 + len)?;
        rest = &rest[2 + len..];
        Some(frame)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_with_valid_checksums() {
        for (proto, flags) in [(Proto::Udp, None), (Proto::Tcp, Some(Flags::SYN))] {
            let p = Packet {
                proto,
                src: Endpoint::new(0x0a00_0001, 40_000),
                dst: Endpoint::new(0xcb00_7101, 443),
                flags,
                stamp: 123_456,
            };
            let bytes = p.encode();
            assert_eq!(Packet::decode(&bytes), Some(p));
            let mut bad = bytes.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(
                Packet::decode(&bad),
                None,
                "a corrupted payload fails the checksum"
            );
        }
    }

    #[test]
    fn bursts_carry_frames_in_order() {
        let mut b = Burst::default();
        b.push(&[1, 2, 3]);
        b.push(&[]);
        b.push(&[4]);
        assert_eq!(b.len(), 3);
        let d = b.take();
        assert!(b.is_empty());
        let got: Vec<&[u8]> = frames(&d).collect();
        assert_eq!(got, vec![&[1u8, 2, 3][..], &[][..], &[4][..]]);
    }
}

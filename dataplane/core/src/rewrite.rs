//! The NAT header rewrite: the one definition every data path calls.
//!
//! A translation replaces one endpoint (address and port, or address and ICMP echo
//! identifier) of an IPv4 packet and fixes every checksum that covers a changed word
//! with RFC 1624 incremental updates:
//! - the IPv4 header checksum covers the address;
//! - the TCP and UDP checksums cover the address (pseudo-header) and the port;
//! - the ICMP checksum covers the identifier but not the address.
//!
//! Each helper returns a [`CsumDelta`] of every 16-bit word it changed in the bytes it
//! was given (addresses, port, and the checksum fields themselves). When those bytes
//! are the header quoted inside an ICMP error, that delta is exactly the update of the
//! ICMP error's own checksum (RFC 5508 translation without touching the payload).

use crate::csum::CsumDelta;
use crate::hdr::{IcmpHdr, Ipv4Hdr, L4Lead, TcpHdr, UdpHdr};
use crate::types::{Endpoint, Proto};

/// Which endpoint of the packet a rewrite replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Outbound SNAT: inside source -> external endpoint.
    Src,
    /// Inbound de-NAT: external destination -> inside endpoint.
    Dst,
}

/// How an L4 checksum covers the rewritten fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Kind {
    /// Covers the pseudo-header; always present.
    Tcp,
    /// Covers the pseudo-header; 0 means "none" (RFC 768).
    Udp,
    /// ICMP: no pseudo-header; the "port" is the echo identifier.
    Icmp,
}

impl L4Kind {
    pub const fn from_proto(p: Proto) -> Self {
        match p {
            Proto::Tcp => L4Kind::Tcp,
            Proto::Udp => L4Kind::Udp,
            Proto::Icmp => L4Kind::Icmp,
        }
    }
}

/// The L4 fields a rewrite touches, borrowed from wherever the header lives.
#[derive(Debug)]
pub struct L4Fields<'a> {
    pub kind: L4Kind,
    /// The port of the rewritten side, or the ICMP echo identifier.
    pub port: &'a mut [u8; 2],
    /// The L4 checksum, or `None` when it is not in the available bytes (a TCP header
    /// quoted in an ICMP error may be cut after 8 bytes).
    pub check: Option<&'a mut [u8; 2]>,
}

impl<'a> L4Fields<'a> {
    /// The fields of a full TCP header.
    #[inline(always)]
    pub fn tcp(tcp: &'a mut TcpHdr, side: Side) -> Self {
        let port = match side {
            Side::Src => &mut tcp.src_port,
            Side::Dst => &mut tcp.dst_port,
        };
        L4Fields {
            kind: L4Kind::Tcp,
            port,
            check: Some(&mut tcp.check),
        }
    }

    /// The fields of a UDP header.
    #[inline(always)]
    pub fn udp(udp: &'a mut UdpHdr, side: Side) -> Self {
        let port = match side {
            Side::Src => &mut udp.src_port,
            Side::Dst => &mut udp.dst_port,
        };
        L4Fields {
            kind: L4Kind::Udp,
            port,
            check: Some(&mut udp.check),
        }
    }

    /// The fields of an ICMP echo header: the identifier, whichever side.
    #[inline(always)]
    pub fn icmp_echo(icmp: &'a mut IcmpHdr) -> Self {
        L4Fields {
            kind: L4Kind::Icmp,
            port: &mut icmp.id,
            check: Some(&mut icmp.check),
        }
    }

    /// The fields in the 8 leading L4 bytes quoted by an ICMP error. For TCP the
    /// checksum lies beyond them: pass `tcp_check` when the quote is long enough.
    #[inline(always)]
    pub fn quoted(
        lead: &'a mut L4Lead,
        kind: L4Kind,
        side: Side,
        tcp_check: Option<&'a mut [u8; 2]>,
    ) -> Self {
        let L4Lead { w0, w1, w2, w3 } = lead;
        match kind {
            L4Kind::Tcp => L4Fields {
                kind,
                port: if side == Side::Src { w0 } else { w1 },
                check: tcp_check,
            },
            L4Kind::Udp => L4Fields {
                kind,
                port: if side == Side::Src { w0 } else { w1 },
                check: Some(w3),
            },
            L4Kind::Icmp => L4Fields {
                kind,
                port: w2,
                check: Some(w1),
            },
        }
    }
}

/// Replaces one address of `ip` and updates its header checksum. Returns the delta of
/// the address words alone (what a pseudo-header checksum needs), and the delta of all
/// changed words including the header checksum (what a quoting ICMP checksum needs).
#[inline(always)]
pub fn rewrite_addr(ip: &mut Ipv4Hdr, side: Side, new_ip: u32) -> (CsumDelta, CsumDelta) {
    let field = match side {
        Side::Src => &mut ip.src,
        Side::Dst => &mut ip.dst,
    };
    let old_ip = u32::from_be_bytes(*field);
    *field = new_ip.to_be_bytes();
    let addr = CsumDelta::ZERO.dword(old_ip, new_ip);
    let old_check = ip.check;
    addr.apply_to(&mut ip.check);
    let all = addr.bytes2(old_check, ip.check);
    (addr, all)
}

/// Replaces the `side` endpoint of an IPv4 packet: the address in `ip` and, when
/// `l4` is given, the port (or echo identifier), fixing the IPv4 and L4 checksums.
///
/// Pass `l4 = None` for a non-first fragment (no L4 header) or when only the address
/// changes. Returns the delta of every changed word (see the module docs).
#[inline(always)]
pub fn rewrite_endpoint(
    ip: &mut Ipv4Hdr,
    side: Side,
    l4: Option<L4Fields<'_>>,
    new: Endpoint,
) -> CsumDelta {
    let (addr, mut all) = rewrite_addr(ip, side, new.ip);
    if let Some(l4) = l4 {
        let old_port = *l4.port;
        *l4.port = new.port.to_be_bytes();
        let port = CsumDelta::ZERO.bytes2(old_port, *l4.port);
        all = all.merge(port);
        if let Some(check) = l4.check {
            let old_check = *check;
            match l4.kind {
                L4Kind::Tcp => addr.merge(port).apply_to(check),
                L4Kind::Udp => addr.merge(port).apply_udp_to(check),
                L4Kind::Icmp => port.apply_to(check),
            }
            all = all.bytes2(old_check, *check);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum::{checksum, fold, pseudo_header_sum, sum_bytes};
    use crate::hdr::from_bytes_mut;

    /// A full UDP packet (IPv4 + UDP + 4 payload bytes) with correct checksums.
    fn udp_packet(src: u32, sport: u16, dst: u32, dport: u16) -> [u8; 32] {
        let mut p = [0u8; 32];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&src.to_be_bytes());
        p[16..20].copy_from_slice(&dst.to_be_bytes());
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[24..26].copy_from_slice(&12u16.to_be_bytes());
        p[28..32].copy_from_slice(b"ping");
        let c = !fold(sum_bytes(pseudo_header_sum(src, dst, 17, 12), &p[20..32]));
        p[26..28].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn udp_ok(p: &[u8; 32]) -> bool {
        let src = u32::from_be_bytes([p[12], p[13], p[14], p[15]]);
        let dst = u32::from_be_bytes([p[16], p[17], p[18], p[19]]);
        checksum(&p[..20]) == 0
            && fold(sum_bytes(pseudo_header_sum(src, dst, 17, 12), &p[20..32])) == 0xffff
    }

    #[test]
    fn snat_udp_matches_a_freshly_built_packet() {
        let mut p = udp_packet(0x0a00_0001, 40000, 0x0808_0808, 53);
        assert!(udp_ok(&p));
        let (iph, rest) = p.split_at_mut(20);
        let ip: &mut Ipv4Hdr = from_bytes_mut(iph).unwrap();
        let udp: &mut UdpHdr = from_bytes_mut(rest).unwrap();
        rewrite_endpoint(
            ip,
            Side::Src,
            Some(L4Fields::udp(udp, Side::Src)),
            Endpoint::new(0xc633_6401, 1029),
        );
        assert!(udp_ok(&p));
        assert_eq!(p, udp_packet(0xc633_6401, 1029, 0x0808_0808, 53));
    }

    #[test]
    fn udp_without_checksum_keeps_zero() {
        let mut p = udp_packet(0x0a00_0001, 40000, 0x0808_0808, 53);
        p[26] = 0;
        p[27] = 0;
        let (iph, rest) = p.split_at_mut(20);
        let ip: &mut Ipv4Hdr = from_bytes_mut(iph).unwrap();
        let udp: &mut UdpHdr = from_bytes_mut(rest).unwrap();
        rewrite_endpoint(
            ip,
            Side::Dst,
            Some(L4Fields::udp(udp, Side::Dst)),
            Endpoint::new(0x0a00_0009, 9),
        );
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(&p[16..20], &[10, 0, 0, 9]);
        assert_eq!(&p[22..24], &9u16.to_be_bytes());
    }

    #[test]
    fn returned_delta_covers_every_changed_word() {
        let mut p = udp_packet(0x0a00_0001, 40000, 0x0808_0808, 53);
        let before = fold(sum_bytes(0, &p));
        let (iph, rest) = p.split_at_mut(20);
        let ip: &mut Ipv4Hdr = from_bytes_mut(iph).unwrap();
        let udp: &mut UdpHdr = from_bytes_mut(rest).unwrap();
        let d = rewrite_endpoint(
            ip,
            Side::Src,
            Some(L4Fields::udp(udp, Side::Src)),
            Endpoint::new(0xc633_6401, 1029),
        );
        // A checksum over the whole 32 bytes (as an ICMP error's would be) updated by
        // the delta equals a recompute.
        assert_eq!(d.apply(!before), !fold(sum_bytes(0, &p)));
    }
}

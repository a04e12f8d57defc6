//! Whole packets with valid checksums, composed from the views' `Repr`s: what benches,
//! tests and simulations send through the engine, built one way so they all send the
//! same thing.

use mfplane_core::Endpoint;

use super::{
    EtherType, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
    ipv4, udp,
};

/// An unfragmented IPv4/UDP packet from `src` to `dst` carrying `payload`, as a host
/// sends it: TTL 64, don't-fragment set, identification 1, valid IPv4 and UDP
/// checksums.
pub fn udp_packet(src: Endpoint, dst: Endpoint, payload: &[u8]) -> Vec<u8> {
    let l4_len = udp::HEADER_LEN + payload.len();
    let mut buf = vec![0u8; ipv4::HEADER_LEN + l4_len];
    Ipv4Repr {
        src_addr: src.ip,
        dst_addr: dst.ip,
        protocol: IpProtocol::Udp,
        payload_len: l4_len,
        ttl: 64,
        ident: 1,
        tos: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
    let mut p = UdpPacket::new_unchecked(&mut buf[ipv4::HEADER_LEN..]);
    UdpRepr {
        src_port: src.port,
        dst_port: dst.port,
        payload_len: payload.len(),
    }
    .emit(&mut p);
    p.payload_mut().copy_from_slice(payload);
    p.fill_checksum(src.ip, dst.ip);
    buf
}

/// An IPv4 `packet` in an untagged Ethernet II frame from MAC `src` to MAC `dst`.
pub fn ipv4_frame(src: [u8; 6], dst: [u8; 6], packet: &[u8]) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        vlan_tci: None,
        ethertype: EtherType::Ipv4,
    };
    let mut frame = vec![0u8; eth.buffer_len() + packet.len()];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    frame[eth.buffer_len()..].copy_from_slice(packet);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet;

    #[test]
    fn a_built_frame_parses_back_with_valid_checksums() {
        let (src, dst) = (
            Endpoint::new(0x0a00_0001, 40000),
            Endpoint::new(0xcb00_7107, 53),
        );
        let f = ipv4_frame(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            &udp_packet(src, dst, b"abcd"),
        );
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.ethertype(), EtherType::Ipv4);
        let ip = Ipv4Packet::new_checked(&f[ethernet::HEADER_LEN..]).unwrap();
        let ip_repr = Ipv4Repr::parse(&ip).unwrap();
        assert_eq!((ip_repr.src_addr, ip_repr.dst_addr), (src.ip, dst.ip));
        assert!(ip_repr.dont_frag && ip_repr.ttl == 64);
        let u = UdpPacket::new_checked(ip.payload()).unwrap();
        let u_repr = UdpRepr::parse(&u, src.ip, dst.ip).unwrap();
        assert_eq!((u_repr.src_port, u_repr.dst_port), (src.port, dst.port));
        assert_eq!(u.payload(), b"abcd");
    }
}

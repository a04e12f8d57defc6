//! Feeds arbitrary bytes to every wire parser (`new_checked` and `Repr::parse` of
//! each protocol) and, as a sequence of frames, through the NAT engine.
//!
//! Checked properties: nothing panics; a frame keeps its length; a dropped or
//! passed frame is unchanged; a translated frame whose input checksums verified
//! has verifying IP and L4 checksums.
//!
//! A fuzzer cannot guess checksums, so when bit 3 of the first byte is set the
//! harness fills in the IPv4 and L4 checksums of each frame before the engine sees
//! it; and the engine starts with a few imported sessions (inside 10.0.0.1:1000 for
//! each protocol) so inbound paths are reachable.
//!
//! Run: `cd dataplane/fuzz && cargo +nightly fuzz run parse_translate`
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use mfplane_core::{BucketId, Endpoint, Proto, SessionKey, SessionRecord};
use mfplane_dataplane::engine::{Engine, EngineConfig, Filtering, Timestamp, Verdict};
use mfplane_dataplane::wire::{
    EthernetFrame, EthernetRepr, IcmpPacket, IcmpRepr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket,
    TcpRepr, UdpPacket, UdpRepr,
};

/// Every parser on every suffix start that matters: the whole input, and the input
/// read as an IPv4 packet and as each L4 header.
fn parse_everything(data: &[u8]) {
    if let Ok(f) = EthernetFrame::new_checked(data) {
        let _ = EthernetRepr::parse(&f);
        let _ = f.payload();
    }
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let _ = Ipv4Repr::parse(&p);
        let _ = (p.payload(), p.options());
    }
    if let Ok(p) = Ipv4Packet::new_quoted(data) {
        let _ = p.payload();
    }
    if let Ok(p) = TcpPacket::new_checked(data) {
        let _ = TcpRepr::parse(&p, 0x0a00_0001, 0x0a00_0002);
        let _ = p.payload();
    }
    if let Ok(p) = UdpPacket::new_checked(data) {
        let _ = UdpRepr::parse(&p, 0x0a00_0001, 0x0a00_0002);
        let _ = p.payload();
    }
    if let Ok(p) = IcmpPacket::new_checked(data) {
        let _ = IcmpRepr::parse(&p);
        let _ = p.quoted().map(|q| q.payload().len());
    }
}

/// Fills in the IPv4 header checksum and the TCP/UDP/ICMP checksum of a frame, as
/// far as its structure parses.
fn fix_checksums(frame: &mut [u8]) {
    let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
        return;
    };
    let l3 = eth.header_len();
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut frame[l3..]) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst, proto, frag) = (
        ip.src_addr(),
        ip.dst_addr(),
        ip.protocol(),
        ip.is_fragment(),
    );
    if frag {
        return;
    }
    let l4 = ip.payload_mut();
    match proto {
        IpProtocol::Tcp => {
            if let Ok(mut p) = TcpPacket::new_checked(l4) {
                p.fill_checksum(src, dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut p) = UdpPacket::new_checked(l4) {
                p.fill_checksum(src, dst);
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut p) = IcmpPacket::new_checked(l4) {
                p.fill_checksum();
            }
        }
        _ => {}
    }
}

/// `Some(true)` if the frame is IPv4 and every checksum it carries verifies.
fn checksums_ok(frame: &[u8]) -> Option<bool> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let mut ok = ip.verify_checksum();
    if ip.is_fragment() {
        return Some(ok);
    }
    let (src, dst, l4) = (ip.src_addr(), ip.dst_addr(), ip.payload());
    match ip.protocol() {
        IpProtocol::Tcp => ok &= TcpPacket::new_checked(l4).ok()?.verify_checksum(src, dst),
        IpProtocol::Udp => ok &= UdpPacket::new_checked(l4).ok()?.verify_checksum(src, dst),
        IpProtocol::Icmp => ok &= IcmpPacket::new_checked(l4).ok()?.verify_checksum(),
        _ => {}
    }
    Some(ok)
}

fuzz_target!(|data: &[u8]| {
    parse_everything(data);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut ips = vec![Ipv4Addr::new(198, 51, 100, 1)];
    if mode & 4 == 4 {
        ips.push(Ipv4Addr::new(198, 51, 100, 2));
    }
    let mut cfg = EngineConfig::new(ips);
    if mode & 1 == 1 {
        cfg.filtering = Filtering::AddressAndPortDependent;
    }
    cfg.hairpinning = mode & 2 == 0;
    // Small tables so each run builds its engine quickly: 16 buckets of which it owns
    // 4 (a quarter of new flows allocate, the rest are `not_owner`), few sessions.
    cfg.bucket_bits = mfplane_core::BucketBits::new(4).unwrap_or_default();
    cfg.max_sessions = 1024;
    cfg.fragment_slots = 64;
    let Ok(mut engine) = Engine::new(cfg) else {
        return;
    };
    engine.set_owned_buckets((0..4).map(BucketId));
    for (i, proto) in [Proto::Tcp, Proto::Udp, Proto::Icmp]
        .into_iter()
        .enumerate()
    {
        // External port 0x1005 + 0x10 * i: bucket 5 of 16, not owned here.
        let port = 0x1005 + 0x10 * i as u16;
        let rec = SessionRecord {
            key: SessionKey {
                proto,
                inside: Endpoint::new(0x0a00_0001, 1000),
            },
            external: Endpoint::new(0xc633_6401, port),
            bucket: BucketId(5),
            created_ms: 0,
        };
        if engine.import(rec, Timestamp(0)).is_err() {
            return;
        }
    }
    let fix = mode & 8 == 8;
    // The rest is a sequence of frames, each prefixed by a length byte.
    let mut input = rest;
    let mut now = 1_700_000_000_000;
    while let Some((&len, tail)) = input.split_first() {
        let n = usize::from(len).min(tail.len());
        let mut owned = tail[..n].to_vec();
        input = &tail[n..];
        if fix {
            fix_checksums(&mut owned);
        }
        let original = owned.as_slice();
        parse_everything(original);
        let mut frame = original.to_vec();
        now += 1000;
        match engine.process(&mut frame, Timestamp(now)) {
            Verdict::Translated(_) => {
                assert_eq!(frame.len(), original.len());
                if checksums_ok(original) == Some(true) {
                    assert_eq!(
                        checksums_ok(&frame),
                        Some(true),
                        "bad checksums out of {original:02x?}"
                    );
                }
            }
            Verdict::Pass | Verdict::Drop(_) => assert_eq!(frame, original),
        }
    }
});

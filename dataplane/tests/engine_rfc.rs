//! Behaviour of the NAT engine per RFC 4787 (UDP), RFC 5382 (TCP) and RFC 5508
//! (ICMP), one test per requirement, named after it. Every translated packet's
//! checksums are verified by an independent full recompute (`common::ref_sum`).

#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

mod common;

use common::*;
use mfplane_core::{
    BucketBits, BucketId, Endpoint, ExternalKey, Proto, SessionKey, inbound_bucket,
};
use mfplane_dataplane::engine::{
    Direction, DropReason, Engine, Filtering, Pooling, TcpState, Verdict,
};

const OUT: Verdict = Verdict::Translated(Direction::Outbound);
const IN: Verdict = Verdict::Translated(Direction::Inbound);

/// Sends `p` through `e` and returns the verdict and the (translated) frame, whose
/// checksums are verified when translated.
fn run(e: &mut Engine, p: &Pkt, now: mfplane_dataplane::engine::Timestamp) -> (Verdict, Vec<u8>) {
    let mut f = p.frame();
    let v = e.process(&mut f, now);
    if matches!(v, Verdict::Translated(_)) {
        assert_checksums_valid(&f);
    } else {
        assert_eq!(f, p.frame(), "a dropped or passed frame is never modified");
    }
    (v, f)
}

/// The session key of inside endpoint `ip`:`port`.
fn session_key(proto: Proto, ip: u32, port: u16) -> SessionKey {
    SessionKey {
        proto,
        inside: Endpoint::new(ip, port),
    }
}

/// The external endpoint the engine gave `p`'s inside endpoint.
fn mapped(e: &mut Engine, p: &Pkt) -> Endpoint {
    let (v, f) = run(e, p, T0);
    assert_eq!(v, OUT, "{p:?}");
    let s = seen(&f);
    Endpoint::new(s.src, s.sport)
}

#[test]
fn udp_outbound_and_reply_round_trip() {
    let mut e = engine();
    let out = Pkt::udp(HOST_A, 40000, REMOTE, 53);
    let (v, f) = run(&mut e, &out, T0);
    assert_eq!(v, OUT);
    let s = seen(&f);
    assert!(s.src == EXT || s.src == EXT2);
    assert_eq!((s.dst, s.dport), (REMOTE, 53));
    assert!(s.sport >= 1024);
    // The payload is untouched.
    assert!(f.ends_with(b"mfplane!"));
    let reply = Pkt::udp(REMOTE, 53, s.src, s.sport);
    let (v, f) = run(&mut e, &reply, at(1));
    assert_eq!(v, IN);
    let r = seen(&f);
    assert_eq!(
        (r.src, r.sport, r.dst, r.dport),
        (REMOTE, 53, HOST_A, 40000)
    );
    assert_eq!(e.counters().sessions_created, 1);
}

#[test]
fn udp_zero_checksum_stays_zero() {
    let mut e = engine();
    let mut p = Pkt::udp(HOST_A, 40000, REMOTE, 53);
    p.udp_zero_checksum = true;
    let (v, f) = run(&mut e, &p, T0);
    assert_eq!(v, OUT);
    let l4 = &f[14 + 20..];
    assert_eq!(&l4[6..8], &[0, 0], "RFC 768: 0 means no checksum; keep it");
}

#[test]
fn vlan_tagged_and_ip_options_are_translated() {
    let mut e = engine();
    let mut p = Pkt::tcp(HOST_A, 40001, REMOTE, 443, SYN);
    p.vlan = Some(0x0064);
    p.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    let (v, f) = run(&mut e, &p, T0);
    assert_eq!(v, OUT);
    assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 0x64], "tag kept");
    assert_eq!(&f[18 + 20..18 + 24], &[1, 1, 1, 0], "options kept");
    assert_ne!(seen(&f).src, HOST_A);
}

#[test]
fn non_ipv4_frames_pass_untouched() {
    let mut e = engine();
    let mut arp = Pkt::udp(HOST_A, 1, REMOTE, 2).frame();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let orig = arp.clone();
    assert_eq!(e.process(&mut arp, T0), Verdict::Pass);
    assert_eq!(arp, orig);
    assert_eq!(e.counters().passed, 1);
}

#[test]
fn rfc4787_req1_endpoint_independent_mapping() {
    let mut e = engine();
    let a = mapped(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53));
    let b = mapped(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE2, 9999));
    assert_eq!(
        a, b,
        "same inside endpoint, different destinations: same mapping"
    );
    let c = mapped(&mut e, &Pkt::udp(HOST_A, 40001, REMOTE, 53));
    assert_ne!(a, c);
}

#[test]
fn rfc4787_req2_paired_address_pooling() {
    let mut e = engine();
    let ips: Vec<u32> = (0..50)
        .map(|i| mapped(&mut e, &Pkt::udp(HOST_A, 20000 + i, REMOTE, 53)).ip)
        .collect();
    assert!(
        ips.iter().all(|ip| *ip == ips[0]),
        "one inside host, one external IP"
    );
    // Different hosts spread over both IPs.
    let others: std::collections::HashSet<u32> = (0..64u32)
        .map(|h| mapped(&mut e, &Pkt::udp(0x0a01_0000 + h, 5000, REMOTE, 53)).ip)
        .collect();
    assert_eq!(others.len(), 2);
}

#[test]
fn rfc4787_req3_no_port_overloading_and_allocation_stays_in_bucket() {
    let mut e = engine();
    let bits = BucketBits::DEFAULT;
    let mut seen_ext = std::collections::HashSet::new();
    for h in 0..20u32 {
        for port in 0..20u16 {
            let p = Pkt::udp(0x0a00_0100 + h, 30000 + port, REMOTE, 53);
            let ext = mapped(&mut e, &p);
            assert!(
                seen_ext.insert((ext.ip, ext.port)),
                "external endpoint reused"
            );
            let key = session_key(Proto::Udp, p.src, p.sport);
            let s = e.session(&key).unwrap();
            assert_eq!(inbound_bucket(bits, ext.port), s.record.bucket);
        }
    }
}

#[test]
fn rfc4787_req5_udp_mapping_expires_after_its_timer_not_before() {
    let mut e = engine();
    let ext = mapped(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53));
    assert!(e.expire(at(299)).is_empty(), "default 5 min");
    let removed = e.expire(at(301));
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].external, ext);
    let (v, _) = run(&mut e, &Pkt::udp(REMOTE, 53, ext.ip, ext.port), at(302));
    assert_eq!(v, Verdict::Drop(DropReason::NoSession));
}

#[test]
fn rfc4787_req6_outbound_refresh_keeps_the_mapping() {
    let mut e = engine_with(|c| c.inbound_refresh = false);
    let p = Pkt::udp(HOST_A, 40000, REMOTE, 53);
    let ext = mapped(&mut e, &p);
    // Inbound packets do not refresh when inbound refresh is off...
    let (v, _) = run(&mut e, &Pkt::udp(REMOTE, 53, ext.ip, ext.port), at(200));
    assert_eq!(v, IN);
    assert_eq!(e.expire(at(301)).len(), 1);
    // ...outbound packets always do.
    let ext = mapped(&mut e, &p);
    let (v, _) = run(&mut e, &p, at(200));
    assert_eq!(v, OUT);
    assert!(e.expire(at(301)).is_empty());
    assert_eq!(
        e.session(&session_key(Proto::Udp, HOST_A, 40000))
            .unwrap()
            .record
            .external,
        ext
    );
}

#[test]
fn rfc4787_req8_endpoint_independent_filtering() {
    let mut e = engine();
    let ext = mapped(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53));
    let (v, f) = run(&mut e, &Pkt::udp(REMOTE2, 7777, ext.ip, ext.port), at(1));
    assert_eq!(v, IN, "any remote may reach an endpoint-independent filter");
    assert_eq!(seen(&f).dst, HOST_A);
}

#[test]
fn rfc4787_req8_address_and_port_dependent_filtering() {
    let mut e = engine_with(|c| c.filtering = Filtering::AddressAndPortDependent);
    let ext = mapped(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53));
    assert_eq!(
        run(&mut e, &Pkt::udp(REMOTE, 53, ext.ip, ext.port), at(1)).0,
        IN
    );
    assert_eq!(
        run(&mut e, &Pkt::udp(REMOTE, 54, ext.ip, ext.port), at(1)).0,
        Verdict::Drop(DropReason::Filtered),
        "other port of the same remote"
    );
    assert_eq!(
        run(&mut e, &Pkt::udp(REMOTE2, 53, ext.ip, ext.port), at(1)).0,
        Verdict::Drop(DropReason::Filtered),
        "other remote"
    );
    assert_eq!(e.counters().dropped(DropReason::Filtered), 2);
    // Once the inside host sends there, it is admitted.
    mapped(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE2, 53));
    assert_eq!(
        run(&mut e, &Pkt::udp(REMOTE2, 53, ext.ip, ext.port), at(2)).0,
        IN
    );
}

#[test]
fn rfc4787_req9_hairpinning_uses_external_source() {
    let mut e = engine();
    let b_ext = mapped(&mut e, &Pkt::udp(HOST_B, 5000, REMOTE, 53));
    let a = Pkt::udp(HOST_A, 6000, b_ext.ip, b_ext.port);
    let (v, f) = run(&mut e, &a, at(1));
    assert_eq!(v, Verdict::Translated(Direction::Hairpin));
    let s = seen(&f);
    assert_eq!((s.dst, s.dport), (HOST_B, 5000));
    let a_ext = e
        .session(&session_key(Proto::Udp, HOST_A, 6000))
        .unwrap()
        .record
        .external;
    assert_eq!(
        (s.src, s.sport),
        (a_ext.ip, a_ext.port),
        "B sees A's external endpoint"
    );
    // And B's answer to that external endpoint hairpins back to A.
    let (v, f) = run(&mut e, &Pkt::udp(HOST_B, 5000, a_ext.ip, a_ext.port), at(2));
    assert_eq!(v, Verdict::Translated(Direction::Hairpin));
    let s = seen(&f);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (b_ext.ip, b_ext.port, HOST_A, 6000)
    );
}

#[test]
fn hairpinning_can_be_disabled() {
    let mut e = engine_with(|c| c.hairpinning = false);
    let b_ext = mapped(&mut e, &Pkt::udp(HOST_B, 5000, REMOTE, 53));
    let (v, _) = run(&mut e, &Pkt::udp(HOST_A, 6000, b_ext.ip, b_ext.port), at(1));
    assert_eq!(v, Verdict::Drop(DropReason::NotOurs));
}

#[test]
fn rfc4787_req12_icmp_error_does_not_destroy_the_mapping() {
    let mut e = engine();
    let out = Pkt::udp(HOST_A, 40000, REMOTE, 53);
    let (_, sent) = run(&mut e, &out, T0);
    let ext = seen(&sent);
    let err = icmp_error(REMOTE, ext.src, 3, 3, &sent[14..], 8);
    let mut f = err.clone();
    assert_eq!(e.process(&mut f, at(1)), IN);
    assert_eq!(
        run(&mut e, &Pkt::udp(REMOTE, 53, ext.src, ext.sport), at(2)).0,
        IN
    );
}

#[test]
fn rfc5382_req1_tcp_endpoint_independent_mapping() {
    let mut e = engine();
    let a = mapped(&mut e, &Pkt::tcp(HOST_A, 50000, REMOTE, 80, SYN));
    let b = mapped(&mut e, &Pkt::tcp(HOST_A, 50000, REMOTE2, 443, SYN));
    assert_eq!(a, b);
}

#[test]
fn rfc5382_tcp_handshake_data_and_close() {
    let mut e = engine();
    let key = session_key(Proto::Tcp, HOST_A, 50000);
    let ext = mapped(&mut e, &Pkt::tcp(HOST_A, 50000, REMOTE, 80, SYN));
    assert_eq!(e.session(&key).unwrap().tcp, TcpState::SynSent);
    assert_eq!(
        run(
            &mut e,
            &Pkt::tcp(REMOTE, 80, ext.ip, ext.port, SYNACK),
            at(1)
        )
        .0,
        IN
    );
    assert_eq!(e.session(&key).unwrap().tcp, TcpState::Established);
    assert_eq!(
        run(&mut e, &Pkt::tcp(HOST_A, 50000, REMOTE, 80, ACK), at(1)).0,
        OUT
    );
    assert_eq!(
        run(&mut e, &Pkt::tcp(HOST_A, 50000, REMOTE, 80, FINACK), at(2)).0,
        OUT
    );
    assert_eq!(e.session(&key).unwrap().tcp, TcpState::Closing);
    // Transitory: gone after 4 minutes idle.
    assert!(e.expire(at(2 + 239)).is_empty());
    assert_eq!(e.expire(at(2 + 241)).len(), 1);
}

#[test]
fn rfc5382_req4_unsolicited_inbound_syn_is_silently_dropped() {
    let mut e = engine();
    let mut f = Pkt::tcp(REMOTE, 80, EXT, 40000, SYN).frame();
    let orig = f.clone();
    assert_eq!(e.process(&mut f, T0), Verdict::Drop(DropReason::NoSession));
    assert_eq!(
        f, orig,
        "no RST or ICMP is generated: the frame is only dropped"
    );
    assert_eq!(e.session_count(), 0);
}

#[test]
fn rfc5382_req5_established_idle_timeout_at_least_2h4m() {
    let mut e = engine();
    let ext = mapped(&mut e, &Pkt::tcp(HOST_A, 50000, REMOTE, 80, SYN));
    run(&mut e, &Pkt::tcp(REMOTE, 80, ext.ip, ext.port, SYNACK), T0);
    assert!(e.expire(at(7440 - 1)).is_empty(), "not before 2 h 4 min");
    assert_eq!(e.expire(at(7440 + 1)).len(), 1);
}

#[test]
fn rfc5382_req5_transitory_timeout_at_least_4min() {
    let mut e = engine();
    mapped(&mut e, &Pkt::tcp(HOST_A, 50000, REMOTE, 80, SYN));
    assert!(e.expire(at(239)).is_empty());
    assert_eq!(
        e.expire(at(241)).len(),
        1,
        "a SYN never answered is transitory"
    );
}

#[test]
fn rfc5382_rst_makes_the_mapping_transitory_and_does_not_open_one() {
    let mut e = engine();
    let (v, _) = run(&mut e, &Pkt::tcp(HOST_A, 50001, REMOTE, 80, RST), T0);
    assert_eq!(
        v,
        Verdict::Drop(DropReason::NoSession),
        "a RST opens nothing"
    );
    let ext = mapped(&mut e, &Pkt::tcp(HOST_A, 50000, REMOTE, 80, SYN));
    run(&mut e, &Pkt::tcp(REMOTE, 80, ext.ip, ext.port, SYNACK), T0);
    run(&mut e, &Pkt::tcp(REMOTE, 80, ext.ip, ext.port, RST), at(1));
    let key = session_key(Proto::Tcp, HOST_A, 50000);
    assert_eq!(e.session(&key).unwrap().tcp, TcpState::Reset);
    assert_eq!(e.expire(at(242)).len(), 1);
}

#[test]
fn rfc5382_req5_mid_stream_pickup_is_transitory_until_the_outside_answers() {
    let mut e = engine();
    let key = session_key(Proto::Tcp, HOST_A, 50000);
    let ext = mapped(&mut e, &Pkt::tcp(HOST_A, 50000, REMOTE, 80, ACK));
    assert_eq!(e.session(&key).unwrap().tcp, TcpState::SynSent);
    run(&mut e, &Pkt::tcp(HOST_A, 50000, REMOTE, 80, ACK), at(1));
    assert_eq!(
        e.session(&key).unwrap().tcp,
        TcpState::SynSent,
        "outbound alone never establishes"
    );
    run(&mut e, &Pkt::tcp(REMOTE, 80, ext.ip, ext.port, ACK), at(2));
    assert_eq!(e.session(&key).unwrap().tcp, TcpState::Established);
}

#[test]
fn rfc5382_req2_tcp_hairpinning() {
    let mut e = engine();
    let b_ext = mapped(&mut e, &Pkt::tcp(HOST_B, 8080, REMOTE, 80, SYN));
    let (v, f) = run(
        &mut e,
        &Pkt::tcp(HOST_A, 6000, b_ext.ip, b_ext.port, SYN),
        at(1),
    );
    assert_eq!(v, Verdict::Translated(Direction::Hairpin));
    assert_eq!((seen(&f).dst, seen(&f).dport), (HOST_B, 8080));
    assert_ne!(seen(&f).src, HOST_A);
}

#[test]
fn rfc5508_echo_query_mapping_and_timeout() {
    let mut e = engine();
    let ext = mapped(&mut e, &Pkt::echo(HOST_A, REMOTE, 0x1234, true));
    let (v, f) = run(&mut e, &Pkt::echo(REMOTE, ext.ip, ext.port, false), at(1));
    assert_eq!(v, IN);
    let s = seen(&f);
    assert_eq!((s.dst, s.dport), (HOST_A, 0x1234), "identifier restored");
    assert!(e.expire(at(1 + 59)).is_empty(), "query timer at least 60 s");
    assert_eq!(e.expire(at(1 + 61)).len(), 1);
}

#[test]
fn rfc5508_echo_reply_from_inside_opens_nothing() {
    let mut e = engine();
    let (v, _) = run(&mut e, &Pkt::echo(HOST_A, REMOTE, 9, false), T0);
    assert_eq!(v, Verdict::Drop(DropReason::NoSession));
}

#[test]
fn rfc5508_inbound_icmp_error_translates_outer_and_quoted_headers() {
    for (proto_pkt, quote) in [
        (Pkt::udp(HOST_A, 40000, REMOTE, 53), 8),
        (Pkt::tcp(HOST_A, 40000, REMOTE, 80, SYN), 8),
        (Pkt::tcp(HOST_A, 40000, REMOTE, 80, SYN), 28),
        (Pkt::echo(HOST_A, REMOTE, 77, true), 16),
    ] {
        let mut e = engine();
        let (_, sent) = run(&mut e, &proto_pkt, T0);
        let ext = seen(&sent);
        // Time exceeded from a router on the path, quoting what we sent.
        let router = 0xcb00_71fe;
        let mut f = icmp_error(router, ext.src, 11, 0, &sent[14..], quote);
        assert_eq!(e.process(&mut f, at(1)), IN, "{proto_pkt:?}");
        assert_checksums_valid(&f);
        let s = seen(&f);
        assert_eq!((s.src, s.dst), (router, HOST_A));
        // The quoted packet now shows the inside endpoint, as the host sent it.
        let q = &f[14 + 20 + 8..];
        let quoted_src = u32::from_be_bytes([q[12], q[13], q[14], q[15]]);
        assert_eq!(quoted_src, HOST_A);
        let qport = if proto_pkt.proto == ICMP {
            u16::from_be_bytes([q[24], q[25]])
        } else {
            u16::from_be_bytes([q[20], q[21]])
        };
        assert_eq!(qport, proto_pkt.sport);
        // When the quote is complete, the quoted packet equals the original.
        if quote >= proto_pkt.l4().len() {
            assert_eq!(&q[..20 + quote], &proto_pkt.ip()[..20 + quote]);
        }
        assert_eq!(e.counters().icmp_errors_translated, 1);
    }
}

#[test]
fn rfc5508_outbound_icmp_error_translates_to_external() {
    let mut e = engine();
    let ext = mapped(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53));
    // An inbound packet delivered to the host...
    let (_, delivered) = run(&mut e, &Pkt::udp(REMOTE, 53, ext.ip, ext.port), at(1));
    // ...which answers with port unreachable quoting it.
    let mut f = icmp_error(HOST_A, REMOTE, 3, 3, &delivered[14..], 8);
    assert_eq!(e.process(&mut f, at(2)), OUT);
    assert_checksums_valid(&f);
    let s = seen(&f);
    assert_eq!((s.src, s.dst), (ext.ip, REMOTE));
    let q = &f[14 + 28..];
    let qdst = u32::from_be_bytes([q[16], q[17], q[18], q[19]]);
    assert_eq!(qdst, ext.ip);
    assert_eq!(u16::from_be_bytes([q[22], q[23]]), ext.port);
    // Exactly what the remote sent originally.
    let orig = Pkt::udp(REMOTE, 53, ext.ip, ext.port).ip();
    assert_eq!(&q[..28], &orig[..28]);
}

#[test]
fn rfc5508_hairpinned_icmp_error_is_translated_both_ways() {
    let mut e = engine();
    let b_ext = mapped(&mut e, &Pkt::udp(HOST_B, 5000, REMOTE, 53));
    // A sends to B's external endpoint; B receives it hairpinned...
    let (v, delivered) = run(&mut e, &Pkt::udp(HOST_A, 6000, b_ext.ip, b_ext.port), at(1));
    assert_eq!(v, Verdict::Translated(Direction::Hairpin));
    let a_ext = seen(&delivered);
    // ...and answers with port unreachable quoting it, addressed to A's external IP.
    let mut f = icmp_error(HOST_B, a_ext.src, 3, 3, &delivered[14..], 8);
    assert_eq!(
        e.process(&mut f, at(2)),
        Verdict::Translated(Direction::Hairpin)
    );
    assert_checksums_valid(&f);
    // A sees an error from B's external address about the packet exactly as A sent it.
    let s = seen(&f);
    assert_eq!((s.src, s.dst), (b_ext.ip, HOST_A));
    let q = &f[14 + 28..];
    assert_eq!(
        &q[..28],
        &Pkt::udp(HOST_A, 6000, b_ext.ip, b_ext.port).ip()[..28]
    );
}

#[test]
fn rfc5508_icmp_error_without_mapping_is_dropped() {
    let mut e = engine();
    let ghost = Pkt::udp(EXT, 4444, REMOTE, 53).ip();
    let mut f = icmp_error(REMOTE, EXT, 3, 3, &ghost, 8);
    assert_eq!(e.process(&mut f, T0), Verdict::Drop(DropReason::NoSession));
}

#[test]
fn rfc5508_icmp_error_with_bad_checksum_is_dropped() {
    let mut e = engine();
    let (_, sent) = run(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53), T0);
    let ext = seen(&sent);
    let mut f = icmp_error(REMOTE, ext.src, 3, 3, &sent[14..], 8);
    f[14 + 20 + 2] ^= 0xff;
    assert_eq!(
        e.process(&mut f, at(1)),
        Verdict::Drop(DropReason::BadChecksum)
    );
}

#[test]
fn icmp_error_about_an_icmp_error_is_not_translated() {
    let mut e = engine();
    let (_, sent) = run(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53), T0);
    let ext = seen(&sent);
    let inner = icmp_error(REMOTE, ext.src, 3, 3, &sent[14..], 8);
    let mut f = icmp_error(REMOTE, ext.src, 11, 0, &inner[14..], 8);
    assert_eq!(
        e.process(&mut f, at(1)),
        Verdict::Drop(DropReason::UnsupportedIcmp)
    );
}

#[test]
fn per_host_session_limit() {
    let mut e = engine_with(|c| c.max_sessions_per_host = 3);
    for p in 0..3 {
        mapped(&mut e, &Pkt::udp(HOST_A, 1000 + p, REMOTE, 53));
    }
    let (v, _) = run(&mut e, &Pkt::udp(HOST_A, 2000, REMOTE, 53), T0);
    assert_eq!(v, Verdict::Drop(DropReason::HostLimit));
    assert_eq!(e.counters().dropped(DropReason::HostLimit), 1);
    // Other hosts are not affected; existing sessions keep working.
    mapped(&mut e, &Pkt::udp(HOST_B, 2000, REMOTE, 53));
    mapped(&mut e, &Pkt::udp(HOST_A, 1000, REMOTE, 53));
}

/// Imports a UDP session into every port, on external IP `ip`, of the bucket of
/// `HOST_A:40000` (inside hosts counting up from `first_host`), so that bucket has no
/// free port left there.
fn fill_bucket_of_host_a(e: &mut Engine, bits: BucketBits, ip: u32, first_host: u32) {
    let key = mfplane_core::FlowHashKey::DEFAULT;
    let b = mfplane_core::outbound_bucket(&key, bits, HOST_A, 40000, UDP);
    let ports = mfplane_core::BucketPorts::new(bits, b).unwrap();
    for (i, port) in ports.iter().enumerate() {
        let rec = mfplane_core::SessionRecord {
            key: session_key(Proto::Udp, first_host + i as u32, 1),
            external: Endpoint::new(ip, port),
            bucket: b,
            created_ms: 0,
        };
        e.import(rec, T0).unwrap();
    }
}

#[test]
fn bucket_exhaustion_is_counted() {
    // 16 buckets, one external IP: each bucket has 4032 ports per IP. Fill the bucket
    // of one flow by importing sessions into every port, then a new flow of that
    // bucket is refused.
    let mut e = engine_with(|c| {
        c.bucket_bits = BucketBits::new(4).unwrap();
        c.external_ips.truncate(1);
        c.max_sessions_per_host = u32::MAX;
    });
    fill_bucket_of_host_a(&mut e, BucketBits::new(4).unwrap(), EXT, 0x0a10_0000);
    let (v, _) = run(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53), T0);
    assert_eq!(v, Verdict::Drop(DropReason::Exhausted));
}

#[test]
fn arbitrary_pooling_falls_back_to_other_ips() {
    let mut e = engine_with(|c| {
        c.bucket_bits = BucketBits::new(4).unwrap();
        c.pooling = Pooling::Arbitrary;
    });
    // Fill the bucket on the IP paired with HOST_A.
    let paired = mapped(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53)).ip;
    e.remove(&session_key(Proto::Udp, HOST_A, 40000));
    fill_bucket_of_host_a(&mut e, BucketBits::new(4).unwrap(), paired, 0x0a20_0000);
    let other = mapped(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53)).ip;
    assert_ne!(other, paired);
}

#[test]
fn allocation_only_in_owned_buckets_but_imports_translate_everywhere() {
    let mut e = engine();
    e.set_owned_buckets([]);
    let p = Pkt::udp(HOST_A, 40000, REMOTE, 53);
    assert_eq!(run(&mut e, &p, T0).0, Verdict::Drop(DropReason::NotOwner));
    // The owner elsewhere allocated it; replication imports it here.
    let bucket = mfplane_core::outbound_bucket(
        &mfplane_core::FlowHashKey::DEFAULT,
        BucketBits::DEFAULT,
        HOST_A,
        40000,
        UDP,
    );
    let port = mfplane_core::BucketPorts::new(BucketBits::DEFAULT, bucket)
        .unwrap()
        .nth(3)
        .unwrap();
    let rec = mfplane_core::SessionRecord {
        key: session_key(Proto::Udp, HOST_A, 40000),
        external: Endpoint::new(EXT2, port),
        bucket,
        created_ms: T0.0,
    };
    e.import(rec, T0).unwrap();
    let (v, f) = run(&mut e, &p, at(1));
    assert_eq!(v, OUT);
    assert_eq!((seen(&f).src, seen(&f).sport), (EXT2, port));
    assert_eq!(run(&mut e, &Pkt::udp(REMOTE, 53, EXT2, port), at(1)).0, IN);
    // Not owned: expiry is the owner's decision.
    assert!(e.expire(at(10_000)).is_empty());
    assert!(e.remove(&rec.key).is_some());
    assert_eq!(
        run(&mut e, &Pkt::udp(REMOTE, 53, EXT2, port), at(1)).0,
        Verdict::Drop(DropReason::NoSession)
    );
}

#[test]
fn created_sessions_are_drained_for_replication_and_import_elsewhere() {
    let mut a = engine();
    mapped(&mut a, &Pkt::udp(HOST_A, 1, REMOTE, 53));
    mapped(&mut a, &Pkt::tcp(HOST_B, 2, REMOTE, 80, SYN));
    let created: Vec<_> = a.drain_created().collect();
    assert_eq!(created.len(), 2);
    assert_eq!(a.drain_created().count(), 0);
    // A second worker imports them and translates replies identically.
    let mut b = engine();
    b.set_owned_buckets([]);
    for r in &created {
        b.import(*r, T0).unwrap();
    }
    let ext = created[0].external;
    let reply = Pkt::udp(REMOTE, 53, ext.ip, ext.port);
    let (va, fa) = run(&mut a, &reply, at(1));
    let (vb, fb) = run(&mut b, &reply, at(1));
    assert_eq!((va, fa), (vb, fb));
    assert!(
        b.session_by_external(&ExternalKey {
            proto: Proto::Udp,
            external: ext
        })
        .is_some()
    );
}

#[test]
fn apdf_admits_inbound_on_imported_sessions_until_outbound_seen() {
    let mut a = engine_with(|c| c.filtering = Filtering::AddressAndPortDependent);
    let ext = mapped(&mut a, &Pkt::udp(HOST_A, 1, REMOTE, 53));
    let recs: Vec<_> = a.drain_created().collect();
    let mut b = engine_with(|c| c.filtering = Filtering::AddressAndPortDependent);
    b.import(recs[0], T0).unwrap();
    // Failover: the new owner has no permissions yet; the flow keeps working.
    assert_eq!(
        run(&mut b, &Pkt::udp(REMOTE, 53, ext.ip, ext.port), at(1)).0,
        IN
    );
    // After the host sends, the filter applies.
    run(&mut b, &Pkt::udp(HOST_A, 1, REMOTE, 53), at(2));
    assert_eq!(
        run(&mut b, &Pkt::udp(REMOTE2, 53, ext.ip, ext.port), at(3)).0,
        Verdict::Drop(DropReason::Filtered)
    );
}

#[test]
fn fragments_follow_their_first_fragment() {
    let mut e = engine();
    // A UDP datagram in two fragments: 16 bytes of L4 in the first, 8 in the second.
    let mut whole = Pkt::udp(HOST_A, 40000, REMOTE, 53);
    whole.payload = b"0123456789abcdef".to_vec();
    let l4 = whole.l4();
    let mut first = whole.clone();
    first.frag = (true, 0);
    let mut second = whole.clone();
    second.frag = (false, 16);
    let first_ip = first.ip_with(&l4[..16]);
    let second_ip = second.ip_with(&l4[16..]);
    // Later fragment first: dropped and counted.
    let mut f2 = eth(None, &second_ip);
    assert_eq!(
        e.process(&mut f2, T0),
        Verdict::Drop(DropReason::FragmentNoHead)
    );
    let mut f1 = eth(None, &first_ip);
    assert_eq!(e.process(&mut f1, T0), OUT);
    let mut f2 = eth(None, &second_ip);
    assert_eq!(e.process(&mut f2, T0), OUT);
    assert_checksums_valid(&f1);
    assert_checksums_valid(&f2);
    let (s1, s2) = (seen(&f1), seen(&f2));
    assert_eq!(s1.src, s2.src, "both fragments get the external address");
    // Reassembled, the datagram's UDP checksum verifies (the first fragment carried it).
    let mut reassembled = f1[14 + 20..].to_vec();
    reassembled.extend_from_slice(&f2[14 + 20..]);
    let ph = ref_sum(&s1.src.to_be_bytes(), 0)
        + ref_sum(&REMOTE.to_be_bytes(), 0)
        + 17
        + reassembled.len() as u64;
    assert_eq!(ref_fold(ref_sum(&reassembled, ph)), 0xffff);
    assert_eq!(e.counters().fragments_tracked, 1);
    assert_eq!(e.counters().fragments_followed, 1);
    // After the fragment timeout, a straggler has no head.
    let mut f3 = eth(None, &second_ip);
    assert_eq!(
        e.process(&mut f3, at(31)),
        Verdict::Drop(DropReason::FragmentNoHead)
    );
}

#[test]
fn inbound_fragments_are_translated_too() {
    let mut e = engine();
    let ext = mapped(&mut e, &Pkt::udp(HOST_A, 40000, REMOTE, 53));
    let mut whole = Pkt::udp(REMOTE, 53, ext.ip, ext.port);
    whole.payload = vec![7; 24];
    let l4 = whole.l4();
    let mut first = whole.clone();
    first.frag = (true, 0);
    let mut second = whole.clone();
    second.frag = (false, 16);
    let mut f1 = eth(None, &first.ip_with(&l4[..16]));
    let mut f2 = eth(None, &second.ip_with(&l4[16..]));
    assert_eq!(e.process(&mut f1, T0), IN);
    assert_eq!(e.process(&mut f2, T0), IN);
    assert_eq!(seen(&f2).dst, HOST_A);
    assert_checksums_valid(&f2);
}

#[test]
fn bucket_of_a_session_matches_the_lb_rule() {
    let mut e = engine();
    for i in 0..100u16 {
        let p = Pkt::udp(HOST_A, 30000 + i, REMOTE, 53);
        let ext = mapped(&mut e, &p);
        let expect = mfplane_core::outbound_bucket(
            &mfplane_core::FlowHashKey::DEFAULT,
            BucketBits::DEFAULT,
            HOST_A,
            30000 + i,
            UDP,
        );
        assert_eq!(inbound_bucket(BucketBits::DEFAULT, ext.port), expect);
        assert_eq!(BucketId(ext.port & 0xff), expect);
    }
}

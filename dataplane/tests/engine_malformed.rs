//! Malformed input is dropped with a counted reason and never translated (the frame
//! comes back byte-for-byte unchanged).

#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

mod common;

use common::*;
use mfplane_dataplane::engine::{DropReason, Engine, Verdict};

/// Runs `frame`, expects a drop for `reason`, an unchanged frame and the counter.
fn expect_drop(e: &mut Engine, what: &str, frame: Vec<u8>, reason: DropReason) {
    let before = e.counters().dropped(reason);
    let mut f = frame.clone();
    assert_eq!(e.process(&mut f, T0), Verdict::Drop(reason), "{what}");
    assert_eq!(f, frame, "{what}: a dropped frame is not modified");
    assert_eq!(e.counters().dropped(reason), before + 1, "{what}: counted");
}

fn udp_frame() -> Vec<u8> {
    Pkt::udp(HOST_A, 40000, REMOTE, 53).frame()
}

/// Recomputes the IPv4 header checksum of a frame after a test edited the header, so
/// the test reaches the check it targets.
fn fix_ip_checksum(f: &mut [u8]) {
    let hl = usize::from(f[14] & 0x0f) * 4;
    if hl < 20 || f.len() < 14 + hl {
        return;
    }
    f[24..26].copy_from_slice(&[0, 0]);
    let c = ref_checksum(&f[14..14 + hl], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn truncated_headers() {
    let mut e = engine();
    let f = udp_frame();
    expect_drop(
        &mut e,
        "runt ethernet",
        f[..10].to_vec(),
        DropReason::Truncated,
    );
    let mut tagged = f.clone();
    tagged[12..14].copy_from_slice(&[0x81, 0x00]);
    expect_drop(
        &mut e,
        "vlan tag cut",
        tagged[..16].to_vec(),
        DropReason::Truncated,
    );
    expect_drop(
        &mut e,
        "ipv4 cut",
        f[..14 + 12].to_vec(),
        DropReason::Truncated,
    );
}

/// Sets the IPv4 total length of a UDP frame, keeping the header checksum valid.
fn set_total_len(f: &mut [u8], len: u16) {
    f[16..18].copy_from_slice(&len.to_be_bytes());
    fix_ip_checksum(f);
}

/// A description, how to break a valid frame, and the drop that must follow.
type BrokenFrame = (&'static str, fn(&mut [u8]), DropReason);

#[test]
fn bad_ipv4_fields() {
    use DropReason::{BadChecksum, BadIhl, BadLength, BadVersion, Truncated};
    let mut e = engine();
    // Each case breaks one field of a valid UDP frame.
    let cases: [BrokenFrame; 7] = [
        ("IHL 4", |f| f[14] = 0x44, BadIhl),
        ("IHL 0", |f| f[14] = 0x40, BadIhl),
        ("IHL 15 past the packet", |f| f[14] = 0x4f, Truncated),
        (
            "IPv6 version in an IPv4 frame",
            |f| f[14] = 0x65,
            BadVersion,
        ),
        (
            "total length past the frame",
            |f| set_total_len(f, 1500),
            BadLength,
        ),
        (
            "total length inside the header",
            |f| set_total_len(f, 12),
            BadLength,
        ),
        ("bad header checksum", |f| f[24] ^= 0x55, BadChecksum),
    ];
    for (what, break_it, reason) in cases {
        let mut f = udp_frame();
        break_it(&mut f);
        expect_drop(&mut e, what, f, reason);
    }
}

#[test]
fn bad_l4_headers() {
    let mut e = engine();
    // TCP with data offset 4.
    let mut f = Pkt::tcp(HOST_A, 1, REMOTE, 2, SYN).frame();
    f[14 + 20 + 12] = 0x40;
    expect_drop(&mut e, "tcp data offset 4", f, DropReason::BadLength);
    // TCP header cut: IP total length says 30 bytes.
    let p = Pkt::tcp(HOST_A, 1, REMOTE, 2, SYN);
    let ip = p.ip_with(&p.l4()[..10]);
    expect_drop(
        &mut e,
        "tcp header cut",
        eth(None, &ip),
        DropReason::Truncated,
    );
    // UDP length beyond the IP payload, and below 8.
    let mut f = udp_frame();
    f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&200u16.to_be_bytes());
    expect_drop(&mut e, "udp length too long", f, DropReason::BadLength);
    let mut f = udp_frame();
    f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
    expect_drop(&mut e, "udp length below 8", f, DropReason::BadLength);
    let p = Pkt::udp(HOST_A, 1, REMOTE, 2);
    expect_drop(
        &mut e,
        "udp header cut",
        eth(None, &p.ip_with(&p.l4()[..6])),
        DropReason::Truncated,
    );
    let p = Pkt::echo(HOST_A, REMOTE, 1, true);
    expect_drop(
        &mut e,
        "icmp header cut",
        eth(None, &p.ip_with(&p.l4()[..5])),
        DropReason::Truncated,
    );
}

#[test]
fn bad_icmp_errors() {
    let mut e = engine();
    let (_, sent) = {
        let mut f = Pkt::udp(HOST_A, 40000, REMOTE, 53).frame();
        let v = e.process(&mut f, T0);
        (v, f)
    };
    let ext = seen(&sent).src;
    // Quote shorter than an IPv4 header.
    let mut short = icmp_error(REMOTE, ext, 3, 3, &sent[14..], 8);
    let total = 20 + 8 + 12;
    short.truncate(14 + total);
    short[16..18].copy_from_slice(&(total as u16).to_be_bytes());
    fix_ip_checksum(&mut short);
    let c = {
        short[14 + 22..14 + 24].copy_from_slice(&[0, 0]);
        ref_checksum(&short[14 + 20..], 0)
    };
    short[14 + 22..14 + 24].copy_from_slice(&c.to_be_bytes());
    expect_drop(
        &mut e,
        "quote shorter than an IPv4 header",
        short,
        DropReason::Truncated,
    );
    // Quoted header with IHL 4.
    let mut q = sent[14..].to_vec();
    q[0] = 0x44;
    expect_drop(
        &mut e,
        "quoted IHL 4",
        icmp_error(REMOTE, ext, 3, 3, &q[..], 8),
        DropReason::BadIhl,
    );
    // Quote without the 8 L4 bytes.
    expect_drop(
        &mut e,
        "quote without L4 bytes",
        icmp_error(REMOTE, ext, 3, 3, &sent[14..], 4),
        DropReason::Truncated,
    );
}

#[test]
fn not_ours_and_unsupported() {
    let mut e = engine();
    expect_drop(
        &mut e,
        "outside to outside",
        Pkt::udp(REMOTE, 1, REMOTE2, 2).frame(),
        DropReason::NotOurs,
    );
    let mut gre = Pkt::udp(HOST_A, 1, REMOTE, 2);
    gre.proto = 47;
    expect_drop(&mut e, "GRE", gre.frame(), DropReason::UnsupportedProtocol);
    let mut ts = Pkt::echo(HOST_A, REMOTE, 5, true);
    ts.icmp_type = 13;
    expect_drop(
        &mut e,
        "ICMP timestamp",
        ts.frame(),
        DropReason::UnsupportedIcmp,
    );
    expect_drop(
        &mut e,
        "inbound to an unmapped port",
        Pkt::udp(REMOTE, 53, EXT, 5555).frame(),
        DropReason::NoSession,
    );
}

#[test]
fn fragments_without_head_are_dropped() {
    let mut e = engine();
    let mut p = Pkt::udp(HOST_A, 40000, REMOTE, 53);
    p.frag = (true, 8);
    expect_drop(
        &mut e,
        "middle fragment",
        p.frame(),
        DropReason::FragmentNoHead,
    );
    p.frag = (false, 1480);
    expect_drop(
        &mut e,
        "last fragment",
        p.frame(),
        DropReason::FragmentNoHead,
    );
    // A first fragment too short to hold the TCP header is refused.
    let mut t = Pkt::tcp(HOST_A, 1, REMOTE, 2, SYN);
    t.frag = (true, 0);
    let ip = t.ip_with(&t.l4()[..16]);
    expect_drop(
        &mut e,
        "first fragment without the full tcp header",
        eth(None, &ip),
        DropReason::Truncated,
    );
}

#[test]
fn garbage_is_dropped_or_passed_never_translated() {
    let mut e = engine();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for len in 0..400usize {
        let mut f: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if len % 2 == 0 && len >= 14 {
            // Half of them claim to be IPv4.
            f[12] = 0x08;
            f[13] = 0x00;
        }
        let orig = f.clone();
        let v = e.process(&mut f, T0);
        assert!(
            matches!(v, Verdict::Drop(_) | Verdict::Pass),
            "{v:?} for {orig:02x?}"
        );
        assert_eq!(f, orig);
    }
    assert_eq!(e.counters().rx_packets, 400);
    assert_eq!(
        e.counters().dropped_total() + e.counters().passed,
        400,
        "every packet has exactly one verdict"
    );
}

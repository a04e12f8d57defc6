//! `BPF_PROG_TEST_RUN` tests of the LB XDP program: golden packet tables for every
//! verdict and drop reason, IP-in-IP output, fragments, the generation flip and a
//! differential test against `mfplane-core`'s decision.
//!
//! Need root and the embedded object; they fail with a message otherwise, unless
//! `MFPLANE_SKIP_BPF=1` (then they print that they are skipped). The program runs in
//! the kernel on given bytes only: nothing is sent anywhere.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use mfplane_core::csum::checksum;
use mfplane_core::hdr::{IP_DF, IP_MF};
use mfplane_core::lb_maps::{Generation, LbCounter, SteerMode};
use mfplane_core::{BucketBits, BucketId, inbound_bucket, outbound_bucket};
use mfplane_lb::Datapath;
use mfplane_lb::table::{OwnerAddr, SteeringTable};
use mfplane_lb::testkit::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const INSIDE_HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);
const REMOTE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

fn bits8() -> BucketBits {
    BucketBits::DEFAULT
}

/// Buckets the fixture leaves without an owner.
fn unowned(b: u16) -> bool {
    b % 17 == 5
}

fn table() -> SteeringTable {
    fixture_table(7, bits8(), 3, round_robin(unowned))
}

fn out_bucket(src: Ipv4Addr, port: u16, proto: u8) -> BucketId {
    outbound_bucket(&HASH_KEY, bits8(), u32::from(src), port, proto)
}

/// An inside source port whose outbound TCP bucket is owned (or unowned) as asked.
fn port_with(owned: bool, proto: u8) -> u16 {
    (20000..60000)
        .find(|p| unowned(out_bucket(INSIDE_HOST, *p, proto).0) != owned)
        .unwrap()
}

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Ip {
    Ip::new(src, dst, L4::Tcp { sport, dport })
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Ip {
    Ip::new(src, dst, L4::Udp { sport, dport })
}

fn echo(src: Ipv4Addr, dst: Ipv4Addr, icmp_type: u8, id: u16, seq: u16) -> Ip {
    Ip::new(src, dst, L4::Echo { icmp_type, id, seq })
}

fn owner(t: &SteeringTable, b: BucketId) -> OwnerAddr {
    *t.owner_of(b).unwrap()
}

/// One golden case: `{description, in bytes, expected out bytes, expected action}`
/// plus the counter that must move.
struct Case {
    what: &'static str,
    input: Vec<u8>,
    /// `None`: output not compared (dropped packets).
    output: Option<Vec<u8>>,
    action: XdpAction,
    counter: LbCounter,
}

fn run_cases(dp: &mut Datapath, cases: &[Case]) {
    for c in cases {
        let before = dp.counters().unwrap();
        let (action, out) = run_once(dp, &c.input);
        let delta = dp.counters().unwrap().since(&before);
        assert_eq!(action, c.action, "{}: action", c.what);
        if let Some(expected) = &c.output {
            assert_eq!(&out, expected, "{}: output bytes", c.what);
        }
        assert_eq!(
            delta.get(c.counter),
            1,
            "{}: counter {:?} did not move",
            c.what,
            c.counter
        );
        assert_eq!(
            delta.received(),
            1,
            "{}: exactly one verdict per packet",
            c.what
        );
    }
}

fn l2_steered(what: &'static str, frame: Vec<u8>, to: OwnerAddr, counter: LbCounter) -> Case {
    Case {
        what,
        output: Some(with_macs(&frame, to.mac.0, FABRIC_MAC)),
        input: frame,
        action: XdpAction::Tx,
        counter,
    }
}

fn passed(what: &'static str, frame: Vec<u8>) -> Case {
    Case {
        what,
        output: Some(frame.clone()),
        input: frame,
        action: XdpAction::Pass,
        counter: LbCounter::Pass,
    }
}

fn dropped(what: &'static str, frame: Vec<u8>, reason: LbCounter) -> Case {
    Case {
        what,
        input: frame,
        output: None,
        action: XdpAction::Drop,
        counter: reason,
    }
}

#[test]
fn golden_l2_every_verdict() {
    let Some(mut dp) = datapath_or_skip("golden_l2_every_verdict") else {
        return;
    };
    let t = table();
    install_fixture(&mut dp, &fixture_settings(SteerMode::L2, true), &t);

    let tcp_port = port_with(true, 6);
    let udp_port = port_with(true, 17);
    let echo_id = port_with(true, 1);
    let dead_port = port_with(false, 6);
    let ext = EXTERNAL[1];
    // An inbound packet to an external port, and what the NAT sent out for it.
    let ext_port: u16 = 0x1234;
    let translated_out = udp(ext, REMOTE, 0x4321, 53).bytes();
    let to_inside = udp(REMOTE, INSIDE_HOST, 53, udp_port).bytes();
    let unowned_in_port = (1024..u16::MAX)
        .find(|p| unowned(inbound_bucket(bits8(), *p).0))
        .unwrap();

    // Variants of one outbound TCP frame.
    let outbound_tcp = || tcp(INSIDE_HOST, REMOTE, tcp_port, 80).frame();
    let mut vlan_frame = outbound_tcp();
    vlan_frame.splice(12..12, [0x81, 0x00, 0x00, 0x64]);

    let mut bad_version = outbound_tcp();
    bad_version[14] = 0x65;
    let mut bad_ihl = outbound_tcp();
    bad_ihl[14] = 0x44;
    let mut too_long = outbound_tcp();
    too_long[16..18].copy_from_slice(&1500u16.to_be_bytes());
    let mut too_short = outbound_tcp();
    too_short[16..18].copy_from_slice(&19u16.to_be_bytes());
    let truncated_ip = outbound_tcp()[..14 + 12].to_vec();
    let mut truncated_tcp = Ip::new(
        INSIDE_HOST,
        REMOTE,
        L4::Raw {
            proto: 6,
            bytes: vec![0x9c, 0x40, 0, 80],
        },
    );
    truncated_tcp.payload.clear();
    let mut short_quote = Ip::new(
        REMOTE,
        ext,
        L4::IcmpError {
            icmp_type: 3,
            code: 3,
            quoted: translated_out[..12].to_vec(),
        },
    );
    short_quote.payload.clear();

    let cases = vec![
        l2_steered(
            "outbound TCP steered by flow hash",
            tcp(INSIDE_HOST, REMOTE, tcp_port, 443).frame(),
            owner(&t, out_bucket(INSIDE_HOST, tcp_port, 6)),
            LbCounter::Outbound,
        ),
        l2_steered(
            "outbound UDP steered by flow hash",
            udp(INSIDE_HOST, REMOTE, udp_port, 53).frame(),
            owner(&t, out_bucket(INSIDE_HOST, udp_port, 17)),
            LbCounter::Outbound,
        ),
        l2_steered(
            "outbound ICMP echo request steered by identifier",
            echo(INSIDE_HOST, REMOTE, 8, echo_id, 1).frame(),
            owner(&t, out_bucket(INSIDE_HOST, echo_id, 1)),
            LbCounter::Outbound,
        ),
        l2_steered(
            "outbound 802.1Q-tagged TCP keeps its tag",
            vlan_frame,
            owner(&t, out_bucket(INSIDE_HOST, tcp_port, 6)),
            LbCounter::Outbound,
        ),
        l2_steered(
            "inbound TCP steered by destination port",
            tcp(REMOTE, ext, 443, ext_port).frame(),
            owner(&t, inbound_bucket(bits8(), ext_port)),
            LbCounter::Inbound,
        ),
        l2_steered(
            "inbound ICMP echo reply steered by identifier",
            echo(REMOTE, EXTERNAL[0], 0, ext_port, 9).frame(),
            owner(&t, inbound_bucket(bits8(), ext_port)),
            LbCounter::Inbound,
        ),
        l2_steered(
            "inbound ICMP error steered by the quoted source port",
            Ip::new(
                REMOTE,
                ext,
                L4::IcmpError {
                    icmp_type: 3,
                    code: 3,
                    quoted: translated_out.clone(),
                },
            )
            .frame(),
            owner(&t, inbound_bucket(bits8(), 0x4321)),
            LbCounter::IcmpError,
        ),
        l2_steered(
            "outbound ICMP error steered by the quoted inside endpoint",
            Ip::new(
                INSIDE_HOST,
                REMOTE,
                L4::IcmpError {
                    icmp_type: 3,
                    code: 3,
                    quoted: to_inside,
                },
            )
            .frame(),
            owner(&t, out_bucket(INSIDE_HOST, udp_port, 17)),
            LbCounter::IcmpError,
        ),
        l2_steered(
            "inside to an external IP (hairpin) is outbound first",
            tcp(INSIDE_HOST, EXTERNAL[0], tcp_port, 80).frame(),
            owner(&t, out_bucket(INSIDE_HOST, tcp_port, 6)),
            LbCounter::Outbound,
        ),
        passed(
            "transit traffic (neither inside nor external)",
            tcp(REMOTE, Ipv4Addr::new(192, 0, 2, 77), 1, 2).frame(),
        ),
        passed(
            "inside to inside is not NATed",
            tcp(INSIDE_HOST, Ipv4Addr::new(10, 9, 9, 9), tcp_port, 22).frame(),
        ),
        passed(
            "inbound echo request to an external IP belongs to its holder",
            echo(REMOTE, ext, 8, 7, 1).frame(),
        ),
        passed("ARP", ethernet([0xff; 6], CLIENT_MAC, 0x0806, &[0u8; 28])),
        passed(
            "IPv6",
            ethernet(ROUTER_MAC, CLIENT_MAC, 0x86dd, &[0x60; 60]),
        ),
        dropped(
            "outbound to an unowned bucket",
            tcp(INSIDE_HOST, REMOTE, dead_port, 443).frame(),
            LbCounter::DropNoOwner,
        ),
        dropped(
            "inbound to an unowned bucket",
            tcp(REMOTE, ext, 443, unowned_in_port).frame(),
            LbCounter::DropNoOwner,
        ),
        dropped(
            "outbound GRE cannot be translated",
            Ip::new(
                INSIDE_HOST,
                REMOTE,
                L4::Raw {
                    proto: 47,
                    bytes: vec![0; 8],
                },
            )
            .frame(),
            LbCounter::DropUnsupported,
        ),
        dropped(
            "outbound ICMP timestamp cannot be translated",
            echo(INSIDE_HOST, REMOTE, 13, 1, 1).frame(),
            LbCounter::DropUnsupported,
        ),
        dropped(
            "IPv4 header cut short",
            truncated_ip,
            LbCounter::DropTruncated,
        ),
        dropped(
            "IPv4 EtherType and nothing after it",
            ethernet(ROUTER_MAC, CLIENT_MAC, 0x0800, &[]),
            LbCounter::DropTruncated,
        ),
        dropped(
            "version 6 in an IPv4 frame",
            bad_version,
            LbCounter::DropBadVersion,
        ),
        dropped("IHL 4", bad_ihl, LbCounter::DropBadIhl),
        dropped(
            "total length beyond the frame",
            too_long,
            LbCounter::DropBadLength,
        ),
        dropped(
            "total length below the header",
            too_short,
            LbCounter::DropBadLength,
        ),
        dropped(
            "outbound TCP header cut short",
            truncated_tcp.frame(),
            LbCounter::DropTruncated,
        ),
        dropped(
            "ICMP error with a truncated quote",
            short_quote.frame(),
            LbCounter::DropBadIcmpQuote,
        ),
    ];
    run_cases(&mut dp, &cases);
}

#[test]
fn redirect_when_fabric_is_another_interface() {
    let Some(mut dp) = datapath_or_skip("redirect_when_fabric_is_another_interface") else {
        return;
    };
    let t = table();
    install_fixture(&mut dp, &fixture_settings(SteerMode::L2, false), &t);
    let p = port_with(true, 6);
    let frame = tcp(INSIDE_HOST, REMOTE, p, 443).frame();
    let to = owner(&t, out_bucket(INSIDE_HOST, p, 6));
    run_cases(
        &mut dp,
        &[Case {
            what: "outbound redirected to the fabric",
            output: Some(with_macs(&frame, to.mac.0, FABRIC_MAC)),
            input: frame,
            action: XdpAction::Redirect,
            counter: LbCounter::Redirect,
        }],
    );
    // Arriving on the fabric with the veth flag set: redirected, not XDP_TX.
    let mut on_fabric = fixture_settings(SteerMode::L2, true);
    on_fabric.flags |= mfplane_core::lb_maps::LB_FLAG_REDIRECT_ON_FABRIC;
    dp.set_settings(&on_fabric).unwrap();
    let (action, _) = run_once(&dp, &tcp(INSIDE_HOST, REMOTE, p, 443).frame());
    assert_eq!(action, XdpAction::Redirect);
}

#[test]
fn not_configured_passes_and_no_table_drops() {
    let Some(mut dp) = datapath_or_skip("not_configured_passes_and_no_table_drops") else {
        return;
    };
    let frame = tcp(INSIDE_HOST, REMOTE, 40000, 443).frame();
    run_cases(
        &mut dp,
        &[Case {
            what: "no settings yet",
            output: Some(frame.clone()),
            input: frame.clone(),
            action: XdpAction::Pass,
            counter: LbCounter::NotConfigured,
        }],
    );
    dp.set_settings(&fixture_settings(SteerMode::L2, true))
        .unwrap();
    run_cases(
        &mut dp,
        &[dropped(
            "settings but no table",
            frame,
            LbCounter::DropNoTable,
        )],
    );
}

/// An interface declared outside-only (here loopback, where `BPF_PROG_TEST_RUN`
/// delivers) drops inside sources as spoofed and still steers inbound traffic; the
/// list ends at its first empty slot.
#[test]
fn outside_only_interface_drops_inside_sources() {
    let Some(mut dp) = datapath_or_skip("outside_only_interface_drops_inside_sources") else {
        return;
    };
    let t = table();
    let lo = mfplane_lb::iface::Interface::by_name("lo").unwrap();
    let mut settings = fixture_settings(SteerMode::L2, true);
    settings.outside_ifindex = [lo.index + 1000, lo.index, 0, 0];
    install_fixture(&mut dp, &settings, &t);

    let sport = port_with(true, 6);
    let outbound = tcp(INSIDE_HOST, REMOTE, sport, 443).frame();
    let in_port = (1024..u16::MAX)
        .find(|p| !unowned(inbound_bucket(bits8(), *p).0))
        .unwrap();
    let inbound = udp(REMOTE, EXTERNAL[0], 53, in_port).frame();
    let in_owner = owner(&t, inbound_bucket(bits8(), in_port));
    let out_owner = owner(&t, out_bucket(INSIDE_HOST, sport, 6));
    run_cases(
        &mut dp,
        &[
            dropped(
                "inside source on an outside-only interface",
                outbound.clone(),
                LbCounter::DropSpoofedInside,
            ),
            l2_steered(
                "inbound on an outside-only interface",
                inbound,
                in_owner,
                LbCounter::Inbound,
            ),
        ],
    );
    // Loopback past the first empty slot: not outside-only, steered as before.
    settings.outside_ifindex = [lo.index + 1000, 0, lo.index, 0];
    dp.set_settings(&settings).unwrap();
    run_cases(
        &mut dp,
        &[l2_steered(
            "inside source, interface not outside-only",
            outbound,
            out_owner,
            LbCounter::Outbound,
        )],
    );
}

fn assert_ipv4_header_valid(frame: &[u8]) {
    let h = &frame[14..34];
    assert_eq!(checksum(h), 0, "outer IPv4 header checksum");
}

#[test]
fn ipip_encapsulation() {
    let Some(mut dp) = datapath_or_skip("ipip_encapsulation") else {
        return;
    };
    let t = table();
    let mut settings = fixture_settings(SteerMode::IpIp, true);
    install_fixture(&mut dp, &settings, &t);
    let p = port_with(true, 17);
    let to = owner(&t, out_bucket(INSIDE_HOST, p, 17));
    let mut ip = udp(INSIDE_HOST, REMOTE, p, 53);
    ip.frag = IP_DF;
    ip.tos = 0x10;
    let frame = ip.frame();
    let expected = ipip_expected(&frame, FABRIC_IP, &to, to.mac.0);
    let ext_port = 0x2222;
    let inbound = tcp(REMOTE, EXTERNAL[0], 443, ext_port).frame();
    let in_owner = owner(&t, inbound_bucket(bits8(), ext_port));
    let mut tagged = udp(INSIDE_HOST, REMOTE, p, 53).frame();
    let untagged_expected = ipip_expected(&tagged, FABRIC_IP, &to, to.mac.0);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
    run_cases(
        &mut dp,
        &[
            Case {
                what: "outbound UDP (DF, TOS) encapsulated to the owner",
                output: Some(expected.clone()),
                input: frame.clone(),
                action: XdpAction::Tx,
                counter: LbCounter::Encapsulated,
            },
            Case {
                what: "inbound TCP encapsulated to the owner",
                output: Some(ipip_expected(
                    &inbound,
                    FABRIC_IP,
                    &in_owner,
                    in_owner.mac.0,
                )),
                input: inbound,
                action: XdpAction::Tx,
                counter: LbCounter::Encapsulated,
            },
            Case {
                what: "802.1Q tag replaced by the outer header",
                output: Some(untagged_expected),
                input: tagged,
                action: XdpAction::Tx,
                counter: LbCounter::Encapsulated,
            },
        ],
    );
    let (_, out) = run_once(&dp, &frame);
    assert_ipv4_header_valid(&out);
    assert_eq!(out[14 + 9], 4, "outer protocol is IPIP");
    assert_eq!(&out[34..], &frame[14..], "inner packet untouched");

    // Through a next-hop router on a routed fabric.
    settings.next_hop_mac = [0x02, 0xaa, 0, 0, 0, 1];
    dp.set_settings(&settings).unwrap();
    let (action, out) = run_once(&dp, &frame);
    assert_eq!(action, XdpAction::Tx);
    assert_eq!(
        out,
        ipip_expected(&frame, FABRIC_IP, &to, settings.next_hop_mac)
    );
    assert_ipv4_header_valid(&out);
}

/// `head` as the first fragment of datagram `id` (more fragments follow), and that
/// datagram's last fragment: `tail`, the rest of the `proto` payload, at `offset`
/// (in 8-byte units).
fn fragmented(mut head: Ip, id: u16, proto: u8, tail: Vec<u8>, offset: u16) -> (Ip, Ip) {
    head.id = id;
    head.frag = IP_MF;
    let mut last = Ip::new(head.src, head.dst, L4::Raw { proto, bytes: tail });
    last.id = id;
    last.frag = offset;
    (head, last)
}

#[test]
fn fragments_follow_their_head() {
    let Some(mut dp) = datapath_or_skip("fragments_follow_their_head") else {
        return;
    };
    let t = table();
    install_fixture(&mut dp, &fixture_settings(SteerMode::L2, true), &t);
    let p = port_with(true, 17);
    let to = owner(&t, out_bucket(INSIDE_HOST, p, 17));
    let mut head = udp(INSIDE_HOST, REMOTE, p, 53);
    head.payload = vec![0xab; 16];
    // The tail at offset 24 bytes.
    let (head, tail) = fragmented(head, 0x7777, 17, vec![0xcd; 24], 3);
    let mut orphan = tail.clone();
    orphan.id = 0x7778;
    // Inbound fragments of a reply to an external IP.
    let ext_port = 0x3456;
    let (in_head, in_tail) = fragmented(
        udp(REMOTE, EXTERNAL[0], 53, ext_port),
        0x0101,
        17,
        vec![1; 8],
        2,
    );
    let in_owner = owner(&t, inbound_bucket(bits8(), ext_port));
    let (ping_head, ping_tail) = fragmented(
        echo(REMOTE, EXTERNAL[1], 8, 9, 1),
        0x0202,
        1,
        vec![7; 16],
        2,
    );
    run_cases(
        &mut dp,
        &[
            dropped(
                "a later fragment before its head",
                tail.frame(),
                LbCounter::DropFragmentNoHead,
            ),
            l2_steered(
                "first fragment steered and tracked",
                head.frame(),
                to,
                LbCounter::FragmentTracked,
            ),
            l2_steered(
                "later fragment follows its head",
                tail.frame(),
                to,
                LbCounter::FragmentFollowed,
            ),
            dropped(
                "a fragment of another datagram",
                orphan.frame(),
                LbCounter::DropFragmentNoHead,
            ),
            l2_steered(
                "inbound first fragment",
                in_head.frame(),
                in_owner,
                LbCounter::FragmentTracked,
            ),
            l2_steered(
                "inbound later fragment",
                in_tail.frame(),
                in_owner,
                LbCounter::FragmentFollowed,
            ),
            Case {
                what: "first fragment of a big ping to an external IP passes",
                output: Some(ping_head.frame()),
                input: ping_head.frame(),
                action: XdpAction::Pass,
                counter: LbCounter::FragmentTracked,
            },
            Case {
                what: "and its later fragment passes too",
                output: Some(ping_tail.frame()),
                input: ping_tail.frame(),
                action: XdpAction::Pass,
                counter: LbCounter::FragmentFollowed,
            },
        ],
    );
}

#[test]
fn generation_flip_is_atomic() {
    let Some(mut dp) = datapath_or_skip("generation_flip_is_atomic") else {
        return;
    };
    let all_to = |n: u64| fixture_table(1, bits8(), 3, move |_| Some(n));
    let a = all_to(1);
    install_fixture(&mut dp, &fixture_settings(SteerMode::L2, true), &a);
    let gen_a = dp.active_generation();
    let frame = tcp(INSIDE_HOST, REMOTE, 40000, 443).frame();
    let dst = |dp: &Datapath| run_once(dp, &frame).1[0..6].to_vec();
    assert_eq!(dst(&dp), fixture_owner(1).mac.0);
    // The external IPs flip with the table: the next one replaces the first.
    let new_external = Ipv4Addr::new(198, 51, 100, 77);
    let inbound_to = |ip: Ipv4Addr| udp(REMOTE, ip, 53, 5000).frame();
    let verdict = |dp: &Datapath, ip: Ipv4Addr| run_once(dp, &inbound_to(ip)).0;
    assert_eq!(verdict(&dp, EXTERNAL[0]), XdpAction::Tx);
    assert_eq!(verdict(&dp, new_external), XdpAction::Pass);

    // Scribble a half-written table into the inactive generation: packets must not
    // see it, because the active word still points at the other half.
    let mut b = all_to(2);
    b.epoch = mfplane_lb::table::Epoch(2);
    b.external_ips = [new_external].into_iter().collect();
    let mut half = b.image().unwrap();
    for s in half.buckets.iter_mut().skip(100) {
        *s = None;
    }
    dp.write_generation(gen_a.other(), &half).unwrap();
    for _ in 0..3 {
        assert_eq!(
            dst(&dp),
            fixture_owner(1).mac.0,
            "inactive generation leaked"
        );
        assert_eq!(
            verdict(&dp, EXTERNAL[0]),
            XdpAction::Tx,
            "external set leaked"
        );
        assert_eq!(
            verdict(&dp, new_external),
            XdpAction::Pass,
            "external set leaked"
        );
    }
    // The complete table, then the flip: every bucket moves at once.
    dp.write_generation(gen_a.other(), &b.image().unwrap())
        .unwrap();
    dp.activate(gen_a.other()).unwrap();
    assert_eq!(dst(&dp), fixture_owner(2).mac.0);
    assert_eq!(verdict(&dp, new_external), XdpAction::Tx);
    assert_eq!(verdict(&dp, EXTERNAL[0]), XdpAction::Pass);
    assert_eq!(dp.external_ips().unwrap(), b.external_ips);
    assert_eq!(dp.generation_config(gen_a.other()).unwrap().epoch, 2);
    assert_eq!(
        dp.generation_config(gen_a).unwrap().epoch,
        1,
        "old half kept until the next install"
    );
    // The next install goes to the other half again.
    let c = all_to(3);
    mfplane_lb::watch::TableSink::install_table(&mut dp, &c).unwrap();
    assert_eq!(dp.active_generation(), gen_a);
    assert_eq!(dst(&dp), fixture_owner(3).mac.0);
    assert_eq!(Generation(0).other(), Generation(1));
}

/// A flow's L4 header whose bucket `port` decides: the destination port inbound, the
/// source port outbound, the echo identifier (reply inbound, request outbound).
fn keyed_l4(proto: u8, inbound: bool, port: u16, other: u16) -> L4 {
    let (sport, dport) = if inbound {
        (other, port)
    } else {
        (port, other)
    };
    match proto {
        6 => L4::Tcp { sport, dport },
        17 => L4::Udp { sport, dport },
        _ => L4::Echo {
            icmp_type: if inbound { 0 } else { 8 },
            id: port,
            seq: other,
        },
    }
}

/// The program's choice of owner equals the core's on random packets, for several
/// bucket sizes, both directions and all three protocols.
#[test]
fn differential_against_the_core() {
    let Some(mut dp) = datapath_or_skip("differential_against_the_core") else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0x6d66_706c_616e_6521);
    let settings = fixture_settings(SteerMode::L2, true);
    let mut checked = 0;
    for bits in [4u8, 8, 10, 12] {
        let bits = BucketBits::new(bits).unwrap();
        let assignment: Vec<Option<u64>> = (0..bits.count())
            .map(|_| (rng.random_range(0..10) != 0).then(|| rng.random_range(1..=5)))
            .collect();
        let t = fixture_table(u64::from(bits.get()), bits, 5, |b| assignment[b as usize]);
        install_fixture(&mut dp, &settings, &t);
        for _ in 0..1500 {
            let inbound = rng.random_bool(0.5);
            let port: u16 = rng.random();
            let proto = [1u8, 6, 17][rng.random_range(0..3)];
            let inside = Ipv4Addr::from(0x0a00_0000 | (rng.random::<u32>() & 0x00ff_ffff));
            let remote = Ipv4Addr::from(0xcb00_7100 | (rng.random::<u32>() & 0xff));
            let ext = EXTERNAL[rng.random_range(0..2)];
            let other: u16 = rng.random();
            let (src, dst, bucket) = if inbound {
                (remote, ext, inbound_bucket(bits, port))
            } else {
                let bucket = outbound_bucket(&HASH_KEY, bits, u32::from(inside), port, proto);
                (inside, remote, bucket)
            };
            let l4 = keyed_l4(proto, inbound, port, other);
            let frame = Ip::new(src, dst, l4).frame();
            let (action, out) = run_once(&dp, &frame);
            match t.owner_of(bucket) {
                Some(o) => {
                    assert_eq!(
                        action,
                        XdpAction::Tx,
                        "{src}->{dst} proto {proto} port {port}"
                    );
                    assert_eq!(
                        out,
                        with_macs(&frame, o.mac.0, FABRIC_MAC),
                        "{src}->{dst} proto {proto} port {port}"
                    );
                }
                None => assert_eq!(
                    action,
                    XdpAction::Drop,
                    "unowned bucket {bucket:?} must drop"
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6000);
}

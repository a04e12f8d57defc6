//! Golden packet table, Katran style: `{description, input frame, expected output
//! frame, expected verdict}` against the engine with a fixed set of imported
//! sessions, so every byte of every output is known in advance. Expected frames are
//! built independently (test builder + RFC 1071 reference checksums): a translated
//! frame must equal a freshly built packet with the translated fields.

#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

mod common;

use common::*;
use mfplane_core::{BucketBits, Endpoint, Proto, SessionKey, SessionRecord, inbound_bucket};
use mfplane_dataplane::engine::{Direction, DropReason, Engine, Verdict};

struct Case {
    description: &'static str,
    input: Vec<u8>,
    /// `None`: the output must equal the input.
    expected: Option<Vec<u8>>,
    verdict: Verdict,
}

const A_PORT: u16 = 40000;
const A_EXT_PORT: u16 = 0x5a00 | 0x11; // bucket 0x11
const B_PORT: u16 = 8080;
const B_EXT_PORT: u16 = 0x7700 | 0x22; // bucket 0x22
const PING_ID: u16 = 0x0101;
const PING_EXT_ID: u16 = 0x4400 | 0x33;

fn record(proto: Proto, host: u32, port: u16, ext: u32, ext_port: u16) -> SessionRecord {
    SessionRecord {
        key: SessionKey {
            proto,
            inside: Endpoint::new(host, port),
        },
        external: Endpoint::new(ext, ext_port),
        bucket: inbound_bucket(BucketBits::DEFAULT, ext_port),
        created_ms: T0.0,
    }
}

fn setup() -> Engine {
    let mut e = engine();
    e.set_owned_buckets([]);
    for r in [
        record(Proto::Udp, HOST_A, A_PORT, EXT, A_EXT_PORT),
        record(Proto::Tcp, HOST_A, A_PORT, EXT, A_EXT_PORT),
        record(Proto::Udp, HOST_B, B_PORT, EXT2, B_EXT_PORT),
        record(Proto::Icmp, HOST_A, PING_ID, EXT, PING_EXT_ID),
    ] {
        e.import(r, T0).unwrap();
    }
    e
}

fn cases() -> Vec<Case> {
    let out = Verdict::Translated(Direction::Outbound);
    let inb = Verdict::Translated(Direction::Inbound);
    let udp_out = Pkt::udp(HOST_A, A_PORT, REMOTE, 53);
    let udp_out_x = Pkt::udp(EXT, A_EXT_PORT, REMOTE, 53);
    let tcp_out = Pkt::tcp(HOST_A, A_PORT, REMOTE, 443, SYN);
    let tcp_in = Pkt::tcp(REMOTE, 443, EXT, A_EXT_PORT, SYNACK);
    let mut tagged = Pkt::udp(HOST_A, A_PORT, REMOTE, 53);
    tagged.vlan = Some(0x0005);
    let mut tagged_x = Pkt::udp(EXT, A_EXT_PORT, REMOTE, 53);
    tagged_x.vlan = Some(0x0005);
    let mut opts = Pkt::udp(REMOTE, 53, EXT2, B_EXT_PORT);
    opts.options = vec![0x94, 0x04, 0, 0]; // router alert
    let mut opts_x = Pkt::udp(REMOTE, 53, HOST_B, B_PORT);
    opts_x.options = opts.options.clone();
    let mut padded = udp_out.frame();
    padded.extend_from_slice(&[0; 6]); // Ethernet padding after the IP packet
    let mut padded_x = udp_out_x.frame();
    padded_x.extend_from_slice(&[0; 6]);
    // ICMP error quoting the whole UDP datagram we sent for A.
    let sent = udp_out_x.ip();
    let err_in = icmp_error(REMOTE, EXT, 3, 3, &sent, 16);
    let err_in_x = icmp_error(REMOTE, HOST_A, 3, 3, &udp_out.ip(), 16);
    vec![
        Case {
            description: "UDP outbound",
            input: udp_out.frame(),
            expected: Some(udp_out_x.frame()),
            verdict: out,
        },
        Case {
            description: "UDP inbound reply",
            input: Pkt::udp(REMOTE, 53, EXT, A_EXT_PORT).frame(),
            expected: Some(Pkt::udp(REMOTE, 53, HOST_A, A_PORT).frame()),
            verdict: inb,
        },
        Case {
            description: "TCP SYN outbound",
            input: tcp_out.frame(),
            expected: Some(Pkt::tcp(EXT, A_EXT_PORT, REMOTE, 443, SYN).frame()),
            verdict: out,
        },
        Case {
            description: "TCP SYN-ACK inbound",
            input: tcp_in.frame(),
            expected: Some(Pkt::tcp(REMOTE, 443, HOST_A, A_PORT, SYNACK).frame()),
            verdict: inb,
        },
        Case {
            description: "ICMP echo request outbound",
            input: Pkt::echo(HOST_A, REMOTE, PING_ID, true).frame(),
            expected: Some(Pkt::echo(EXT, REMOTE, PING_EXT_ID, true).frame()),
            verdict: out,
        },
        Case {
            description: "ICMP echo reply inbound",
            input: Pkt::echo(REMOTE, EXT, PING_EXT_ID, false).frame(),
            expected: Some(Pkt::echo(REMOTE, HOST_A, PING_ID, false).frame()),
            verdict: inb,
        },
        Case {
            description: "802.1Q tagged UDP outbound keeps its tag",
            input: tagged.frame(),
            expected: Some(tagged_x.frame()),
            verdict: out,
        },
        Case {
            description: "IPv4 options inbound kept verbatim",
            input: opts.frame(),
            expected: Some(opts_x.frame()),
            verdict: inb,
        },
        Case {
            description: "Ethernet padding is ignored and kept",
            input: padded,
            expected: Some(padded_x),
            verdict: out,
        },
        Case {
            description: "hairpin A -> B's external endpoint",
            input: Pkt::udp(HOST_A, A_PORT, EXT2, B_EXT_PORT).frame(),
            expected: Some(Pkt::udp(EXT, A_EXT_PORT, HOST_B, B_PORT).frame()),
            verdict: Verdict::Translated(Direction::Hairpin),
        },
        Case {
            description: "ICMP port unreachable inbound, quote translated back",
            input: err_in,
            expected: Some(err_in_x),
            verdict: inb,
        },
        Case {
            description: "UDP to an unmapped external port",
            input: Pkt::udp(REMOTE, 53, EXT, A_EXT_PORT + 256).frame(),
            expected: None,
            verdict: Verdict::Drop(DropReason::NoSession),
        },
        Case {
            description: "new flow in a bucket not owned here",
            input: Pkt::udp(HOST_B, 1, REMOTE, 53).frame(),
            expected: None,
            verdict: Verdict::Drop(DropReason::NotOwner),
        },
        Case {
            description: "IHL 4",
            input: {
                let mut f = udp_out.frame();
                f[14] = 0x44;
                f
            },
            expected: None,
            verdict: Verdict::Drop(DropReason::BadIhl),
        },
        Case {
            description: "ARP passes",
            input: {
                let mut f = udp_out.frame();
                f[12..14].copy_from_slice(&[0x08, 0x06]);
                f
            },
            expected: None,
            verdict: Verdict::Pass,
        },
    ]
}

#[test]
fn golden_packet_table() {
    let mut e = setup();
    for c in cases() {
        let mut f = c.input.clone();
        let v = e.process(&mut f, at(1));
        assert_eq!(v, c.verdict, "{}: verdict", c.description);
        let expected = c.expected.as_ref().unwrap_or(&c.input);
        assert_eq!(&f, expected, "{}: output bytes", c.description);
        if matches!(v, Verdict::Translated(_)) {
            assert_checksums_valid(&f);
        }
    }
}

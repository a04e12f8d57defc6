//! What strict commit mode costs the packet loop per frame: `HeldFrames::offer` on
//! frames of committed sessions while other sessions are pending (the common case under
//! a steady rate of new sessions), and a whole hold/commit cycle of a new session.
//!
//! `cargo run --release -p mfplane-node --example strict_hold_cost`

use std::hint::black_box;
use std::time::{Duration, Instant};

use mfplane_core::{BucketId, Endpoint, Proto, SessionKey, SessionRecord};
use mfplane_dataplane::engine::Timestamp;
use mfplane_node::datapath::held::{HeldFrames, Hold, HoldLimits};

const FRAMES: u32 = 2_000_000;
const CYCLES: u32 = 200_000;

fn udp_frame(src: Endpoint, dst: Endpoint) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&28u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.ip.to_be_bytes());
    ip[16..20].copy_from_slice(&dst.ip.to_be_bytes());
    f[34..36].copy_from_slice(&src.port.to_be_bytes());
    f[36..38].copy_from_slice(&dst.port.to_be_bytes());
    f
}

fn record(i: u32) -> SessionRecord {
    SessionRecord {
        key: SessionKey {
            proto: Proto::Udp,
            inside: Endpoint {
                ip: 0x0a00_0000 | (i & 0xff_ffff),
                port: 40_000,
            },
        },
        external: Endpoint {
            ip: 0xcb00_710a,
            port: u16::try_from(1024 + i % 60_000).unwrap_or(1024),
        },
        bucket: BucketId(0),
        created_ms: 0,
    }
}

fn per_op(d: Duration, n: u32) -> f64 {
    d.as_nanos() as f64 / f64::from(n)
}

fn main() {
    let remote = Endpoint {
        ip: 0xc633_640a,
        port: 53,
    };
    for pending in [0u32, 1_000, 10_000] {
        let mut held = HeldFrames::new(HoldLimits::default());
        let recs: Vec<SessionRecord> = (0..pending).map(record).collect();
        held.add_pending(&recs);
        // A committed session's outbound frame: parsed, looked up, sent.
        let frame = udp_frame(
            Endpoint {
                ip: 0xcb00_710a,
                port: 64_000,
            },
            remote,
        );
        let start = Instant::now();
        for _ in 0..FRAMES {
            assert_eq!(held.offer(black_box(&frame), Timestamp(0)), Hold::Send);
        }
        println!(
            "offer, frame of a committed session, {pending:>6} pending: {:>6.1} ns/frame",
            per_op(start.elapsed(), FRAMES)
        );
    }

    let mut held = HeldFrames::new(HoldLimits::default());
    let recs: Vec<SessionRecord> = (0..CYCLES).map(record).collect();
    let frames: Vec<Vec<u8>> = recs.iter().map(|r| udp_frame(r.external, remote)).collect();
    let start = Instant::now();
    for (rec, frame) in recs.iter().zip(&frames) {
        held.add_pending(std::slice::from_ref(rec));
        assert_eq!(held.offer(frame, Timestamp(0)), Hold::Held);
        assert_eq!(held.committed(&rec.key).len(), 1);
    }
    println!(
        "hold + commit + release of a new session's first frame: {:>6.1} ns/session",
        per_op(start.elapsed(), CYCLES)
    );
}

//! Engine throughput on one core: established-session translation and new-session
//! allocation on generated traffic. Prints figures; asserts nothing about speed.
//!
//! Run: `cargo bench -p mfplane-dataplane --bench engine`
//! (`MFPLANE_BENCH_FLOWS=1000,100000` sets the established flow counts.)
#![allow(
    clippy::unwrap_used,
    reason = "benchmark binary: setup failures should panic"
)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use mfplane_core::{BucketId, Endpoint};
use mfplane_dataplane::engine::{Engine, EngineConfig, MemTable, Timestamp, Verdict};
use mfplane_dataplane::wire::{Ipv4Packet, UdpPacket, build};

const REMOTE: u32 = 0xcb00_7107;

/// CPU time of this thread: on a shared machine the figures count only the time the
/// benchmark actually ran, not the time other processes held the core.
fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec out-pointer and a clock id the kernel always has.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Wall and thread-CPU seconds of `f`.
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (w, c) = (Instant::now(), cpu_now());
    f();
    (w.elapsed().as_secs_f64(), cpu_now() - c)
}
const NOW: Timestamp = Timestamp(1_700_000_000_000);

const FRAME_LEN: usize = 60;

/// A minimum-size Ethernet + IPv4 + UDP frame (60 bytes, 64 on the wire with the
/// FCS; 18 payload bytes), valid checksums.
fn udp_frame(src: u32, sport: u16, dst: u32, dport: u16) -> Vec<u8> {
    let payload = [0xab; FRAME_LEN - 14 - 20 - 8];
    let packet = build::udp_packet(
        Endpoint::new(src, sport),
        Endpoint::new(dst, dport),
        &payload,
    );
    build::ipv4_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], &packet)
}

fn config(n_ips: u32) -> EngineConfig {
    let ips = (0..n_ips)
        .map(|i| Ipv4Addr::from_bits(0xc633_6400 + 1 + i))
        .collect();
    let mut cfg = EngineConfig::new(ips);
    cfg.max_sessions = 4 << 20;
    cfg.max_sessions_per_host = u32::MAX;
    cfg
}

fn engine(cfg: EngineConfig, capacity: usize) -> Engine {
    let buckets = cfg.bucket_bits.count();
    let mut e = Engine::with_table(cfg, MemTable::with_capacity(capacity, 7)).unwrap();
    e.set_owned_buckets((0..buckets).map(|b| BucketId(b as u16)));
    e
}

/// Inside endpoint `i`: 4096 hosts in 10.0.0.0/8, ports from 10000 up.
fn inside(i: u32) -> (u32, u16) {
    (0x0a00_0000 + (i % 4096) * 7 + 1, 10000 + (i / 4096) as u16)
}

fn established(flows: u32, rounds: u32) {
    let mut e = engine(config(32), flows as usize);
    // Frames live in two contiguous arrays, like a NIC's receive ring.
    let mut outs: Vec<[u8; FRAME_LEN]> = Vec::with_capacity(flows as usize);
    let mut ins: Vec<[u8; FRAME_LEN]> = Vec::with_capacity(flows as usize);
    for i in 0..flows {
        let (h, p) = inside(i);
        let mut f = udp_frame(h, p, REMOTE, 443);
        outs.push(f.as_slice().try_into().unwrap());
        assert!(matches!(e.process(&mut f, NOW), Verdict::Translated(_)));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let udp = UdpPacket::new_checked(&f[34..]).unwrap();
        ins.push(
            udp_frame(REMOTE, 443, ip.src_addr(), udp.src_port())
                .as_slice()
                .try_into()
                .unwrap(),
        );
    }
    // Interleave outbound and inbound packets of random-ish flows.
    let order: Vec<u32> = (0..flows)
        .map(|i| (i.wrapping_mul(2_654_435_761)) % flows)
        .collect();
    let mut buf = [0u8; FRAME_LEN];
    let (mut best, mut best_cpu, mut copy_best) = (f64::MAX, f64::MAX, f64::MAX);
    // At least 4 M packets per round so short runs are not noise.
    let reps = (2_000_000 / flows).max(1);
    let n = 2.0 * f64::from(flows) * f64::from(reps);
    for _ in 0..rounds {
        let (wall, cpu) = timed(|| {
            for _ in 0..reps {
                for &i in &order {
                    for src in [&outs[i as usize], &ins[i as usize]] {
                        buf.copy_from_slice(src);
                        black_box(e.process(black_box(&mut buf), NOW));
                    }
                }
            }
        });
        best = best.min(wall / n);
        best_cpu = best_cpu.min(cpu / n);
        // The copy alone, to show how much of the figure is the benchmark's own copy.
        let (_, cpu) = timed(|| {
            for _ in 0..reps {
                for &i in &order {
                    for src in [&outs[i as usize], &ins[i as usize]] {
                        buf.copy_from_slice(src);
                        black_box(&mut buf);
                    }
                }
            }
        });
        copy_best = copy_best.min(cpu / n);
    }
    let c = e.counters();
    assert_eq!(c.dropped_total(), 0, "every benchmark packet translates");
    println!(
        "established, {flows:>7} flows, 64-byte UDP, out+in interleaved: CPU {:6.1} ns/packet = {:5.2} Mpps/core \
         (wall {:6.1} ns; frame copy {:5.1} ns of it)",
        best_cpu * 1e9,
        1e-6 / best_cpu,
        best * 1e9,
        copy_best * 1e9,
    );
}

fn new_sessions(n: u32, ips: u32) {
    let frames: Vec<[u8; FRAME_LEN]> = (0..n)
        .map(|i| {
            let (h, p) = inside(i);
            udp_frame(h, p, REMOTE, 443).as_slice().try_into().unwrap()
        })
        .collect();
    let mut e = engine(config(ips), n as usize);
    let (mut cold, mut warm, mut expire) = (f64::MAX, f64::MAX, f64::MAX);
    for round in 0..3 {
        let mut work = frames.clone();
        let (_, cpu) = timed(|| {
            for (i, f) in work.iter_mut().enumerate() {
                black_box(e.process(black_box(f), NOW));
                // Replication takes a batch every 1024 sessions (DESIGN: group commit).
                if i % 1024 == 1023 {
                    black_box(e.drain_created().count());
                }
            }
        });
        let per = cpu / f64::from(n);
        assert_eq!(
            e.session_count(),
            n as usize,
            "drops: {:?}",
            e.counters().drops().filter(|d| d.1 > 0).collect::<Vec<_>>()
        );
        if round == 0 {
            cold = per;
        } else {
            warm = warm.min(per);
        }
        // Expire everything: the ports return to the pools for the next round.
        let later = Timestamp(NOW.0 + 3_600_000);
        let mut expired = 0;
        let (_, cpu) = timed(|| expired = e.expire(later).len());
        assert_eq!(expired, n as usize);
        expire = expire.min(cpu / f64::from(n));
    }
    println!(
        "new sessions: {n:>7} first packets, {ips:>2} external IPs (bucket hash + allocate + insert + translate): \
         CPU warm {:.1} ns = {:.2} M sessions/s/core; cold (first touch of the tables) {:.1} ns = {:.2} M/s; \
         expiry sweep + removal {:.1} ns/session",
        warm * 1e9,
        1e-6 / warm,
        cold * 1e9,
        1e-6 / cold,
        expire * 1e9,
    );
}

/// Dependent random reads over 64 MB: what one cache miss costs on this machine,
/// to read the large-table figures against.
fn memory_latency() -> f64 {
    let n: usize = 8 << 20;
    let mut next: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    // Sattolo's algorithm: one cycle through every slot.
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        next.swap(i, (x as usize) % i);
    }
    let steps = 1_000_000;
    let mut p = 0;
    let (_, cpu) = timed(|| {
        for _ in 0..steps {
            p = next[p];
        }
        black_box(p);
    });
    cpu / f64::from(steps)
}

fn main() {
    println!(
        "machine: one dependent random read over 64 MB costs {:.0} ns (CPU time)",
        memory_latency() * 1e9
    );
    let flows: Vec<u32> = match std::env::var("MFPLANE_BENCH_FLOWS") {
        Ok(v) => v.split(',').filter_map(|x| x.parse().ok()).collect(),
        Err(_) => vec![1_000, 100_000, 1_000_000],
    };
    for f in flows {
        established(f, 5);
    }
    if std::env::var("MFPLANE_BENCH_SKIP_NEW").is_err() {
        new_sessions(50_000, 2);
        // 32 external IPs x 64512 ports: room for ~2 M sessions without exhaustion.
        new_sessions(1_000_000, 32);
    }
}

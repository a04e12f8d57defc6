//! ns/packet of the LB XDP program, measured in the kernel with `BPF_PROG_TEST_RUN`
//! and `repeat` (the kernel times the loop; no syscall per packet).
//!
//! Run as root: `cargo bench -p mfplane-lb --bench xdp_ns_per_packet`
//! (`MFPLANE_BENCH_REPEAT` overrides the repeat count, default 1_000_000;
//! `MFPLANE_BENCH_ROUNDS` the rounds, default 7).
//!
//! The machine is shared and noisy, so every case is measured next to a peer: the
//! empty XDP program of the same object (`mfplane_lb_empty`, returns `XDP_PASS`),
//! run right before the case in every round. The report gives each case's ns/packet
//! (median and least-disturbed round), the baseline's, their ratio and the difference
//! (the LB's own work), as medians over the rounds. When the machine is busy the
//! baseline rises with the case: compare ratios, not raw figures, across runs.
//!
//! IP-in-IP cannot be measured this way: with `repeat` the kernel runs the program
//! again on the frame it already encapsulated (the buffer is not reset between runs),
//! so every run after the first would measure a pass. A second table therefore times
//! single runs (`repeat = 1`, `MFPLANE_BENCH_SINGLES` of them, default 2000, median):
//! IP-in-IP and L2 steering of the same packet and the empty program. A single run's
//! figure includes the kernel's timer overhead, so only its differences mean
//! something: IP-in-IP minus L2 is the encapsulation's cost.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use aya::programs::Xdp;
use mfplane_core::BucketBits;
use mfplane_core::lb_maps::SteerMode;
use mfplane_lb::object::{self, EMPTY_PROGRAM_NAME};
use mfplane_lb::testkit::{
    EXTERNAL, Ip, L4, XdpAction, datapath_or_skip, fixture_settings, fixture_table,
    install_fixture, round_robin, run_program_repeat, run_repeat,
};

/// One measured case: the frame, the verdict it must get, and whether an interface
/// is declared outside-only (`false` is the one-armed LB).
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    expect: XdpAction,
    outside_check: bool,
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cases() -> Vec<Case> {
    let inside = Ipv4Addr::new(10, 1, 2, 3);
    let outside = Ipv4Addr::new(203, 0, 113, 7);
    let outbound = Ip::new(
        inside,
        outside,
        L4::Tcp {
            sport: 40000,
            dport: 443,
        },
    )
    .frame();
    vec![
        Case {
            name: "outbound steer, outside check (allowed)",
            frame: outbound.clone(),
            expect: XdpAction::Tx,
            outside_check: true,
        },
        Case {
            name: "outbound on outside-only iface (spoofed)",
            frame: outbound.clone(),
            expect: XdpAction::Drop,
            outside_check: true,
        },
        Case {
            name: "outbound steer (TCP, flow hash)",
            frame: outbound,
            expect: XdpAction::Tx,
            outside_check: false,
        },
        Case {
            name: "inbound steer (UDP, dst port)",
            frame: Ip::new(
                outside,
                EXTERNAL[0],
                L4::Udp {
                    sport: 53,
                    dport: 5000,
                },
            )
            .frame(),
            expect: XdpAction::Tx,
            outside_check: false,
        },
        Case {
            name: "pass (neither inside nor external)",
            frame: Ip::new(
                outside,
                Ipv4Addr::new(192, 0, 2, 99),
                L4::Tcp { sport: 1, dport: 2 },
            )
            .frame(),
            expect: XdpAction::Pass,
            outside_check: false,
        },
        Case {
            name: "pass (inside to inside)",
            frame: Ip::new(
                inside,
                Ipv4Addr::new(10, 9, 9, 9),
                L4::Tcp { sport: 1, dport: 2 },
            )
            .frame(),
            expect: XdpAction::Pass,
            outside_check: false,
        },
        Case {
            name: "ARP (not IPv4)",
            frame: mfplane_lb::testkit::ethernet([0xff; 6], [2; 6], 0x0806, &[0; 28]),
            expect: XdpAction::Pass,
            outside_check: false,
        },
    ]
}

fn main() {
    let Some(mut dp) = datapath_or_skip("xdp_ns_per_packet") else {
        return;
    };
    let repeat = env_or("MFPLANE_BENCH_REPEAT", 1_000_000);
    let rounds = env_or("MFPLANE_BENCH_ROUNDS", 7).max(1) as usize;
    // The baseline from the same object, loaded on its own.
    let mut peer = aya::Ebpf::load(object::embedded().unwrap()).unwrap();
    let empty: &mut Xdp = peer
        .program_mut(EMPTY_PROGRAM_NAME)
        .unwrap()
        .try_into()
        .unwrap();
    empty.load().unwrap();
    let empty: &Xdp = empty;

    let table = fixture_table(1, BucketBits::DEFAULT, 3, round_robin(|_| false));
    let lo = mfplane_lb::iface::Interface::by_name("lo").unwrap();
    let cases = cases();
    println!(
        "LB XDP program, BPF_PROG_TEST_RUN, repeat = {repeat}, {rounds} rounds per case; \
         baseline = empty XDP program run next to each case in every round; medians"
    );
    println!(
        "{:<42} {:>7} {:>7} {:>9} {:>7} {:>9} {:>10}",
        "case", "ns/pkt", "min", "baseline", "ratio", "LB work", "Mpps/core"
    );
    let mut all_ratios = Vec::new();
    for case in &cases {
        let mut settings = fixture_settings(SteerMode::L2, true);
        if case.outside_check {
            // BPF_PROG_TEST_RUN delivers on loopback: outside-only for the spoofed
            // case; otherwise another interface is, and the check runs and misses.
            let spoofed = case.expect == XdpAction::Drop;
            let second = if spoofed { lo.index } else { 0 };
            settings.outside_ifindex = [lo.index + 1000, second, 0, 0];
        }
        install_fixture(&mut dp, &settings, &table);
        let (mut ns, mut base, mut ratio, mut work) = (vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            let (empty_action, b) = run_program_repeat(empty, &case.frame, repeat);
            assert_eq!(empty_action, XdpAction::Pass, "the empty program passes");
            let (action, n) = run_repeat(&dp, &case.frame, repeat);
            assert_eq!(action, case.expect, "{}: unexpected action", case.name);
            ns.push(n);
            base.push(b);
            ratio.push(n / b.max(1.0));
            work.push(n - b);
        }
        let min = ns.iter().copied().fold(f64::INFINITY, f64::min);
        let (ns, base, ratio, work) = (median(ns), median(base), median(ratio), median(work));
        all_ratios.push(ratio);
        println!(
            "{:<42} {ns:>7.1} {min:>7.1} {base:>9.1} {ratio:>7.2} {work:>9.1} {:>10.1}",
            case.name,
            1e3 / ns
        );
    }
    println!(
        "worst case ratio {:.2} (goal: LB ns/packet <= 50)",
        all_ratios.iter().copied().fold(0.0, f64::max)
    );
    single_runs(&mut dp, empty, &cases[2].frame);
}

/// The single-run table, on the fixture table already installed: IP-in-IP against L2
/// steering of `frame` (outbound TCP) and the empty program, each as the median of many `repeat = 1` runs, interleaved.
fn single_runs(dp: &mut mfplane_lb::Datapath, empty: &Xdp, frame: &[u8]) {
    let singles = env_or("MFPLANE_BENCH_SINGLES", 2000).max(1);
    let l2 = fixture_settings(SteerMode::L2, true);
    let ipip = fixture_settings(SteerMode::IpIp, true);
    let (mut e, mut a, mut b) = (vec![], vec![], vec![]);
    // Alternate the modes in batches so drift in the machine's load hits both.
    for _ in 0..10 {
        for (settings, out) in [(&l2, &mut a), (&ipip, &mut b)] {
            dp.set_settings(settings).unwrap();
            for _ in 0..singles / 10 {
                let (action, ns) = run_repeat(dp, frame, 1);
                assert_eq!(action, XdpAction::Tx);
                out.push(ns);
                e.push(run_program_repeat(empty, frame, 1).1);
            }
        }
    }
    let (e, a, b) = (median(e), median(a), median(b));
    println!(
        "single runs (repeat = 1, median of {singles} per program and mode; includes the kernel's timer \
         overhead): empty {e:.1} ns, outbound L2 {a:.1} ns, outbound IP-in-IP {b:.1} ns; \
         encapsulation costs {:.1} ns over L2",
        b - a
    );
}

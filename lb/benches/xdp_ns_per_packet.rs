//! ns/packet of the LB XDP program, measured in the kernel with `BPF_PROG_TEST_RUN`
//! and `repeat` (the kernel times the loop; no syscall per packet).
//!
//! Run as root: `cargo bench -p mfplane-lb --bench xdp_ns_per_packet`
//! (`MFPLANE_BENCH_REPEAT` overrides the repeat count, default 1_000_000).
//!
//! IP-in-IP is not measured this way: with `repeat` the kernel runs the program again
//! on the frame it already encapsulated (the buffer is not reset between runs), so
//! every run after the first would measure a pass.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use mfplane_core::BucketBits;
use mfplane_core::lb_maps::SteerMode;
use mfplane_lb::testkit::{
    EXTERNAL, Ip, L4, XdpAction, datapath_or_skip, fixture_settings, fixture_table,
    install_fixture, round_robin, run_repeat,
};

/// Rounds per case: the machine may be busy, so report the spread.
const ROUNDS: usize = 5;

fn main() {
    let Some(mut dp) = datapath_or_skip("xdp_ns_per_packet") else {
        return;
    };
    let repeat: u32 = std::env::var("MFPLANE_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let table = fixture_table(1, BucketBits::DEFAULT, 3, round_robin(|_| false));
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
    // Whether an interface is declared outside-only; `false` is the one-armed LB.
    let cases: [(&str, Vec<u8>, XdpAction, bool); 7] = [
        (
            "outbound steer, outside check (allowed)",
            outbound.clone(),
            XdpAction::Tx,
            true,
        ),
        (
            "outbound on outside-only iface (spoofed)",
            outbound.clone(),
            XdpAction::Drop,
            true,
        ),
        (
            "outbound steer (TCP, flow hash)",
            Ip::new(
                inside,
                outside,
                L4::Tcp {
                    sport: 40000,
                    dport: 443,
                },
            )
            .frame(),
            XdpAction::Tx,
            false,
        ),
        (
            "inbound steer (UDP, dst port)",
            Ip::new(
                outside,
                EXTERNAL[0],
                L4::Udp {
                    sport: 53,
                    dport: 5000,
                },
            )
            .frame(),
            XdpAction::Tx,
            false,
        ),
        (
            "pass (neither inside nor external)",
            Ip::new(
                outside,
                Ipv4Addr::new(192, 0, 2, 99),
                L4::Tcp { sport: 1, dport: 2 },
            )
            .frame(),
            XdpAction::Pass,
            false,
        ),
        (
            "pass (inside to inside: no hash lookup)",
            Ip::new(
                inside,
                Ipv4Addr::new(10, 9, 9, 9),
                L4::Tcp { sport: 1, dport: 2 },
            )
            .frame(),
            XdpAction::Pass,
            false,
        ),
        (
            "ARP (not IPv4)",
            mfplane_lb::testkit::ethernet([0xff; 6], [2; 6], 0x0806, &[0; 28]),
            XdpAction::Pass,
            false,
        ),
    ];
    println!(
        "LB XDP program, BPF_PROG_TEST_RUN, repeat = {repeat}, {ROUNDS} rounds per case \
         (min and median of the kernel's per-run average)"
    );
    let lo = mfplane_lb::iface::Interface::by_name("lo").unwrap();
    for (name, frame, expect, outside_check) in &cases {
        let mut settings = fixture_settings(SteerMode::L2, true);
        if *outside_check {
            // BPF_PROG_TEST_RUN delivers on loopback: outside-only for the spoofed
            // case; otherwise another interface is, and the check runs and misses.
            let spoofed = *expect == XdpAction::Drop;
            let second = if spoofed { lo.index } else { 0 };
            settings.outside_ifindex = [lo.index + 1000, second, 0, 0];
        }
        install_fixture(&mut dp, &settings, &table);
        let mut rounds: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let (action, ns) = run_repeat(&dp, frame, repeat);
                assert_eq!(action, *expect, "{name}: unexpected action");
                ns
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        let (min, median) = (rounds[0], rounds[ROUNDS / 2]);
        println!(
            "{name:<40} min {min:>5.1} ns/packet  median {median:>5.1} ns/packet  \
             ({:.1} Mpps/core at the median)",
            1e3 / median
        );
    }
}

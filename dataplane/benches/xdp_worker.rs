//! Nanoseconds per packet of the worker's XDP program (parse, keyed flow hash,
//! bucket, fragment check, per-CPU counters) through `BPF_PROG_TEST_RUN` with
//! `repeat`. Needs root and the object built by `scripts/build-ebpf.sh`; without
//! them it says what is missing and exits with an error.
//!
//! Run: `cargo bench -p mfplane-dataplane --bench xdp_worker`
#![allow(
    clippy::unwrap_used,
    reason = "benchmark binary: setup failures should panic"
)]

use std::path::PathBuf;

use aya::Ebpf;
use aya::maps::Array;
use aya::programs::{TestRun, TestRunOptions, Xdp};
use mfplane_core::maps::{DataplaneConfig, MAP_CONFIG};
use mfplane_core::{BucketBits, FlowHashKey, csum};

fn frame(sport: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let mut ip = vec![
        0x45, 0, 0, 46, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 203, 0, 113, 7,
    ];
    let c = csum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&[0, 53, 0, 26, 0, 0]);
    f.extend_from_slice(&[0xab; 18]);
    f
}

fn main() {
    let obj = std::env::var_os("MFPLANE_WORKER_BPF_OBJ").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("ebpf/target/bpfel-unknown-none/release/mfplane-worker")
        },
        PathBuf::from,
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("xdp_worker bench: needs root (CAP_BPF + CAP_NET_ADMIN) for BPF_PROG_TEST_RUN");
        std::process::exit(1);
    }
    if !obj.exists() {
        eprintln!(
            "xdp_worker bench: {} is missing: run scripts/build-ebpf.sh",
            obj.display()
        );
        std::process::exit(1);
    }
    let mut bpf = Ebpf::load_file(&obj).unwrap();
    let prog: &mut Xdp = bpf
        .program_mut("mfplane_worker")
        .unwrap()
        .try_into()
        .unwrap();
    prog.load().unwrap();
    let mut cfg: Array<_, DataplaneConfig> =
        Array::try_from(bpf.map_mut(MAP_CONFIG).unwrap()).unwrap();
    cfg.set(
        0,
        DataplaneConfig::new(FlowHashKey::DEFAULT, BucketBits::DEFAULT, 1),
        0,
    )
    .unwrap();
    let prog: &mut Xdp = bpf
        .program_mut("mfplane_worker")
        .unwrap()
        .try_into()
        .unwrap();
    let f = frame(40000);
    let mut out = vec![0u8; f.len() + 256];
    let mut best = u128::MAX;
    for _ in 0..5 {
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&f),
                data_out: Some(&mut out),
                repeat: 1_000_000,
                ..TestRunOptions::default()
            })
            .unwrap();
        best = best.min(r.duration.as_nanos());
    }
    println!(
        "xdp worker seed (parse + SipHash bucket + counters), 64-byte UDP: {best} ns/packet \
         (BPF_PROG_TEST_RUN, repeat 1e6, best of 5)"
    );
}

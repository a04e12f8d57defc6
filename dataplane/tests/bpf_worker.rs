//! Loads the worker's XDP program (built by `scripts/build-ebpf.sh`) and runs it on
//! packets through `BPF_PROG_TEST_RUN`, checking verdicts, drop counters and that the
//! kernel computes the same bucket as the userspace core.
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN) and the built object. Without either it fails
//! and says how to fix it, unless `MFPLANE_SKIP_BPF=1` is set.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns: a failure should panic with its location"
)]

use std::path::PathBuf;

use aya::Ebpf;
use aya::maps::{Array, PerCpuArray};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use mfplane_core::maps::{Counter, DataplaneConfig, MAP_BUCKET_PACKETS, MAP_CONFIG, MAP_COUNTERS};
use mfplane_core::{BucketBits, FlowHashKey, csum, outbound_bucket};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

fn object_path() -> PathBuf {
    match std::env::var_os("MFPLANE_WORKER_BPF_OBJ") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("ebpf/target/bpfel-unknown-none/release/mfplane-worker"),
    }
}

/// `None` when the test must be skipped (and says so); panics with the fix otherwise.
fn load_or_skip() -> Option<Ebpf> {
    let skip = std::env::var("MFPLANE_SKIP_BPF").is_ok_and(|v| v == "1");
    let obj = object_path();
    // SAFETY: geteuid has no preconditions.
    let problem = if unsafe { libc::geteuid() } != 0 {
        Some("this test loads an XDP program and needs root (CAP_BPF + CAP_NET_ADMIN)".to_owned())
    } else if !obj.exists() {
        Some(format!(
            "{} is missing: run scripts/setup.sh and scripts/build-ebpf.sh first",
            obj.display()
        ))
    } else {
        None
    };
    if let Some(problem) = problem {
        if skip {
            println!("SKIPPED (MFPLANE_SKIP_BPF=1): {problem}");
            return None;
        }
        panic!("{problem}; set MFPLANE_SKIP_BPF=1 to skip the BPF tests");
    }
    Some(Ebpf::load_file(&obj).unwrap_or_else(|e| panic!("loading {}: {e}", obj.display())))
}

/// An Ethernet + IPv4 + UDP frame with valid checksums; `vlan` inserts an 802.1Q tag.
fn udp_frame(src: u32, sport: u16, dst: u32, dport: u16, vlan: bool) -> Vec<u8> {
    let payload = b"hello";
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_at = f.len();
    let total = 20 + 8 + payload.len() as u16;
    f.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 17, 0, 0]);
    f[ip_at + 2..ip_at + 4].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&src.to_be_bytes());
    f.extend_from_slice(&dst.to_be_bytes());
    let c = csum::checksum(&f[ip_at..ip_at + 20]);
    f[ip_at + 10..ip_at + 12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

struct Worker {
    bpf: Ebpf,
}

impl Worker {
    fn run(&mut self, frame: &[u8]) -> u32 {
        let prog: &mut Xdp = self
            .bpf
            .program_mut("mfplane_worker")
            .expect("program mfplane_worker")
            .try_into()
            .expect("an XDP program");
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        };
        prog.test_run(opts).expect("BPF_PROG_TEST_RUN").return_value
    }

    fn counter(&self, c: Counter) -> u64 {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.bpf.map(MAP_COUNTERS).expect("counters map")).unwrap();
        m.get(&c.index(), 0).unwrap().iter().sum()
    }

    fn bucket_packets(&self, bucket: u16) -> u64 {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.bpf.map(MAP_BUCKET_PACKETS).expect("bucket map")).unwrap();
        m.get(&u32::from(bucket), 0).unwrap().iter().sum()
    }

    fn configure(&mut self, cfg: DataplaneConfig) {
        let mut m: Array<_, DataplaneConfig> =
            Array::try_from(self.bpf.map_mut(MAP_CONFIG).expect("config map")).unwrap();
        m.set(0, cfg, 0).unwrap();
    }

    /// Runs `frame`, expects `verdict`, and expects `counter` to grow by one.
    fn expect(&mut self, what: &str, frame: &[u8], verdict: u32, counter: Counter) {
        let before = self.counter(counter);
        assert_eq!(self.run(frame), verdict, "{what}: verdict");
        assert_eq!(
            self.counter(counter),
            before + 1,
            "{what}: counter {counter:?}"
        );
    }
}

#[test]
fn worker_xdp_program_parses_counts_and_agrees_on_buckets() {
    let Some(mut bpf) = load_or_skip() else {
        return;
    };
    let prog: &mut Xdp = bpf
        .program_mut("mfplane_worker")
        .expect("program mfplane_worker")
        .try_into()
        .unwrap();
    prog.load().expect("the verifier accepts the program");
    let mut w = Worker { bpf };

    let frame = udp_frame(0x0a00_0001, 40000, 0x0808_0808, 53, false);
    w.expect("unconfigured", &frame, XDP_PASS, Counter::NotConfigured);

    let key = FlowHashKey::new(0x1111, 0x2222);
    let bits = BucketBits::new(8).unwrap();
    w.configure(DataplaneConfig::new(key, bits, 1));

    // The kernel's bucket equals the core's, for plain and VLAN-tagged frames.
    for (i, vlan) in [(0u16, false), (1, true), (2, false), (3, true)] {
        let sport = 40000 + i * 977;
        let frame = udp_frame(0x0a00_0001 + u32::from(i), sport, 0x0808_0808, 53, vlan);
        let b = outbound_bucket(&key, bits, 0x0a00_0001 + u32::from(i), sport, 17).0;
        let before = w.bucket_packets(b);
        w.expect("udp", &frame, XDP_PASS, Counter::VerdictPass);
        assert_eq!(w.bucket_packets(b), before + 1, "bucket {b} (vlan {vlan})");
    }

    // ARP and other EtherTypes go to the kernel untouched.
    let mut arp = frame.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    w.expect("arp", &arp, XDP_PASS, Counter::VerdictPass);

    // Malformed IPv4 is dropped with its reason.
    w.expect(
        "truncated ip",
        &frame[..14 + 10],
        XDP_DROP,
        Counter::DropTruncated,
    );
    let mut bad = frame.clone();
    bad[14] = 0x44;
    w.expect("ihl 4", &bad, XDP_DROP, Counter::DropBadIhl);
    let mut bad = frame.clone();
    bad[14] = 0x65;
    w.expect(
        "version 6 in an IPv4 frame",
        &bad,
        XDP_DROP,
        Counter::DropBadVersion,
    );
    let mut bad = frame.clone();
    bad[16..18].copy_from_slice(&1500u16.to_be_bytes());
    w.expect(
        "total length past the frame",
        &bad,
        XDP_DROP,
        Counter::DropBadLength,
    );
    w.expect(
        "udp header cut",
        &frame[..14 + 20 + 4],
        XDP_DROP,
        Counter::DropBadLength,
    );

    // Fragments: a later fragment before its first is dropped; after it, it follows.
    let mut later = frame.clone();
    later[20..22].copy_from_slice(&0x0003u16.to_be_bytes()); // offset 24 bytes
    w.expect(
        "fragment without head",
        &later,
        XDP_DROP,
        Counter::DropFragmentNoHead,
    );
    let mut first = frame.clone();
    first[20..22].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, offset 0
    w.expect("first fragment", &first, XDP_PASS, Counter::FragmentTracked);
    let b = outbound_bucket(&key, bits, 0x0a00_0001, 40000, 17).0;
    let before = w.bucket_packets(b);
    w.expect(
        "later fragment",
        &later,
        XDP_PASS,
        Counter::FragmentFollowed,
    );
    assert_eq!(
        w.bucket_packets(b),
        before + 1,
        "the later fragment follows its bucket"
    );
}

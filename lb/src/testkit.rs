//! Packet builders, a standard steering fixture and the root/object gate, shared by
//! the BPF tests, the agent test and the benchmark.
//!
//! The builders compute every checksum with `mfplane_core::csum::checksum` (a full
//! sum), independently of the incremental arithmetic the program uses, so golden
//! outputs are not derived from the code under test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use mfplane_core::csum::{checksum, fold, pseudo_header_sum, sum_bytes};
use mfplane_core::lb_maps::{Ipv4Prefix, LbSettings, SteerMode};
use mfplane_core::{BucketBits, FlowHashKey};

use crate::datapath::Datapath;
use crate::table::{Epoch, MacAddr, NodeId, OwnerAddr, SteeringTable};

/// Set to `1` to skip tests that need root and the BPF object.
pub const SKIP_ENV: &str = "MFPLANE_SKIP_BPF";

/// Loads the LB program for a test, or returns `None` (after saying so) when
/// `MFPLANE_SKIP_BPF=1`.
///
/// # Panics
/// When not root or when this build has no BPF object: a test that cannot run must
/// fail loudly, never pass silently.
pub fn datapath_or_skip(test: &str) -> Option<Datapath> {
    if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
        // Written to the stderr handle, not through eprintln!, so the test harness's
        // output capture cannot hide that the test did not run.
        let _ = writeln!(std::io::stderr(), "{test}: SKIPPED ({SKIP_ENV}=1)");
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "{test} needs root (CAP_BPF and CAP_NET_ADMIN) to load the LB XDP program; \
             run the tests as root, or set {SKIP_ENV}=1 to skip them"
        );
    }
    match Datapath::load_embedded() {
        Ok(dp) => Some(dp),
        Err(e) => panic!("{test}: cannot load the LB program: {e} (set {SKIP_ENV}=1 to skip)"),
    }
}

/// Runs `body` on a thread of its own in a fresh, unnamed network namespace, after
/// bringing `lo` up and running each `ip` command of `setup` there. Everything
/// created in the namespace (links, sockets, XDP attachments) disappears when the
/// thread ends, even if the test fails; a test's child processes need their own
/// kill guards. A panic in `body` is re-raised in the caller.
///
/// # Panics
/// If the namespace cannot be created or a setup command fails.
pub fn in_private_netns(setup: &[&[&str]], body: impl FnOnce() + Send + 'static) {
    let setup: Vec<Vec<String>> = setup
        .iter()
        .map(|c| c.iter().map(|a| (*a).to_owned()).collect())
        .collect();
    let handle = std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread's namespaces.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        let lo = [String::from("link"), "set".into(), "lo".into(), "up".into()];
        for args in std::iter::once(&lo[..]).chain(setup.iter().map(Vec::as_slice)) {
            // Spawned from this thread, so `ip` runs in the private namespace.
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
            assert!(st.success(), "ip {args:?} failed");
        }
        body();
    });
    if let Err(p) = handle.join() {
        std::panic::resume_unwind(p);
    }
}

/// XDP return codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
    Unknown(u32),
}

impl From<u32> for XdpAction {
    fn from(v: u32) -> Self {
        match v {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            v => XdpAction::Unknown(v),
        }
    }
}

/// Runs the program once on `input`: the action and the output frame.
///
/// # Panics
/// If `BPF_PROG_TEST_RUN` itself fails (a test bug or a kernel without it).
pub fn run_once(dp: &Datapath, input: &[u8]) -> (XdpAction, Vec<u8>) {
    let mut out = vec![0u8; input.len() + 256];
    let prog = dp.program().unwrap_or_else(|e| panic!("program: {e}"));
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"));
    out.truncate(r.data_size_out as usize);
    (XdpAction::from(r.return_value), out)
}

/// Runs the program `repeat` times on `input` in the kernel; the average duration per
/// run in nanoseconds and the action.
///
/// # Panics
/// If `BPF_PROG_TEST_RUN` fails.
pub fn run_repeat(dp: &Datapath, input: &[u8], repeat: u32) -> (XdpAction, f64) {
    let prog = dp.program().unwrap_or_else(|e| panic!("program: {e}"));
    run_program_repeat(prog, input, repeat)
}

/// [`run_repeat`] for any loaded XDP program (e.g. the benchmark's empty baseline).
///
/// # Panics
/// If `BPF_PROG_TEST_RUN` fails.
pub fn run_program_repeat(prog: &Xdp, input: &[u8], repeat: u32) -> (XdpAction, f64) {
    let mut out = vec![0u8; input.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"));
    (
        XdpAction::from(r.return_value),
        r.duration.as_nanos() as f64,
    )
}

// ---- The standard fixture -------------------------------------------------------

/// Inside prefix of the fixture.
pub const INSIDE: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 0, 0, 0), 8);
/// External IPs of the fixture.
pub const EXTERNAL: [Ipv4Addr; 2] = [
    Ipv4Addr::new(198, 51, 100, 1),
    Ipv4Addr::new(198, 51, 100, 2),
];
/// The LB's fabric MAC and IP in the fixture.
pub const FABRIC_MAC: [u8; 6] = [0x02, 0x4c, 0x42, 0, 0, 1];
pub const FABRIC_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// Interface index the fixture calls "fabric" when packets must be redirected (no
/// such interface needs to exist: test runs arrive on loopback, index 1).
pub const OTHER_IFINDEX: u32 = 4242;
/// Source and destination MAC of fixture input frames.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xc1, 0x01];
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x01];

/// Owner `n` (1-based) of the fixture: IP 192.0.2.n, MAC 02:00:00:00:0a:n.
pub fn fixture_owner(n: u8) -> OwnerAddr {
    OwnerAddr {
        ip: Ipv4Addr::new(192, 0, 2, n),
        mac: MacAddr([0x02, 0, 0, 0, 0x0a, n]),
    }
}

/// Settings of the fixture: `mode`, inside 10/8, TX when `fabric_is_ingress`, else
/// redirect.
pub fn fixture_settings(mode: SteerMode, fabric_is_ingress: bool) -> LbSettings {
    let mut s = LbSettings {
        mode: mode as u32,
        fabric_ifindex: if fabric_is_ingress { 1 } else { OTHER_IFINDEX },
        fabric_ip: u32::from(FABRIC_IP),
        inside_count: 1,
        fabric_mac: FABRIC_MAC,
        ..LbSettings::default()
    };
    s.inside[0] = Ipv4Prefix::new(u32::from(INSIDE.0), INSIDE.1).unwrap_or_default();
    s
}

/// A table at `epoch` with `bits` bucket bits and `owners` owners (nodes 1..=owners),
/// bucket `b` owned by `assign(b)`.
pub fn fixture_table(
    epoch: u64,
    bits: BucketBits,
    owners: u8,
    assign: impl Fn(u16) -> Option<u64>,
) -> SteeringTable {
    SteeringTable {
        epoch: Epoch(epoch),
        bits,
        buckets: (0..bits.count() as u16)
            .map(|b| assign(b).map(NodeId))
            .collect(),
        owners: (1..=owners)
            .map(|n| (NodeId(u64::from(n)), fixture_owner(n)))
            .collect::<BTreeMap<_, _>>(),
        external_ips: EXTERNAL.iter().copied().collect::<BTreeSet<_>>(),
        hash_key: HASH_KEY,
    }
}

/// Round-robin owners over 3 nodes, every bucket owned except those `unowned` says.
pub fn round_robin(unowned: impl Fn(u16) -> bool) -> impl Fn(u16) -> Option<u64> {
    move |b| (!unowned(b)).then_some(1 + u64::from(b % 3))
}

/// Writes the fixture settings and table into `dp`.
///
/// # Panics
/// On a map error.
pub fn install_fixture(dp: &mut Datapath, settings: &LbSettings, table: &SteeringTable) {
    dp.set_settings(settings)
        .unwrap_or_else(|e| panic!("settings: {e}"));
    dp.set_fabric(1).unwrap_or_else(|e| panic!("fabric: {e}"));
    crate::watch::TableSink::install_table(dp, table).unwrap_or_else(|e| panic!("table: {e}"));
    dp.clear_fragments()
        .unwrap_or_else(|e| panic!("frags: {e}"));
}

/// The hash key every fixture uses.
pub const HASH_KEY: FlowHashKey = FlowHashKey::DEFAULT;

// ---- Packet builders -------------------------------------------------------------

/// L4 content of a built packet.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP echo request (type 8) or reply (type 0).
    Echo {
        icmp_type: u8,
        id: u16,
        seq: u16,
    },
    /// An ICMP error quoting the first 28 bytes (IP + 8) of `quoted` (an IPv4 packet).
    IcmpError {
        icmp_type: u8,
        code: u8,
        quoted: Vec<u8>,
    },
    /// Any protocol with a raw payload.
    Raw {
        proto: u8,
        bytes: Vec<u8>,
    },
}

/// An IPv4 packet to build.
#[derive(Clone, Debug)]
pub struct Ip {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub id: u16,
    /// The flags + fragment offset word (host order), e.g. `IP_MF`.
    pub frag: u16,
    pub tos: u8,
    pub l4: L4,
    /// Payload after the L4 header.
    pub payload: Vec<u8>,
}

impl Ip {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Self {
        Ip {
            src,
            dst,
            id: 0x1234,
            frag: 0,
            tos: 0,
            l4,
            payload: b"mfplane".to_vec(),
        }
    }

    fn proto(&self) -> u8 {
        match self.l4 {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Echo { .. } | L4::IcmpError { .. } => 1,
            L4::Raw { proto, .. } => proto,
        }
    }

    /// The L4 header and payload, with a correct checksum.
    fn l4_bytes(&self) -> Vec<u8> {
        let mut b = match &self.l4 {
            L4::Tcp { sport, dport } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..8].copy_from_slice(&1u32.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = 0x18;
                h[14..16].copy_from_slice(&64240u16.to_be_bytes());
                h
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..6].copy_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                h
            }
            L4::Echo { icmp_type, id, seq } => {
                let mut h = vec![*icmp_type, 0, 0, 0];
                h.extend_from_slice(&id.to_be_bytes());
                h.extend_from_slice(&seq.to_be_bytes());
                h
            }
            L4::IcmpError {
                icmp_type,
                code,
                quoted,
            } => {
                let mut h = vec![*icmp_type, *code, 0, 0, 0, 0, 0, 0];
                h.extend_from_slice(&quoted[..quoted.len().min(28)]);
                h
            }
            L4::Raw { bytes, .. } => bytes.clone(),
        };
        if !matches!(self.l4, L4::IcmpError { .. } | L4::Raw { .. }) {
            b.extend_from_slice(&self.payload);
        }
        let len = b.len() as u16;
        match self.l4 {
            L4::Tcp { .. } | L4::Udp { .. } => {
                let at = if matches!(self.l4, L4::Tcp { .. }) {
                    16
                } else {
                    6
                };
                let ph =
                    pseudo_header_sum(u32::from(self.src), u32::from(self.dst), self.proto(), len);
                let mut c = !fold(sum_bytes(ph, &b));
                if c == 0 && at == 6 {
                    c = 0xffff;
                }
                b[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
            L4::Echo { .. } | L4::IcmpError { .. } => {
                let c = checksum(&b);
                b[2..4].copy_from_slice(&c.to_be_bytes());
            }
            L4::Raw { .. } => {}
        }
        b
    }

    /// The IPv4 packet (header with checksum, then L4).
    pub fn bytes(&self) -> Vec<u8> {
        ipv4_packet(
            self.src,
            self.dst,
            self.proto(),
            self.id,
            self.frag,
            self.tos,
            &self.l4_bytes(),
        )
    }

    /// The packet in an Ethernet frame from [`CLIENT_MAC`] to [`ROUTER_MAC`].
    pub fn frame(&self) -> Vec<u8> {
        ethernet(ROUTER_MAC, CLIENT_MAC, 0x0800, &self.bytes())
    }
}

/// An IPv4 header (no options, TTL 64, correct checksum) followed by `payload`.
pub fn ipv4_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    frag: u16,
    tos: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![0x45, tos];
    h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An Ethernet II frame.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `frame` with its MAC addresses replaced: what L2 steering must produce.
pub fn with_macs(frame: &[u8], dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// What IP-in-IP steering must produce for an untagged `frame`: a new Ethernet
/// header and an outer IPv4 header (DF copied from the inner, id copied, TTL 64).
pub fn ipip_expected(
    frame: &[u8],
    outer_src: Ipv4Addr,
    owner: &OwnerAddr,
    dst_mac: [u8; 6],
) -> Vec<u8> {
    let inner = &frame[14..];
    let id = u16::from_be_bytes([inner[4], inner[5]]);
    let df = u16::from_be_bytes([inner[6], inner[7]]) & 0x4000;
    let outer = ipv4_packet(outer_src, owner.ip, 4, id, df, inner[1], inner);
    ethernet(dst_mac, FABRIC_MAC, 0x0800, &outer)
}

//! `AF_PACKET` I/O over a real veth pair in two private network namespaces.
//!
//! Needs root (it creates namespaces); without it the test fails and says so, unless
//! `MFPLANE_SKIP_NETNS=1` is set.

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use mfplane_dataplane::io::{AfPacket, IoError, PacketIo};

/// Two namespaces joined by a veth, removed on drop (also when the test fails).
struct VethPair {
    a: String,
    b: String,
}

impl VethPair {
    fn new(tag: &str) -> Self {
        let (a, b) = (format!("mfpio-{tag}-a"), format!("mfpio-{tag}-b"));
        for ns in [&a, &b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", ns]);
        }
        ip(&[
            "link", "add", "eth0", "netns", &a, "type", "veth", "peer", "name", "eth0", "netns", &b,
        ]);
        ip(&["-n", &a, "link", "set", "eth0", "up"]);
        ip(&["-n", &b, "link", "set", "eth0", "up"]);
        VethPair { a, b }
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("running ip");
    assert!(st.success(), "ip {args:?} failed");
}

/// Opens a socket on `eth0` of namespace `ns` from a thread that entered it, registered
/// with the current tokio runtime.
fn open_in(ns: &str) -> Result<AfPacket, IoError> {
    let rt = tokio::runtime::Handle::current();
    in_ns(ns, || {
        let _guard = rt.enter();
        AfPacket::open("eth0")
    })
}

fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("MFPLANE_SKIP_NETNS").is_some() {
        eprintln!("SKIPPED: needs root (MFPLANE_SKIP_NETNS is set)");
        return false;
    }
    panic!(
        "this test creates network namespaces and needs root: run it as root, or set MFPLANE_SKIP_NETNS=1 to skip it"
    );
}

const ETHERTYPE_EXPERIMENTAL: [u8; 2] = [0x88, 0xb5];

/// A veth pair (kept alive by the first element) with a socket on each end.
fn sockets_on_a_veth(tag: &str) -> (VethPair, AfPacket, AfPacket) {
    let pair = VethPair::new(tag);
    let a = open_in(&pair.a).expect("a socket in the first namespace");
    let b = open_in(&pair.b).expect("a socket in the second namespace");
    (pair, a, b)
}

/// Receives on `io` until a frame of the test EtherType comes; its length.
async fn recv_test_frame(io: &mut AfPacket, buf: &mut [u8]) -> usize {
    loop {
        let n = io.recv(buf).await.expect("receiving");
        if buf[12..14] == ETHERTYPE_EXPERIMENTAL {
            return n;
        }
    }
}

/// A broadcast frame of the local experimental EtherType (nothing else on the link
/// sends it, so a receiver can tell it from background traffic) carrying `payload`.
fn test_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend([0x02, 0, 0, 0, 0, 1]);
    frame.extend(ETHERTYPE_EXPERIMENTAL);
    frame.extend(payload);
    frame
}

#[tokio::test]
async fn frames_cross_a_veth_whole_and_are_not_read_back() {
    if !require_root() {
        return;
    }
    let (_pair, mut a, mut b) = sockets_on_a_veth("x");
    let frame = test_frame(b"mfplane af_packet test payload, long enough for a minimum frame");
    a.send(&frame).await.unwrap();

    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_secs(2), recv_test_frame(&mut b, &mut buf))
        .await
        .expect("the frame arrives within 2 s");
    assert_eq!(&buf[..got], &frame[..]);

    // The sender never reads its own frame back (PACKET_IGNORE_OUTGOING).
    let echoed = tokio::time::timeout(
        Duration::from_millis(200),
        recv_test_frame(&mut a, &mut buf),
    )
    .await;
    assert!(echoed.is_err(), "the sender read its own frame");
}

#[tokio::test]
async fn a_frame_larger_than_the_buffer_is_reported_not_cut() {
    if !require_root() {
        return;
    }
    let (_pair, mut a, mut b) = sockets_on_a_veth("t");
    let frame = test_frame(&[7u8; 400]);
    a.send(&frame).await.unwrap();
    let mut small = [0u8; 100];
    let err = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match b.recv(&mut small).await {
                Err(e) => break e,
                Ok(_) => continue, // some other small frame (IPv6 ND, ...)
            }
        }
    })
    .await
    .expect("an error within 2 s");
    assert!(err.is_per_frame(), "{err}");
}

#[tokio::test]
async fn an_unknown_interface_is_named_in_the_error() {
    let err = AfPacket::open("mfp-nope0").unwrap_err();
    assert!(err.to_string().contains("mfp-nope0"), "{err}");
}

/// Runs `f` from a thread that entered namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("namespace file");
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace fd we own, in a thread that ends right after.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
        .join()
        .expect("thread")
    })
}

fn gro_of(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool", "-k", "eth0"])
        .output()
        .expect("running ethtool (scripts/setup.sh installs it)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("generic-receive-offload:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn receive_offloads_are_turned_off_and_reported() {
    if !require_root() {
        return;
    }
    use mfplane_dataplane::io::offloads::{Disabled, disable_receive_offloads};
    let pair = VethPair::new("g");
    ip(&[
        "netns", "exec", &pair.a, "ethtool", "-K", "eth0", "gro", "on",
    ]);
    assert!(gro_of(&pair.a).ends_with(" on"), "{}", gro_of(&pair.a));

    let first = in_ns(&pair.a, || disable_receive_offloads("eth0")).unwrap();
    assert!(first.gro, "GRO was on and must be reported as turned off");
    assert!(gro_of(&pair.a).ends_with(" off"), "{}", gro_of(&pair.a));
    // Idempotent: nothing left to turn off.
    let again = in_ns(&pair.a, || disable_receive_offloads("eth0")).unwrap();
    assert_eq!(again, Disabled::default());
    assert!(matches!(
        in_ns(&pair.a, || disable_receive_offloads("mfp-none0")),
        Err(IoError::BadInterface(_))
    ));
}

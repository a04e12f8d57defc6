//! Real frames through the LB program attached to veth interfaces, in native and in
//! generic mode: an outbound frame injected on the client side leaves the fabric
//! interface towards its owner (`XDP_REDIRECT` through the device map), an inbound
//! frame arriving on the fabric interface goes back out of it (on veth through the
//! device map too: veth's `XDP_TX` needs an XDP program on the peer), both with the
//! owner's MAC. Runs in a private network namespace created by the test thread
//! (gone when it ends); nothing is sent outside it.
//!
//! Needs root and the embedded object, or `MFPLANE_SKIP_BPF=1` to skip.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mfplane_core::BucketBits;
use mfplane_core::lb_maps::{LB_FLAG_REDIRECT_ON_FABRIC, LbCounter};
use mfplane_core::{inbound_bucket, outbound_bucket};
use mfplane_lb::datapath::XdpModeChoice;
use mfplane_lb::iface::Interface;
use mfplane_lb::testkit::*;

/// An AF_PACKET socket bound to one interface.
struct PacketSocket(OwnedFd);

impl PacketSocket {
    fn bind(iface: &Interface) -> Self {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = iface.index as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: setting a timeval option with its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        assert_eq!(rc, 0);
        PacketSocket(fd)
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: sending from a valid buffer.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The first incoming frame (not one we sent) that `matches`, within 3 s.
    fn receive(&self, matches: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let start = Instant::now();
        let mut buf = vec![0u8; 2048];
        while start.elapsed() < Duration::from_secs(3) {
            // SAFETY: zeroed sockaddr_ll is valid; sizes match the buffers.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: valid buffer and address out-parameters.
            let n = unsafe {
                libc::recvfrom(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut sll).cast(),
                    &mut len,
                )
            };
            if n <= 0 || sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let frame = &buf[..n as usize];
            if matches(frame) {
                return Some(frame.to_vec());
            }
        }
        None
    }
}

#[test]
fn frames_are_steered_through_veth_native_and_generic() {
    let Some(dp) = datapath_or_skip("frames_are_steered_through_veth_native_and_generic") else {
        return;
    };
    drop(dp);
    in_private_netns(
        &[
            &[
                "link", "add", "mfpcli", "type", "veth", "peer", "name", "mfplbin",
            ],
            &[
                "link", "add", "mfpwrk", "type", "veth", "peer", "name", "mfplbfab",
            ],
            &["link", "set", "mfpcli", "up"],
            &["link", "set", "mfplbin", "up"],
            &["link", "set", "mfpwrk", "up"],
            &["link", "set", "mfplbfab", "up"],
        ],
        || {
            // TOOLCHAIN.md: a native redirect into a veth is delivered only if the
            // peer has GRO on (or an XDP program).
            let st = std::process::Command::new("ethtool")
                .args(["-K", "mfpwrk", "gro", "on"])
                .status()
                .expect("ethtool (apt-get install ethtool)");
            assert!(st.success(), "ethtool -K mfpwrk gro on");
            for mode in [XdpModeChoice::Native, XdpModeChoice::Generic] {
                steer_real_frames(mode);
            }
        },
    );
}

fn steer_real_frames(mode: XdpModeChoice) {
    let mut dp = datapath_or_skip("steer_real_frames").unwrap();
    let lb_in = Interface::by_name("mfplbin").unwrap();
    let fabric = Interface::by_name("mfplbfab").unwrap();
    let cli = Interface::by_name("mfpcli").unwrap();
    let wrk = Interface::by_name("mfpwrk").unwrap();
    // The agent's own flag resolution, as the lab runs it.
    let cfg = <mfplane_lb::Args as clap::Parser>::parse_from([
        "mfplane-lb",
        "--attach",
        "mfplbin,mfplbfab",
        "--fabric",
        "mfplbfab",
        "--inside-prefix",
        "10.0.0.0/8",
        "--cluster",
        "127.0.0.1:1",
    ])
    .resolve()
    .unwrap();
    let settings = cfg.settings;
    assert_ne!(
        settings.flags & LB_FLAG_REDIRECT_ON_FABRIC,
        0,
        "veth fabric detected"
    );
    let table = fixture_table(1, BucketBits::DEFAULT, 3, round_robin(|_| false));
    install_fixture(&mut dp, &settings, &table);
    dp.set_fabric(fabric.index).unwrap();
    dp.attach(&lb_in.name, mode).unwrap();
    dp.attach(&fabric.name, mode).unwrap();
    let client = PacketSocket::bind(&cli);
    let worker = PacketSocket::bind(&wrk);
    let before = dp.counters().unwrap();

    // Outbound: client -> LB's inside interface -> redirected out of the fabric.
    let inside = Ipv4Addr::new(10, 1, 2, 3);
    let out_port = 40000 + mode as u16;
    let frame = Ip::new(
        inside,
        Ipv4Addr::new(203, 0, 113, 7),
        L4::Udp {
            sport: out_port,
            dport: 53,
        },
    )
    .frame();
    let bucket = outbound_bucket(
        &HASH_KEY,
        BucketBits::DEFAULT,
        u32::from(inside),
        out_port,
        17,
    );
    let owner = *table.owner_of(bucket).unwrap();
    client.send(&frame);
    let got = worker
        .receive(|f| f.len() >= 34 && f[14 + 12..14 + 16] == inside.octets())
        .unwrap_or_else(|| panic!("{mode:?}: outbound frame never reached the fabric"));
    assert_eq!(
        got,
        with_macs(&frame, owner.mac.0, fabric.mac.0),
        "{mode:?} outbound"
    );

    // Inbound arriving on the fabric interface: back out of it. On veth through the
    // device map (see LB_FLAG_REDIRECT_ON_FABRIC), elsewhere with XDP_TX.
    let ext_port = 0x4242 + mode as u16;
    let frame = Ip::new(
        Ipv4Addr::new(203, 0, 113, 7),
        EXTERNAL[0],
        L4::Tcp {
            sport: 443,
            dport: ext_port,
        },
    )
    .frame();
    let owner = *table
        .owner_of(inbound_bucket(BucketBits::DEFAULT, ext_port))
        .unwrap();
    worker.send(&frame);
    let got = worker
        .receive(|f| {
            f.len() >= 34 && f[0..6] == owner.mac.0 && f[14 + 16..14 + 20] == EXTERNAL[0].octets()
        })
        .unwrap_or_else(|| {
            let delta = dp.counters().unwrap().since(&before);
            panic!("{mode:?}: inbound frame never came back from the fabric: {delta:?}")
        });
    assert_eq!(
        got,
        with_macs(&frame, owner.mac.0, fabric.mac.0),
        "{mode:?} inbound"
    );

    let delta = dp.counters().unwrap().since(&before);
    assert_eq!(delta.get(LbCounter::Redirect), 2, "{mode:?}: {delta:?}");
    assert_eq!(delta.get(LbCounter::Tx), 0, "{mode:?}: {delta:?}");
    dp.detach_all();
}

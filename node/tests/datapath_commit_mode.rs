//! `commit_mode` through the real data path: a one-member cluster in this process, the
//! daemon's packet loop (`datapath::run`) over an in-memory packet I/O, and a batch delay
//! of one second so that "before" and "after the commit" are far apart.
//!
//! - `strict`: every frame of a new session leaves only once the session is in the
//!   committed state, and in the order it arrived;
//! - `optimistic`: the first frame leaves before the commit;
//! - a mapping the cluster refuses (a rival mapping of the same inside endpoint is in
//!   the same batch, ahead of it) never leaves in strict mode, and does leave in
//!   optimistic mode: that is the difference the operator chooses between.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mfplane_core::{
    BucketBits, BucketId, BucketPorts, Endpoint, FlowHashKey, Proto, SessionKey, SessionRecord,
    outbound_bucket,
};
use mfplane_dataplane::io::{IoError, PacketIo};
use mfplane_node::config::CommitMode;
use mfplane_node::datapath::held::HoldLimits;
use mfplane_node::datapath::{DatapathConfig, WorkerOptions, run};
use mfplane_node::member::Member;
use mfplane_node::{Args, Node, NodeHandle, Storage, Transport};
use mfplane_raft_store::{MacAddr, MemoryBackend};
use tokio::sync::mpsc;

const OWN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const NEXT_HOP: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);
const INSIDE: Endpoint = Endpoint {
    ip: 0x0a00_0005, // 10.0.0.5
    port: 40_000,
};
const REMOTE: Endpoint = Endpoint {
    ip: 0xc633_640a, // 198.51.100.10
    port: 53,
};
/// 203.0.113.10, the cluster's external IP.
const EXTERNAL_IP: u32 = 0xcb00_710a;
const KEY: SessionKey = SessionKey {
    proto: Proto::Udp,
    inside: INSIDE,
};
const LIMIT: Duration = Duration::from_secs(30);

/// Frames in from a channel; frames out to a channel, each with whether the session
/// was committed at the moment it was sent.
struct ChannelIo {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    tx: mpsc::UnboundedSender<(Vec<u8>, bool)>,
    member: Arc<Member>,
}

impl PacketIo for ChannelIo {
    async fn recv(&mut self, buf: &mut [u8]) -> Result<usize, IoError> {
        match self.rx.recv().await {
            Some(f) => {
                buf[..f.len()].copy_from_slice(&f);
                Ok(f.len())
            }
            None => std::future::pending().await,
        }
    }

    async fn send(&mut self, frame: &[u8]) -> Result<(), IoError> {
        let committed = self.member.state().session(&KEY).is_some();
        let _ = self.tx.send((frame.to_vec(), committed));
        Ok(())
    }
}

/// An outbound UDP frame of the test session, to this member's MAC; `ident` tells the
/// frames apart.
fn outbound(ident: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 28);
    f.extend_from_slice(&OWN_MAC.0);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&28u16.to_be_bytes());
    ip[4..6].copy_from_slice(&ident.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&INSIDE.ip.to_be_bytes());
    ip[16..20].copy_from_slice(&REMOTE.ip.to_be_bytes());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    let csum = !u16::try_from(folded).expect("folded to 16 bits");
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    // UDP without a checksum (allowed over IPv4).
    f.extend_from_slice(&INSIDE.port.to_be_bytes());
    f.extend_from_slice(&REMOTE.port.to_be_bytes());
    f.extend_from_slice(&8u16.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f
}

fn ident_of(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[18], frame[19]])
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("its address")
}

/// A one-member cluster that owns every bucket and holds its lease.
async fn single_member() -> (NodeHandle, Arc<Member>) {
    let listen = free_addr();
    let args = Args::try_parse_from([
        "mfplane-node",
        "--name=dp-1",
        "--data-dir=/unused",
        &format!("--listen={listen}"),
        "--init",
        "--external-ip=203.0.113.10",
        "--data-ip=192.0.2.1",
        &format!("--data-mac={OWN_MAC}"),
        // Commits come at least a second after the first frame.
        "--batch-delay=1s",
    ])
    .expect("flags");
    let config = args.validate(7).expect("a valid configuration");
    let transport = Transport::tcp(listen).await.expect("bind");
    let node = Node::start(
        config,
        transport,
        Storage::open_memory(&MemoryBackend::default()),
    )
    .await
    .expect("the member starts");
    let member = node.member().expect("an initialized member runs");
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let owned = member.state().buckets().owned_by(member.id).count();
        if owned == 256 && member.lease_valid() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the member did not come to own every bucket with a lease ({owned} owned)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (node, member)
}

/// A mapping of the test session in another bucket than the one the engine allocates
/// in: proposed first, it commits and the engine's own mapping is refused.
fn rival_mapping() -> SessionRecord {
    let bits = BucketBits::DEFAULT;
    let engines = outbound_bucket(
        &FlowHashKey::DEFAULT,
        bits,
        INSIDE.ip,
        INSIDE.port,
        Proto::Udp as u8,
    );
    let bucket = BucketId((engines.0 + 1) % u16::try_from(bits.count()).expect("few buckets"));
    let port = BucketPorts::new(bits, bucket)
        .and_then(|p| p.nth(0))
        .expect("a port of the bucket");
    SessionRecord {
        key: KEY,
        external: Endpoint {
            ip: EXTERNAL_IP,
            port,
        },
        bucket,
        created_ms: 0,
    }
}

/// Sends two frames of a new session through the data path in `mode` and returns what
/// left, with whether the session had committed at that moment. With `rival`, a rival
/// mapping is proposed first and the frames that left within 2 s of its commit are
/// returned, however few.
async fn two_frames_through(
    mode: CommitMode,
    rival: Option<SessionRecord>,
) -> Vec<(Vec<u8>, bool)> {
    let (node, member) = single_member().await;
    let proposer = node.proposer().expect("the proposer runs");
    let rival_commit = rival.map(|r| {
        let p = proposer.clone();
        tokio::spawn(async move { p.propose(vec![r]).await })
    });
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let io = ChannelIo {
        rx: in_rx,
        tx: out_tx,
        member: member.clone(),
    };
    let cfg = DatapathConfig {
        own_mac: OWN_MAC,
        own_ip: Ipv4Addr::new(192, 0, 2, 1),
        next_hop_mac: NEXT_HOP,
        worker: WorkerOptions::default(),
        expiry_interval: Duration::from_secs(60),
        commit_mode: mode,
        hold: HoldLimits::default(),
    };
    // The loop is not `Send` (the daemon runs it on its main task): drive it beside
    // the test in this task.
    let datapath = run(
        member.clone(),
        proposer,
        io,
        cfg,
        node.core.shutdown_signal(),
    );
    let frames = async {
        // The rival is queued in the proposer's batch ahead of the engine's mapping.
        tokio::time::sleep(Duration::from_millis(100)).await;
        in_tx.send(outbound(1)).expect("the data path runs");
        in_tx.send(outbound(2)).expect("the data path runs");
        let mut out = Vec::new();
        if let Some(commit) = rival_commit {
            let outcome = tokio::time::timeout(LIMIT, commit)
                .await
                .expect("the rival's batch commits in time")
                .expect("the proposing task")
                .expect("the rival is proposed");
            assert!(
                matches!(outcome[..], [mfplane_node::Outcome::Accepted]),
                "{outcome:?}"
            );
            assert_eq!(
                member.state().session(&KEY).map(|r| r.external),
                rival.map(|r| r.external),
                "the rival mapping is the committed one"
            );
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Ok(Some(sent)) = tokio::time::timeout_at(until, out_rx.recv()).await {
                out.push(sent);
            }
            return out;
        }
        while out.len() < 2 {
            let sent = tokio::time::timeout(LIMIT, out_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: only {} of 2 frames left", out.len()))
                .expect("the data path runs");
            out.push(sent);
        }
        let deadline = tokio::time::Instant::now() + LIMIT;
        while member.state().session(&KEY).is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{mode:?}: the session never committed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        out
    };
    let out = tokio::select! {
        ended = datapath => panic!("the data path stopped: {ended:?}"),
        out = frames => out,
    };
    node.shutdown().await;
    out
}

/// The translated source (external endpoint) of an outbound UDP frame.
fn source_of(frame: &[u8]) -> Endpoint {
    Endpoint {
        ip: u32::from_be_bytes([frame[26], frame[27], frame[28], frame[29]]),
        port: u16::from_be_bytes([frame[34], frame[35]]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_sends_a_new_session_s_frames_only_after_its_commit() {
    let out = two_frames_through(CommitMode::Strict, None).await;
    for (frame, committed) in &out {
        assert!(
            committed,
            "frame {} left before its session committed",
            ident_of(frame)
        );
        assert_eq!(&frame[0..6], &NEXT_HOP.0, "to the next hop");
        assert_eq!(&frame[6..12], &OWN_MAC.0, "from this member");
        assert_eq!(
            &frame[14 + 12..14 + 16],
            &[203, 0, 113, 10],
            "translated to the external IP"
        );
    }
    let order: Vec<u16> = out.iter().map(|(f, _)| ident_of(f)).collect();
    assert_eq!(order, [1, 2], "held frames keep their order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_mode_sends_the_first_frame_before_the_commit() {
    let out = two_frames_through(CommitMode::Optimistic, None).await;
    let (first, committed) = &out[0];
    assert_eq!(ident_of(first), 1);
    assert!(
        !committed,
        "optimistic mode must not wait for the commit (batch delay 1s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_never_sends_with_a_refused_mapping() {
    let rival = rival_mapping();
    let out = two_frames_through(CommitMode::Strict, Some(rival)).await;
    // Both frames were translated with the engine's own mapping, which the cluster
    // refused: they are dropped, not sent late and not sent re-translated.
    let sources: Vec<Endpoint> = out.iter().map(|(f, _)| source_of(f)).collect();
    assert!(
        out.is_empty(),
        "{} frames left, with sources {sources:?}; the committed mapping is {:?}",
        out.len(),
        rival.external
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_mode_sends_with_a_mapping_that_is_later_refused() {
    let rival = rival_mapping();
    let out = two_frames_through(CommitMode::Optimistic, Some(rival)).await;
    let refused_used = out
        .iter()
        .filter(|(f, _)| source_of(f) != rival.external)
        .count();
    assert!(
        refused_used >= 1,
        "optimistic mode sends at once, with its own mapping: {:?}",
        out.iter().map(|(f, _)| source_of(f)).collect::<Vec<_>>()
    );
}

//! The traffic generator: the inside hosts and the remote servers of many long-lived
//! TCP and UDP flows, all behind the simulated LB.
//!
//! Every flow probes periodically: the inside host sends a packet (through the LB to
//! the owner's engine), the remote server sees it translated and answers the external
//! endpoint (through the LB again), and the inside host sees the answer translated
//! back. What the remote sees is the flow's mapping; every change of it is recorded
//! for the checker, and a reply that reaches the wrong inside endpoint, or a packet
//! that does not parse with valid checksums, is a violation on the spot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mfplane_core::{BucketBits, Endpoint, Proto, SessionKey, inbound_bucket, outbound_bucket};
use mfplane_dataplane::wire::tcp::Flags;

use crate::net::{DATA_PORT, LB};
use crate::packet::{Burst, Packet, frames};
use crate::world::{FlowView, World, lock};

/// The traffic a scenario runs.
#[derive(Debug, Clone, Copy)]
pub struct TrafficSpec {
    pub flows: usize,
    /// Every flow probes this often.
    pub probe_interval: Duration,
    /// Most flows start within this time after the generator starts; the rest (one in
    /// `late_every`) start spread over `late_window` after that, so allocation keeps
    /// happening during the faults.
    pub ramp: Duration,
    pub late_every: usize,
    pub late_window: Duration,
}

/// Unanswered probes after which a TCP inside host sends SYN again.
const SYN_RETRY_AFTER: u32 = 4;

/// The inside endpoint, protocol and remote of flow `i`: 8 flows per inside host,
/// a distinct remote endpoint per flow (so the remote side identifies the flow).
pub fn flow_identity(i: usize) -> (SessionKey, Endpoint) {
    let i32_ = u32::try_from(i).unwrap_or(u32::MAX);
    let proto = if i.is_multiple_of(2) {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    let inside = Endpoint::new(0x0a01_0000 + i32_ / 8 + 1, 20_000 + (i % 8) as u16 * 13);
    let remote = Endpoint::new(0xcb00_7100 + i32_ % 250 + 1, 1000 + (i32_ / 250) as u16);
    (SessionKey { proto, inside }, remote)
}

/// The outbound bucket of a flow (what the LB steers its inside packets by).
pub fn flow_bucket(bits: BucketBits, key: &SessionKey) -> mfplane_core::BucketId {
    outbound_bucket(
        &crate::worker::FLOW_HASH_KEY,
        bits,
        key.inside.ip,
        key.inside.port,
        key.proto.number(),
    )
}

struct Flow {
    key: SessionKey,
    remote: Endpoint,
    next_probe_ms: u64,
    /// The remote answered a SYN: send ACKs from now on.
    open: bool,
    unanswered: u32,
}

fn now_ms() -> u64 {
    u64::try_from(turmoil::sim_elapsed().unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

/// The generator host. Runs until the simulation ends.
///
/// # Errors
/// Socket failures, which end the simulation.
pub async fn run(spec: TrafficSpec, world: Arc<World>) -> turmoil::Result {
    let start = now_ms();
    let interval = u64::try_from(spec.probe_interval.as_millis())
        .unwrap_or(1000)
        .max(1);
    let ramp = u64::try_from(spec.ramp.as_millis()).unwrap_or(0);
    let late = u64::try_from(spec.late_window.as_millis()).unwrap_or(0);
    let n = spec.flows.max(1) as u64;
    let mut flows = Vec::with_capacity(spec.flows);
    let mut by_remote: BTreeMap<(Proto, Endpoint), usize> = BTreeMap::new();
    {
        let mut v = lock(&world.traffic);
        v.flows.clear();
        v.by_key.clear();
        for i in 0..spec.flows {
            let (key, remote) = flow_identity(i);
            let k = i as u64;
            let offset = if spec.late_every > 0 && i % spec.late_every == spec.late_every - 1 {
                ramp + late * k / n
            } else {
                ramp * k / n
            };
            let start_ms = start + offset;
            flows.push(Flow {
                key,
                remote,
                next_probe_ms: start_ms,
                open: false,
                unanswered: 0,
            });
            by_remote.insert((key.proto, remote), i);
            v.by_key.insert(key, i);
            v.flows.push(FlowView {
                key,
                remote,
                mappings: Vec::new(),
                last_ok_probe: None,
                started_ms: start_ms,
            });
        }
    }
    let sock = turmoil::net::UdpSocket::bind(("0.0.0.0", DATA_PORT)).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tokio::select! {
            biased;
            r = sock.recv_from(&mut buf) => {
                let (len, _) = r?;
                let mut replies = Burst::default();
                receive(&world, &mut flows, &by_remote, &buf[..len], &mut replies);
                send(&sock, &mut replies).await?;
            }
            _ = tick.tick() => {
                let now = now_ms();
                let mut probes = Burst::default();
                let mut sent = 0;
                for f in flows.iter_mut() {
                    if now < f.next_probe_ms {
                        continue;
                    }
                    f.next_probe_ms = f.next_probe_ms.max(now - now % 10) + interval;
                    if f.open {
                        f.unanswered += 1;
                        if f.unanswered > SYN_RETRY_AFTER {
                            f.open = false;
                        }
                    }
                    let flags = match f.key.proto {
                        Proto::Tcp if f.open => Some(Flags::ACK),
                        Proto::Tcp => Some(Flags::SYN),
                        _ => None,
                    };
                    let p = Packet { proto: f.key.proto, src: f.key.inside, dst: f.remote, flags, stamp: now };
                    probes.push(&p.encode());
                    sent += 1;
                    if probes.is_full() {
                        send(&sock, &mut probes).await?;
                    }
                }
                lock(&world.traffic).probes_sent += sent;
                send(&sock, &mut probes).await?;
            }
        }
    }
}

async fn send(sock: &turmoil::net::UdpSocket, b: &mut Burst) -> std::io::Result<()> {
    if !b.is_empty() {
        sock.send_to(&b.take(), (LB, DATA_PORT)).await?;
    }
    Ok(())
}

/// Handles a burst from a worker: translated probes (as their remote) and translated
/// replies (as their inside host).
fn receive(
    world: &World,
    flows: &mut [Flow],
    by_remote: &BTreeMap<(Proto, Endpoint), usize>,
    datagram: &[u8],
    replies: &mut Burst,
) {
    let now = now_ms();
    let mut v = lock(&world.traffic);
    let bits = BucketBits::DEFAULT;
    for frame in frames(datagram) {
        let Some(p) = Packet::decode(frame) else {
            v.violations.push(format!(
                "t={now}ms: a worker emitted a malformed packet (bad length or checksum)"
            ));
            continue;
        };
        if let Some(&i) = by_remote.get(&(p.proto, p.dst)) {
            // A probe, translated, as the remote server sees it.
            let f = &flows[i];
            let external = p.src;
            if inbound_bucket(bits, external.port) != flow_bucket(bits, &f.key) {
                v.violations.push(format!(
                    "t={now}ms: flow {:?} was mapped to {:?}, outside its bucket",
                    f.key, external
                ));
            }
            let view = &mut v.flows[i];
            if view.mappings.last().map(|m| m.1) != Some(external) {
                view.mappings.push((now, external));
            }
            let flags = match p.flags {
                Some(fl) if fl.contains(Flags::SYN) => Some(Flags::SYN.with(Flags::ACK)),
                Some(_) => Some(Flags::ACK),
                None => None,
            };
            let reply = Packet {
                proto: p.proto,
                src: f.remote,
                dst: external,
                flags,
                stamp: p.stamp,
            };
            replies.push(&reply.encode());
        } else if let Some(&i) = v.by_key.get(&SessionKey {
            proto: p.proto,
            inside: p.dst,
        }) {
            // A reply, translated back, as the inside host sees it.
            let f = &mut flows[i];
            if p.src != f.remote {
                v.violations.push(format!(
                    "t={now}ms: a reply from {:?} reached {:?}, whose remote is {:?}: two flows share an external endpoint",
                    p.src, f.key, f.remote
                ));
                continue;
            }
            if p.flags.is_some_and(|fl| fl.contains(Flags::SYN)) {
                f.open = true;
            }
            f.unanswered = 0;
            let view = &mut v.flows[i];
            view.last_ok_probe = Some(view.last_ok_probe.map_or(p.stamp, |s| s.max(p.stamp)));
            v.replies_delivered += 1;
        } else {
            v.violations.push(format!(
                "t={now}ms: a worker emitted a packet for no flow: {p:?}"
            ));
        }
    }
}

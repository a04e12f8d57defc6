//! Frames held back in strict commit mode until their session's mapping commits.
//!
//! In `commit_mode = strict` (DESIGN §2.3) no packet leaves with a mapping the cluster
//! might refuse: a new session's translated frames wait here, and so does every later
//! frame of that session (either direction) until the proposal's outcome is known.
//! A commit releases them in arrival order; a refusal drops them. Memory is bounded per
//! session and overall, and a frame is never held longer than [`HoldLimits::max_wait`];
//! every frame that is not sent is reported to the caller with a [`HoldDrop`] reason so
//! it can be counted.
//!
//! Frames are matched to pending sessions by their translated headers: an outbound
//! frame's source is the session's external endpoint, an inbound frame's destination
//! its inside endpoint. Non-first IP fragments (no ports) and ICMP errors are not
//! matched and pass; they cannot open a session and are rare before a session's first
//! commit.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use mfplane_core::{Endpoint, ExternalKey, Proto, SessionKey, SessionRecord};
use mfplane_dataplane::engine::Timestamp;
use mfplane_dataplane::wire::{EtherType, EthernetFrame, IcmpMessage, IcmpPacket, Ipv4Packet};

/// How much the data path may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldLimits {
    /// Frames held per pending session (a TCP SYN plus retransmissions, a burst of
    /// UDP); later ones are dropped.
    pub per_session: usize,
    /// Frames held in all (bounds memory at `total` x the largest frame).
    pub total: usize,
    /// Longest a frame waits; a commit normally takes one batch delay plus a Raft
    /// round trip, far less.
    pub max_wait: Duration,
}

impl Default for HoldLimits {
    fn default() -> Self {
        HoldLimits {
            per_session: 16,
            total: 8192,
            max_wait: Duration::from_secs(2),
        }
    }
}

/// What to do with a translated frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Its session is committed (or unknown here): send it now.
    Send,
    /// Kept until its session's outcome is known.
    Held,
    /// Its session is pending but there is no room to keep it.
    Dropped(HoldDrop),
}

/// Why a frame of a pending session was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldDrop {
    /// The session already holds [`HoldLimits::per_session`] frames.
    SessionFull,
    /// [`HoldLimits::total`] frames are held.
    AllFull,
    /// The cluster refused the session (or did not answer): its mapping is undone.
    Refused,
    /// Held longer than [`HoldLimits::max_wait`].
    TooLong,
}

impl HoldDrop {
    /// The `reason` label of `mfplane_datapath_frames_dropped_total`.
    pub fn metric_label(self) -> &'static str {
        match self {
            HoldDrop::SessionFull => "held_session_full",
            HoldDrop::AllFull => "held_all_full",
            HoldDrop::Refused => "session_refused",
            HoldDrop::TooLong => "held_too_long",
        }
    }
}

#[derive(Debug)]
struct Pending {
    external: ExternalKey,
    frames: VecDeque<(Timestamp, Vec<u8>)>,
}

/// The sessions whose proposals are in flight, with their held frames.
#[derive(Debug)]
pub struct HeldFrames {
    limits: HoldLimits,
    pending: HashMap<SessionKey, Pending>,
    by_external: HashMap<ExternalKey, SessionKey>,
    held: usize,
}

impl HeldFrames {
    pub fn new(limits: HoldLimits) -> Self {
        HeldFrames {
            limits,
            pending: HashMap::new(),
            by_external: HashMap::new(),
            held: 0,
        }
    }

    /// Frames held right now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Sessions whose outcome is awaited.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Marks freshly allocated sessions as pending: their frames are held from now on.
    pub fn add_pending(&mut self, records: &[SessionRecord]) {
        for rec in records {
            let external = rec.external_key();
            self.by_external.insert(external, rec.key);
            self.pending.entry(rec.key).or_insert(Pending {
                external,
                frames: VecDeque::new(),
            });
        }
    }

    /// Decides about one translated frame (Ethernet, as it would be sent).
    pub fn offer(&mut self, frame: &[u8], now: Timestamp) -> Hold {
        if self.pending.is_empty() {
            return Hold::Send;
        }
        let Some(key) = self.pending_session_of(frame) else {
            return Hold::Send;
        };
        if self.held >= self.limits.total {
            return Hold::Dropped(HoldDrop::AllFull);
        }
        let Some(p) = self.pending.get_mut(&key) else {
            return Hold::Send;
        };
        if p.frames.len() >= self.limits.per_session {
            return Hold::Dropped(HoldDrop::SessionFull);
        }
        p.frames.push_back((now, frame.to_vec()));
        self.held += 1;
        Hold::Held
    }

    /// The session's mapping committed: its held frames, in arrival order, to send.
    pub fn committed(&mut self, key: &SessionKey) -> Vec<Vec<u8>> {
        self.take(key).map(|(_, f)| f).collect()
    }

    /// The session was refused: its held frames are dropped; returns how many.
    pub fn refused(&mut self, key: &SessionKey) -> usize {
        self.take(key).count()
    }

    /// Drops frames held longer than `max_wait`; returns how many. Their sessions stay
    /// pending: a later frame is still held until the outcome is known.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let max = u64::try_from(self.limits.max_wait.as_millis()).unwrap_or(u64::MAX);
        let mut dropped = 0;
        for p in self.pending.values_mut() {
            while p
                .frames
                .front()
                .is_some_and(|(at, _)| now.0.saturating_sub(at.0) > max)
            {
                p.frames.pop_front();
                dropped += 1;
            }
        }
        self.held -= dropped;
        dropped
    }

    fn take(&mut self, key: &SessionKey) -> impl Iterator<Item = (Timestamp, Vec<u8>)> {
        let frames = match self.pending.remove(key) {
            Some(p) => {
                self.by_external.remove(&p.external);
                self.held -= p.frames.len();
                p.frames
            }
            None => VecDeque::new(),
        };
        frames.into_iter()
    }

    /// The pending session a translated frame belongs to: outbound frames carry the
    /// external endpoint as source, inbound ones the inside endpoint as destination.
    fn pending_session_of(&self, frame: &[u8]) -> Option<SessionKey> {
        let (proto, src, dst) = flow_of(frame)?;
        let outbound = ExternalKey {
            proto,
            external: src,
        };
        if let Some(key) = self.by_external.get(&outbound) {
            return Some(*key);
        }
        let inbound = SessionKey { proto, inside: dst };
        self.pending.contains_key(&inbound).then_some(inbound)
    }
}

/// Protocol, source and destination endpoint of a frame (the echo identifier is the
/// port of ICMP queries); `None` for what carries no session endpoints.
fn flow_of(frame: &[u8]) -> Option<(Proto, Endpoint, Endpoint)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.frag_offset() != 0 {
        return None;
    }
    let proto = Proto::from_number(u8::from(ip.protocol()))?;
    let l4 = ip.payload();
    let (src_port, dst_port) = match proto {
        Proto::Tcp | Proto::Udp => {
            let ports = l4.get(..4)?;
            (
                u16::from_be_bytes([ports[0], ports[1]]),
                u16::from_be_bytes([ports[2], ports[3]]),
            )
        }
        Proto::Icmp => {
            let icmp = IcmpPacket::new_checked(l4).ok()?;
            if !matches!(
                icmp.msg_type(),
                IcmpMessage::EchoRequest | IcmpMessage::EchoReply
            ) {
                return None;
            }
            (icmp.echo_ident(), icmp.echo_ident())
        }
    };
    Some((
        proto,
        Endpoint {
            ip: ip.src_addr(),
            port: src_port,
        },
        Endpoint {
            ip: ip.dst_addr(),
            port: dst_port,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mfplane_core::BucketId;

    const INSIDE: Endpoint = Endpoint {
        ip: 0x0a00_0005, // 10.0.0.5
        port: 40_000,
    };
    const EXTERNAL: Endpoint = Endpoint {
        ip: 0xcb00_710a, // 203.0.113.10
        port: 2_049,
    };
    const REMOTE: Endpoint = Endpoint {
        ip: 0xc633_640a, // 198.51.100.10
        port: 53,
    };

    fn record(proto: Proto, inside: Endpoint, external: Endpoint) -> SessionRecord {
        SessionRecord {
            key: SessionKey { proto, inside },
            external,
            bucket: BucketId(1),
            created_ms: 0,
        }
    }

    /// An Ethernet + IPv4 frame from `src` to `dst`; `tag` adds an 802.1Q tag.
    fn frame(proto: Proto, src: Endpoint, dst: Endpoint, tag: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if tag {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let l4: Vec<u8> = match proto {
            Proto::Udp | Proto::Tcp => {
                let mut l = vec![0u8; if proto == Proto::Udp { 8 } else { 20 }];
                l[0..2].copy_from_slice(&src.port.to_be_bytes());
                l[2..4].copy_from_slice(&dst.port.to_be_bytes());
                l
            }
            Proto::Icmp => {
                let mut l = vec![8, 0, 0, 0, 0, 0, 0, 1];
                l[4..6].copy_from_slice(&src.port.to_be_bytes());
                l
            }
        };
        let total = u16::try_from(20 + l4.len()).unwrap();
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto as u8, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&src.ip.to_be_bytes());
        ip.extend_from_slice(&dst.ip.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&l4);
        f
    }

    fn held_with(limits: HoldLimits) -> (HeldFrames, SessionRecord) {
        let mut h = HeldFrames::new(limits);
        let rec = record(Proto::Udp, INSIDE, EXTERNAL);
        h.add_pending(&[rec]);
        (h, rec)
    }

    #[test]
    fn frames_of_a_pending_session_wait_for_the_commit_in_order() {
        let (mut h, rec) = held_with(HoldLimits::default());
        // The translated first packet (outbound: source is the external endpoint) and a
        // reply arriving before the commit (inbound: destination is the inside one).
        let first = frame(Proto::Udp, EXTERNAL, REMOTE, false);
        let reply = frame(Proto::Udp, REMOTE, INSIDE, true);
        let other = frame(
            Proto::Udp,
            Endpoint {
                ip: EXTERNAL.ip,
                port: 3000,
            },
            REMOTE,
            false,
        );
        assert_eq!(h.offer(&first, Timestamp(1)), Hold::Held);
        assert_eq!(h.offer(&reply, Timestamp(2)), Hold::Held);
        assert_eq!(h.offer(&other, Timestamp(2)), Hold::Send, "another session");
        assert_eq!(
            h.offer(&frame(Proto::Tcp, EXTERNAL, REMOTE, false), Timestamp(2)),
            Hold::Send,
            "same endpoint, other protocol"
        );
        assert_eq!(h.held(), 2);
        assert_eq!(h.committed(&rec.key), vec![first.clone(), reply]);
        assert_eq!((h.held(), h.pending()), (0, 0));
        assert_eq!(h.offer(&first, Timestamp(3)), Hold::Send, "committed");
    }

    #[test]
    fn a_refused_session_drops_its_frames() {
        let (mut h, rec) = held_with(HoldLimits::default());
        let f = frame(Proto::Udp, EXTERNAL, REMOTE, false);
        assert_eq!(h.offer(&f, Timestamp(1)), Hold::Held);
        assert_eq!(h.offer(&f, Timestamp(1)), Hold::Held);
        assert_eq!(h.refused(&rec.key), 2);
        assert_eq!((h.held(), h.pending()), (0, 0));
        assert_eq!(h.refused(&rec.key), 0, "a second outcome is harmless");
        assert!(h.committed(&rec.key).is_empty());
    }

    #[test]
    fn holding_is_bounded_per_session_overall_and_in_time() {
        let limits = HoldLimits {
            per_session: 2,
            total: 3,
            max_wait: Duration::from_millis(100),
        };
        let (mut h, a) = held_with(limits);
        let b = record(
            Proto::Icmp,
            Endpoint {
                ip: INSIDE.ip,
                port: 7,
            },
            Endpoint {
                ip: EXTERNAL.ip,
                port: 4097,
            },
        );
        h.add_pending(&[b]);
        let fa = frame(Proto::Udp, EXTERNAL, REMOTE, false);
        let fb = frame(Proto::Icmp, b.external, REMOTE, false);
        assert_eq!(h.offer(&fa, Timestamp(0)), Hold::Held);
        assert_eq!(h.offer(&fa, Timestamp(50)), Hold::Held);
        assert_eq!(
            h.offer(&fa, Timestamp(50)),
            Hold::Dropped(HoldDrop::SessionFull)
        );
        assert_eq!(h.offer(&fb, Timestamp(50)), Hold::Held, "ICMP echo by id");
        assert_eq!(
            h.offer(&fb, Timestamp(50)),
            Hold::Dropped(HoldDrop::AllFull)
        );
        assert_eq!(h.expire(Timestamp(100)), 0, "not older than max_wait yet");
        assert_eq!(h.expire(Timestamp(101)), 1, "only the first frame of a");
        assert_eq!(h.held(), 2);
        assert_eq!(h.pending(), 2, "sessions stay pending until their outcome");
        assert_eq!(h.committed(&a.key).len(), 1);
        assert_eq!(h.committed(&b.key).len(), 1);
    }

    #[test]
    fn frames_without_session_endpoints_pass() {
        let (mut h, _) = held_with(HoldLimits::default());
        let mut frag = frame(Proto::Udp, EXTERNAL, REMOTE, false);
        frag[14 + 6] = 0x00;
        frag[14 + 7] = 0x10; // fragment offset 16 x 8 bytes: a non-first fragment
        assert_eq!(h.offer(&frag, Timestamp(0)), Hold::Send);
        let mut arp = frame(Proto::Udp, EXTERNAL, REMOTE, false);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(h.offer(&arp, Timestamp(0)), Hold::Send);
        assert_eq!(h.offer(&[0u8; 20], Timestamp(0)), Hold::Send, "runt");
        assert_eq!(h.held(), 0);
    }
}

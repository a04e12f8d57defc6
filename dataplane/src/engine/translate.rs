//! The packet path: classify, find or create the session, rewrite in place.

use mfplane_core::hdr::{IcmpHdr, Ipv4Hdr, L4Lead, TcpHdr, UdpHdr, from_bytes_mut};
use mfplane_core::rewrite::{L4Fields, L4Kind, Side, rewrite_addr, rewrite_endpoint};
use mfplane_core::{
    BucketId, Endpoint, ExternalKey, FragKey, Proto, SessionKey, SessionRecord, outbound_bucket,
};

use super::config::Filtering;
use super::counters::{Direction, DropReason, Verdict};
use super::frag::FragDecision;
use super::session::{Origin, Session, TcpState};
use super::table::SessionTable;
use super::{Engine, HostState, Timestamp};
use crate::wire::icmp::{self, Message};
use crate::wire::tcp::Flags;
use crate::wire::{EtherType, EthernetFrame, IcmpPacket, Ipv4Packet, TcpPacket, UdpPacket};
use crate::wire::{tcp, udp};

type Step<T> = Result<T, DropReason>;

/// What the L4 header says about the flow.
#[derive(Clone, Copy, Debug)]
struct Flow {
    proto: Proto,
    src_port: u16,
    dst_port: u16,
    /// TCP flags (TCP only).
    flags: Option<Flags>,
    /// ICMP echo request (may open a session); replies and others may not.
    opens: bool,
}

impl Flow {
    /// A flow of `proto` from `src_port` to `dst_port` that may open a session, without
    /// TCP flags.
    fn between(proto: Proto, src_port: u16, dst_port: u16) -> Flow {
        Flow {
            proto,
            src_port,
            dst_port,
            flags: None,
            opens: true,
        }
    }

    /// The session key of this flow's `inside` endpoint.
    fn session_key(&self, inside: Endpoint) -> SessionKey {
        SessionKey {
            proto: self.proto,
            inside,
        }
    }

    /// The lookup key of this flow's `external` endpoint.
    fn external_key(&self, external: Endpoint) -> ExternalKey {
        ExternalKey {
            proto: self.proto,
            external,
        }
    }
}

impl<T: SessionTable> Engine<T> {
    /// Translates one Ethernet frame in place. Non-IPv4 frames are [`Verdict::Pass`];
    /// everything else is translated or dropped with a counted reason. The frame's
    /// length never changes.
    pub fn process(&mut self, frame: &mut [u8], now: Timestamp) -> Verdict {
        self.counters.rx_packets += 1;
        let v = match EthernetFrame::new_checked(&*frame) {
            Err(e) => Verdict::Drop(e.into()),
            Ok(eth) if eth.ethertype() != EtherType::Ipv4 => Verdict::Pass,
            Ok(eth) => {
                let l3 = eth.header_len();
                self.ipv4(&mut frame[l3..], now.0)
            }
        };
        self.counters.count(v);
        v
    }

    /// Translates one IPv4 packet (no link header) in place.
    pub fn process_ipv4(&mut self, packet: &mut [u8], now: Timestamp) -> Verdict {
        self.counters.rx_packets += 1;
        let v = self.ipv4(packet, now.0);
        self.counters.count(v);
        v
    }

    fn ipv4(&mut self, pkt: &mut [u8], now: u64) -> Verdict {
        match self.ipv4_step(pkt, now) {
            Ok(v) => v,
            Err(r) => Verdict::Drop(r),
        }
    }

    fn ipv4_step(&mut self, pkt: &mut [u8], now: u64) -> Step<Verdict> {
        if pkt.first().is_some_and(|b| b >> 4 != 4) {
            return Err(DropReason::BadVersion);
        }
        let ip = Ipv4Packet::new_checked(&*pkt)?;
        if !ip.verify_checksum() {
            return Err(DropReason::BadChecksum);
        }
        let (hl, total) = (ip.header_len(), usize::from(ip.total_len()));
        let (src, dst, ident, proto_num) = (
            ip.src_addr(),
            ip.dst_addr(),
            ip.ident(),
            u8::from(ip.protocol()),
        );
        let later_fragment = ip.frag_offset() != 0;
        let first_fragment = !later_fragment && ip.more_frags();
        // Ethernet padding after the total length is not part of the packet.
        let pkt = &mut pkt[..total];
        let frag_key = FragKey::new(src, dst, ident, proto_num);
        if later_fragment {
            return self.follow_fragment(pkt, frag_key, now);
        }
        let proto = Proto::from_number(proto_num).ok_or(DropReason::UnsupportedProtocol)?;
        let (ip_bytes, l4) = pkt.split_at_mut(hl);
        let iph: &mut Ipv4Hdr = from_bytes_mut(ip_bytes).ok_or(DropReason::Truncated)?;

        if proto == Proto::Icmp && l4.len() >= icmp::HEADER_LEN && is_icmp_error(l4[0]) {
            if first_fragment {
                return Err(DropReason::UnsupportedIcmp);
            }
            return self.icmp_error(iph, l4, src, dst);
        }
        let flow = parse_flow(proto, l4, first_fragment)?;
        let (from, to) = (
            Endpoint::new(src, flow.src_port),
            Endpoint::new(dst, flow.dst_port),
        );
        let dst_ext = self.ext_index(dst).is_some();
        let src_in = self.is_inside(src);
        // The new source and destination endpoints; `None` keeps the packet's own.
        let (direction, new_src, new_dst) = match (src_in, dst_ext) {
            (true, true) => {
                if !self.cfg.hairpinning {
                    return Err(DropReason::NotOurs);
                }
                let (new_src, new_dst) = self.hairpin(from, to, flow, now)?;
                (Direction::Hairpin, Some(new_src), Some(new_dst))
            }
            (_, true) => (
                Direction::Inbound,
                None,
                Some(self.inbound(to, from, flow, now)?),
            ),
            (true, false) => (
                Direction::Outbound,
                Some(self.outbound(from, to, flow, now)?),
                None,
            ),
            (false, false) => return Err(DropReason::NotOurs),
        };
        for (side, new) in [(Side::Src, new_src), (Side::Dst, new_dst)] {
            if let Some(new) = new {
                rewrite_endpoint(iph, side, l4_fields(l4, flow.proto, side), new);
            }
        }
        if first_fragment {
            let d = FragDecision {
                new_src: new_src.map_or(src, |e| e.ip),
                new_dst: new_dst.map_or(dst, |e| e.ip),
                direction,
            };
            self.frags.insert(frag_key, d, now);
            self.counters.fragments_tracked += 1;
        }
        Ok(Verdict::Translated(direction))
    }

    fn follow_fragment(&mut self, pkt: &mut [u8], key: FragKey, now: u64) -> Step<Verdict> {
        let d = self
            .frags
            .get(&key, now)
            .ok_or(DropReason::FragmentNoHead)?;
        let iph: &mut Ipv4Hdr = from_bytes_mut(pkt).ok_or(DropReason::Truncated)?;
        if d.new_src != key.src {
            rewrite_addr(iph, Side::Src, d.new_src);
        }
        if d.new_dst != key.dst {
            rewrite_addr(iph, Side::Dst, d.new_dst);
        }
        self.counters.fragments_followed += 1;
        Ok(Verdict::Translated(d.direction))
    }

    /// Inside -> own external endpoint (RFC 4787 REQ-9, RFC 5382 REQ-2): the sender
    /// is translated as if outbound, the receiver as if inbound from the sender's
    /// external endpoint, so both see only external addresses of each other. Returns
    /// the new source and destination.
    fn hairpin(
        &mut self,
        from: Endpoint,
        to: Endpoint,
        flow: Flow,
        now: u64,
    ) -> Step<(Endpoint, Endpoint)> {
        // Check the target exists before allocating for the sender.
        if self.table.get_by_external(&flow.external_key(to)).is_none() {
            return Err(DropReason::NoSession);
        }
        let new_src = self.outbound(from, to, flow, now)?;
        let new_dst = self.inbound(to, new_src, flow, now)?;
        Ok((new_src, new_dst))
    }

    /// Inside -> outside: the external endpoint of `inside`'s session, created if
    /// needed, refreshed, with its TCP state advanced and the filter opened towards
    /// `remote`.
    fn outbound(
        &mut self,
        inside: Endpoint,
        remote: Endpoint,
        flow: Flow,
        now: u64,
    ) -> Step<Endpoint> {
        let key = flow.session_key(inside);
        let ext = match self.table.get_mut(&key) {
            Some(s) => {
                s.last_seen_ms = now;
                s.seen_outbound = true;
                if let Some(f) = flow.flags {
                    s.tcp = s.tcp.next(f, true);
                }
                s.record.external
            }
            None => self.create_session(key, flow, now)?,
        };
        if self.cfg.filtering == Filtering::AddressAndPortDependent {
            self.permissions.insert((key, remote), now);
        }
        Ok(ext)
    }

    fn create_session(&mut self, key: SessionKey, flow: Flow, now: u64) -> Step<Endpoint> {
        // A RST or an ICMP reply opens nothing.
        if flow.flags.is_some_and(|f| f.contains(Flags::RST)) || !flow.opens {
            return Err(DropReason::NoSession);
        }
        let bucket: BucketId = outbound_bucket(
            &self.cfg.hash_key,
            self.cfg.bucket_bits,
            key.inside.ip,
            key.inside.port,
            key.proto.number(),
        );
        if !self.owns(bucket) {
            return Err(DropReason::NotOwner);
        }
        if self.table.len() >= self.cfg.max_sessions {
            return Err(DropReason::TableFull);
        }
        let host = self.host(key.inside.ip);
        if host.sessions >= self.cfg.max_sessions_per_host {
            return Err(DropReason::HostLimit);
        }
        let external = self.allocate(host, bucket, key.proto)?;
        let record = SessionRecord {
            key,
            external,
            bucket,
            created_ms: now,
        };
        // TCP starts transitory whatever opened it (RFC 5382 REQ-5); the outside's
        // answer establishes it. UDP and ICMP do not use the TCP state.
        let tcp = match flow.flags {
            Some(_) => TcpState::SynSent,
            None => TcpState::Established,
        };
        self.table.insert(Session {
            record,
            last_seen_ms: now,
            tcp,
            origin: Origin::Local,
            seen_outbound: true,
        });
        self.host_sessions
            .entry(key.inside.ip)
            .or_insert(HostState {
                sessions: 0,
                paired: host.paired,
            })
            .sessions += 1;
        self.created.push(record);
        self.counters.sessions_created += 1;
        Ok(external)
    }

    /// Outside -> external endpoint: the inside endpoint for a packet from `remote` to
    /// `external`, if a session exists and its filter admits `remote`; refreshes it.
    fn inbound(
        &mut self,
        external: Endpoint,
        remote: Endpoint,
        flow: Flow,
        now: u64,
    ) -> Step<Endpoint> {
        let s = self
            .table
            .get_by_external_mut(&flow.external_key(external))
            .ok_or(DropReason::NoSession)?;
        if self.cfg.filtering == Filtering::AddressAndPortDependent && s.seen_outbound {
            let timeout = s.timeout_ms(&self.cfg.timeouts);
            let allowed = self
                .permissions
                .get(&(s.record.key, remote))
                .is_some_and(|at| now.saturating_sub(*at) <= timeout);
            if !allowed {
                return Err(DropReason::Filtered);
            }
        }
        if let Some(f) = flow.flags {
            s.tcp = s.tcp.next(f, false);
        }
        if self.cfg.inbound_refresh {
            s.last_seen_ms = now;
        }
        Ok(s.record.key.inside)
    }

    /// RFC 5508: an ICMP error is translated with the packet it quotes. Inbound (to an
    /// external IP), the quote is a packet we sent out: its source is the external
    /// endpoint. Outbound (from inside), the quote is a packet we delivered: its
    /// destination is the inside endpoint. An error from inside to an external IP
    /// (about a hairpinned packet) gets both translations. The session is neither
    /// created nor refreshed nor closed by an error (RFC 4787 REQ-12).
    fn icmp_error(
        &mut self,
        iph: &mut Ipv4Hdr,
        l4: &mut [u8],
        src: u32,
        dst: u32,
    ) -> Step<Verdict> {
        {
            let icmp = IcmpPacket::new_checked(&*l4)?;
            if !icmp.verify_checksum() {
                return Err(DropReason::BadChecksum);
            }
        }
        let (icmp_hdr, quote) = l4.split_at_mut(icmp::HEADER_LEN);
        let q = Ipv4Packet::new_quoted(&*quote)?;
        if q.version() != 4 {
            return Err(DropReason::BadVersion);
        }
        let qhl = q.header_len();
        let (qsrc, qdst) = (q.src_addr(), q.dst_addr());
        let qproto = Proto::from_number(q.protocol().into()).ok_or(DropReason::UnsupportedIcmp)?;
        if q.frag_offset() != 0 {
            // A later fragment quotes no L4 header.
            return Err(DropReason::UnsupportedIcmp);
        }
        let (qip_bytes, ql4) = quote.split_at_mut(qhl);
        if ql4.len() < 8 {
            return Err(DropReason::Truncated);
        }
        if qproto == Proto::Icmp
            && !matches!(
                Message::from(ql4[0]),
                Message::EchoRequest | Message::EchoReply
            )
        {
            // Never an error about an error (RFC 1122); other queries are not mapped.
            return Err(DropReason::UnsupportedIcmp);
        }
        let (qsport, qdport) = match qproto {
            Proto::Icmp => {
                let id = u16::from_be_bytes([ql4[4], ql4[5]]);
                (id, id)
            }
            _ => (
                u16::from_be_bytes([ql4[0], ql4[1]]),
                u16::from_be_bytes([ql4[2], ql4[3]]),
            ),
        };
        let to_external = self.ext_index(dst).is_some();
        let from_inside = self.is_inside(src);
        if to_external && from_inside && !self.cfg.hairpinning {
            return Err(DropReason::NotOurs);
        }
        // Up to two rewrites: (quoted side, new endpoint, outer side).
        let mut changes = [None, None];
        if to_external {
            // About a packet we sent from `qsrc:qsport` (an external endpoint).
            if qsrc != dst {
                return Err(DropReason::NoSession);
            }
            let ext_key = ExternalKey {
                proto: qproto,
                external: Endpoint::new(qsrc, qsport),
            };
            let s = self
                .table
                .get_by_external(&ext_key)
                .ok_or(DropReason::NoSession)?;
            changes[0] = Some((Side::Src, s.record.key.inside, Side::Dst));
        }
        if from_inside {
            // About a packet we delivered to `qdst:qdport` (an inside endpoint).
            let key = SessionKey {
                proto: qproto,
                inside: Endpoint::new(qdst, qdport),
            };
            let s = self.table.get(&key).ok_or(DropReason::NoSession)?;
            changes[1] = Some((Side::Dst, s.record.external, Side::Src));
        }
        let direction = match (to_external, from_inside) {
            (true, true) => Direction::Hairpin,
            (true, false) => Direction::Inbound,
            (false, true) => Direction::Outbound,
            (false, false) => return Err(DropReason::NotOurs),
        };
        let qiph: &mut Ipv4Hdr = from_bytes_mut(qip_bytes).ok_or(DropReason::Truncated)?;
        let (lead_bytes, rest) = ql4.split_at_mut(8);
        let kind = L4Kind::from_proto(qproto);
        let mut delta = mfplane_core::CsumDelta::ZERO;
        for (side, new, outer_side) in changes.into_iter().flatten() {
            let lead: &mut L4Lead = from_bytes_mut(lead_bytes).ok_or(DropReason::Truncated)?;
            // The quoted TCP checksum (bytes 16..18) is updated when it was quoted.
            let tcp_check = if qproto == Proto::Tcp {
                rest.get_mut(8..10)
                    .and_then(|c| <&mut [u8; 2]>::try_from(c).ok())
            } else {
                None
            };
            let fields = L4Fields::quoted(lead, kind, side, tcp_check);
            delta = delta.merge(rewrite_endpoint(qiph, side, Some(fields), new));
            rewrite_addr(iph, outer_side, new.ip);
        }
        let ih: &mut IcmpHdr = from_bytes_mut(icmp_hdr).ok_or(DropReason::Truncated)?;
        delta.apply_to(&mut ih.check);
        self.counters.icmp_errors_translated += 1;
        Ok(Verdict::Translated(direction))
    }
}

fn is_icmp_error(icmp_type: u8) -> bool {
    Message::from(icmp_type).is_error()
}

/// Reads and validates the L4 header.
fn parse_flow(proto: Proto, l4: &[u8], first_fragment: bool) -> Step<Flow> {
    match proto {
        Proto::Tcp => {
            let p = TcpPacket::new_unchecked(l4);
            check_l4(l4, tcp::HEADER_LEN, first_fragment, || p.check_len())?;
            Ok(Flow {
                flags: Some(p.flags()),
                ..Flow::between(proto, p.src_port(), p.dst_port())
            })
        }
        Proto::Udp => {
            let p = UdpPacket::new_unchecked(l4);
            check_l4(l4, udp::HEADER_LEN, first_fragment, || p.check_len())?;
            Ok(Flow::between(proto, p.src_port(), p.dst_port()))
        }
        Proto::Icmp => {
            let p = IcmpPacket::new_checked(l4)?;
            let opens = match p.msg_type() {
                Message::EchoRequest => true,
                Message::EchoReply => false,
                _ => return Err(DropReason::UnsupportedIcmp),
            };
            let id = p.echo_ident();
            Ok(Flow {
                opens,
                ..Flow::between(proto, id, id)
            })
        }
    }
}

/// Checks a TCP or UDP header. A first fragment only needs its fixed `header_len`
/// (the rest of the datagram is in later fragments); an unfragmented packet is
/// checked against its own length fields by `check_len`.
#[inline]
fn check_l4(
    l4: &[u8],
    header_len: usize,
    first_fragment: bool,
    check_len: impl FnOnce() -> crate::wire::Result<()>,
) -> Step<()> {
    if !first_fragment {
        return Ok(check_len()?);
    }
    if l4.len() < header_len {
        return Err(DropReason::Truncated);
    }
    Ok(())
}

/// The L4 fields of a (checked) TCP, UDP or ICMP echo header.
#[inline]
fn l4_fields(l4: &mut [u8], proto: Proto, side: Side) -> Option<L4Fields<'_>> {
    match proto {
        Proto::Tcp => from_bytes_mut::<TcpHdr>(l4).map(|h| L4Fields::tcp(h, side)),
        Proto::Udp => from_bytes_mut::<UdpHdr>(l4).map(|h| L4Fields::udp(h, side)),
        Proto::Icmp => from_bytes_mut::<IcmpHdr>(l4).map(L4Fields::icmp_echo),
    }
}

//! Packet access and parsing: the one bounds-checked `ptr_at`, the Ethernet/IPv4
//! front end and the bucket of a classified packet.
//!
//! Every read is a fixed-size `mfplane_core::hdr` struct behind a comparison of packet
//! pointers with `data_end`, the only form the verifier accepts. Helpers return
//! `ControlFlow`: `Break(action)` ends the packet (after counting why), `Continue`
//! carries the parse result on.

use core::mem::size_of;
use core::ops::ControlFlow;

use aya_ebpf::programs::XdpContext;
use mfplane_core::hdr::{
    ETH_P_8021Q, ETH_P_IPV4, EthHdr, IcmpHdr, Ipv4Hdr, L4Lead, TcpHdr, UdpHdr, VlanHdr,
    icmp_type,
};
use mfplane_core::lb_maps::{FRAG_PASS, LbCounter, LbCounters};
use mfplane_core::maps::FragKey;
use mfplane_core::{BucketBits, Proto, inbound_bucket, outbound_bucket};

use crate::consts::{DROP, PASS};
use crate::maps::{FRAGS, Table};

/// A pointer to a `T` at byte `off` of the packet, or `None` if the packet is shorter.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// A view of the header `T` (alignment 1, any bytes valid) at byte `off`. Reading
/// through the view loads only the fields used, not the whole header. Views must not
/// outlive a `bpf_xdp_adjust_head` (the encapsulation takes what it needs first).
#[inline(always)]
pub fn view_at<T>(ctx: &XdpContext, off: usize) -> Option<&T> {
    // SAFETY: bounds checked by `ptr_at`; `T` is a `hdr` struct of bytes.
    ptr_at::<T>(ctx, off).map(|p| unsafe { &*p })
}

/// Counts `reason` and ends the packet with `XDP_DROP`.
#[inline(always)]
pub fn drop_with<T>(c: &mut LbCounters, reason: LbCounter) -> ControlFlow<u32, T> {
    c.bump(reason);
    ControlFlow::Break(DROP)
}

/// A view of the `T` at `off`, or drops the packet as `reason`.
#[inline(always)]
fn need<'a, T>(
    ctx: &'a XdpContext,
    c: &mut LbCounters,
    off: usize,
    reason: LbCounter,
) -> ControlFlow<u32, &'a T> {
    match view_at::<T>(ctx, off) {
        Some(h) => ControlFlow::Continue(h),
        None => drop_with(c, reason),
    }
}

/// A sane IPv4 packet: where its headers start, the fields every packet needs (read
/// once, host order) and a view of the header for the rest, read only on the paths
/// that use them (fragments, IP-in-IP), so the common path loads and keeps nothing
/// it does not need.
#[derive(Clone, Copy)]
pub struct Ipv4Packet<'a> {
    /// Offset of the IPv4 header (after Ethernet and an optional 802.1Q tag).
    pub l3: usize,
    /// Offset of the L4 header (after the IPv4 options).
    pub l4: usize,
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    /// The checked header; valid until a `bpf_xdp_adjust_head`.
    pub hdr: &'a Ipv4Hdr,
}

/// Parses Ethernet (one optional 802.1Q tag) and checks the IPv4 header. Non-IPv4
/// frames pass to the kernel; malformed IPv4 is dropped and counted.
#[inline(always)]
pub fn ipv4<'a>(ctx: &'a XdpContext, c: &mut LbCounters) -> ControlFlow<u32, Ipv4Packet<'a>> {
    let Some(eth) = view_at::<EthHdr>(ctx, 0) else {
        return ControlFlow::Break(PASS);
    };
    let mut l3 = size_of::<EthHdr>();
    let mut ether_type = eth.ether_type();
    if ether_type == ETH_P_8021Q {
        let vlan: &VlanHdr = need(ctx, c, l3, LbCounter::DropTruncated)?;
        ether_type = vlan.ether_type();
        l3 += size_of::<VlanHdr>();
    }
    if ether_type != ETH_P_IPV4 {
        return ControlFlow::Break(PASS);
    }
    let ip: &Ipv4Hdr = need(ctx, c, l3, LbCounter::DropTruncated)?;
    if ip.version() != 4 {
        return drop_with(c, LbCounter::DropBadVersion);
    }
    if ip.ihl() < 5 {
        return drop_with(c, LbCounter::DropBadIhl);
    }
    let frame_len = ctx.data_end() - ctx.data();
    let total = ip.total_len() as usize;
    if total < ip.header_len() || l3 + total > frame_len {
        return drop_with(c, LbCounter::DropBadLength);
    }
    // IHL is 4 bits, so the offset stays bounded for the verifier.
    let l4 = l3 + ((ip.version_ihl & 0x0f) as usize) * 4;
    ControlFlow::Continue(Ipv4Packet {
        l3,
        l4,
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        proto: ip.proto,
        hdr: ip,
    })
}

/// Which way a packet crosses the NAT.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From an inside prefix: bucket by the flow hash of the source endpoint.
    Outbound,
    /// To an external IP: bucket by the destination port.
    Inbound,
}

/// The bucket of a classified packet; later fragments follow their first fragment,
/// a first fragment is remembered for them.
#[inline(always)]
pub fn bucket(
    ctx: &XdpContext,
    c: &mut LbCounters,
    pkt: &Ipv4Packet,
    dir: Direction,
    table: &Table,
    bits: BucketBits,
) -> ControlFlow<u32, u32> {
    let frag_key = || FragKey::new(pkt.src, pkt.dst, pkt.hdr.id(), pkt.proto);
    if pkt.hdr.is_later_fragment() {
        // SAFETY: the u32 value is copied out at once.
        return match unsafe { FRAGS.get(&frag_key()) }.copied() {
            Some(FRAG_PASS) => {
                c.bump(LbCounter::FragmentFollowed);
                ControlFlow::Break(PASS)
            }
            Some(b) => {
                c.bump(LbCounter::FragmentFollowed);
                ControlFlow::Continue(b)
            }
            None => drop_with(c, LbCounter::DropFragmentNoHead),
        };
    }
    let decision = l4_bucket(ctx, c, pkt, dir, table, bits);
    if pkt.hdr.more_fragments() {
        let remembered = match decision {
            ControlFlow::Continue(b) => Some(b),
            ControlFlow::Break(PASS) => Some(FRAG_PASS),
            // A dropped head: its fragments are dropped as headless.
            ControlFlow::Break(_) => None,
        };
        if let Some(v) = remembered {
            // A full LRU evicts the oldest entry; an error here cannot be acted on.
            let _ = FRAGS.insert(&frag_key(), &v, 0);
            c.bump(LbCounter::FragmentTracked);
        }
    }
    decision
}

/// The bucket from the L4 header (or, for ICMP errors, the quoted header).
#[inline(always)]
fn l4_bucket(
    ctx: &XdpContext,
    c: &mut LbCounters,
    pkt: &Ipv4Packet,
    dir: Direction,
    table: &Table,
    bits: BucketBits,
) -> ControlFlow<u32, u32> {
    let key = &table.config.table.hash_key;
    let port = match Proto::from_number(pkt.proto) {
        Some(Proto::Tcp) => {
            let h: &TcpHdr = need(ctx, c, pkt.l4, LbCounter::DropTruncated)?;
            match dir {
                Direction::Outbound => h.src_port(),
                Direction::Inbound => h.dst_port(),
            }
        }
        Some(Proto::Udp) => {
            let h: &UdpHdr = need(ctx, c, pkt.l4, LbCounter::DropTruncated)?;
            match dir {
                Direction::Outbound => h.src_port(),
                Direction::Inbound => h.dst_port(),
            }
        }
        Some(Proto::Icmp) => {
            let h: &IcmpHdr = need(ctx, c, pkt.l4, LbCounter::DropTruncated)?;
            match (dir, h.icmp_type) {
                (Direction::Outbound, _) if h.is_echo() => h.echo_id(),
                (Direction::Inbound, icmp_type::ECHO_REPLY) => h.echo_id(),
                _ if h.is_error() => return icmp_error_bucket(ctx, c, pkt, dir, table, bits),
                // Inbound echo requests and informational ICMP to an external IP
                // belong to the host that holds the address.
                (Direction::Inbound, _) => return ControlFlow::Break(PASS),
                (Direction::Outbound, _) => return drop_with(c, LbCounter::DropUnsupported),
            }
        }
        None => match dir {
            Direction::Outbound => return drop_with(c, LbCounter::DropUnsupported),
            // Other protocols to an external IP are the address holder's business.
            Direction::Inbound => return ControlFlow::Break(PASS),
        },
    };
    ControlFlow::Continue(match dir {
        Direction::Outbound => outbound_bucket(key, bits, pkt.src, port, pkt.proto).0,
        Direction::Inbound => inbound_bucket(bits, port).0,
    } as u32)
}

/// The bucket of an ICMP error from the packet it quotes (RFC 5508): that packet went
/// the other way, so an inbound error quotes the translated outbound packet (its
/// source is the external endpoint) and an outbound error quotes an inbound packet
/// (its destination is the inside endpoint).
#[inline(always)]
fn icmp_error_bucket(
    ctx: &XdpContext,
    c: &mut LbCounters,
    pkt: &Ipv4Packet,
    dir: Direction,
    table: &Table,
    bits: BucketBits,
) -> ControlFlow<u32, u32> {
    c.bump(LbCounter::IcmpError);
    let q3 = pkt.l4 + size_of::<IcmpHdr>();
    let q: &Ipv4Hdr = need(ctx, c, q3, LbCounter::DropBadIcmpQuote)?;
    if q.version() != 4 || q.ihl() < 5 {
        return drop_with(c, LbCounter::DropBadIcmpQuote);
    }
    let q4 = q3 + ((q.version_ihl & 0x0f) as usize) * 4;
    let lead: &L4Lead = need(ctx, c, q4, LbCounter::DropBadIcmpQuote)?;
    // TCP/UDP: ports in w0 (source) and w1 (destination); ICMP echo: id in w2.
    let (src_port, dst_port) = match Proto::from_number(q.proto) {
        Some(Proto::Tcp | Proto::Udp) => (u16::from_be_bytes(lead.w0), u16::from_be_bytes(lead.w1)),
        Some(Proto::Icmp) => {
            let id = u16::from_be_bytes(lead.w2);
            (id, id)
        }
        None => return drop_with(c, LbCounter::DropUnsupported),
    };
    ControlFlow::Continue(match dir {
        Direction::Inbound => inbound_bucket(bits, src_port).0,
        Direction::Outbound => {
            outbound_bucket(
                &table.config.table.hash_key,
                bits,
                q.dst_addr(),
                dst_port,
                q.proto,
            )
            .0
        }
    } as u32)
}

//! Handing a packet to its owner: the L2 MAC rewrite or the IP-in-IP encapsulation,
//! then `XDP_TX` or `XDP_REDIRECT` to the fabric interface.

use core::ops::ControlFlow;

use aya_ebpf::helpers::bpf_xdp_adjust_head;
use aya_ebpf::programs::XdpContext;
use mfplane_core::csum::fold;
use mfplane_core::hdr::{ETH_P_IPV4, EthHdr, IP_DF, Ipv4Hdr};
use mfplane_core::lb_maps::{
    LB_FLAG_REDIRECT_ON_FABRIC, LbCounter, LbCounters, LbSettings, SteerMode,
};
use mfplane_core::maps::Owner;

use crate::consts::{IPPROTO_IPIP, OUTER_HDR_LEN, OUTER_TTL, TX};
use crate::maps::FABRIC;
use crate::parse::{Ipv4Packet, drop_with, ptr_at};

/// Steers the packet to `owner` in the configured mode.
#[inline(always)]
pub fn forward(
    ctx: &XdpContext,
    c: &mut LbCounters,
    settings: &LbSettings,
    mode: SteerMode,
    ifindex: u32,
    pkt: &Ipv4Packet,
    owner: &Owner,
) -> ControlFlow<u32, u32> {
    match mode {
        SteerMode::L2 => {
            let Some(macs) = ptr_at::<[u8; 12]>(ctx, 0) else {
                return drop_with(c, LbCounter::DropTruncated);
            };
            // Both addresses assembled on the stack and stored at once: assigned
            // field by field from the maps, LLVM cannot rule out overlap and calls a
            // byte-wise memmove.
            let [d0, d1, d2, d3, d4, d5] = owner.mac;
            let [s0, s1, s2, s3, s4, s5] = settings.fabric_mac;
            let new = [d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5];
            // SAFETY: bounds checked by `ptr_at`; an unaligned store of plain bytes.
            unsafe { macs.write_unaligned(new) };
        }
        SteerMode::IpIp => encapsulate(ctx, c, settings, pkt, owner)?,
    }
    transmit(c, settings, ifindex)
}

/// `XDP_TX` when the packet came in (on `ifindex`) on the fabric interface (unless the
/// settings ask for a redirect there too), else `XDP_REDIRECT` through the device map
/// to it.
#[inline(always)]
fn transmit(c: &mut LbCounters, settings: &LbSettings, ifindex: u32) -> ControlFlow<u32, u32> {
    if ifindex == settings.fabric_ifindex
        && settings.flags & LB_FLAG_REDIRECT_ON_FABRIC == 0
    {
        return ControlFlow::Continue(TX);
    }
    match FABRIC.redirect(0, 0) {
        Ok(action) => ControlFlow::Continue(action),
        Err(_) => drop_with(c, LbCounter::DropNoFabric),
    }
}

/// Replaces the L2 header (and any 802.1Q tag) with Ethernet + an outer IPv4 header
/// from the LB's fabric IP to the owner's (RFC 2003).
#[inline(always)]
fn encapsulate(
    ctx: &XdpContext,
    c: &mut LbCounters,
    settings: &LbSettings,
    pkt: &Ipv4Packet,
    owner: &Owner,
) -> ControlFlow<u32, ()> {
    // Everything taken from the inner header before the head moves.
    let (tos, id, frag) = (pkt.hdr.tos, pkt.hdr.id, pkt.hdr.frag_word());
    let Some(total) = pkt.hdr.total_len().checked_add(20) else {
        return drop_with(c, LbCounter::DropEncap);
    };
    // Grow (or, for a tagged frame, shift) the head so the inner header starts right
    // after the new Ethernet and outer IPv4 headers.
    let delta = pkt.l3 as i32 - OUTER_HDR_LEN as i32;
    // SAFETY: the helper only moves `data`; every pointer is re-derived afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
        return drop_with(c, LbCounter::DropEncap);
    }
    let mut outer = Ipv4Hdr {
        version_ihl: 0x45,
        tos,
        total_len: total.to_be_bytes(),
        id,
        // RFC 2003 §3.1: copy DF from the inner header.
        frag_off: (frag & IP_DF).to_be_bytes(),
        ttl: OUTER_TTL,
        proto: IPPROTO_IPIP,
        check: [0; 2],
        src: settings.fabric_ip.to_be_bytes(),
        dst: owner.ipv4.to_be_bytes(),
    };
    outer.check = header_checksum(&outer).to_be_bytes();
    let eth = EthHdr {
        dst: settings.ipip_dst_mac(owner.mac),
        src: settings.fabric_mac,
        ether_type: ETH_P_IPV4.to_be_bytes(),
    };
    let (Some(e), Some(o)) = (ptr_at::<EthHdr>(ctx, 0), ptr_at::<Ipv4Hdr>(ctx, 14)) else {
        return drop_with(c, LbCounter::DropEncap);
    };
    // SAFETY: bounds checked by `ptr_at`; both structs are bytes (alignment 1).
    unsafe {
        *e = eth;
        *o = outer;
    }
    c.bump(LbCounter::Encapsulated);
    ControlFlow::Continue(())
}

/// The IPv4 header checksum of a header without options (check field zero).
#[inline(always)]
fn header_checksum(h: &Ipv4Hdr) -> u16 {
    let w = |b: [u8; 2]| u16::from_be_bytes(b) as u32;
    let sum = w([h.version_ihl, h.tos])
        + w(h.total_len)
        + w(h.id)
        + w(h.frag_off)
        + w([h.ttl, h.proto])
        + w([h.src[0], h.src[1]])
        + w([h.src[2], h.src[3]])
        + w([h.dst[0], h.dst[1]])
        + w([h.dst[2], h.dst[3]]);
    !fold(sum)
}

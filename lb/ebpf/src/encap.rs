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
            let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
                return drop_with(c, LbCounter::DropTruncated);
            };
            write_mac(eth.cast(), &owner.mac);
            // SAFETY: `src` is inside the `EthHdr` that `ptr_at` bounds-checked.
            write_mac(unsafe { eth.cast::<u8>().add(6) }, &settings.fabric_mac);
        }
        SteerMode::IpIp => encapsulate(ctx, c, settings, pkt, owner)?,
    }
    transmit(c, settings, ifindex)
}

/// Copies `mac` to `dst` as a 4-byte and a 2-byte word. Byte arrays copied as
/// arrays become twelve byte loads and stores (and, assigned field by field from map
/// values, a call to a byte-wise memmove); the kernel allows unaligned packet access
/// on the targets XDP runs on (see `.cargo/config.toml`).
#[inline(always)]
fn write_mac(dst: *mut u8, mac: &[u8; 6]) {
    let src = mac.as_ptr();
    // SAFETY: `mac` has 6 bytes; `dst` points at 6 bounds-checked packet bytes (the
    // caller's `ptr_at`); unaligned reads and writes of plain integers.
    unsafe {
        let hi = src.cast::<u32>().read_unaligned();
        let lo = src.add(4).cast::<u16>().read_unaligned();
        dst.cast::<u32>().write_unaligned(hi);
        dst.add(4).cast::<u16>().write_unaligned(lo);
    }
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

/// The headers IP-in-IP puts in front of the inner IPv4 header.
#[derive(Clone, Copy)]
#[repr(C)]
struct OuterHeaders {
    eth: EthHdr,
    ip: Ipv4Hdr,
}

const _: () = assert!(core::mem::size_of::<OuterHeaders>() == OUTER_HDR_LEN);

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
    let mut ip = Ipv4Hdr {
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
    ip.check = header_checksum(&ip).to_be_bytes();
    let dst_mac = settings.ipip_dst_mac(owner.mac);
    // Grow (or, for a tagged frame, shift) the head so the inner header starts right
    // after the new Ethernet and outer IPv4 headers.
    let delta = pkt.l3 as i32 - OUTER_HDR_LEN as i32;
    // SAFETY: the helper only moves `data`; every pointer is re-derived afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
        return drop_with(c, LbCounter::DropEncap);
    }
    let Some(out) = ptr_at::<OuterHeaders>(ctx, 0) else {
        return drop_with(c, LbCounter::DropEncap);
    };
    let out = out.cast::<u8>();
    write_mac(out, &dst_mac);
    // SAFETY: every offset is inside the `OuterHeaders` that `ptr_at` bounds-checked;
    // unaligned writes of plain bytes.
    unsafe {
        write_mac(out.add(6), &settings.fabric_mac);
        out.add(12)
            .cast::<[u8; 2]>()
            .write_unaligned(ETH_P_IPV4.to_be_bytes());
        out.add(14).cast::<Ipv4Hdr>().write_unaligned(ip);
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

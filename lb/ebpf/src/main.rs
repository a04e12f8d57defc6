//! The mfplane load balancer's XDP program.
//!
//! Steers every NAT packet to the worker that owns its bucket, without per-flow
//! state: outbound packets (from an inside prefix) by the flow hash of their source
//! endpoint, inbound packets (to an external IP) by their destination port, both with
//! the `mfplane-core` functions the workers use, so the LB and the owner never
//! disagree. Everything else (ARP, IPv6, traffic that is neither) passes to the
//! kernel. Malformed IPv4 is dropped and counted, never steered, and so is a packet
//! from an inside prefix that arrives on an interface declared outside-only (spoofed).
//!
//! # Layout
//! - [`consts`]: XDP actions and outer-header constants.
//! - [`maps`]: the maps (names and types from `mfplane_core::lb_maps`), counters and
//!   the table lookups that honour the active generation.
//! - [`parse`]: `ptr_at`, the Ethernet/IPv4 front end, the bucket of a packet and the
//!   fragment tracking.
//! - [`encap`]: L2 rewrite or IP-in-IP encapsulation, then TX/redirect.
//! - this file: the entry point, the dispatch and the verdict counters, and the empty
//!   program the benchmark measures as its baseline.
#![no_std]
#![no_main]

mod consts;
mod encap;
mod maps;
mod parse;

use core::ops::ControlFlow;

use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;
use mfplane_core::lb_maps::{LbCounter, LbCounters};

use crate::consts::{ABORTED, DROP, PASS, REDIRECT, TX};
use crate::maps::{SETTINGS, Table, counters};
use crate::parse::{Direction, drop_with};

#[xdp]
pub fn mfplane_lb(ctx: XdpContext) -> u32 {
    try_lb(&ctx)
}

/// The benchmark's baseline: an XDP program that does nothing. Its ns/packet is what
/// the kernel's test loop and program dispatch cost, measured in the same run as the
/// LB so a busy machine shows as a higher baseline, not as a slower LB. Never
/// attached by the agent.
#[xdp]
pub fn mfplane_lb_empty(_ctx: XdpContext) -> u32 {
    PASS
}

/// Counts the verdict of [`steer`]: exactly one verdict counter per packet, so their
/// sum is the number of packets seen. The counters are looked up once, here.
#[inline(always)]
fn try_lb(ctx: &XdpContext) -> u32 {
    let Some(c) = counters() else {
        // Index 0 of a one-entry array always exists; the verifier wants the check.
        return ABORTED;
    };
    let action = match steer(ctx, c) {
        ControlFlow::Break(a) | ControlFlow::Continue(a) => a,
    };
    c.bump(match action {
        PASS => LbCounter::Pass,
        TX => LbCounter::Tx,
        REDIRECT => LbCounter::Redirect,
        DROP => LbCounter::Drop,
        _ => LbCounter::Aborted,
    });
    action
}

/// Parse, classify, find the owner, forward.
#[inline(always)]
fn steer(ctx: &XdpContext, c: &mut LbCounters) -> ControlFlow<u32, u32> {
    let pkt = parse::ipv4(ctx, c)?;
    let Some(settings) = SETTINGS.get(0) else {
        return ControlFlow::Break(ABORTED);
    };
    let Some(mode) = settings.steer_mode() else {
        c.bump(LbCounter::NotConfigured);
        return ControlFlow::Break(PASS);
    };
    // Outbound first: it needs only the settings. Inside to an external IP (hairpin)
    // is outbound too: the inside endpoint must be translated first.
    let outbound = settings.is_inside(pkt.src) && !settings.is_inside(pkt.dst);
    let Some(table) = Table::active() else {
        return drop_with(c, LbCounter::DropNoTable);
    };
    let dir = if outbound {
        Direction::Outbound
    } else if table.is_external(pkt.dst) {
        Direction::Inbound
    } else {
        // Before the first table the external set is empty: everything passes.
        return ControlFlow::Break(PASS);
    };
    // Read once for the spoofing check and the choice of TX or redirect: the kernel
    // turns each read into three dependent loads.
    let ifindex = ctx.ingress_ifindex() as u32;
    // An inside source cannot come from the internet: on an outside-only interface it
    // is spoofed, and steering it would hand the sender a NAT session.
    if dir == Direction::Outbound && settings.is_outside_only(ifindex) {
        return drop_with(c, LbCounter::DropSpoofedInside);
    }
    let Some(bits) = table.config.table.bucket_bits() else {
        return drop_with(c, LbCounter::DropNoTable);
    };
    let bucket = parse::bucket(ctx, c, &pkt, dir, &table, bits)?;
    let Some(owner) = table.owner_of(bucket) else {
        return drop_with(c, LbCounter::DropNoOwner);
    };
    c.bump(match dir {
        Direction::Outbound => LbCounter::Outbound,
        Direction::Inbound => LbCounter::Inbound,
    });
    encap::forward(ctx, c, settings, mode, ifindex, &pkt, owner)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

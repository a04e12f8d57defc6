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
//! - this file: the entry point, the dispatch and the verdict counters.
#![no_std]
#![no_main]

mod consts;
mod encap;
mod maps;
mod parse;

use core::ops::ControlFlow;

use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;
use mfplane_core::lb_maps::LbCounter;

use crate::consts::{ABORTED, DROP, PASS, REDIRECT, TX};
use crate::maps::{SETTINGS, active_table, bump, is_external, owner_of};
use crate::parse::{Direction, drop_with};

#[xdp]
pub fn mfplane_lb(ctx: XdpContext) -> u32 {
    try_lb(&ctx)
}

/// Counts the verdict of [`steer`]: exactly one verdict counter per packet, so their
/// sum is the number of packets seen.
#[inline(always)]
fn try_lb(ctx: &XdpContext) -> u32 {
    let action = match steer(ctx) {
        ControlFlow::Break(a) | ControlFlow::Continue(a) => a,
    };
    bump(match action {
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
fn steer(ctx: &XdpContext) -> ControlFlow<u32, u32> {
    let pkt = parse::ipv4(ctx)?;
    let Some(settings) = SETTINGS.get(0) else {
        return ControlFlow::Break(ABORTED);
    };
    let Some(mode) = settings.steer_mode() else {
        bump(LbCounter::NotConfigured);
        return ControlFlow::Break(PASS);
    };
    // Outbound first: it needs no hash lookup. Inside to an external IP (hairpin) is
    // outbound too: the inside endpoint must be translated first.
    let dir = if settings.is_inside(pkt.src) && !settings.is_inside(pkt.dst) {
        Direction::Outbound
    } else if is_external(pkt.dst) {
        Direction::Inbound
    } else {
        return ControlFlow::Break(PASS);
    };
    // An inside source cannot come from the internet: on an outside-only interface it
    // is spoofed, and steering it would hand the sender a NAT session.
    if dir == Direction::Outbound && settings.is_outside_only(ctx.ingress_ifindex() as u32) {
        return drop_with(LbCounter::DropSpoofedInside);
    }
    let Some(table) = active_table() else {
        return drop_with(LbCounter::DropNoTable);
    };
    let Some(bits) = table.config.bucket_bits() else {
        return drop_with(LbCounter::DropNoTable);
    };
    let bucket = parse::bucket(ctx, &pkt, dir, &table, bits)?;
    let Some(owner) = owner_of(&table, bucket) else {
        return drop_with(LbCounter::DropNoOwner);
    };
    bump(match dir {
        Direction::Outbound => LbCounter::Outbound,
        Direction::Inbound => LbCounter::Inbound,
    });
    encap::forward(ctx, settings, mode, &pkt, &owner)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

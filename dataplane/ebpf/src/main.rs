//! The mfplane worker's XDP program: the seed of the kernel fast path.
//!
//! It parses Ethernet (with one 802.1Q tag), IPv4 and the TCP/UDP/ICMP-echo header
//! with bounds-checked fixed-size reads, places the packet in its outbound bucket with
//! the shared `mfplane-core` flow hash, tracks IPv4 fragments per DESIGN §2.5, and
//! counts verdicts and drop reasons per CPU. Malformed IPv4 is dropped and counted;
//! everything else goes to the kernel (`XDP_PASS`) until the session maps land.
//!
//! # Layout
//! - maps: `MFP_CONFIG`, `MFP_COUNTERS`, `MFP_BKT_PKTS`, `MFP_FRAGS` (names and value
//!   types from `mfplane_core::maps`);
//! - `ptr_at`: the one bounds-checked packet access;
//! - `try_worker`: parse and classify; `mfplane_worker`: entry point and verdict count.
#![no_std]
#![no_main]

use core::mem::size_of;
use core::ops::ControlFlow;

use aya_ebpf::bindings::xdp_action;
use aya_ebpf::macros::{map, xdp};
use aya_ebpf::maps::{Array, LruHashMap, PerCpuArray};
use aya_ebpf::programs::XdpContext;
use mfplane_core::hdr::{
    ETH_P_8021Q, ETH_P_IPV4, EthHdr, IcmpHdr, Ipv4Hdr, TcpHdr, UdpHdr, VlanHdr,
};
use mfplane_core::maps::{Counter, DataplaneConfig, FragKey, MAX_BUCKETS};
use mfplane_core::{BucketId, Proto, outbound_bucket};

/// Entries of the fragment-tracking LRU: first fragments remembered at once.
const MAX_FRAGS: u32 = 8192;

#[map(name = "MFP_CONFIG")]
static CONFIG: Array<DataplaneConfig> = Array::with_max_entries(1, 0);

#[map(name = "MFP_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[map(name = "MFP_BKT_PKTS")]
static BUCKET_PACKETS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_BUCKETS, 0);

/// First fragment `(src, dst, id, proto)` -> its bucket, for the later fragments.
#[map(name = "MFP_FRAGS")]
static FRAGS: LruHashMap<FragKey, u32> = LruHashMap::with_max_entries(MAX_FRAGS, 0);

#[xdp]
pub fn mfplane_worker(ctx: XdpContext) -> u32 {
    let action = match try_worker(&ctx) {
        ControlFlow::Break(action) | ControlFlow::Continue(action) => action,
    };
    bump(match action {
        xdp_action::XDP_PASS => Counter::VerdictPass,
        xdp_action::XDP_TX => Counter::VerdictTx,
        xdp_action::XDP_REDIRECT => Counter::VerdictRedirect,
        xdp_action::XDP_DROP => Counter::VerdictDrop,
        _ => Counter::VerdictAborted,
    });
    action
}

#[inline(always)]
fn bump(c: Counter) {
    bump_index(&COUNTERS, c.index());
}

#[inline(always)]
fn bump_index(map: &PerCpuArray<u64>, index: u32) {
    if let Some(p) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot of this CPU; no concurrent writer.
        unsafe { *p += 1 };
    }
}

/// Counts `reason` and drops.
#[inline(always)]
fn drop_with(reason: Counter) -> ControlFlow<u32, u32> {
    bump(reason);
    ControlFlow::Break(xdp_action::XDP_DROP)
}

/// A pointer to a `T` at byte `off` of the packet, or `None` if the packet is shorter.
/// The comparison of packet pointers against `data_end` is what the verifier needs.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// Reads a `T` (a `mfplane_core::hdr` struct: alignment 1, any bytes valid).
#[inline(always)]
fn read_at<T: Copy>(ctx: &XdpContext, off: usize) -> Option<T> {
    // SAFETY: bounds checked by `ptr_at`; `T` has alignment 1 and no invalid values.
    ptr_at::<T>(ctx, off).map(|p| unsafe { *p })
}

fn try_worker(ctx: &XdpContext) -> ControlFlow<u32, u32> {
    bump(Counter::RxPackets);
    let Some(eth) = read_at::<EthHdr>(ctx, 0) else {
        return ControlFlow::Break(xdp_action::XDP_PASS);
    };
    let mut l3 = size_of::<EthHdr>();
    let mut ether_type = eth.ether_type();
    if ether_type == ETH_P_8021Q {
        let Some(vlan) = read_at::<VlanHdr>(ctx, l3) else {
            return drop_with(Counter::DropTruncated);
        };
        ether_type = vlan.ether_type();
        l3 += size_of::<VlanHdr>();
    }
    if ether_type != ETH_P_IPV4 {
        return ControlFlow::Break(xdp_action::XDP_PASS);
    }
    let Some(ip) = read_at::<Ipv4Hdr>(ctx, l3) else {
        return drop_with(Counter::DropTruncated);
    };
    if ip.version() != 4 {
        return drop_with(Counter::DropBadVersion);
    }
    if ip.ihl() < 5 {
        return drop_with(Counter::DropBadIhl);
    }
    let frame_len = ctx.data_end() - ctx.data();
    let total = ip.total_len() as usize;
    if total < ip.header_len() || l3 + total > frame_len {
        return drop_with(Counter::DropBadLength);
    }
    let Some(cfg) = CONFIG.get(0).copied() else {
        bump(Counter::NotConfigured);
        return ControlFlow::Break(xdp_action::XDP_PASS);
    };
    let Some(bits) = cfg.bucket_bits() else {
        bump(Counter::NotConfigured);
        return ControlFlow::Break(xdp_action::XDP_PASS);
    };
    let frag_key = FragKey::new(ip.src_addr(), ip.dst_addr(), ip.id(), ip.proto);
    if ip.is_later_fragment() {
        // SAFETY: the value is a plain u32 copied out at once.
        return match unsafe { FRAGS.get(frag_key) } {
            Some(bucket) => {
                bump(Counter::FragmentFollowed);
                bump_index(&BUCKET_PACKETS, *bucket);
                ControlFlow::Break(xdp_action::XDP_PASS)
            }
            None => drop_with(Counter::DropFragmentNoHead),
        };
    }
    let Some(proto) = Proto::from_number(ip.proto) else {
        bump(Counter::OtherProtocol);
        return ControlFlow::Break(xdp_action::XDP_PASS);
    };
    // IHL is 4 bits, so the L4 offset is bounded for the verifier.
    let l4 = l3 + ((ip.version_ihl & 0x0f) as usize) * 4;
    let src_port = match proto {
        Proto::Tcp => match read_at::<TcpHdr>(ctx, l4) {
            Some(h) => h.src_port(),
            None => return drop_with(Counter::DropTruncated),
        },
        Proto::Udp => match read_at::<UdpHdr>(ctx, l4) {
            Some(h) => h.src_port(),
            None => return drop_with(Counter::DropTruncated),
        },
        Proto::Icmp => match read_at::<IcmpHdr>(ctx, l4) {
            Some(h) if h.is_echo() => h.echo_id(),
            Some(_) => {
                // ICMP errors are translated by the slow path (RFC 5508).
                bump(Counter::SlowPath);
                return ControlFlow::Break(xdp_action::XDP_PASS);
            }
            None => return drop_with(Counter::DropTruncated),
        },
    };
    let BucketId(bucket) = outbound_bucket(&cfg.hash_key, bits, ip.src_addr(), src_port, ip.proto);
    if ip.more_fragments() {
        // Errors are ignored on purpose: a full LRU evicts, it does not fail.
        let _ = FRAGS.insert(frag_key, u32::from(bucket), 0);
        bump(Counter::FragmentTracked);
    }
    bump_index(&BUCKET_PACKETS, bucket as u32);
    ControlFlow::Continue(xdp_action::XDP_PASS)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

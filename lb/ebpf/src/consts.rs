//! Constants of the LB program: XDP actions and the IP-in-IP header fields.

pub use aya_ebpf::bindings::xdp_action::{
    XDP_ABORTED as ABORTED, XDP_DROP as DROP, XDP_PASS as PASS, XDP_REDIRECT as REDIRECT,
    XDP_TX as TX,
};

/// IP protocol number of IPv4-in-IPv4 (RFC 2003).
pub const IPPROTO_IPIP: u8 = 4;
/// TTL of the outer header: the fabric is a few hops at most.
pub const OUTER_TTL: u8 = 64;
/// Bytes of the outer frame before the inner IPv4 header: Ethernet + IPv4.
pub const OUTER_HDR_LEN: usize = 14 + 20;

//! The `no_std`, allocation-free packet core of mfplane.
//!
//! One definition of the flow hash, the bucket rules and the header rewrite, compiled
//! into the LB's eBPF program, the worker's eBPF program and the userspace NAT engine,
//! so that the three can never disagree about where a flow belongs.
//!
//! Everything here is written for the eBPF verifier as much as for userspace: no
//! allocation, no panicking paths in the packet functions, loops with constant bounds,
//! and only fixed-size header structs (no slices indexed at variable offsets). Each
//! environment does its own bounds-checked access and calls these pure functions.
//!
//! # Layout
//! - [`types`]: the vocabulary shared by every layer (`BucketId`, `SessionKey`, ...).
//! - [`hash`]: the keyed flow hash (SipHash-1-3 over the inside endpoint).
//! - [`bucket`]: outbound/inbound bucket of a packet, the ports a bucket owns.
//! - [`csum`]: RFC 1624 incremental checksum updates and the full Internet checksum.
//! - [`hdr`]: `#[repr(C)]` Ethernet, 802.1Q, IPv4, TCP, UDP and ICMP headers.
//! - [`rewrite`]: the NAT rewrite of an endpoint with all checksum fixes.
//! - [`maps`]: BPF map key/value types, map names and the counter enum.
#![cfg_attr(not(test), no_std)]

pub mod bucket;
pub mod csum;
pub mod hash;
pub mod hdr;
pub mod lb_maps;
pub mod maps;
pub mod rewrite;
pub mod types;

pub use bucket::{BucketPorts, inbound_bucket, outbound_bucket, port_in_bucket};
pub use csum::CsumDelta;
pub use hash::{FlowHashKey, flow_hash};
pub use maps::{Counter, DataplaneConfig, FragKey, Owner, OwnerSlot};
pub use rewrite::{L4Fields, L4Kind, Side, rewrite_endpoint};
pub use types::*;

//! The mfplane NAT engine and its userspace packet views.
//!
//! # Layout
//! - [`wire`]: smoltcp-style zero-copy views (`Packet<T>`, `Repr`) of Ethernet (one
//!   802.1Q tag), IPv4, TCP, UDP and ICMP, for userspace parsing and tests.
//! - [`engine`]: the stateful NAT: sessions, per-bucket port allocation, RFC 4787 /
//!   5382 / 5508 behaviour, fragments, counters, replication records.
//! - [`io`]: packet I/O backends that move whole frames between an interface and the
//!   engine (`AF_PACKET` today; AF_XDP fits behind the same trait).
//! - [`error`]: the crate's `Error` and `Result`.
//!
//! Around the crate: `core/` is the `no_std` packet core (`mfplane-core`: flow hash,
//! bucket rules, checksums, header structs, the header rewrite, BPF map types);
//! `ebpf/` is the worker's XDP program (built by `scripts/build-ebpf.sh`);
//! `tests/` holds the RFC, golden-table, malformed-input, property and
//! `BPF_PROG_TEST_RUN` tests; `benches/engine.rs` measures packets/s; `fuzz/` is
//! the cargo-fuzz target.
//!
//! The header rewrite itself (addresses, ports, incremental checksums) lives in
//! `mfplane_core::rewrite`, shared with the eBPF programs.

pub mod engine;
pub mod error;
pub mod io;
pub mod wire;

pub use error::{Error, Result};

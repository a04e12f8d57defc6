//! The `no_std`, allocation-free packet core of mfplane.
//!
//! One definition of the flow hash, the bucket rules and the header rewrite, compiled
//! into the LB's eBPF program, the worker's eBPF program and the userspace NAT engine,
//! so that the three can never disagree about where a flow belongs.
//!
//! # Layout
//! - [`types`]: the vocabulary shared by every layer (`BucketId`, `SessionKey`, ...).
#![cfg_attr(not(test), no_std)]

pub mod types;

pub use types::*;

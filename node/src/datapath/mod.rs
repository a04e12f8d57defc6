//! The worker data path: the NAT engine fed by packets and kept in step with the
//! replicated state.
//!
//! # Layout
//! - [`nat_worker`]: the I/O-free [`NatWorker`]: ownership from the bucket table and
//!   the lease, import of committed sessions, allocation, expiry. The daemon and the
//!   simulation both drive it.
//! - [`packet_loop`]: the daemon's loop over a packet socket (`AF_PACKET` today),
//!   proposing new sessions and sending translated frames to the next hop.
//! - [`held`]: strict commit mode's frames that wait for their session to commit.
//! - [`interface`]: the data interface's IPv4 address and MAC, read from the kernel.
//! - [`next_hop`]: the default gateway's MAC, when no next hop is configured.

pub mod held;
pub mod interface;
pub mod nat_worker;
pub mod next_hop;
pub mod packet_loop;

pub use nat_worker::{NatWorker, WorkerOptions};
pub use packet_loop::{DatapathConfig, run, serve};

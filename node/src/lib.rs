//! The mfplane worker daemon as a library: a Raft member with a tonic transport, the
//! cluster controller that runs on the leader, the gRPC services, bucket leases,
//! group commit of sessions, metrics and the `mfpctl` logic.
//!
//! Everything that touches the outside world comes in through [`Node::start`]: the
//! listener and dialer ([`transport::Transport`]), the storage ([`store::Storage`]) and
//! the configuration ([`config::NodeConfig`]). The daemon passes real TCP and sled; the
//! turmoil simulation passes simulated TCP and in-memory storage and runs this same
//! code. Time is `tokio::time` throughout, decisions never iterate hash maps, and no
//! thread is spawned, so a simulation is a function of its seed.
//!
//! # Layout
//! - [`config`]: flags, environment and TOML file, validated into `NodeConfig`.
//! - [`transport`]: the byte-stream seam (accepted connections, connector).
//! - [`store`]: the node's view of `mfplane-raft-store`.
//! - [`network`]: client side: cached channels, openraft's network, forwarding.
//! - [`grpc`]: server side: `raft_service` (internal), `admin_service`,
//!   `steering_service`, `sessions_service` (public), `convert` (protobuf <-> domain).
//! - [`member`]: a running member (Raft handle, leases, write path).
//! - [`node`]: startup (init, join, restart), the `NodeHandle`, graceful shutdown.
//! - [`controller`]: bucket placement on the leader; `controller::assignment` is the
//!   pure balanced, minimal-movement assignment.
//! - [`admin_ops`]: join, promote, drain, remove, transfer as the leader runs them.
//! - [`lease`]: bucket leases (owner side and leader side).
//! - [`fences`]: this member's clock on the allocation fences of buckets it took over.
//! - [`proposer`]: `SessionProposer`, group commit of session batches.
//! - [`synthetic`]: synthetic session load through the real proposer (tests, bench).
//! - [`metrics`]: Prometheus series. [`http`]: health, readiness, metrics endpoints.
//! - [`ctl`]: the `mfpctl` command-line client.
//! - [`datapath`]: the worker's packet path: the NAT engine kept in step with the
//!   replicated state (`NatWorker`), fed by `AF_PACKET` in the daemon.
//! - [`lab`]: the netns lab (`mfpctl lab up | drill | down`).
//! - [`local_cluster`]: real member processes on loopback (tests, benchmark, demo).

pub mod admin_ops;
pub mod config;
pub mod controller;
pub mod ctl;
pub mod datapath;
pub mod error;
pub mod fences;
pub mod grpc;
pub mod http;
pub mod lab;
pub mod lease;
pub mod local_cluster;
pub mod member;
pub mod metrics;
pub mod network;
pub mod node;
pub mod proposer;
pub mod store;
pub mod synthetic;
pub mod transport;

pub use config::{Args, NodeConfig};
pub use error::{Error, Result};
pub use node::{Node, NodeHandle};
pub use proposer::{Outcome, SessionProposer};
pub use store::Storage;
pub use transport::{Connector, Transport};

//! The mfplane load balancer: an XDP program that steers every NAT packet to the
//! worker owning its bucket, and the agent that keeps the program's table in step
//! with the cluster.
//!
//! The program (`lb/ebpf`, embedded by `build.rs`) is stateless per flow: it
//! computes a packet's bucket with `mfplane-core` (the same code the workers use) and
//! looks the owner up in a table of two generations. The agent follows the cluster's
//! `Steering.Watch` stream, writes each new table into the inactive generation and
//! flips one word, so no packet ever sees a half-written table; while the cluster is
//! unreachable it keeps the last table.
//!
//! # Layout
//! - [`config`]: the settings, flags over the `--config` file, validated into an
//!   [`AgentConfig`].
//! - [`config_file`]: the `--config` TOML file, key by key, and waiting for it.
//! - [`expect`]: the cluster parameters the configuration pins (bucket bits, external
//!   IPs), checked against every table.
//! - [`iface`]: interface index, MAC and IPv4 lookups.
//! - [`object`]: the embedded eBPF object.
//! - [`datapath`]: the loaded program and its maps (settings, generations, counters,
//!   attach/detach).
//! - [`table`]: the steering table, built from Steering messages at one validated
//!   boundary, and its image as one map generation.
//! - [`external_set`]: the external IPs as the program's exact array-map set.
//! - [`watch`]: the cluster client with failover and resume.
//! - [`metrics`]: Prometheus export.
//! - [`health`]: readiness (attached, table installed) as `/readyz` reports it.
//! - [`http`]: `/healthz`, `/readyz` and `/metrics` on `--http-listen`.
//! - [`agent`]: wires everything together until shutdown.
//! - [`testkit`]: packet builders, the test fixture and the root/object gate for the
//!   tests and the benchmark.
//! - [`error`]: the crate's [`Error`].

pub mod agent;
pub mod config;
pub mod config_file;
pub mod datapath;
pub mod error;
pub mod expect;
pub mod external_set;
pub mod health;
pub mod http;
pub mod iface;
pub mod metrics;
pub mod object;
pub mod table;
pub mod testkit;
pub mod watch;

pub use config::{AgentConfig, Args};
pub use config_file::ConfigFile;
pub use datapath::{CounterSnapshot, Datapath};
pub use error::{Error, Result};
pub use table::SteeringTable;

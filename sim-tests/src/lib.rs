//! Deterministic simulation of a whole mfplane cluster with turmoil, running the real
//! node library (gRPC over simulated TCP, openraft with a seeded RNG, in-memory storage
//! that survives crashes, the controller, leases and group commit) and real NAT
//! data paths, with a simulated LB and thousands of flows, under crashes, partitions,
//! restarts and scale events; an invariant checker proves DESIGN §2.4 on every run.
//!
//! A run is a pure function of its seed: turmoil seeds the network and tokio's RNG
//! (`--cfg tokio_unstable`, set in `.cargo/config.toml`), each member seeds openraft's
//! RNG, time is simulated, and no decision iterates a hash map.
//!
//! # Running
//! - CI: `cargo test -p mfplane-sim-tests` runs scenarios 1-5 on seeds 1..=50 each,
//!   the soak on 5 seeds plus the seeds that once found a bug, the determinism tests
//!   (twice in one process, and against a child process) and the two deliberate-bug
//!   tests.
//! - More seeds: `SIM_SEEDS=500 cargo test -p mfplane-sim-tests --test scenarios
//!   -- --exact s6_soak --nocapture` (add `SIM_SEED_FIRST=251` to split a long run over
//!   processes).
//! - Replay one seed: `SIM_SEED=17 cargo test -p mfplane-sim-tests --test scenarios
//!   -- --exact s4_partitions --nocapture`; a failure prints exactly this command.
//! - `SIM_FLOWS=N` changes the number of flows (default 1000).
//! - `SIM_LOG=mfplane_node=debug` prints the node's logs, stamped with simulated time
//!   (for studying a replayed seed).
//! - With `--nocapture` every seed prints its trace hash (equal across runs and
//!   processes for one seed) and its timings, and every test the p50/max of
//!   each kind of recovery (failover, rebalance, heal).
//!
//! # Layout
//! - [`net`]: host names and ports, the node's transport on turmoil TCP, gRPC channels.
//! - [`packet`]: simulated packets (real IPv4/TCP/UDP bytes) and bursts.
//! - [`world`]: what hosts publish for the checker; the deliberate [`world::Bug`]s.
//! - [`worker`]: a worker host: `Node::start` plus the node's `NatWorker`, driven as
//!   the daemon's packet loop drives it.
//! - [`lb`]: the simulated LB following `Steering.Watch`.
//! - [`traffic`]: the traffic generator (inside hosts and remote servers).
//! - [`operator`]: Admin calls as the Kubernetes operator makes them.
//! - [`checker`]: the invariants and the trace hash.
//! - [`harness`]: one simulated cluster: hosts, faults, operator actions, checks.
//! - [`scenario`]: the scenarios (failover, leader crash, scale, partitions, bounce,
//!   soak).
//! - [`seeds`]: seed selection (`SIM_SEED`, `SIM_SEEDS`) and failure reports.
//!
//! The tests are in `tests/scenarios.rs`.

pub mod checker;
pub mod harness;
pub mod lb;
pub mod net;
pub mod operator;
pub mod packet;
pub mod scenario;
pub mod seeds;
pub mod traffic;
pub mod worker;
pub mod world;

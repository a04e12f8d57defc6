//! The mfplane Kubernetes operator: `nats.mfplane.io` sets the size of a NAT cluster,
//! `nodes.mfplane.io` describes the machines; the operator turns them into Kubernetes
//! objects and drives the cluster's membership through its Admin gRPC API, one change
//! at a time. Placement of flows stays in the cluster's replicated state.
//!
//! # Layout
//! - [`crd`]: the custom resources and the client-side check against their CEL rules.
//! - [`names`]: object names, labels, ports: the single source of every cross-reference.
//! - [`config_file`]: the TOML files the workers and LBs read from the ConfigMap.
//! - [`resources`]: the desired children (Service, StatefulSet, DaemonSet, PDB,
//!   ConfigMap) as pure functions of a Nat.
//! - [`admin`]: the [`admin::ClusterAdmin`] trait over the cluster's Admin API, with the
//!   tonic client (and a fake for tests).
//! - [`membership`]: observation of pods and the pure planner of the next change.
//! - [`status`]: the Nat's status and conditions.
//! - [`controller`]: the reconcilers, their context and `run`.
//! - [`leader_election`]: a `coordination.k8s.io` Lease so two replicas can run.
//! - [`rbac`]: every API call the operator makes, and the ClusterRole derived from it.
//! - [`manifests`]: the `deploy/` YAML, generated from the types above.
//! - [`metrics`]: metric names and helpers.
//! - [`error`]: the error type.

pub mod admin;
pub mod config_file;
pub mod controller;
pub mod crd;
pub mod error;
pub mod leader_election;
pub mod manifests;
pub mod membership;
pub mod metrics;
pub mod names;
pub mod rbac;
pub mod resources;
pub mod status;

#[cfg(test)]
mod fixtures;

pub use error::{AdminCode, Error, Result};

//! Membership orchestration: from what the cluster and the Kubernetes objects say now,
//! decide the next single membership change and the StatefulSet size.
//!
//! The decision is a pure function ([`plan`]) of an [`Observation`]; nothing is
//! remembered between reconciles. Progress lives where it can be observed again after
//! an operator restart: in the cluster (who is a member, learner or voter, draining),
//! in the StatefulSet's size, and in each pod's readiness-gate condition, whose
//! `lastTransitionTime` also times how long a member has been joining or catching up.

mod execute;
mod observe;
mod plan;
#[cfg(test)]
mod simulation;

pub use execute::execute;
pub use observe::{GateCondition, PodObservation, observe_pod};
pub use plan::{
    Change, Degraded, GateReason, GateUpdate, Observation, Plan, Problem, Progress, plan,
};

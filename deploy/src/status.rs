//! Builds a Nat's status from what one reconcile observed and decided. Conditions keep
//! their `lastTransitionTime` while their status is unchanged, so `kubectl describe`
//! tells how long the cluster has been Ready, Scaling or Degraded.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::admin::{Probe, Role};
use crate::crd::{MemberRole, MemberStatus, Nat, NatStatus};
use crate::membership::{Degraded, Plan, PodObservation, Problem, Progress};
use crate::names::{Component, NatNames};

/// Condition types of a Nat.
pub const READY: &str = "Ready";
/// Membership differs from the spec and the operator is changing it.
pub const SCALING: &str = "Scaling";
/// Something needs a person.
pub const DEGRADED: &str = "Degraded";

/// Inputs of [`nat_status`] besides the Nat itself.
#[derive(Debug)]
pub struct StatusInputs<'a> {
    /// The worker pods.
    pub pods: &'a [PodObservation],
    /// What the members said.
    pub probe: &'a Probe,
    /// What the orchestration decided.
    pub plan: &'a Plan,
    /// The change this reconcile made and how it went (`Err` holds the message).
    pub change: Option<Result<String, String>>,
    /// The time of the reconcile.
    pub now: Timestamp,
}

/// The status of `nat` after one reconcile.
pub fn nat_status(nat: &Nat, inputs: &StatusInputs<'_>) -> NatStatus {
    let names = NatNames::of(nat);
    let desired = nat.spec.replicas;
    let view = inputs.probe.view.as_ref();
    let members: Vec<MemberStatus> = view
        .map(|v| {
            v.members
                .iter()
                .map(|m| MemberStatus {
                    name: m.name.clone(),
                    node_id: i64::try_from(m.id.0).unwrap_or(i64::MAX),
                    role: match m.role {
                        Role::Voter => MemberRole::Voter,
                        Role::Learner => MemberRole::Learner,
                    },
                    draining: m.draining,
                    buckets: i32::try_from(m.buckets).unwrap_or(i32::MAX),
                    sessions: i64::try_from(m.sessions).unwrap_or(i64::MAX),
                    reachable: m.reachable,
                })
                .collect()
        })
        .unwrap_or_else(|| {
            // Nobody answered: keep the last known members (marked unreachable). They
            // are also the record that a cluster exists, which stops the operator from
            // ever initializing a second one.
            let previous = nat
                .status
                .as_ref()
                .map(|s| s.members.clone())
                .unwrap_or_default();
            previous
                .into_iter()
                .map(|m| MemberStatus {
                    reachable: false,
                    ..m
                })
                .collect()
        });
    let ours = members
        .iter()
        .filter(|m| names.ordinal_of(&m.name).is_some())
        .count();
    let ready = inputs.pods.iter().filter(|p| p.ready).count();
    let ready = i32::try_from(ready).unwrap_or(i32::MAX);
    let voters = members
        .iter()
        .filter(|m| m.role == MemberRole::Voter && names.ordinal_of(&m.name).is_some())
        .count();

    let mut degraded = inputs.plan.degraded.clone();
    if let Some(Err(e)) = &inputs.change {
        degraded.push(Degraded {
            problem: Problem::ChangeFailed,
            message: format!("the last membership change failed: {e}"),
        });
    }
    let scaling = inputs.plan.progress != Progress::Steady;
    let is_ready = !scaling
        && degraded.is_empty()
        && ready == desired
        && i32::try_from(voters).ok() == Some(desired);

    let previous = nat
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = nat.metadata.generation;
    let cond = |type_: &str, status: bool, reason: &str, message: String| {
        condition(
            previous, type_, status, reason, message, generation, inputs.now,
        )
    };
    let waiting = inputs.plan.waiting.join("; ");
    let conditions = vec![
        cond(
            READY,
            is_ready,
            if is_ready {
                "AllMembersReady"
            } else {
                "NotReady"
            },
            format!("{ready} of {desired} members ready ({voters} voters)"),
        ),
        cond(
            SCALING,
            scaling,
            inputs.plan.progress.as_str(),
            match (&inputs.change, waiting.is_empty()) {
                (Some(Ok(done)), true) => done.clone(),
                (Some(Ok(done)), false) => format!("{done}; {waiting}"),
                (_, false) => waiting,
                (_, true) => "membership matches the spec".to_owned(),
            },
        ),
        cond(
            DEGRADED,
            !degraded.is_empty(),
            if degraded.is_empty() {
                "AsExpected"
            } else {
                degraded[0].problem.as_str()
            },
            if degraded.is_empty() {
                "no problems".to_owned()
            } else {
                degraded
                    .iter()
                    .map(|d| d.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        ),
    ];
    let phase = if !degraded.is_empty() {
        "Degraded"
    } else if scaling {
        "Scaling"
    } else if is_ready {
        "Ready"
    } else {
        "Pending"
    };
    NatStatus {
        observed_generation: generation,
        replicas: i32::try_from(ours).unwrap_or(i32::MAX),
        ready_replicas: ready,
        label_selector: names.selector_string(Component::Worker),
        phase: Some(phase.to_owned()),
        leader: view.and_then(|v| v.leader_member()).map(|l| l.name.clone()),
        epoch: view.map(|v| i64::try_from(v.epoch).unwrap_or(i64::MAX)),
        sessions: view.map(|v| i64::try_from(v.sessions).unwrap_or(i64::MAX)),
        members,
        conditions,
    }
}

/// The status of a Nat whose spec breaks the CRD's rules: nothing else is touched.
pub fn invalid_spec_status(nat: &Nat, message: String, now: Timestamp) -> NatStatus {
    let previous = nat
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = nat.metadata.generation;
    let mut status = nat.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.phase = Some("Degraded".to_owned());
    status.label_selector = NatNames::of(nat).selector_string(Component::Worker);
    status.conditions = vec![
        condition(
            previous,
            READY,
            false,
            "InvalidSpec",
            "the spec is invalid; see Degraded".into(),
            generation,
            now,
        ),
        condition(
            previous,
            SCALING,
            false,
            "InvalidSpec",
            "not acting on an invalid spec".into(),
            generation,
            now,
        ),
        condition(
            previous,
            DEGRADED,
            true,
            "InvalidSpec",
            message,
            generation,
            now,
        ),
    ];
    status
}

/// A condition that keeps the previous `lastTransitionTime` if its status is unchanged.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{ClusterView, MemberView, NodeId};
    use crate::resources::test_nat::nat;

    fn plan(progress: Progress, degraded: Vec<Degraded>) -> Plan {
        Plan {
            statefulset_replicas: 3,
            change: None,
            gates: vec![],
            progress,
            waiting: vec![],
            degraded,
        }
    }

    fn probe(voters: u32) -> Probe {
        Probe {
            view: Some(ClusterView {
                answered_by: "demo-0".into(),
                leader: Some(NodeId(1)),
                epoch: 7,
                last_log_index: 10,
                sessions: 42,
                from_leader: true,
                members: (0..voters)
                    .map(|i| MemberView {
                        id: NodeId(u64::from(i) + 1),
                        name: format!("demo-{i}"),
                        role: Role::Voter,
                        draining: false,
                        buckets: 256 / voters,
                        sessions: 14,
                        matched_index: 10,
                        reachable: true,
                    })
                    .collect(),
            }),
            ..Probe::default()
        }
    }

    fn pods(ready: u32) -> Vec<PodObservation> {
        (0..ready)
            .map(|i| PodObservation {
                ordinal: i,
                name: format!("demo-{i}"),
                running: true,
                ready: true,
                gate: None,
                data_address: None,
            })
            .collect()
    }

    #[test]
    fn a_converged_cluster_is_ready() {
        let n = nat(serde_json::json!({}));
        let (pods, probe, plan) = (pods(3), probe(3), plan(Progress::Steady, vec![]));
        let s = nat_status(
            &n,
            &StatusInputs {
                pods: &pods,
                probe: &probe,
                plan: &plan,
                change: None,
                now: Timestamp::UNIX_EPOCH,
            },
        );
        assert_eq!((s.replicas, s.ready_replicas), (3, 3));
        assert_eq!(s.leader.as_deref(), Some("demo-0"));
        assert_eq!(s.epoch, Some(7));
        assert_eq!(s.phase.as_deref(), Some("Ready"));
        assert_eq!(
            s.label_selector,
            "app.kubernetes.io/component=worker,mfplane.io/nat=demo"
        );
        let ready = s.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(s.observed_generation, Some(1));
    }

    #[test]
    fn members_are_remembered_while_nobody_answers() {
        let mut n = nat(serde_json::json!({}));
        let (pods, plan) = (pods(3), plan(Progress::Steady, vec![]));
        let answered = probe(3);
        let inputs = StatusInputs {
            pods: &pods,
            probe: &answered,
            plan: &plan,
            change: None,
            now: Timestamp::UNIX_EPOCH,
        };
        n.status = Some(nat_status(&n, &inputs));
        let silent = Probe::default();
        let s = nat_status(
            &n,
            &StatusInputs {
                probe: &silent,
                ..inputs
            },
        );
        assert_eq!(s.members.len(), 3);
        assert!(s.members.iter().all(|m| !m.reachable));
        assert_eq!(s.leader, None);
    }

    #[test]
    fn degraded_carries_the_planners_message_and_keeps_transition_times() {
        let mut n = nat(serde_json::json!({}));
        let (pods, probe) = (pods(2), probe(2));
        let msg =
            "member demo-2 (node 3) has not caught up with the leader after 5m: ...".to_owned();
        let plan = plan(
            Progress::ScalingOut,
            vec![Degraded {
                problem: Problem::MemberNotCatchingUp,
                message: msg.clone(),
            }],
        );
        let t0 = Timestamp::from_second(1_000).unwrap();
        let s = nat_status(
            &n,
            &StatusInputs {
                pods: &pods,
                probe: &probe,
                plan: &plan,
                change: None,
                now: t0,
            },
        );
        let d = s.conditions.iter().find(|c| c.type_ == DEGRADED).unwrap();
        assert_eq!(
            (d.status.as_str(), d.reason.as_str(), d.message.as_str()),
            ("True", "MemberNotCatchingUp", msg.as_str())
        );
        assert_eq!(s.phase.as_deref(), Some("Degraded"));
        n.status = Some(s);
        let later = Timestamp::from_second(2_000).unwrap();
        let s = nat_status(
            &n,
            &StatusInputs {
                pods: &pods,
                probe: &probe,
                plan: &plan,
                change: None,
                now: later,
            },
        );
        let d = s.conditions.iter().find(|c| c.type_ == DEGRADED).unwrap();
        assert_eq!(
            d.last_transition_time.0, t0,
            "unchanged status keeps its transition time"
        );
    }
}

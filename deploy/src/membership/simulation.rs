//! Orchestration against the fake Admin API and a small model of the StatefulSet
//! controller (OrderedReady: the next pod is created only when every lower one is
//! Ready, i.e. its readiness gate is True). Each step is one reconcile: probe, plan,
//! change, then the Kubernetes writes. Nothing carries over between steps except the
//! fake cluster and the model's pods, so a restarted operator is just the next step.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{GateCondition, GateReason, Plan, PodObservation, Progress, execute, plan};
use crate::admin::fake::{CatchUp, FakeAdmin};
use crate::admin::{ClusterAdmin, ClusterTarget};
use crate::crd::MembershipPolicy;
use crate::names::NatNames;

struct Kube {
    names: NatNames,
    statefulset: u32,
    pods: BTreeMap<u32, PodObservation>,
    now: Timestamp,
    /// Whether Multus reports data addresses (the operator can Join pods itself).
    multus: bool,
}

impl Kube {
    fn new(multus: bool) -> Self {
        Kube {
            names: NatNames {
                nat: "demo".into(),
                namespace: "edge".into(),
            },
            statefulset: 0,
            pods: BTreeMap::new(),
            now: Timestamp::from_second(1_800_000_000).unwrap(),
            multus,
        }
    }

    /// The StatefulSet controller: delete above the size, create the next pod when
    /// all below it are Ready.
    fn statefulset_controller(&mut self) {
        self.pods.retain(|o, _| *o < self.statefulset);
        let n = u32::try_from(self.pods.len()).unwrap();
        if n < self.statefulset && self.pods.values().all(|p| p.ready) {
            self.pods.insert(
                n,
                PodObservation {
                    ordinal: n,
                    name: self.names.pod(n),
                    running: true,
                    ready: false,
                    gate: None,
                    data_address: self.multus.then(|| {
                        (
                            format!("192.0.2.{}", 10 + n),
                            format!("02:00:00:00:00:{n:02x}"),
                        )
                    }),
                },
            );
        }
    }

    fn target(&self) -> ClusterTarget {
        ClusterTarget {
            nat: self.names.key(),
            members: self
                .pods
                .values()
                .filter(|p| p.running)
                .map(|p| (p.name.clone(), self.names.grpc_address(p.ordinal)))
                .collect(),
        }
    }
}

/// One reconcile. With `crash` the operator dies right after the Admin call: none of
/// the Kubernetes writes of that reconcile happen.
async fn step(
    admin: &FakeAdmin,
    kube: &mut Kube,
    desired: u32,
    policy: &MembershipPolicy,
    crash: bool,
) -> Plan {
    let target = kube.target();
    let probe = admin.probe(&target).await;
    let pods: Vec<PodObservation> = kube.pods.values().cloned().collect();
    let decided = plan(&super::Observation {
        names: &kube.names,
        desired,
        statefulset_replicas: Some(kube.statefulset),
        pods: &pods,
        probe: &probe,
        policy,
        now: kube.now,
        recorded_members: &[],
    });
    if let Some(change) = &decided.change {
        // A failed change is reported and retried by a later step.
        let _ = execute(admin as &dyn ClusterAdmin, &target, change).await;
    }
    kube.now += SignedDuration::from_secs(3);
    if crash {
        return decided;
    }
    kube.statefulset = decided.statefulset_replicas;
    for g in &decided.gates {
        if let Some(p) = kube.pods.values_mut().find(|p| p.name == g.pod) {
            p.gate = Some(GateCondition {
                ready: g.reason == GateReason::Voter,
                reason: g.reason.as_str().into(),
                since: g.since,
            });
            p.ready = g.reason == GateReason::Voter;
        }
    }
    kube.statefulset_controller();
    decided
}

/// Steps until the cluster has `desired` ready voters and nothing to do; panics after
/// `max_steps`. Returns the number of steps.
async fn converge(admin: &FakeAdmin, kube: &mut Kube, desired: u32, max_steps: u32) -> u32 {
    let policy = MembershipPolicy::default();
    for i in 1..=max_steps {
        let p = step(admin, kube, desired, &policy, false).await;
        let voters = admin.voters().len();
        let ready = kube.pods.values().filter(|p| p.ready).count();
        if p.progress == Progress::Steady
            && p.change.is_none()
            && p.gates.is_empty()
            && voters == desired as usize
            && ready == desired as usize
        {
            return i;
        }
    }
    panic!(
        "no convergence to {desired} in {max_steps} steps; calls: {:?}",
        admin.state().calls
    );
}

fn expected_names(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("demo-{i}")).collect()
}

#[tokio::test]
async fn builds_a_cluster_then_scales_out_and_in_one_change_at_a_time() {
    let admin = FakeAdmin::default();
    let mut kube = Kube::new(true);
    converge(&admin, &mut kube, 3, 40).await;
    assert_eq!(admin.voters(), expected_names(3));
    assert_eq!(
        admin.state().calls,
        vec![
            "Initialize demo-0",
            "Join demo-1",
            "Promote demo-1",
            "Join demo-2",
            "Promote demo-2"
        ]
    );
    converge(&admin, &mut kube, 5, 40).await;
    assert_eq!(admin.voters(), expected_names(5));
    admin.state().calls.clear();
    converge(&admin, &mut kube, 3, 40).await;
    assert_eq!(admin.voters(), expected_names(3));
    assert_eq!(
        admin.state().calls,
        vec![
            "Drain demo-4",
            "Remove demo-4",
            "Drain demo-3",
            "Remove demo-3"
        ]
    );
    assert_eq!(kube.statefulset, 3);
    assert_eq!(kube.pods.len(), 3);
}

#[tokio::test]
async fn pods_that_join_themselves_are_promoted_without_a_join_call() {
    let admin = FakeAdmin::default();
    admin.state().self_join = true;
    let mut kube = Kube::new(false);
    converge(&admin, &mut kube, 3, 40).await;
    let calls = admin.state().calls.clone();
    assert!(calls.iter().all(|c| !c.starts_with("Join")), "{calls:?}");
    assert!(
        calls.contains(&"self-join demo-2".to_owned())
            && calls.contains(&"Promote demo-2".to_owned()),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_restart_at_every_point_of_a_scale_in_and_out_still_converges() {
    // Crash after the Admin call of step k, for every k of a 3 -> 5 -> 2 run: the
    // replacement operator starts from what the cluster and the objects say.
    for crash_at in 0..30 {
        let admin = FakeAdmin::default();
        let mut kube = Kube::new(true);
        converge(&admin, &mut kube, 3, 40).await;
        let policy = MembershipPolicy::default();
        let mut steps = 0;
        for (desired, rounds) in [(5, 20), (2, 20)] {
            for _ in 0..rounds {
                step(&admin, &mut kube, desired, &policy, steps == crash_at).await;
                steps += 1;
            }
        }
        converge(&admin, &mut kube, 2, 40).await;
        assert_eq!(
            admin.voters(),
            expected_names(2),
            "crash at step {crash_at}"
        );
        assert!(admin.learners().is_empty(), "crash at step {crash_at}");
        let calls = admin.state().calls.clone();
        let removes = calls.iter().filter(|c| c.starts_with("Remove")).count();
        assert_eq!(
            removes, 3,
            "each of demo-2..4 removed exactly once (crash at {crash_at}): {calls:?}"
        );
    }
}

#[tokio::test]
async fn a_join_that_already_happened_is_not_an_error() {
    // The operator joined demo-1 and crashed before writing anything; the restarted
    // operator sees a learner and carries on (and a Join repeated is harmless).
    let admin = FakeAdmin::default();
    let mut kube = Kube::new(true);
    converge(&admin, &mut kube, 1, 10).await;
    let policy = MembershipPolicy::default();
    kube.statefulset = 2;
    kube.statefulset_controller();
    let p = step(&admin, &mut kube, 2, &policy, true).await;
    assert!(matches!(p.change, Some(super::Change::Join(_))));
    let repeat = super::Change::Join(match p.change {
        Some(super::Change::Join(r)) => r,
        _ => unreachable!(),
    });
    let done = execute(&admin, &kube.target(), &repeat).await.unwrap();
    assert!(done.contains("already registered"), "{done}");
    converge(&admin, &mut kube, 2, 10).await;
}

#[tokio::test]
async fn a_member_that_never_catches_up_degrades_with_a_clear_message() {
    let admin = FakeAdmin::default();
    admin
        .state()
        .catch_up
        .insert("demo-2".into(), CatchUp::Never);
    let mut kube = Kube::new(true);
    let policy = MembershipPolicy {
        catch_up_timeout_seconds: 60,
        max_catch_up_lag: 10,
    };
    let mut last = None;
    for _ in 0..40 {
        last = Some(step(&admin, &mut kube, 3, &policy, false).await);
    }
    let p = last.unwrap();
    assert_eq!(
        admin.voters(),
        expected_names(2),
        "demo-2 is never promoted"
    );
    assert_eq!(admin.learners(), vec!["demo-2"]);
    assert_eq!(p.change, None);
    assert_eq!(p.degraded.len(), 1, "{:?}", p.degraded);
    let msg = &p.degraded[0].message;
    assert!(
        msg.starts_with("member demo-2 (node 3) has not caught up with the leader after "),
        "{msg}"
    );
    assert!(msg.contains("check its network path to demo-0"), "{msg}");
}

#[tokio::test]
async fn a_member_that_lost_its_volume_is_replaced() {
    let admin = FakeAdmin::default();
    let mut kube = Kube::new(true);
    converge(&admin, &mut kube, 3, 40).await;
    admin.wipe("demo-1");
    kube.pods.get_mut(&1).unwrap().gate = None;
    kube.pods.get_mut(&1).unwrap().ready = false;
    converge(&admin, &mut kube, 3, 40).await;
    let calls = admin.state().calls.clone();
    let tail: Vec<&str> = calls
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, vec!["Remove demo-1", "Join demo-1", "Promote demo-1"]);
    let mut voters = admin.voters();
    voters.sort();
    assert_eq!(voters, expected_names(3));
}

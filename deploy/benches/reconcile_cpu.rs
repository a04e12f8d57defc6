//! CPU cost of the pure parts of one Nat reconcile: checking the spec against the
//! CRD's CEL rules, building the desired objects, and planning membership for a
//! 64-member cluster. Prints time per call; run with
//! `cargo bench -p mfplane-operator --bench reconcile_cpu`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use mfplane_operator::admin::{ClusterView, MemberView, NodeId, Probe, Role};
use mfplane_operator::crd::{MembershipPolicy, validate_nat};
use mfplane_operator::manifests::sample_nat;
use mfplane_operator::membership::{Observation, PodObservation, plan};
use mfplane_operator::names::NatNames;
use mfplane_operator::resources;

fn measure(what: &str, mut f: impl FnMut()) {
    // Warm up, then run for about a second.
    for _ in 0..10 {
        f();
    }
    let mut n = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        f();
        n += 1;
    }
    let per = start.elapsed() / n;
    println!("{what:<48} {per:>12.2?} per call ({n} calls)");
}

fn main() {
    let mut nat = sample_nat().expect("sample");
    nat.metadata.uid = Some("00000000-0000-4000-8000-000000000000".into());
    measure("validate_nat (CEL rules of the CRD)", || {
        black_box(validate_nat(black_box(&nat), None).is_ok());
    });
    measure("desired objects (sts, svc, pdb, ds, configmap)", || {
        black_box(resources::statefulset(&nat, 3).is_ok());
        black_box(resources::service(&nat).is_ok());
        black_box(resources::pdb(&nat, 3).is_ok());
        black_box(resources::lb_daemonset(&nat).is_ok());
        black_box(resources::configmap(&nat, &[]).is_ok());
    });

    let names = NatNames {
        nat: "demo".into(),
        namespace: "edge".into(),
    };
    let members = 64u32;
    let pods: Vec<PodObservation> = (0..members)
        .map(|i| PodObservation {
            ordinal: i,
            name: names.pod(i),
            running: true,
            ready: true,
            gate: None,
            data_address: None,
        })
        .collect();
    let probe = Probe {
        view: Some(ClusterView {
            answered_by: "demo-0".into(),
            leader: Some(NodeId(1)),
            epoch: 9,
            last_log_index: 1000,
            sessions: 0,
            from_leader: true,
            members: (0..members)
                .map(|i| MemberView {
                    id: NodeId(u64::from(i) + 1),
                    name: names.pod(i),
                    role: Role::Voter,
                    draining: false,
                    buckets: 4,
                    sessions: 0,
                    matched_index: 1000,
                    reachable: true,
                })
                .collect(),
        }),
        ..Probe::default()
    };
    let policy = MembershipPolicy::default();
    let now = Timestamp::now();
    measure("plan (64 members, scale-in to 48)", || {
        black_box(plan(&Observation {
            names: &names,
            desired: 48,
            statefulset_replicas: Some(members),
            pods: &pods,
            probe: &probe,
            policy: &policy,
            now,
            recorded_members: &[],
        }));
    });
}

//! Reconcile scenarios against the scripted mock API server: every request the
//! reconcilers send, in order, with their bodies checked where they carry a decision.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::{WATCHED, reconcile_nat, reconcile_node};
use crate::admin::fake::FakeAdmin;
use crate::controller::Context;
use crate::crd::{Nat, Node};
use crate::fixtures::{Exchange, Reply, list, not_found, to_json, with_data_address, worker_pod};
use crate::names::{FIELD_MANAGER, NAT_FINALIZER, NODE_FINALIZER, NODE_LABEL_MANAGER};
use crate::rbac::request_attributes;
use crate::resources::test_nat;

const NAT: &str = "/apis/mfplane.io/v1alpha1/namespaces/edge/nats/demo";
const STS: &str = "/apis/apps/v1/namespaces/edge/statefulsets/demo";
const PODS: &str = "/api/v1/namespaces/edge/pods";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/edge/events";

fn nat(replicas: i32) -> Nat {
    let mut n = test_nat::nat(json!({ "replicas": replicas }));
    n.metadata.finalizers = Some(vec![NAT_FINALIZER.to_owned()]);
    n.metadata.resource_version = Some("10".into());
    n
}

fn sts(replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "demo", "namespace": "edge"},
           "spec": {"replicas": replicas, "serviceName": "demo", "selector": {"matchLabels": {}},
                    "template": {"metadata": {}, "spec": {"containers": []}}}})
}

/// The reads every reconcile starts with.
fn reads(sts_now: Option<Value>, pods: Vec<Value>) -> Vec<Exchange> {
    vec![
        Exchange::new(
            Method::GET,
            STS,
            sts_now.map_or_else(not_found, |s| Reply::Json(StatusCode::OK, s)),
        ),
        Exchange::new(
            Method::GET,
            PODS,
            Reply::Json(StatusCode::OK, list("PodList", pods)),
        ),
        Exchange::new(
            Method::GET,
            "/apis/mfplane.io/v1alpha1/nodes",
            Reply::Json(StatusCode::OK, list("NodeList", vec![])),
        ),
    ]
}

/// The server-side applies of the children, asserting the StatefulSet's size.
fn applies(sts_replicas: i64) -> Vec<Exchange> {
    vec![
        Exchange::new(
            Method::PATCH,
            "/api/v1/namespaces/edge/configmaps/demo-config",
            Reply::Echo,
        )
        .check(|b| {
            assert!(
                b["data"]["node.toml"]
                    .as_str()
                    .is_some_and(|t| t.contains("bucket_bits = 8"))
            )
        }),
        Exchange::new(
            Method::PATCH,
            "/api/v1/namespaces/edge/services/demo",
            Reply::Echo,
        )
        .check(|b| assert_eq!(b["spec"]["clusterIP"], "None")),
        Exchange::new(
            Method::PATCH,
            "/apis/policy/v1/namespaces/edge/poddisruptionbudgets/demo",
            Reply::Echo,
        ),
        Exchange::new(Method::PATCH, STS, Reply::Echo).check(move |b| {
            assert_eq!(b["spec"]["replicas"], sts_replicas, "StatefulSet size");
            assert_eq!(b["metadata"]["ownerReferences"][0]["kind"], "Nat");
        }),
        Exchange::new(
            Method::PATCH,
            "/apis/apps/v1/namespaces/edge/daemonsets/demo-lb",
            Reply::Echo,
        ),
    ]
}

fn event(reason: &'static str) -> Exchange {
    Exchange::new(Method::POST, EVENTS, Reply::Echo)
        .check(move |b| assert_eq!(b["reason"], reason, "event {b}"))
}

fn gate(ordinal: u32, status: &'static str, reason: &'static str) -> Exchange {
    Exchange::new(
        Method::PATCH,
        format!("{PODS}/demo-{ordinal}/status"),
        Reply::Json(StatusCode::OK, worker_pod(ordinal, Some((status, reason)))),
    )
    .check(move |b| {
        let c = &b["status"]["conditions"][0];
        assert_eq!(
            (
                c["type"].as_str(),
                c["status"].as_str(),
                c["reason"].as_str()
            ),
            (Some("mfplane.io/raft-voter"), Some(status), Some(reason))
        );
    })
}

fn status(n: &Nat, check: impl FnOnce(&Value) + Send + 'static) -> Exchange {
    Exchange::new(
        Method::PATCH,
        format!("{NAT}/status"),
        Reply::WithStatus(to_json(n)),
    )
    .check(move |b| {
        assert_eq!(
            (b["apiVersion"].as_str(), b["kind"].as_str()),
            (Some("mfplane.io/v1alpha1"), Some("Nat")),
            "SSA needs the type"
        );
        check(&b["status"]);
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

async fn run_nat(n: Nat, ctx: &Arc<Context>) -> Action {
    reconcile_nat(Arc::new(n), ctx.clone())
        .await
        .expect("reconcile")
}

async fn run_node(node: Node, ctx: Arc<Context>) {
    reconcile_node(Arc::new(node), ctx)
        .await
        .expect("reconcile");
}

/// A `Node` resource `name` of `role`, with the operator's finalizer.
fn node(name: &str, role: &str) -> Node {
    let spec = serde_json::from_value(json!({ "role": role })).expect("spec");
    let mut node = Node::new(name, spec);
    node.metadata.finalizers = Some(vec![NODE_FINALIZER.to_owned()]);
    node
}

/// A deletion timestamp: the object is being deleted.
fn deleting() -> Option<Time> {
    Some(Time(k8s_openapi::jiff::Timestamp::now()))
}

/// The read of machine `name` and the patch of its labels, which must be `labels`.
fn machine_labels(name: &str, labels: Value) -> [Exchange; 2] {
    let path = format!("/api/v1/nodes/{name}");
    let core = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    [
        Exchange::new(
            Method::GET,
            path.clone(),
            Reply::Json(StatusCode::OK, core.clone()),
        ),
        Exchange::new(Method::PATCH, path, Reply::Json(StatusCode::OK, core))
            .check(move |b| assert_eq!(b["metadata"]["labels"], labels, "machine labels")),
    ]
}

/// The list of the pods on any machine (the field selector is checked by the caller).
fn pods_on_machine(pods: Vec<Value>) -> Exchange {
    Exchange::new(
        Method::GET,
        "/api/v1/pods",
        Reply::Json(StatusCode::OK, list("PodList", pods)),
    )
}

/// The status patch of `node`.
fn node_status(node: &Node, check: impl FnOnce(&Value) + Send + 'static) -> Exchange {
    Exchange::new(
        Method::PATCH,
        format!(
            "/apis/mfplane.io/v1alpha1/nodes/{}/status",
            node.metadata.name.as_deref().expect("name")
        ),
        Reply::WithStatus(to_json(node)),
    )
    .check(move |b| check(&b["status"]))
}

async fn finish(
    server: tokio::task::JoinHandle<Vec<crate::fixtures::Seen>>,
) -> Vec<crate::fixtures::Seen> {
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("the scenario timed out: a request never came")
        .expect("scenario")
}

#[tokio::test]
async fn a_new_nat_gets_the_finalizer_first() {
    let (ctx, api) = Context::test(FakeAdmin::default());
    let mut n = nat(3);
    n.metadata.finalizers = None;
    let mut with = n.clone();
    with.metadata.finalizers = Some(vec![NAT_FINALIZER.to_owned()]);
    let server = api.run(vec![
        Exchange::new(
            Method::PATCH,
            NAT,
            Reply::Json(StatusCode::OK, to_json(&with)),
        )
        .check(|b| {
            let ops = b.as_array().expect("a JSON patch");
            assert!(
                ops.iter()
                    .any(|op| op["op"] == "add" && op["value"] == json!([NAT_FINALIZER])),
                "{b}"
            );
        }),
    ]);
    assert_eq!(run_nat(n, &ctx).await, Action::await_change());
    finish(server).await;
}

#[tokio::test]
async fn create_builds_every_child_and_reports_initializing() {
    let (ctx, api) = Context::test(FakeAdmin::default());
    let n = nat(3);
    let mut script = reads(None, vec![]);
    script.extend(applies(3).into_iter().map(Exchange::creating));
    script.push(status(&n, |s| {
        assert_eq!(
            s["labelSelector"],
            "app.kubernetes.io/component=worker,mfplane.io/nat=demo"
        );
        assert_eq!(s["replicas"], 0);
        assert_eq!(condition(s, "Scaling")["reason"], "Initializing");
        assert_eq!(condition(s, "Ready")["status"], "False");
        assert_eq!(s["observedGeneration"], 1);
    }));
    let server = api.run(script);
    run_nat(n, &ctx).await;
    let seen = finish(server).await;
    // Every write of the children and the status is a server-side apply that takes
    // the fields for the operator's field manager.
    let writes: Vec<_> = seen.iter().filter(|r| r.method == Method::PATCH).collect();
    assert_eq!(writes.len(), 6, "five children and the status");
    for w in writes {
        assert!(
            w.apply
                && w.query.contains(&format!("fieldManager={FIELD_MANAGER}"))
                && w.query.contains("force=true"),
            "{} {}?{}",
            w.method,
            w.path,
            w.query
        );
    }
}

#[tokio::test]
async fn the_first_running_pod_initializes_the_cluster() {
    let fake = FakeAdmin::default();
    let (ctx, api) = Context::test(fake.clone());
    let n = nat(3);
    let mut script = reads(Some(sts(3)), vec![worker_pod(0, None)]);
    script.extend(applies(3));
    script.push(event("Initialize"));
    script.push(gate(0, "False", "Joining"));
    script.push(status(&n, |s| {
        assert_eq!(condition(s, "Scaling")["status"], "True")
    }));
    let server = api.run(script);
    assert_eq!(
        run_nat(n, &ctx).await,
        Action::requeue(Duration::from_secs(1))
    );
    finish(server).await;
    assert_eq!(fake.voters(), vec!["demo-0"]);
}

#[tokio::test]
async fn scale_out_grows_the_statefulset_then_joins_promotes_and_opens_the_gate() {
    // 2 -> 3 members. Each reconcile runs in a fresh operator (new context, new
    // client): one restarted between the steps carries on from what it observes.
    let fake = FakeAdmin::with_members(&["demo-0", "demo-1"], &[]);
    let n = nat(3);
    let pods = |new: Option<Option<(&str, &str)>>| {
        let mut p = vec![
            worker_pod(0, Some(("True", "Voter"))),
            worker_pod(1, Some(("True", "Voter"))),
        ];
        if let Some(gate) = new {
            p.push(with_data_address(
                worker_pod(2, gate),
                "192.0.2.12",
                "02:00:00:00:00:02",
            ));
        }
        p
    };
    // 1. The Nat asks for 3: the StatefulSet grows first; the cluster is untouched.
    let mut grow = reads(Some(sts(2)), pods(None));
    grow.extend(applies(3));
    grow.push(status(&n, |s| {
        let scaling = condition(s, "Scaling");
        assert_eq!(scaling["reason"], "ScalingOut");
        assert!(
            scaling["message"]
                .as_str()
                .is_some_and(|m| m.contains("waiting for pod demo-2 to be created")),
            "{s}"
        );
        assert_eq!(s["replicas"], 2);
    }));
    // 2. demo-2 runs: join it as a learner at its Multus data address.
    let mut join = reads(Some(sts(3)), pods(Some(None)));
    join.extend(applies(3));
    join.push(event("Join"));
    join.push(gate(2, "False", "Joining"));
    join.push(status(&n, |s| {
        assert_eq!(condition(s, "Scaling")["status"], "True");
    }));
    // 3. It caught up with the leader's log: promote it.
    let joining = || pods(Some(Some(("False", "Joining"))));
    let mut promote = reads(Some(sts(3)), joining());
    promote.extend(applies(3));
    promote.push(event("Promote"));
    promote.push(status(&n, |s| {
        assert_eq!(
            s["replicas"], 3,
            "the learner it observed counts as a member"
        );
        assert!(
            condition(s, "Scaling")["message"]
                .as_str()
                .is_some_and(|m| m.contains("promoted demo-2")),
            "{s}"
        );
    }));
    // 4. A voter now: its gate opens and there is nothing else to do.
    let mut open = reads(Some(sts(3)), joining());
    open.extend(applies(3));
    open.push(gate(2, "True", "Voter"));
    open.push(status(&n, |s| assert_eq!(s["leader"], "demo-0")));
    for script in [grow, join, promote, open] {
        let (ctx, api) = Context::test(fake.clone());
        let server = api.run(script);
        run_nat(n.clone(), &ctx).await;
        finish(server).await;
    }
    let state = fake.state();
    assert_eq!(state.calls, vec!["Join demo-2", "Promote demo-2"]);
    let joined = &state.joined[0];
    assert_eq!(
        (
            joined.name.as_str(),
            joined.raft_addr.as_str(),
            joined.data_ip.as_str(),
            joined.data_mac.as_str()
        ),
        (
            "demo-2",
            "demo-2.demo.edge.svc:7700",
            "192.0.2.12",
            "02:00:00:00:00:02"
        )
    );
    drop(state);
    assert_eq!(fake.voters(), vec!["demo-0", "demo-1", "demo-2"]);
}

#[tokio::test]
async fn scale_in_drains_removes_then_lowers_the_statefulset() {
    // Each reconcile runs in a fresh operator (new context, new client): an operator
    // restarted between the steps carries on from what the cluster and objects say.
    let fake = FakeAdmin::with_members(&["demo-0", "demo-1", "demo-2"], &[]);
    let n = nat(2);
    let pods = |leaving: bool| {
        let g = if leaving {
            ("False", "Leaving")
        } else {
            ("True", "Voter")
        };
        vec![
            worker_pod(0, Some(("True", "Voter"))),
            worker_pod(1, Some(("True", "Voter"))),
            worker_pod(2, Some(g)),
        ]
    };
    let mut drain = reads(Some(sts(3)), pods(false));
    drain.extend(applies(3));
    drain.push(event("Drain"));
    drain.push(gate(2, "False", "Leaving"));
    drain.push(status(&n, |s| {
        assert_eq!(condition(s, "Scaling")["reason"], "ScalingIn")
    }));
    let mut remove = reads(Some(sts(3)), pods(true));
    remove.extend(applies(3));
    remove.push(event("Remove"));
    remove.push(status(&n, |_| {}));
    let mut lower = reads(Some(sts(3)), pods(true));
    lower.extend(applies(2));
    lower.push(status(&n, |s| assert_eq!(s["replicas"], 2)));
    for script in [drain, remove, lower] {
        let (ctx, api) = Context::test(fake.clone());
        let server = api.run(script);
        run_nat(n.clone(), &ctx).await;
        finish(server).await;
    }
    assert_eq!(fake.state().calls, vec!["Drain demo-2", "Remove demo-2"]);
    assert_eq!(fake.voters(), vec!["demo-0", "demo-1"]);
}

#[tokio::test]
async fn a_steady_cluster_reports_ready_with_members_leader_and_epoch() {
    let fake = FakeAdmin::with_members(&["demo-0", "demo-1", "demo-2"], &[]);
    let (ctx, api) = Context::test(fake);
    let n = nat(3);
    let pods = (0..3)
        .map(|i| worker_pod(i, Some(("True", "Voter"))))
        .collect();
    let mut script = reads(Some(sts(3)), pods);
    script.extend(applies(3));
    script.push(status(&n, |s| {
        assert_eq!(
            (s["replicas"].as_i64(), s["readyReplicas"].as_i64()),
            (Some(3), Some(3))
        );
        assert_eq!(s["leader"], "demo-0");
        assert_eq!(s["phase"], "Ready");
        assert_eq!(s["epoch"], 1);
        assert_eq!(s["members"].as_array().map(Vec::len), Some(3));
        assert_eq!(s["members"][0]["role"], "Voter");
        assert_eq!(condition(s, "Ready")["status"], "True");
        assert_eq!(condition(s, "Degraded")["status"], "False");
    }));
    let server = api.run(script);
    assert_eq!(
        run_nat(n, &ctx).await,
        Action::requeue(super::nat::IDLE_REQUEUE)
    );
    finish(server).await;
}

#[tokio::test]
async fn a_learner_that_never_catches_up_turns_the_nat_degraded() {
    let fake = FakeAdmin::default();
    fake.state()
        .catch_up
        .insert("demo-1".into(), crate::admin::fake::CatchUp::Never);
    fake.add_members(&["demo-0"], &["demo-1"]);
    let (ctx, api) = Context::test(fake.clone());
    let mut n = nat(2);
    n.spec.membership.max_catch_up_lag = 10;
    // demo-1 has been catching up since 2020 (its gate condition says so).
    let pods = vec![
        worker_pod(0, Some(("True", "Voter"))),
        worker_pod(1, Some(("False", "CatchingUp"))),
    ];
    let mut script = reads(Some(sts(2)), pods);
    script.extend(applies(2));
    script.push(status(&n, |s| {
        let d = condition(s, "Degraded");
        assert_eq!(
            (d["status"].as_str(), d["reason"].as_str()),
            (Some("True"), Some("MemberNotCatchingUp"))
        );
        let m = d["message"].as_str().unwrap_or_default();
        assert!(
            m.starts_with("member demo-1 (node 2) has not caught up with the leader after "),
            "{m}"
        );
        assert!(m.contains("check its network path to demo-0"), "{m}");
        assert_eq!(s["phase"], "Degraded");
        assert_eq!(s["readyReplicas"], 1);
    }));
    let server = api.run(script);
    run_nat(n, &ctx).await;
    finish(server).await;
    assert!(
        fake.state().calls.is_empty(),
        "never promoted: {:?}",
        fake.state().calls
    );
}

#[tokio::test]
async fn a_status_conflict_is_retried() {
    let fake = FakeAdmin::with_members(&["demo-0"], &[]);
    let (ctx, api) = Context::test(fake);
    let n = nat(1);
    let mut script = reads(Some(sts(1)), vec![worker_pod(0, Some(("True", "Voter")))]);
    script.extend(applies(1));
    script.push(Exchange::new(
        Method::PATCH,
        format!("{NAT}/status"),
        Reply::Error(StatusCode::CONFLICT, "Conflict"),
    ));
    script.push(status(&n, |s| assert_eq!(s["phase"], "Ready")));
    let server = api.run(script);
    run_nat(n, &ctx).await;
    finish(server).await;
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_nothing_is_touched() {
    let (ctx, api) = Context::test(FakeAdmin::default());
    let mut n = nat(3);
    n.spec.bucket_bits = 13;
    n.spec.inside_sources = vec!["10.0.0/8".into()];
    let server = api.run(vec![
        Exchange::new(Method::POST, EVENTS, Reply::Echo).check(|b| {
            assert_eq!(b["reason"], "InvalidSpec");
            assert_eq!(b["type"], "Warning");
        }),
        status(&n, |s| {
            let d = condition(s, "Degraded");
            assert_eq!(
                (d["status"].as_str(), d["reason"].as_str()),
                (Some("True"), Some("InvalidSpec"))
            );
            let m = d["message"].as_str().unwrap_or_default();
            assert!(
                m.contains("spec.bucketBits: 13 is out of range")
                    && m.contains("spec.insideSources: 10.0.0/8"),
                "{m}"
            );
        }),
    ]);
    assert_eq!(run_nat(n, &ctx).await, Action::await_change());
    finish(server).await;
}

#[tokio::test]
async fn a_repeated_warning_is_counted_on_one_event() {
    // The same refusal at every reconcile must not flood the namespace with events:
    // the second one patches the first's series count.
    let (ctx, api) = Context::test(FakeAdmin::default());
    let mut n = nat(3);
    n.spec.bucket_bits = 13;
    let server = api.run(vec![
        event("InvalidSpec"),
        status(&n, |_| {}),
        Exchange::within(Method::PATCH, EVENTS, Reply::Echo).check(|b| {
            assert_eq!(
                (b["reason"].as_str(), b["series"]["count"].as_i64()),
                (Some("InvalidSpec"), Some(2)),
                "{b}"
            );
        }),
        status(&n, |_| {}),
    ]);
    run_nat(n.clone(), &ctx).await;
    run_nat(n, &ctx).await;
    let seen = finish(server).await;
    assert!(
        seen[2].path.starts_with(&format!("{EVENTS}/demo.")),
        "the first event is patched: {}",
        seen[2].path
    );
}

#[tokio::test]
async fn run_lists_and_watches_exactly_what_watched_says() {
    let (ctx, api) = Context::test(FakeAdmin::default());
    // Quiet for a second: every watch has been asked for, even on a loaded machine.
    let server = api.serve_empty(Duration::from_secs(1), Duration::from_secs(10));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controllers = tokio::spawn(super::run(ctx, async move {
        let _ = stopped.await;
    }));
    let seen = server.await.expect("the mock API server");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), controllers)
        .await
        .expect("the controllers stop on shutdown")
        .expect("the controllers' task")
        .expect("run");
    let of_verb = |verb: &str| -> BTreeSet<(String, String)> {
        seen.iter()
            .filter_map(|r| request_attributes(r.method.as_str(), &r.path, &r.query))
            .filter(|a| a.verb == verb)
            .map(|a| (a.group, a.resource))
            .collect()
    };
    let watched: BTreeSet<(String, String)> = WATCHED
        .iter()
        .map(|(g, r)| ((*g).to_owned(), (*r).to_owned()))
        .collect();
    assert_eq!(of_verb("watch"), watched);
    assert_eq!(of_verb("list"), watched, "each watch starts with a list");
}

#[tokio::test]
async fn delete_removes_the_volumes_then_the_finalizer() {
    let (ctx, api) = Context::test(FakeAdmin::default());
    let mut n = nat(3);
    n.metadata.deletion_timestamp = deleting();
    let server = api.run(vec![
        Exchange::new(
            Method::DELETE,
            "/api/v1/namespaces/edge/persistentvolumeclaims",
            Reply::Json(StatusCode::OK, list("PersistentVolumeClaimList", vec![])),
        ),
        event("Deleted"),
        Exchange::new(Method::PATCH, NAT, Reply::Json(StatusCode::OK, to_json(&n))).check(|b| {
            let ops = b.as_array().expect("a JSON patch");
            assert!(
                ops.iter()
                    .any(|op| op["op"] == "remove" && op["path"] == "/metadata/finalizers/0"),
                "{b}"
            );
        }),
    ]);
    let seen = {
        run_nat(n, &ctx).await;
        finish(server).await
    };
    assert!(
        seen[0].query.contains("labelSelector="),
        "only this Nat's volumes: {}",
        seen[0].query
    );
}

#[tokio::test]
async fn a_node_labels_its_machine_and_reports_its_functions() {
    let (ctx, api) = Context::test(FakeAdmin::default());
    let mut node = node("lb-1", "lb");
    node.metadata.generation = Some(2);
    let lb_pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "demo-lb-x7", "namespace": "edge", "labels": {"mfplane.io/nat": "demo", "app.kubernetes.io/component": "lb"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let mut script = Vec::from(machine_labels("lb-1", json!({"mfplane.io/lb": "true"})));
    script.push(pods_on_machine(vec![lb_pod]));
    script.push(node_status(&node, |s| {
        assert_eq!(
            s["functions"][0],
            json!({"kind": "lb", "nat": "edge/demo", "pod": "demo-lb-x7", "ready": true})
        );
        assert_eq!(s["summary"], "lb demo-lb-x7 (ready)");
        assert_eq!(s["conditions"][0]["status"], "True");
    }));
    let server = api.run(script);
    run_node(node, ctx).await;
    let seen = finish(server).await;
    assert!(
        seen[1]
            .query
            .contains(&format!("fieldManager={NODE_LABEL_MANAGER}")),
        "{}",
        seen[1].query
    );
    assert!(
        seen[2].query.contains("fieldSelector=spec.nodeName%3Dlb-1"),
        "{}",
        seen[2].query
    );
}

#[tokio::test]
async fn a_node_for_a_missing_machine_is_never_created() {
    let (ctx, api) = Context::test(FakeAdmin::default());
    let node = node("typo", "worker");
    let server = api.run(vec![
        Exchange::new(Method::GET, "/api/v1/nodes/typo", not_found()),
        pods_on_machine(vec![]),
        node_status(&node, |s| {
            let c = &s["conditions"][0];
            assert_eq!(
                (c["status"].as_str(), c["reason"].as_str()),
                (Some("False"), Some("NoSuchNode"))
            );
        }),
    ]);
    run_node(node, ctx).await;
    finish(server).await;
}

#[tokio::test]
async fn deleting_a_node_takes_the_label_off() {
    let (ctx, api) = Context::test(FakeAdmin::default());
    let mut node = node("lb-1", "lb");
    node.metadata.deletion_timestamp = deleting();
    // An empty set releases the operator's labels.
    let mut script = Vec::from(machine_labels("lb-1", json!({})));
    script.push(Exchange::new(
        Method::PATCH,
        "/apis/mfplane.io/v1alpha1/nodes/lb-1",
        Reply::Json(StatusCode::OK, to_json(&node)),
    ));
    let server = api.run(script);
    run_node(node, ctx).await;
    finish(server).await;
}

/// Every scenario of this module, for the check that each permission the RBAC grants
/// is used by one of them (`rbac::tests`).
pub(crate) const ALL: &[fn()] = &[
    a_new_nat_gets_the_finalizer_first,
    create_builds_every_child_and_reports_initializing,
    the_first_running_pod_initializes_the_cluster,
    scale_out_grows_the_statefulset_then_joins_promotes_and_opens_the_gate,
    scale_in_drains_removes_then_lowers_the_statefulset,
    a_steady_cluster_reports_ready_with_members_leader_and_epoch,
    a_learner_that_never_catches_up_turns_the_nat_degraded,
    a_status_conflict_is_retried,
    an_invalid_spec_is_reported_and_nothing_is_touched,
    a_repeated_warning_is_counted_on_one_event,
    run_lists_and_watches_exactly_what_watched_says,
    delete_removes_the_volumes_then_the_finalizer,
    a_node_labels_its_machine_and_reports_its_functions,
    a_node_for_a_missing_machine_is_never_created,
    deleting_a_node_takes_the_label_off,
];

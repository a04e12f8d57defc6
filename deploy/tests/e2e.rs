//! End to end against a real cluster. Ignored by default; run with
//! `KUBECONFIG=... cargo test -p mfplane-operator --test e2e -- --ignored` after
//! `kubectl apply -f deploy/crds/`. It creates and deletes its own namespace.
//!
//! Without worker images the members never answer, so this checks the Kubernetes half:
//! the finalizer, every child with its owner reference, the status, `/scale` driving
//! the StatefulSet, the CRD's rules refusing bad specs (and a scale to 0) by field
//! name, and deletion through the finalizer.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use mfplane_operator::admin::GrpcAdmin;
use mfplane_operator::controller::{Context, run};
use mfplane_operator::manifests::sample_nat;

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..120 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and install deploy/crds first"]
async fn a_nat_is_reconciled_scaled_and_deleted_in_a_real_cluster() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "set KUBECONFIG to a test cluster to run this test"
    );
    let client = Client::try_default()
        .await
        .expect("a client from KUBECONFIG");
    let ns_name = format!("mfplane-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(ns_name.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the test namespace");

    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(GrpcAdmin::default()),
        Some("e2e".into()),
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controllers = tokio::spawn(run(ctx, async move {
        let _ = stop_rx.await;
    }));

    let result = tokio::spawn({
        let client = client.clone();
        let ns_name = ns_name.clone();
        async move {
            let nats: Api<mfplane_operator::crd::Nat> = Api::namespaced(client.clone(), &ns_name);
            let mut nat = sample_nat().unwrap();
            nat.metadata.namespace = Some(ns_name.clone());
            nat.spec.network.attachments.clear();
            nats.create(&PostParams::default(), &nat)
                .await
                .expect("create the Nat");
            let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns_name);
            let s = eventually("the StatefulSet", || async {
                sts.get_opt("demo").await.ok().flatten()
            })
            .await;
            assert_eq!(s.metadata.owner_references.unwrap()[0].kind, "Nat");
            assert!(
                Api::<Service>::namespaced(client.clone(), &ns_name)
                    .get_opt("demo")
                    .await
                    .unwrap()
                    .is_some()
            );
            assert!(
                Api::<ConfigMap>::namespaced(client.clone(), &ns_name)
                    .get_opt("demo-config")
                    .await
                    .unwrap()
                    .is_some()
            );
            assert!(
                Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns_name)
                    .get_opt("demo")
                    .await
                    .unwrap()
                    .is_some()
            );
            assert!(
                Api::<DaemonSet>::namespaced(client.clone(), &ns_name)
                    .get_opt("demo-lb")
                    .await
                    .unwrap()
                    .is_some()
            );
            eventually("the status", || async {
                nats.get_status("demo")
                    .await
                    .ok()?
                    .status
                    .filter(|s| !s.label_selector.is_empty())
            })
            .await;
            // kubectl scale nat/demo --replicas=5
            nats.patch_scale(
                "demo",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 5}})),
            )
            .await
            .expect("scale");
            eventually("the StatefulSet to grow", || async {
                sts.get("demo")
                    .await
                    .ok()?
                    .spec?
                    .replicas
                    .filter(|r| *r == 5)
            })
            .await;
            // The API server refuses a spec the cluster cannot run, naming the field.
            let mut bad = sample_nat().unwrap();
            bad.metadata.name = Some("bad".into());
            bad.metadata.namespace = Some(ns_name.clone());
            bad.spec.bucket_bits = 13;
            bad.spec.inside_sources = vec!["10.0.0/8".into()];
            let refused = nats
                .create(&PostParams::default(), &bad)
                .await
                .expect_err("an invalid Nat is refused")
                .to_string();
            for field in ["spec.bucketBits", "spec.insideSources"] {
                assert!(refused.contains(field), "{field} in {refused}");
            }
            let refused = nats
                .patch_scale(
                    "demo",
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
                )
                .await
                .expect_err("scaling to 0 is refused")
                .to_string();
            assert!(refused.contains("spec.replicas"), "{refused}");
            nats.delete("demo", &DeleteParams::default())
                .await
                .expect("delete");
            eventually("the Nat to go (finalizer done)", || async {
                nats.get_opt("demo").await.ok()?.is_none().then_some(())
            })
            .await;
        }
    })
    .await;

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controllers).await;
    let _ = namespaces.delete(&ns_name, &DeleteParams::default()).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

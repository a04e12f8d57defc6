//! The controllers: `nats.mfplane.io` (children and membership) and `nodes.mfplane.io`
//! (role labels and what runs where), their shared [`Context`] and [`run`].

mod kube_io;
mod nat;
mod node;
#[cfg(test)]
pub(crate) mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

pub use kube_io::{patch_gate, retry_on_conflict};
pub use nat::reconcile_nat;
pub use node::reconcile_node;

use crate::admin::ClusterAdmin;
use crate::crd::{Nat, Node};
use crate::names::{
    MANAGED_SELECTOR, NAT_LABEL, OPERATOR_NAME, PART_OF_SELECTOR, worker_pods_selector,
};
use crate::{Error, metrics};

/// `(group, resource)` of everything [`run`] lists and watches; the manifest tests check
/// that the RBAC allows `list` and `watch` on each.
pub const WATCHED: &[(&str, &str)] = &[
    ("mfplane.io", "nats"),
    ("mfplane.io", "nodes"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("", "services"),
    ("", "configmaps"),
    ("policy", "poddisruptionbudgets"),
    ("", "pods"),
];

/// What every reconcile needs.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The clusters' Admin API.
    pub admin: Arc<dyn ClusterAdmin>,
    /// Publishes Kubernetes events.
    pub recorder: Recorder,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose events name this operator instance (`instance`: the pod name).
    pub fn new(client: Client, admin: Arc<dyn ClusterAdmin>, instance: Option<String>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: OPERATOR_NAME.to_owned(),
                instance,
            },
        );
        Context {
            client,
            admin,
            recorder,
        }
    }
}

/// How soon to look again after a failed reconcile: quickly, since most failures are a
/// member or the API server being briefly away.
fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |_, err, _| {
        warn!(controller, error = %err, "reconcile failed; retrying in 5s");
        metrics::failed(controller, err);
        Action::requeue(Duration::from_secs(5))
    }
}

/// Runs both controllers until `shutdown` resolves.
///
/// # Errors
/// [`Error::Kube`] if the CRDs are not installed (the first list fails).
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let client = ctx.client.clone();
    let nats: Api<Nat> = Api::all(client.clone());
    let machines: Api<Node> = Api::all(client.clone());
    // Fail early with a clear error if the CRDs are missing.
    nats.list(&kube::api::ListParams::default().limit(1))
        .await?;
    machines
        .list(&kube::api::ListParams::default().limit(1))
        .await?;

    let managed = watcher::Config::default().labels(MANAGED_SELECTOR);
    let (shutdown_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let nat_shutdown = {
        let mut rx = shutdown_tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    let node_shutdown = {
        let mut rx = shutdown_tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(());
    });

    let nat_controller = Controller::new(nats, watcher::Config::default());
    let nat_store = nat_controller.store();
    let all_nats = move || {
        nat_store
            .state()
            .iter()
            .map(|n| ObjectRef::from_obj(n.as_ref()))
            .collect::<Vec<_>>()
    };
    let nat_controller = nat_controller
        .owns(Api::<StatefulSet>::all(client.clone()), managed.clone())
        .owns(Api::<DaemonSet>::all(client.clone()), managed.clone())
        .owns(Api::<Service>::all(client.clone()), managed.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), managed.clone())
        .owns(
            Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::all(client.clone()),
            managed.clone(),
        )
        // Pod changes (started, restarted, Multus addresses) move membership along.
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(&worker_pods_selector()),
            |pod: Pod| {
                let nat = pod.labels().get(NAT_LABEL)?.clone();
                Some(ObjectRef::<Nat>::new(&nat).within(&pod.namespace()?))
            },
        )
        // A new or changed LB machine changes every Nat's ConfigMap.
        .watches(
            machines.clone(),
            watcher::Config::default(),
            move |_: Node| all_nats(),
        )
        .graceful_shutdown_on(nat_shutdown)
        .run(reconcile_nat, error_policy::<Nat>("nat"), ctx.clone())
        .for_each(|r| async move {
            if let Ok((obj, _)) = r {
                tracing::debug!(nat = %obj, "reconciled");
            }
        });

    let node_controller = Controller::new(machines, watcher::Config::default())
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(PART_OF_SELECTOR),
            |pod: Pod| {
                pod.spec
                    .as_ref()?
                    .node_name
                    .as_ref()
                    .map(|n| ObjectRef::<Node>::new(n))
            },
        )
        .graceful_shutdown_on(node_shutdown)
        .run(reconcile_node, error_policy::<Node>("node"), ctx)
        .for_each(|r| async move {
            if let Ok((obj, _)) = r {
                tracing::debug!(node = %obj, "reconciled");
            }
        });

    info!("controllers running");
    futures::join!(nat_controller, node_controller);
    info!("controllers stopped");
    Ok(())
}

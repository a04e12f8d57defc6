//! Reconciles one `nodes.mfplane.io` object: puts the role label on the Kubernetes node
//! of the same name (the LB DaemonSet and the workers select on it), and reports which
//! mfplane pods run there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node as CoreNode, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, Resource, ResourceExt};
use tracing::instrument;

use super::Context;
use super::kube_io::retry_on_conflict;
use crate::crd::{Function, Node, NodeRole, NodeStatus, validate_node};
use crate::names::{COMPONENT_LABEL, FIELD_MANAGER, NAT_LABEL, NODE_FINALIZER, NODE_LABEL_MANAGER};
use crate::status::condition;
use crate::{Error, Result, metrics};

/// How often a machine's function list is refreshed without a pod event.
pub const NODE_REQUEUE: Duration = Duration::from_secs(300);

/// The Node controller's reconcile (behind the finalizer).
///
/// # Errors
/// Kubernetes API failures and finalizer failures; the controller retries them.
#[instrument(skip_all, fields(node = %node.name_any()))]
pub async fn reconcile_node(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let api: Api<Node> = Api::all(ctx.client.clone());
    let result = finalizer(&api, NODE_FINALIZER, node, |event| async {
        match event {
            Event::Apply(node) => apply_node(&node, &ctx).await,
            Event::Cleanup(node) => {
                set_role_label(&ctx, &node.name_any(), None).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    metrics::reconciled("node", started.elapsed());
    result
}

/// Labels the core node `name` with `role`'s label, or removes the operator's label
/// (`None`). Returns false if there is no such node. Never creates a node: server-side
/// apply would, so the node is read first.
async fn set_role_label(ctx: &Context, name: &str, role: Option<NodeRole>) -> Result<bool> {
    let core: Api<CoreNode> = Api::all(ctx.client.clone());
    if core.get_opt(name).await?.is_none() {
        return Ok(false);
    }
    let labels: serde_json::Map<String, serde_json::Value> = role
        .map(|r| (r.node_label().to_owned(), serde_json::Value::from("true")))
        .into_iter()
        .collect();
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": labels },
    });
    let params = PatchParams::apply(NODE_LABEL_MANAGER).force();
    retry_on_conflict(|| async {
        core.patch(name, &params, &Patch::Apply(&patch))
            .await
            .map_err(Error::from)
    })
    .await?;
    Ok(true)
}

async fn apply_node(node: &Node, ctx: &Context) -> Result<Action> {
    let name = node.name_any();
    let now = Timestamp::now();
    let previous = node
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = node.metadata.generation;

    let labeled = match validate_node(node) {
        Err(errors) => condition(
            previous,
            "Labeled",
            false,
            "InvalidSpec",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            generation,
            now,
        ),
        Ok(()) => {
            if set_role_label(ctx, &name, Some(node.spec.role)).await? {
                condition(
                    previous,
                    "Labeled",
                    true,
                    "Labeled",
                    format!("node {name} carries {}=true", node.spec.role.node_label()),
                    generation,
                    now,
                )
            } else {
                condition(
                    previous,
                    "Labeled",
                    false,
                    "NoSuchNode",
                    format!(
                        "there is no Kubernetes node named {name}: name this object after the machine (kubectl get nodes)"
                    ),
                    generation,
                    now,
                )
            }
        }
    };

    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let list = pods
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/part-of=mfplane")
                .fields(&format!("spec.nodeName={name}")),
        )
        .await?;
    let mut functions: Vec<Function> = list
        .items
        .iter()
        .filter_map(|p| {
            let labels = p.labels();
            let kind = match labels.get(COMPONENT_LABEL)?.as_str() {
                "lb" => NodeRole::Lb,
                "worker" => NodeRole::Worker,
                _ => return None,
            };
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Some(Function {
                kind,
                nat: format!(
                    "{}/{}",
                    p.namespace().unwrap_or_default(),
                    labels.get(NAT_LABEL)?
                ),
                pod: p.name_any(),
                ready,
            })
        })
        .collect();
    functions.sort_by(|a, b| (&a.nat, &a.pod).cmp(&(&b.nat, &b.pod)));
    let summary = if functions.is_empty() {
        "none".to_owned()
    } else {
        functions
            .iter()
            .map(|f| {
                let kind = if f.kind == NodeRole::Lb {
                    "lb"
                } else {
                    "worker"
                };
                format!(
                    "{kind} {} ({})",
                    f.pod,
                    if f.ready { "ready" } else { "not ready" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let status = NodeStatus {
        observed_generation: generation,
        functions,
        summary: Some(summary),
        conditions: vec![labeled],
    };
    let patch = serde_json::json!({
        "apiVersion": Node::api_version(&()),
        "kind": Node::kind(&()),
        "status": status,
    });
    let api: Api<Node> = Api::all(ctx.client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    retry_on_conflict(|| async {
        api.patch_status(&name, &params, &Patch::Apply(&patch))
            .await
            .map_err(Error::from)
    })
    .await?;
    Ok(Action::requeue(NODE_REQUEUE))
}

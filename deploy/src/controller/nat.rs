//! Reconciles one Nat: validate, observe, decide (see [`crate::membership`]), apply the
//! children, make at most one membership change, write gates and status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use super::Context;
use super::kube_io::{apply, patch_gate, retry_on_conflict};
use crate::admin::ClusterTarget;
use crate::config_file::data_interface;
use crate::crd::{Nat, NatStatus, Node, validate_nat};
use crate::membership::{Change, Observation, Plan, PodObservation, Progress, observe_pod, plan};
use crate::names::{Component, FIELD_MANAGER, NAT_FINALIZER, NatNames};
use crate::status::{StatusInputs, invalid_spec_status, nat_status};
use crate::{Error, Result, membership, metrics, resources};

/// How soon to look again while a change is under way (a learner catching up, a pod
/// starting): membership moves one step per reconcile.
pub const BUSY_REQUEUE: Duration = Duration::from_secs(3);
/// How often a settled cluster is looked at anyway, to refresh leader and epoch in the
/// status and notice failures no Kubernetes event reports.
pub const IDLE_REQUEUE: Duration = Duration::from_secs(60);

/// The Nat controller's reconcile (behind the finalizer).
///
/// # Errors
/// Kubernetes API failures and finalizer failures; the controller retries them.
#[instrument(skip_all, fields(nat = %nat.name_any(), namespace = nat.namespace().unwrap_or_default()))]
pub async fn reconcile_nat(nat: Arc<Nat>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let ns = nat
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Nat> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, NAT_FINALIZER, nat, |event| async {
        match event {
            Event::Apply(nat) => apply_nat(&nat, &ctx).await,
            Event::Cleanup(nat) => cleanup_nat(&nat, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    metrics::reconciled("nat", started.elapsed());
    result
}

async fn publish(
    ctx: &Context,
    nat: &Nat,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &nat.object_ref(&())).await {
        // An event is a courtesy; never fail a reconcile for it.
        warn!(error = %e, reason, "cannot publish event");
    }
}

async fn write_status(api: &Api<Nat>, name: &str, status: &NatStatus) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": Nat::api_version(&()),
        "kind": Nat::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    retry_on_conflict(|| async {
        api.patch_status(name, &params, &Patch::Apply(&patch))
            .await
            .map_err(Error::from)
    })
    .await?;
    Ok(())
}

async fn apply_nat(nat: &Nat, ctx: &Context) -> Result<Action> {
    let names = NatNames::of(nat);
    let client = ctx.client.clone();
    let ns = names.namespace.as_str();
    let nats: Api<Nat> = Api::namespaced(client.clone(), ns);

    if let Err(errors) = validate_nat(nat, None) {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        warn!(%message, "invalid spec; not acting on it");
        publish(
            ctx,
            nat,
            EventType::Warning,
            "InvalidSpec",
            "Validate",
            message.clone(),
        )
        .await;
        write_status(
            &nats,
            &names.nat,
            &invalid_spec_status(nat, message, Timestamp::now()),
        )
        .await?;
        return Ok(Action::await_change());
    }

    // Observe.
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let machines_api: Api<Node> = Api::all(client.clone());
    let current = statefulsets.get_opt(&names.statefulset()).await?;
    let pods = pods_api
        .list(&ListParams::default().labels(&names.selector_string(Component::Worker)))
        .await?;
    let machines = machines_api.list(&ListParams::default()).await?;
    let data_if = data_interface(nat);
    let mut observed: Vec<PodObservation> = pods
        .items
        .iter()
        .filter_map(|p| observe_pod(&names, p, data_if))
        .collect();
    observed.sort_by_key(|p| p.ordinal);
    let target = ClusterTarget {
        nat: names.key(),
        members: observed
            .iter()
            .filter(|p| p.running)
            .map(|p| (p.name.clone(), names.grpc_address(p.ordinal)))
            .collect(),
    };
    let probe = ctx.admin.probe(&target).await;
    let now = Timestamp::now();
    let recorded: Vec<String> = nat
        .status
        .iter()
        .flat_map(|s| s.members.iter().map(|m| m.name.clone()))
        .collect();
    let decided = plan(&Observation {
        names: &names,
        desired: u32::try_from(nat.spec.replicas).unwrap_or(1),
        statefulset_replicas: current
            .as_ref()
            .and_then(|s| s.spec.as_ref()?.replicas)
            .and_then(|r| u32::try_from(r).ok()),
        pods: &observed,
        probe: &probe,
        policy: &nat.spec.membership,
        now,
        recorded_members: &recorded,
    });

    // The children.
    let voters = probe.view.as_ref().map_or(0, |v| v.voters());
    let sts_replicas = i32::try_from(decided.statefulset_replicas).unwrap_or(i32::MAX);
    apply(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &resources::configmap(nat, &machines.items)?,
    )
    .await?;
    apply(
        &Api::<Service>::namespaced(client.clone(), ns),
        &resources::service(nat)?,
    )
    .await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        &resources::pdb(nat, i32::try_from(voters).unwrap_or(i32::MAX))?,
    )
    .await?;
    apply(&statefulsets, &resources::statefulset(nat, sts_replicas)?).await?;
    apply(
        &Api::<DaemonSet>::namespaced(client.clone(), ns),
        &resources::lb_daemonset(nat)?,
    )
    .await?;

    // One membership change.
    let change = match &decided.change {
        None => None,
        Some(change) => Some(execute(ctx, nat, &target, change).await),
    };

    // Gates.
    for gate in &decided.gates {
        match patch_gate(&pods_api, gate).await {
            Ok(()) => {}
            // The pod went away since we listed it; the next reconcile sees that.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }

    let status = nat_status(
        nat,
        &StatusInputs {
            pods: &observed,
            probe: &probe,
            plan: &decided,
            change: change.clone(),
            now,
        },
    );
    write_status(&nats, &names.nat, &status).await?;
    metrics::nat(&names.key(), &status, nat.spec.replicas, voters);
    Ok(next_look(&decided, change.as_ref()))
}

/// Makes one change and reports it as an event; returns what was done or the error.
async fn execute(
    ctx: &Context,
    nat: &Nat,
    target: &ClusterTarget,
    change: &Change,
) -> Result<String, String> {
    info!(change = %change.describe(), "membership change");
    let result = membership::execute(ctx.admin.as_ref(), target, change).await;
    metrics::change(change.reason(), result.is_ok());
    match result {
        Ok(done) => {
            publish(
                ctx,
                nat,
                EventType::Normal,
                change.reason(),
                "Membership",
                done.clone(),
            )
            .await;
            Ok(done)
        }
        Err(e) => {
            let message = format!("{} failed: {e}", change.describe());
            warn!(%message);
            publish(
                ctx,
                nat,
                EventType::Warning,
                &format!("{}Failed", change.reason()),
                "Membership",
                message.clone(),
            )
            .await;
            Err(message)
        }
    }
}

fn next_look(plan: &Plan, change: Option<&Result<String, String>>) -> Action {
    match change {
        Some(Err(_)) => Action::requeue(Duration::from_secs(5)),
        Some(Ok(_)) => Action::requeue(Duration::from_secs(1)),
        None if plan.progress != Progress::Steady
            || !plan.waiting.is_empty()
            || !plan.gates.is_empty() =>
        {
            Action::requeue(BUSY_REQUEUE)
        }
        None => Action::requeue(IDLE_REQUEUE),
    }
}

/// Deleting a Nat deletes its data: the members' volumes, which the StatefulSet keeps
/// on its own deletion (so that deleting only the StatefulSet by mistake loses nothing).
async fn cleanup_nat(nat: &Nat, ctx: &Context) -> Result<Action> {
    let names = NatNames::of(nat);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
    claims
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&names.selector_string(Component::Worker)),
        )
        .await?;
    publish(
        ctx,
        nat,
        EventType::Normal,
        "Deleted",
        "Cleanup",
        format!(
            "deleted the volumes of {}'s members; the garbage collector removes the rest",
            names.key()
        ),
    )
    .await;
    Ok(Action::await_change())
}

//! The few ways the operator writes to the API server, each in one place: server-side
//! apply of a child, a readiness-gate condition on a pod, and a retry on 409 Conflict.

use std::fmt::Debug;
use std::future::Future;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::membership::{GateReason, GateUpdate};
use crate::names::{FIELD_MANAGER, READINESS_GATE};
use crate::{Error, Result};

/// How many times a write is tried when the API server answers 409 Conflict.
pub const CONFLICT_ATTEMPTS: u32 = 3;

/// Runs `write` again (up to [`CONFLICT_ATTEMPTS`] times) while it fails with 409
/// Conflict: another writer changed the object between our read and our write, and the
/// write is computed afresh from what is observable, so simply trying again is right.
///
/// # Errors
/// The last error, or the first that is not a conflict.
pub async fn retry_on_conflict<T, F, Fut>(mut write: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match write().await {
            Err(e) if e.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "conflict, trying again");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Server-side applies `obj` with the operator's field manager, taking ownership of the
/// fields it sets (force: the operator is their only rightful writer).
pub(crate) async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    retry_on_conflict(|| async {
        api.patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(Error::from)
    })
    .await
}

/// Writes a pod's readiness-gate condition (a strategic merge on `pods/status`, which
/// merges conditions by type, the way the kubelet writes its own).
///
/// # Errors
/// [`Error::Kube`] if the patch fails (404 if the pod went away meanwhile).
pub async fn patch_gate(pods: &Api<Pod>, gate: &GateUpdate) -> Result<()> {
    let status = if gate.reason == GateReason::Voter {
        "True"
    } else {
        "False"
    };
    let patch = serde_json::json!({
        "status": {
            "conditions": [{
                "type": READINESS_GATE,
                "status": status,
                "reason": gate.reason.as_str(),
                "message": gate.message,
                "lastTransitionTime": Time(gate.since),
            }]
        }
    });
    pods.patch_status(
        &gate.pod,
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await?;
    Ok(())
}

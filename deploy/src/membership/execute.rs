//! Carries out one [`Change`] through the Admin API.

use super::Change;
use crate::Result;
use crate::admin::{ClusterAdmin, ClusterTarget, JoinOutcome};

/// Makes `change`; returns what was done, in words. A Join of a name that is already
/// registered succeeds: the pod joined itself, or an earlier attempt got through before
/// the operator restarted.
///
/// # Errors
/// The Admin API's error.
pub async fn execute(
    admin: &dyn ClusterAdmin,
    target: &ClusterTarget,
    change: &Change,
) -> Result<String> {
    Ok(match change {
        Change::Initialize { pod } => {
            let id = admin.initialize(target, pod).await?;
            format!("initialized the cluster with {pod} (node {id}) as its first voter")
        }
        Change::Join(request) => match admin.join(target, request).await? {
            JoinOutcome::Joined(id) => format!("joined {} as a learner (node {id})", request.name),
            JoinOutcome::AlreadyMember => {
                format!("{} is already registered (it joined itself)", request.name)
            }
        },
        Change::Promote { pod, id } => {
            let epoch = admin.promote(target, *id).await?;
            format!("promoted {pod} (node {id}) to voter; epoch {epoch}")
        }
        Change::Drain { pod, id } => {
            let epoch = admin.drain(target, *id).await?;
            format!("drained {pod} (node {id}); epoch {epoch}")
        }
        Change::Remove { pod, id, why } => {
            let epoch = admin.remove(target, *id).await?;
            format!("removed {pod} (node {id}): {why}; epoch {epoch}")
        }
    })
}

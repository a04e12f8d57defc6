//! What the Kubernetes operator does to the cluster, through the Admin API over the
//! simulated network: promote joined learners, and drain and remove members (handing
//! leadership over first when the member to remove leads).
//!
//! Every call has a deadline and is retried on another member, as the operator's
//! reconcile loop would; a call that changes the cluster is forwarded to the leader by
//! whichever member receives it.

use std::time::Duration;

use mfplane_proto::admin::{
    ClusterStatus, NodeRequest, Role, StatusRequest, admin_client::AdminClient,
};
use tokio::time::Instant;

use crate::net;

/// Longest the operator keeps retrying one step.
const STEP_DEADLINE: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(200);

fn client(member: &str) -> Result<AdminClient<tonic::transport::Channel>, String> {
    net::channel(&net::grpc_addr(member))
        .map(AdminClient::new)
        .map_err(|e| e.to_string())
}

/// The status as the leader sees it (asked of `members` in turn).
async fn status(members: &[String]) -> Result<ClusterStatus, String> {
    let mut last = String::from("no member answered");
    for m in members {
        let mut c = client(m)?;
        match tokio::time::timeout(CALL_TIMEOUT, c.status(StatusRequest {})).await {
            Ok(Ok(s)) => {
                let s = s.into_inner();
                if s.leader_id != 0 && s.leader_id == s.node_id {
                    return Ok(s);
                }
                last = format!("{m} is not the leader");
            }
            Ok(Err(e)) => last = format!("{m}: {}", e.message()),
            Err(_) => last = format!("{m}: no answer"),
        }
    }
    Err(last)
}

/// Retries `step` against `members` until it succeeds or the deadline passes.
async fn retry<T, F, Fut>(what: &str, members: &[String], step: F) -> Result<T, String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + STEP_DEADLINE;
    let mut last = String::new();
    while Instant::now() < deadline {
        for m in members {
            match step(m.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        tokio::time::sleep(RETRY).await;
    }
    Err(format!("{what}: gave up after {STEP_DEADLINE:?}: {last}"))
}

/// Promotes the member named `name` once it has joined as a learner.
///
/// # Errors
/// What the last attempt failed with, once the deadline passed.
pub async fn promote(members: Vec<String>, name: String) -> Result<String, String> {
    let id = retry("waiting for the learner", &members, |_| {
        let (members, name) = (members.clone(), name.clone());
        async move {
            let s = status(&members).await?;
            s.members
                .iter()
                .find(|m| m.name == name && m.role != Role::Unspecified as i32)
                .map(|m| m.node_id)
                .ok_or_else(|| format!("{name} has not joined yet"))
        }
    })
    .await?;
    retry("promote", &members, |m| async move {
        let mut c = client(&m)?;
        match tokio::time::timeout(CALL_TIMEOUT, c.promote(NodeRequest { node_id: id })).await {
            Ok(Ok(r)) => Ok(r.into_inner().message),
            Ok(Err(e)) => Err(format!("{m}: {}", e.message())),
            Err(_) => Err(format!("{m}: no answer")),
        }
    })
    .await
}

/// Scales in by one: hands leadership away from `name` if it leads, then removes it
/// (the leader drains it first).
///
/// # Errors
/// What the last attempt failed with, once the deadline passed.
pub async fn remove(members: Vec<String>, name: String) -> Result<String, String> {
    let deadline = Instant::now() + STEP_DEADLINE;
    let mut last = String::new();
    while Instant::now() < deadline {
        let s = match status(&members).await {
            Ok(s) => s,
            Err(e) => {
                last = e;
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let Some(target) = s.members.iter().find(|m| m.name == name) else {
            return Ok(format!("{name} is not a member"));
        };
        let id = target.node_id;
        let leader_name = s
            .members
            .iter()
            .find(|m| m.node_id == s.leader_id)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        if s.leader_id == id {
            let Some(next) = s
                .members
                .iter()
                .filter(|m| m.node_id != id && m.role == Role::Voter as i32)
                .map(|m| m.node_id)
                .min()
            else {
                return Err(format!("{name} is the last voter"));
            };
            let mut c = client(&leader_name)?;
            let r = tokio::time::timeout(
                CALL_TIMEOUT,
                c.transfer_leader(NodeRequest { node_id: next }),
            )
            .await;
            if let Ok(Err(e)) = r {
                last = format!("transfer: {}", e.message());
            }
            tokio::time::sleep(RETRY).await;
            continue;
        }
        let mut c = client(&leader_name)?;
        match tokio::time::timeout(
            Duration::from_secs(10),
            c.remove(NodeRequest { node_id: id }),
        )
        .await
        {
            Ok(Ok(r)) => return Ok(r.into_inner().message),
            Ok(Err(e)) => last = format!("remove: {}", e.message()),
            Err(_) => last = "remove: no answer".into(),
        }
        tokio::time::sleep(RETRY).await;
    }
    Err(format!(
        "removing {name}: gave up after {STEP_DEADLINE:?}: {last}"
    ))
}

//! [`ClusterAdmin`] over tonic: the production client of the workers' Admin service.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use mfplane_proto::admin::admin_client::AdminClient;
use mfplane_proto::admin::{self as pb, ClusterStatus};
use tonic::transport::{Channel, Endpoint};

use super::{
    ClusterAdmin, ClusterTarget, ClusterView, JoinOutcome, JoinRequest, MemberView, NodeId, Probe,
    Role,
};
use crate::error::AdminCode;
use crate::{Error, Result};

/// Timeouts of the Admin calls. Status must be quick (it runs every reconcile); Drain
/// returns only after a new bucket table has committed, which can take a while on a
/// loaded cluster.
#[derive(Debug, Clone, Copy)]
pub struct AdminTimeouts {
    /// Connecting to a member.
    pub connect: Duration,
    /// Status.
    pub status: Duration,
    /// Initialize, Join, Promote and Remove.
    pub change: Duration,
    /// Drain.
    pub drain: Duration,
}

impl Default for AdminTimeouts {
    fn default() -> Self {
        AdminTimeouts {
            connect: Duration::from_secs(2),
            status: Duration::from_secs(3),
            change: Duration::from_secs(15),
            drain: Duration::from_secs(60),
        }
    }
}

/// The Admin API client. Channels are cached per address and reconnect by themselves.
#[derive(Debug, Default)]
pub struct GrpcAdmin {
    timeouts: AdminTimeouts,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcAdmin {
    /// A client with the given timeouts.
    pub fn new(timeouts: AdminTimeouts) -> Self {
        GrpcAdmin {
            timeouts,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, call: &'static str, address: &str) -> Result<AdminClient<Channel>> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = channels.get(address) {
            return Ok(AdminClient::new(c.clone()));
        }
        let endpoint =
            Endpoint::from_shared(format!("http://{address}")).map_err(|e| Error::Admin {
                call,
                target: address.to_owned(),
                code: AdminCode::Other,
                message: format!("not a valid address: {e}"),
            })?;
        let channel = endpoint
            .connect_timeout(self.timeouts.connect)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(AdminClient::new(channel))
    }

    async fn status_of(&self, address: &str) -> Result<ClusterStatus> {
        let mut client = self.client("Status", address)?;
        let mut req = tonic::Request::new(pb::StatusRequest {});
        req.set_timeout(self.timeouts.status);
        client
            .status(req)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| status_error("Status", address, &s))
    }

    /// The address to send a change to: the leader's, as the cluster reports it, else
    /// any member that belongs to the cluster (it forwards).
    async fn change_address(&self, target: &ClusterTarget) -> Result<String> {
        let probe = self.probe(target).await;
        let Some(view) = probe.view.as_ref() else {
            return Err(unreachable(target, &probe));
        };
        if let Some(addr) = view
            .leader_member()
            .and_then(|l| member_address(target, &l.name))
        {
            return Ok(addr);
        }
        member_address(target, &view.answered_by).ok_or_else(|| unreachable(target, &probe))
    }

    async fn change<T, F, Fut>(
        &self,
        call: &'static str,
        target: &ClusterTarget,
        timeout: Duration,
        f: F,
    ) -> Result<T>
    where
        F: FnOnce(AdminClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let address = self.change_address(target).await?;
        let client = self.client(call, &address)?;
        f(client, timeout)
            .await
            .map_err(|s| status_error(call, &address, &s))
    }
}

fn member_address(target: &ClusterTarget, pod: &str) -> Option<String> {
    target
        .members
        .iter()
        .find(|(p, _)| p == pod)
        .map(|(_, a)| a.clone())
}

fn unreachable(target: &ClusterTarget, probe: &Probe) -> Error {
    let mut details: Vec<String> = probe
        .unreachable
        .iter()
        .map(|(p, e)| format!("{p}: {e}"))
        .collect();
    details.extend(
        probe
            .pristine
            .iter()
            .map(|p| format!("{p}: not in a cluster yet")),
    );
    if details.is_empty() {
        details.push("no worker pods".to_owned());
    }
    Error::ClusterUnreachable {
        nat: target.nat.clone(),
        details: details.join("; "),
    }
}

fn status_error(call: &'static str, address: &str, s: &tonic::Status) -> Error {
    let code = match s.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            AdminCode::Unavailable
        }
        tonic::Code::AlreadyExists => AdminCode::AlreadyExists,
        tonic::Code::NotFound => AdminCode::NotFound,
        tonic::Code::FailedPrecondition => AdminCode::FailedPrecondition,
        tonic::Code::DeadlineExceeded => AdminCode::DeadlineExceeded,
        _ => AdminCode::Other,
    };
    Error::Admin {
        call,
        target: address.to_owned(),
        code,
        message: s.message().to_owned(),
    }
}

/// Converts a Status answer into the operator's view.
pub(crate) fn view_from_status(answered_by: &str, s: &ClusterStatus) -> ClusterView {
    let leader = (s.leader_id != 0).then_some(NodeId(s.leader_id));
    ClusterView {
        answered_by: answered_by.to_owned(),
        leader,
        epoch: s.epoch,
        last_log_index: s.last_log_index,
        sessions: s.sessions,
        from_leader: leader == Some(NodeId(s.node_id)),
        members: s
            .members
            .iter()
            .map(|m| MemberView {
                id: NodeId(m.node_id),
                name: m.name.clone(),
                role: if m.role == pb::Role::Voter as i32 {
                    Role::Voter
                } else {
                    Role::Learner
                },
                draining: m.draining,
                buckets: m.buckets,
                sessions: m.sessions,
                matched_index: m.matched_index,
                reachable: m.reachable,
            })
            .collect(),
    }
}

impl ClusterAdmin for GrpcAdmin {
    fn probe<'a>(&'a self, target: &'a ClusterTarget) -> BoxFuture<'a, Probe> {
        Box::pin(async move {
            let answers = join_all(
                target
                    .members
                    .iter()
                    .map(|(pod, addr)| async move { (pod.clone(), self.status_of(addr).await) }),
            )
            .await;
            let mut probe = Probe::default();
            let mut views = Vec::new();
            for (pod, answer) in answers {
                match answer {
                    Ok(s) if s.pristine => {
                        probe.pristine.insert(pod);
                    }
                    Ok(s) => views.push(view_from_status(&pod, &s)),
                    Err(e) => probe.unreachable.push((pod, e.to_string())),
                }
            }
            // The leader's answer carries replication progress; prefer it, then the
            // answer that knows the most recent log.
            views.sort_by_key(|v| (!v.from_leader, std::cmp::Reverse(v.last_log_index)));
            probe.view = views.into_iter().next();
            probe
        })
    }

    fn initialize<'a>(
        &'a self,
        _target: &'a ClusterTarget,
        pod: &'a str,
    ) -> BoxFuture<'a, Result<NodeId>> {
        Box::pin(async move {
            let address = member_address(_target, pod).ok_or_else(|| Error::Admin {
                call: "Initialize",
                target: pod.to_owned(),
                code: AdminCode::NotFound,
                message: "the pod has no address".to_owned(),
            })?;
            let mut client = self.client("Initialize", &address)?;
            let mut req = tonic::Request::new(pb::InitializeRequest {});
            req.set_timeout(self.timeouts.change);
            let r = client
                .initialize(req)
                .await
                .map_err(|s| status_error("Initialize", &address, &s))?;
            Ok(NodeId(r.into_inner().node_id))
        })
    }

    fn join<'a>(
        &'a self,
        target: &'a ClusterTarget,
        request: &'a JoinRequest,
    ) -> BoxFuture<'a, Result<JoinOutcome>> {
        Box::pin(async move {
            let r = self
                .change(
                    "Join",
                    target,
                    self.timeouts.change,
                    |mut c, t| async move {
                        let mut req = tonic::Request::new(pb::JoinRequest {
                            name: request.name.clone(),
                            raft_addr: request.raft_addr.clone(),
                            data_ip: request.data_ip.clone(),
                            data_mac: request.data_mac.clone(),
                        });
                        req.set_timeout(t);
                        c.join(req).await
                    },
                )
                .await;
            match r {
                Ok(r) => Ok(JoinOutcome::Joined(NodeId(r.into_inner().node_id))),
                Err(Error::Admin {
                    code: AdminCode::AlreadyExists,
                    ..
                }) => Ok(JoinOutcome::AlreadyMember),
                Err(e) => Err(e),
            }
        })
    }

    fn promote<'a>(
        &'a self,
        target: &'a ClusterTarget,
        node: NodeId,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            self.change(
                "Promote",
                target,
                self.timeouts.change,
                |mut c, t| async move {
                    let mut req = tonic::Request::new(pb::NodeRequest { node_id: node.0 });
                    req.set_timeout(t);
                    c.promote(req).await.map(|r| r.into_inner().epoch)
                },
            )
            .await
        })
    }

    fn drain<'a>(&'a self, target: &'a ClusterTarget, node: NodeId) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            self.change(
                "Drain",
                target,
                self.timeouts.drain,
                |mut c, t| async move {
                    let mut req = tonic::Request::new(pb::NodeRequest { node_id: node.0 });
                    req.set_timeout(t);
                    c.drain(req).await.map(|r| r.into_inner().epoch)
                },
            )
            .await
        })
    }

    fn remove<'a>(&'a self, target: &'a ClusterTarget, node: NodeId) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            self.change(
                "Remove",
                target,
                self.timeouts.change,
                |mut c, t| async move {
                    let mut req = tonic::Request::new(pb::NodeRequest { node_id: node.0 });
                    req.set_timeout(t);
                    c.remove(req).await.map(|r| r.into_inner().epoch)
                },
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_conversion_marks_the_leaders_view() {
        let s = ClusterStatus {
            node_id: 1,
            leader_id: 1,
            epoch: 4,
            last_log_index: 99,
            members: vec![
                pb::Member {
                    node_id: 1,
                    name: "demo-0".into(),
                    role: pb::Role::Voter as i32,
                    buckets: 256,
                    matched_index: 99,
                    reachable: true,
                    ..Default::default()
                },
                pb::Member {
                    node_id: 2,
                    name: "demo-1".into(),
                    role: pb::Role::Learner as i32,
                    matched_index: 10,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let v = view_from_status("demo-0", &s);
        assert!(v.from_leader);
        assert_eq!(v.leader_member().map(|m| m.name.as_str()), Some("demo-0"));
        assert_eq!(v.member("demo-1").map(|m| m.role), Some(Role::Learner));
        assert_eq!(v.voters(), 1);
        let follower = view_from_status("demo-1", &ClusterStatus { node_id: 2, ..s });
        assert!(!follower.from_leader);
    }

    mod against_a_server {
        use std::net::SocketAddr;
        use std::sync::{Arc, Mutex};

        use mfplane_proto::admin::admin_server::{Admin, AdminServer};
        use tonic::{Request, Response, Status};

        use super::*;

        /// One member of a two-member cluster; node 1 leads.
        #[derive(Clone)]
        struct Member {
            id: u64,
            calls: Arc<Mutex<Vec<String>>>,
        }

        fn cluster_status(answering: u64) -> ClusterStatus {
            let member = |id: u64, name: &str, role: pb::Role| pb::Member {
                node_id: id,
                name: name.into(),
                role: role as i32,
                is_leader: id == 1,
                matched_index: if answering == 1 { 40 } else { 0 },
                reachable: true,
                ..Default::default()
            };
            ClusterStatus {
                node_id: answering,
                leader_id: 1,
                epoch: 3,
                last_log_index: 42,
                members: vec![
                    member(1, "demo-0", pb::Role::Voter),
                    member(2, "demo-1", pb::Role::Learner),
                ],
                ..Default::default()
            }
        }

        #[tonic::async_trait]
        impl Admin for Member {
            async fn initialize(
                &self,
                _: Request<pb::InitializeRequest>,
            ) -> Result<Response<pb::InitializeResponse>, Status> {
                Err(Status::failed_precondition("already in a cluster"))
            }
            async fn join(
                &self,
                r: Request<pb::JoinRequest>,
            ) -> Result<Response<pb::JoinResponse>, Status> {
                let name = r.into_inner().name;
                self.calls
                    .lock()
                    .unwrap()
                    .push(format!("{} Join {name}", self.id));
                if name == "demo-1" {
                    return Err(Status::already_exists("demo-1 is registered"));
                }
                Ok(Response::new(pb::JoinResponse {
                    node_id: 3,
                    leader_id: 1,
                }))
            }
            async fn promote(
                &self,
                r: Request<pb::NodeRequest>,
            ) -> Result<Response<pb::ChangeResponse>, Status> {
                self.calls.lock().unwrap().push(format!(
                    "{} Promote {}",
                    self.id,
                    r.into_inner().node_id
                ));
                Ok(Response::new(pb::ChangeResponse {
                    epoch: 4,
                    message: "promoted".into(),
                }))
            }
            async fn drain(
                &self,
                _: Request<pb::NodeRequest>,
            ) -> Result<Response<pb::ChangeResponse>, Status> {
                Err(Status::unavailable("no leader"))
            }
            async fn remove(
                &self,
                _: Request<pb::NodeRequest>,
            ) -> Result<Response<pb::ChangeResponse>, Status> {
                Err(Status::failed_precondition(
                    "the last voter cannot be removed",
                ))
            }
            async fn transfer_leader(
                &self,
                _: Request<pb::NodeRequest>,
            ) -> Result<Response<pb::ChangeResponse>, Status> {
                Err(Status::unimplemented("not used by the operator"))
            }
            async fn status(
                &self,
                _: Request<pb::StatusRequest>,
            ) -> Result<Response<ClusterStatus>, Status> {
                Ok(Response::new(cluster_status(self.id)))
            }
        }

        async fn serve(member: Member) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(AdminServer::new(member))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async {
                            let _ = rx.await;
                        },
                    ),
            );
            (addr, tx)
        }

        #[tokio::test]
        async fn asks_the_leader_and_maps_the_servers_answers() {
            let calls = Arc::new(Mutex::new(Vec::new()));
            let (leader, _stop_leader) = serve(Member {
                id: 1,
                calls: calls.clone(),
            })
            .await;
            let (follower, _stop_follower) = serve(Member {
                id: 2,
                calls: calls.clone(),
            })
            .await;
            // The follower is listed first: the client must still end up at the leader.
            let target = ClusterTarget {
                nat: "edge/demo".into(),
                members: vec![
                    ("demo-1".into(), follower.to_string()),
                    ("demo-0".into(), leader.to_string()),
                ],
            };
            let admin = GrpcAdmin::default();
            let probe = admin.probe(&target).await;
            let view = probe.view.expect("a view");
            assert!(
                view.from_leader,
                "the leader's answer carries replication progress"
            );
            assert_eq!(view.answered_by, "demo-0");
            assert_eq!(view.member("demo-0").map(|m| m.matched_index), Some(40));
            assert!(probe.unreachable.is_empty() && probe.pristine.is_empty());

            let join = |name: &str| JoinRequest {
                name: name.into(),
                raft_addr: "x:1".into(),
                data_ip: "192.0.2.1".into(),
                data_mac: "02:00:00:00:00:01".into(),
            };
            assert_eq!(
                admin.join(&target, &join("demo-1")).await.unwrap(),
                JoinOutcome::AlreadyMember
            );
            assert_eq!(
                admin.join(&target, &join("demo-2")).await.unwrap(),
                JoinOutcome::Joined(NodeId(3))
            );
            assert_eq!(admin.promote(&target, NodeId(2)).await.unwrap(), 4);
            assert_eq!(
                *calls.lock().unwrap(),
                vec!["1 Join demo-1", "1 Join demo-2", "1 Promote 2"],
                "every change goes to the leader"
            );
            match admin.remove(&target, NodeId(1)).await {
                Err(Error::Admin {
                    call: "Remove",
                    code: AdminCode::FailedPrecondition,
                    message,
                    ..
                }) => assert!(message.contains("last voter")),
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                admin.drain(&target, NodeId(2)).await,
                Err(Error::Admin {
                    code: AdminCode::Unavailable,
                    ..
                })
            ));
            assert!(matches!(
                admin.initialize(&target, "demo-0").await,
                Err(Error::Admin {
                    code: AdminCode::FailedPrecondition,
                    ..
                })
            ));
        }
    }

    #[tokio::test]
    async fn an_unreachable_member_is_reported_not_fatal() {
        let admin = GrpcAdmin::new(AdminTimeouts {
            connect: Duration::from_millis(200),
            status: Duration::from_millis(300),
            ..AdminTimeouts::default()
        });
        // Port 1 on loopback: nothing listens there.
        let target = ClusterTarget {
            nat: "edge/demo".into(),
            members: vec![("demo-0".into(), "127.0.0.1:1".into())],
        };
        let probe = admin.probe(&target).await;
        assert!(probe.view.is_none());
        assert_eq!(probe.unreachable.len(), 1);
        assert!(matches!(
            admin.promote(&target, NodeId(2)).await,
            Err(Error::ClusterUnreachable { .. })
        ));
    }
}

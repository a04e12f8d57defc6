//! The public `mfplane.admin.v1.Admin` service. Any member answers; changes are carried
//! out by the leader, so a follower forwards them (the same call, to the leader's Admin
//! service) and only refuses with `UNAVAILABLE` when it knows no leader.

use std::future::Future;
use std::sync::Arc;

use mfplane_proto::admin::{
    ChangeResponse, ClusterStatus, InitializeRequest, InitializeResponse, JoinRequest,
    JoinResponse, Member as PbMember, NodeRequest, StatusRequest, admin_client::AdminClient,
    admin_server,
};
use mfplane_raft_store::{Epoch, NodeId};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::admin_ops;
use crate::error::Error;
use crate::grpc::convert::{self, Role, status};
use crate::member::Member;
use crate::node::Core;

/// Serves Admin for one node.
#[derive(Debug)]
pub struct AdminService {
    core: Arc<Core>,
}

impl AdminService {
    pub fn new(core: Arc<Core>) -> Self {
        AdminService { core }
    }

    fn member(&self) -> Result<Arc<Member>, Status> {
        self.core.require_member().map_err(status)
    }

    /// Runs `local` when this member leads, otherwise `remote` against the leader.
    async fn on_leader<T, L, LF, R, RF>(&self, local: L, remote: R) -> Result<Response<T>, Status>
    where
        L: FnOnce(Arc<Member>) -> LF,
        LF: Future<Output = Result<T, Error>>,
        R: FnOnce(AdminClient<Channel>) -> RF,
        RF: Future<Output = Result<Response<T>, Status>>,
    {
        let member = self.member()?;
        if member.is_leader() {
            return local(member).await.map(Response::new).map_err(status);
        }
        let leader = member.leader().ok_or_else(|| status(Error::NoLeader))?;
        if leader.id == member.id {
            return Err(status(Error::NoLeader));
        }
        let channel = self.core.channels.get(&leader.addr).map_err(status)?;
        // Changes can take several Raft round trips (joint membership, drain + move).
        let within = member.config.timing.rpc_timeout * 10;
        match tokio::time::timeout(within, remote(AdminClient::new(channel))).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the leader at {} did not answer within {within:?}",
                leader.addr
            ))),
        }
    }

    /// A change to one member (`NodeRequest`): carried out here when this member
    /// leads, otherwise the same request is sent to the leader.
    async fn node_change(
        &self,
        request: Request<NodeRequest>,
        change: NodeChange,
    ) -> Result<Response<ChangeResponse>, Status> {
        let r = request.into_inner();
        let id = convert::node_id(r.node_id).map_err(status)?;
        self.on_leader(
            |m| async move {
                let (epoch, message) = change.apply(&m, id).await?;
                Ok(ChangeResponse {
                    epoch: epoch.0,
                    message,
                })
            },
            |c| change.forward(c, r),
        )
        .await
    }
}

/// The Admin calls that change one member: each has one way to be carried out on
/// the leader and one client call to forward it there.
#[derive(Clone, Copy, Debug)]
enum NodeChange {
    Promote,
    Drain,
    Remove,
    TransferLeader,
}

impl NodeChange {
    /// Carries the change out on the leader: the epoch afterwards, and a message for
    /// the operator.
    async fn apply(self, m: &Arc<Member>, id: NodeId) -> Result<(Epoch, String), Error> {
        Ok(match self {
            NodeChange::Promote => {
                let message = admin_ops::promote(m, id).await?;
                (m.applied_epoch(), message)
            }
            NodeChange::Drain => {
                let epoch = admin_ops::drain(m, id).await?;
                let message = format!("node {id} is drained: it owns no buckets at epoch {epoch}");
                (epoch, message)
            }
            NodeChange::Remove => {
                let epoch = admin_ops::remove(m, id).await?;
                (epoch, format!("node {id} is removed; its id is retired"))
            }
            NodeChange::TransferLeader => {
                let message = admin_ops::transfer_leader(m, id).await?;
                (m.applied_epoch(), message)
            }
        })
    }

    /// Sends the same request to the leader.
    async fn forward(
        self,
        mut leader: AdminClient<Channel>,
        request: NodeRequest,
    ) -> Result<Response<ChangeResponse>, Status> {
        match self {
            NodeChange::Promote => leader.promote(request).await,
            NodeChange::Drain => leader.drain(request).await,
            NodeChange::Remove => leader.remove(request).await,
            NodeChange::TransferLeader => leader.transfer_leader(request).await,
        }
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn initialize(
        &self,
        _request: Request<InitializeRequest>,
    ) -> Result<Response<InitializeResponse>, Status> {
        let id = self.core.initialize().await.map_err(status)?;
        Ok(Response::new(InitializeResponse { node_id: id.0 }))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let r = request.into_inner();
        let info =
            convert::member_info(&r.name, &r.raft_addr, &r.data_ip, &r.data_mac).map_err(status)?;
        self.on_leader(
            |m| async move {
                let id = admin_ops::join(&m, info).await?;
                Ok(JoinResponse {
                    node_id: id.0,
                    leader_id: m.id.0,
                })
            },
            |mut c| async move { c.join(r).await },
        )
        .await
    }

    async fn promote(
        &self,
        request: Request<NodeRequest>,
    ) -> Result<Response<ChangeResponse>, Status> {
        self.node_change(request, NodeChange::Promote).await
    }

    async fn drain(
        &self,
        request: Request<NodeRequest>,
    ) -> Result<Response<ChangeResponse>, Status> {
        self.node_change(request, NodeChange::Drain).await
    }

    async fn remove(
        &self,
        request: Request<NodeRequest>,
    ) -> Result<Response<ChangeResponse>, Status> {
        self.node_change(request, NodeChange::Remove).await
    }

    async fn transfer_leader(
        &self,
        request: Request<NodeRequest>,
    ) -> Result<Response<ChangeResponse>, Status> {
        self.node_change(request, NodeChange::TransferLeader).await
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(cluster_status(&self.core)))
    }
}

/// The cluster as this member sees it (also used by the HTTP endpoints).
pub fn cluster_status(core: &Core) -> ClusterStatus {
    let Some(member) = core.member() else {
        return ClusterStatus {
            pristine: true,
            bucket_bits: u32::from(core.config.bucket_bits.get()),
            ..Default::default()
        };
    };
    let m = member.metrics();
    let timing = member.config.timing;
    let now = Instant::now();
    let leader_view = m.current_leader == Some(member.id);
    let state = member.state();
    let members = state
        .nodes()
        .iter()
        .filter(|(_, r)| !r.retired)
        .map(|(&id, r)| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|rep| rep.get(&id))
                .and_then(|l| l.as_ref())
                .map(|l| l.index)
                .unwrap_or(0);
            let reachable = if id == member.id {
                true
            } else {
                leader_view
                    && member
                        .leases
                        .maybe_valid(id, now, timing.lease, timing.lease_margin)
            };
            PbMember {
                node_id: id.0,
                name: r.info.name.clone(),
                raft_addr: r.info.raft_addr.clone(),
                data_ip: r.info.data_ip.to_string(),
                data_mac: r.info.data_mac.to_string(),
                role: member.role_of(id).unwrap_or(Role::Unspecified) as i32,
                is_leader: m.current_leader == Some(id),
                draining: r.draining,
                buckets: state.buckets().count_owned_by(id),
                sessions: state.sessions_owned_by(id),
                matched_index: if leader_view { matched } else { 0 },
                reachable,
            }
        })
        .collect();
    ClusterStatus {
        node_id: member.id.0,
        leader_id: m.current_leader.map(|l| l.0).unwrap_or(0),
        term: m.current_term,
        epoch: state.epoch().0,
        last_log_index: m.last_log_index.unwrap_or(0),
        committed_index: m.local_committed.as_ref().map(|l| l.index).unwrap_or(0),
        applied_index: m.last_applied.as_ref().map(|l| l.index).unwrap_or(0),
        bucket_bits: state
            .config()
            .map(|c| u32::from(c.bucket_bits.get()))
            .unwrap_or(0),
        sessions: state.session_count(),
        members,
        external_ips: state
            .config()
            .map(|c| c.external_ips.iter().map(|ip| ip.to_string()).collect())
            .unwrap_or_default(),
        pristine: false,
    }
}

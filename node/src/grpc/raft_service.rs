//! The internal `mfplane.raft.v1.Raft` service: openraft's RPCs from other members and
//! requests forwarded to the leader.

use std::sync::Arc;

use futures::StreamExt;
use mfplane_proto::raft::{RaftPayload, SnapshotChunk, raft_server, snapshot_chunk};
use mfplane_raft_store::TypeConfig;
use mfplane_raft_store::typ::{SnapshotMeta, Vote};
use openraft::Snapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status, Streaming};

use crate::grpc::convert;
use crate::member::Member;
use crate::network::ForwardRequest;
use crate::node::Core;
use crate::store;

/// Serves the Raft transport for one node.
#[derive(Debug)]
pub struct RaftService {
    core: Arc<Core>,
}

impl RaftService {
    pub fn new(core: Arc<Core>) -> Self {
        RaftService { core }
    }

    fn member(&self) -> Result<Arc<Member>, Status> {
        // Not a member yet (still joining): the sender treats this as unreachable and
        // backs off until we are.
        self.core
            .member()
            .ok_or_else(|| Status::unavailable("this member has not started Raft yet (joining)"))
    }
}

fn decode<T: DeserializeOwned>(p: &RaftPayload, what: &str) -> Result<T, Status> {
    postcard::from_bytes(&p.payload).map_err(|e| {
        Status::invalid_argument(format!(
            "undecodable {what} payload ({e}): is the sender running the same mfplane release?"
        ))
    })
}

fn encode<T: Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    postcard::to_allocvec(v)
        .map(|payload| Response::new(RaftPayload { payload }))
        .map_err(|e| Status::internal(format!("encode: {e}")))
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let member = self.member()?;
        let req: openraft::raft::AppendEntriesRequest<TypeConfig> =
            decode(request.get_ref(), "AppendEntries")?;
        member.heard_from_leader(req.vote.leader_id().node_id);
        let resp = member
            .raft
            .append_entries(req)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        encode(&resp)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let member = self.member()?;
        let req = decode(request.get_ref(), "Vote")?;
        let resp = member
            .raft
            .vote(req)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        encode(&resp)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftPayload>, Status> {
        let member = self.member()?;
        let mut stream = request.into_inner();
        let mut head: Option<(Vote, SnapshotMeta)> = None;
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk?.item {
                Some(snapshot_chunk::Item::Meta(meta)) if head.is_none() => {
                    head = Some(postcard::from_bytes(&meta).map_err(|e| {
                        Status::invalid_argument(format!("undecodable snapshot meta: {e}"))
                    })?);
                }
                Some(snapshot_chunk::Item::Data(bytes)) if head.is_some() => {
                    data.extend_from_slice(&bytes)
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "snapshot stream must be one meta chunk followed by data chunks",
                    ));
                }
            }
        }
        let (vote, meta) = head.ok_or_else(|| {
            Status::invalid_argument("snapshot stream ended before its meta chunk")
        })?;
        let snapshot = Snapshot {
            meta,
            snapshot: store::snapshot_from_bytes(data),
        };
        let resp = member
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        encode(&resp)
    }

    async fn transfer_leader(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let member = self.member()?;
        let req = decode(request.get_ref(), "TransferLeader")?;
        let resp = member
            .raft
            .handle_transfer_leader(req)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        encode(&resp)
    }

    async fn forward(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let member = self.member()?;
        let req: ForwardRequest = decode(request.get_ref(), "Forward")?;
        let reply = member.serve_forward(req).await.map_err(convert::status)?;
        encode(&reply)
    }
}

//! openraft's network, over the internal `mfplane.raft.v1.Raft` gRPC service.
//!
//! openraft messages travel as postcard bytes inside `RaftPayload` (see `raft.proto`).
//! Every call is bounded by the timeout openraft passes in its `RPCOption`; a call that
//! never reached the peer becomes `Unreachable` (openraft backs off), any other failure
//! `Network` (openraft retries at once). Snapshots stream in chunks.

use std::future::Future;
use std::time::Duration;

use mfplane_proto::raft::{RaftPayload, SnapshotChunk, raft_client::RaftClient, snapshot_chunk};
use mfplane_raft_store::{MemberInfo, NodeId, TypeConfig};
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::raft::{TransferLeaderRequest, TransferLeaderResponse};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use crate::network::channels::{Channels, is_connect_failure};
use crate::store::{self, SnapshotData};

/// Size of one snapshot chunk: large enough to amortize per-message cost, small enough
/// to stay far below HTTP/2 and tonic message limits.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Builds a [`PeerClient`] per replication target; all share the channel cache.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    pub(crate) me: NodeId,
    pub(crate) channels: Channels,
}

impl NetworkFactory {
    pub fn new(me: NodeId, channels: Channels) -> Self {
        NetworkFactory { me, channels }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &MemberInfo) -> PeerClient {
        PeerClient {
            me: self.me,
            target,
            addr: node.raft_addr.clone(),
            channel: self
                .channels
                .get(&node.raft_addr)
                .map_err(|e| e.to_string()),
        }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct PeerClient {
    me: NodeId,
    target: NodeId,
    addr: String,
    /// An invalid address is reported on every call (as `Unreachable`), not at
    /// construction, because openraft's factory cannot fail.
    channel: Result<Channel, String>,
}

/// Why a call failed, before it is shaped into the error type openraft wants.
enum CallError {
    Timeout(Duration),
    Unreachable(String),
    Network(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl CallError {
    fn from_status(status: &tonic::Status) -> Self {
        // A status without a transport error as its source came from the peer itself:
        // UNAVAILABLE then means it cannot serve Raft yet (still joining), and the
        // sender should back off just as for a peer that is down.
        let refused_by_peer = status.code() == tonic::Code::Unavailable
            && std::error::Error::source(status).is_none();
        if refused_by_peer || is_connect_failure(status) {
            CallError::Unreachable(status.to_string())
        } else {
            CallError::Network(status.to_string())
        }
    }

    fn rpc(self, me: NodeId, target: NodeId, action: RPCTypes) -> RPCError<TypeConfig> {
        match self {
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: me,
                target,
                timeout,
            }),
            CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&Msg(m))),
            CallError::Network(m) => RPCError::Network(NetworkError::new(&Msg(m))),
        }
    }

    fn streaming(self, me: NodeId, target: NodeId) -> StreamingError<TypeConfig> {
        match self {
            CallError::Timeout(timeout) => StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: me,
                target,
                timeout,
            }),
            CallError::Unreachable(m) => StreamingError::Unreachable(Unreachable::new(&Msg(m))),
            CallError::Network(m) => StreamingError::Network(NetworkError::new(&Msg(m))),
        }
    }
}

impl PeerClient {
    fn client(&self) -> Result<RaftClient<Channel>, CallError> {
        match &self.channel {
            Ok(ch) => Ok(RaftClient::new(ch.clone())
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20)),
            Err(e) => Err(CallError::Unreachable(format!(
                "peer {} at {:?}: {e}",
                self.target, self.addr
            ))),
        }
    }

    /// One unary call: encode, send within `ttl`, decode.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        req: &Req,
        ttl: Duration,
        call: F,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, RaftPayload) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let payload =
            postcard::to_allocvec(req).map_err(|e| CallError::Network(format!("encode: {e}")))?;
        let client = self.client()?;
        let reply = match tokio::time::timeout(ttl, call(client, RaftPayload { payload })).await {
            Err(_) => return Err(CallError::Timeout(ttl)),
            Ok(Err(status)) => return Err(CallError::from_status(&status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        postcard::from_bytes(&reply.payload)
            .map_err(|e| CallError::Network(format!("undecodable reply from {}: {e}", self.addr)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, option.hard_ttl(), |mut c, p| async move {
            c.append_entries(p).await
        })
        .await
        .map_err(|e| e.rpc(self.me, self.target, RPCTypes::AppendEntries))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, option.hard_ttl(), |mut c, p| async move {
            c.vote(p).await
        })
        .await
        .map_err(|e| e.rpc(self.me, self.target, RPCTypes::Vote))
    }

    async fn full_snapshot(
        &mut self,
        vote: openraft::alias::VoteOf<TypeConfig>,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let (me, target) = (self.me, self.target);
        let meta = postcard::to_allocvec(&(&vote, &snapshot.meta))
            .map_err(|e| CallError::Network(format!("encode: {e}")).streaming(me, target))?;
        let data = store::snapshot_bytes(&snapshot.snapshot);
        let mut chunks = vec![SnapshotChunk {
            item: Some(snapshot_chunk::Item::Meta(meta)),
        }];
        chunks.extend(data.chunks(SNAPSHOT_CHUNK).map(|c| SnapshotChunk {
            item: Some(snapshot_chunk::Item::Data(c.to_vec())),
        }));
        let mut client = self.client().map_err(|e| e.streaming(me, target))?;
        // A snapshot may be large: allow the RPC timeout per MiB on top of openraft's.
        let ttl =
            option.hard_ttl() + option.hard_ttl() * u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let call = async move { client.install_snapshot(futures::stream::iter(chunks)).await };
        let reply = tokio::select! {
            biased;
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(ttl, call) => r,
        };
        let reply = match reply {
            Err(_) => return Err(CallError::Timeout(ttl).streaming(me, target)),
            Ok(Err(status)) => return Err(CallError::from_status(&status).streaming(me, target)),
            Ok(Ok(r)) => r.into_inner(),
        };
        postcard::from_bytes(&reply.payload).map_err(|e| {
            CallError::Network(format!("undecodable snapshot reply: {e}")).streaming(me, target)
        })
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&req, option.hard_ttl(), |mut c, p| async move {
            c.transfer_leader(p).await
        })
        .await
        .map_err(|e| e.rpc(self.me, self.target, RPCTypes::TransferLeader))
    }
}

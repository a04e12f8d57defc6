//! Member-to-leader requests carried by `Raft.Forward`: commands proposed by a member
//! that is not the leader (session batches from bucket owners) and bucket-lease
//! renewals.
//!
//! Payloads are postcard-encoded [`ForwardRequest`]/[`ForwardReply`]; like the Raft
//! messages, they only travel between members of one release.

use std::time::Duration;

use mfplane_proto::raft::{RaftPayload, raft_client::RaftClient};
use mfplane_raft_store::{Command, Epoch, NodeId, Response};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::network::channels::Channels;

/// What a member asks of the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Propose this command and answer with its applied response.
    Write(Command),
    /// "I am alive and in contact": renews `node`'s bucket lease on the leader.
    RenewLease { node: NodeId },
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    /// The command committed at `index` with this response.
    Written { index: u64, response: Response },
    /// The lease is renewed. The owner's lease is valid only once its applied state has
    /// reached `epoch`, so a lagging owner cannot allocate under a table the leader has
    /// already replaced, and lasts at most `lease`, the leader's own setting: what the
    /// leader waits out (and fences for) is its lease, whatever the owner was told.
    Lease {
        epoch: Epoch,
        term: u64,
        lease: Duration,
    },
}

/// Sends `req` to the member at `addr` (the leader, as far as the caller knows).
///
/// # Errors
/// [`Error::Peer`] when the call fails or times out, [`Error::NoLeader`] when the peer
/// is not the leader and knows none, [`Error::Codec`] for undecodable replies. A peer
/// that is not the leader but knows it answers with its address, returned as
/// [`Error::Peer`] whose message starts with `leader=`; [`send`] follows it once.
pub async fn send_to(
    channels: &Channels,
    addr: &str,
    req: &ForwardRequest,
    timeout: Duration,
) -> Result<ForwardReply> {
    let payload = postcard::to_allocvec(req)?;
    let mut client = RaftClient::new(channels.get(addr)?)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let reply = match tokio::time::timeout(timeout, client.forward(RaftPayload { payload })).await {
        Err(_) => {
            return Err(Error::Peer {
                peer: addr.to_string(),
                message: format!("no answer within {timeout:?}"),
            });
        }
        Ok(Err(status)) => {
            if let Some(leader) = status
                .metadata()
                .get(mfplane_proto::LEADER_METADATA_KEY)
                .and_then(|v| v.to_str().ok())
            {
                return Err(Error::Peer {
                    peer: addr.to_string(),
                    message: format!("leader={leader}"),
                });
            }
            if status.code() == tonic::Code::Unavailable
                && !crate::network::channels::is_connect_failure(&status)
            {
                return Err(Error::NoLeader);
            }
            return Err(Error::Peer {
                peer: addr.to_string(),
                message: status.message().to_string(),
            });
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    Ok(postcard::from_bytes(&reply.payload)?)
}

/// [`send_to`], following one redirect to the leader the peer names.
///
/// # Errors
/// As [`send_to`].
pub async fn send(
    channels: &Channels,
    addr: &str,
    req: &ForwardRequest,
    timeout: Duration,
) -> Result<ForwardReply> {
    match send_to(channels, addr, req, timeout).await {
        Err(Error::Peer { message, .. }) if message.starts_with("leader=") => {
            let leader = message.trim_start_matches("leader=").to_string();
            send_to(channels, &leader, req, timeout).await
        }
        other => other,
    }
}

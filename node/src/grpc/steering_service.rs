//! The public `mfplane.steering.v1.Steering` service: the bucket table as a stream, for
//! load balancers. A client that already holds the current epoch gets only changes.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use mfplane_proto::steering::{
    BucketOwner, FlowHashKey, Owner, SteeringUpdate, WatchRequest, steering_server,
};
use mfplane_raft_store::{ClusterState, Epoch, NodeId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::grpc::convert::status;
use crate::member::Member;
use crate::node::Core;
use crate::store;

/// Serves Steering for one node.
#[derive(Debug)]
pub struct SteeringService {
    core: Arc<Core>,
}

impl SteeringService {
    pub fn new(core: Arc<Core>) -> Self {
        SteeringService { core }
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<SteeringUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl steering_server::Steering for SteeringService {
    type WatchStream = UpdateStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        let member = self.core.require_member().map_err(status)?;
        let from = Epoch(request.into_inner().from_epoch);
        let (tx, rx) = mpsc::channel(16);
        let shutdown = self.core.shutdown_signal();
        tokio::spawn(feed(member, from, tx, shutdown));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Sends the table, then every change, until the client goes away or the node stops.
async fn feed(
    member: Arc<Member>,
    from: Epoch,
    tx: mpsc::Sender<Result<SteeringUpdate, Status>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut epochs = store::watch_epoch(&member.sm);
    let mut sent: Option<(Epoch, Vec<Option<NodeId>>)> = None;
    loop {
        let update = {
            let state = member.state();
            let epoch = state.epoch();
            let owners = state.buckets().owners().to_vec();
            let update = match &sent {
                None if epoch == from && epoch != Epoch::NONE => None,
                None => Some(update(
                    &state,
                    epoch,
                    true,
                    owners.iter().enumerate().map(|(b, o)| (b, *o)).collect(),
                )),
                Some((last, _)) if *last == epoch => None,
                Some((_, before)) => {
                    let changed = owners
                        .iter()
                        .enumerate()
                        .filter(|(b, o)| before.get(*b) != Some(*o))
                        .map(|(b, o)| (b, *o))
                        .collect();
                    // A table that grew (bootstrap) is sent whole.
                    Some(update(&state, epoch, before.len() != owners.len(), changed))
                }
            };
            sent = Some((epoch, owners));
            update
        };
        if let Some(u) = update
            && tx.send(Ok(u)).await.is_err()
        {
            return;
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
            r = epochs.changed() => if r.is_err() { return },
        }
    }
}

fn update(
    state: &ClusterState,
    epoch: Epoch,
    full: bool,
    buckets: Vec<(usize, Option<NodeId>)>,
) -> SteeringUpdate {
    let table = state.buckets();
    let owners = state
        .nodes()
        .iter()
        .filter(|(id, _)| table.count_owned_by(**id) > 0)
        .map(|(id, r)| Owner {
            node_id: id.0,
            data_ip: r.info.data_ip.to_string(),
            data_mac: r.info.data_mac.to_string(),
        })
        .collect();
    SteeringUpdate {
        epoch: epoch.0,
        bucket_bits: state
            .config()
            .map(|c| u32::from(c.bucket_bits.get()))
            .unwrap_or(0),
        full,
        buckets: buckets
            .into_iter()
            .map(|(b, o)| BucketOwner {
                bucket: u32::try_from(b).unwrap_or(u32::MAX),
                node_id: o.map(|o| o.0).unwrap_or(0),
            })
            .collect(),
        owners,
        external_ips: state
            .config()
            .map(|c| c.external_ips.iter().map(|ip| ip.to_string()).collect())
            .unwrap_or_default(),
        flow_hash_key: state.config().map(|c| FlowHashKey {
            k0: c.flow_hash_key.k0,
            k1: c.flow_hash_key.k1,
        }),
    }
}

//! The server side: the internal Raft service and the public Admin, Steering and
//! Sessions services, all on one gRPC port.

pub mod admin_service;
pub mod convert;
pub mod raft_service;
pub mod sessions_service;
pub mod steering_service;

use std::sync::Arc;
use std::time::Duration;

use mfplane_proto::admin::admin_server::AdminServer;
use mfplane_proto::raft::raft_server::RaftServer;
use mfplane_proto::sessions::sessions_server::SessionsServer;
use mfplane_proto::steering::steering_server::SteeringServer;

use crate::node::Core;
use crate::transport::Incoming;

/// Largest message accepted: a snapshot chunk is 1 MiB and a forwarded session batch
/// is tens of KiB, so this only stops abuse.
pub const MAX_MESSAGE: usize = 64 << 20;

/// Serves every service on `incoming` until the node shuts down.
pub async fn serve(core: Arc<Core>, incoming: Incoming) {
    let mut shutdown = core.shutdown_signal();
    let raft = RaftServer::new(raft_service::RaftService::new(core.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let admin = AdminServer::new(admin_service::AdminService::new(core.clone()));
    let steering = SteeringServer::new(steering_service::SteeringService::new(core.clone()));
    let sessions = SessionsServer::new(sessions_service::SessionsService::new(core.clone()));
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_secs(3)))
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .add_service(raft)
        .add_service(admin)
        .add_service(steering)
        .add_service(sessions)
        .serve_with_incoming_shutdown(incoming, async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "gRPC server stopped");
    }
}

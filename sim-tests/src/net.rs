//! The simulated network: turmoil TCP under the node's transport seam, gRPC channels
//! for the simulated load balancer and operator, and the names and ports of the hosts.

use std::io;
use std::time::Duration;

use futures::StreamExt;
use mfplane_node::transport::{Conn, Connector, Transport};
use tonic::transport::{Channel, Endpoint};

/// gRPC port of every member (Raft, Admin, Steering, Sessions).
pub const GRPC_PORT: u16 = 7000;
/// UDP port every data-path host (worker, LB, traffic generator) receives bursts on.
pub const DATA_PORT: u16 = 9000;
/// The simulated load balancer's host name.
pub const LB: &str = "lb";
/// The traffic generator's host name (inside hosts and remote servers).
pub const TRAFFIC: &str = "traffic";
/// The host the operator's Admin calls run from.
pub const OPERATOR: &str = "operator";

/// Host name of worker `i` (1-based, like the node names `n1`, `n2`, ...).
pub fn worker(i: usize) -> String {
    format!("n{i}")
}

/// The `host:port` members advertise and dial.
pub fn grpc_addr(host: &str) -> String {
    format!("{host}:{GRPC_PORT}")
}

/// Dials through turmoil TCP; turmoil's DNS resolves host names.
pub fn connector() -> Connector {
    Connector::new(|addr: String| async move {
        let stream = turmoil::net::TcpStream::connect(addr).await?;
        let peer = stream.peer_addr().ok();
        Ok(Conn::new(stream, peer))
    })
}

/// The node's transport on this host: a turmoil listener on [`GRPC_PORT`] and
/// [`connector`].
///
/// # Errors
/// The bind error (the port is taken on this host).
pub async fn transport() -> io::Result<Transport> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", GRPC_PORT)).await?;
    let incoming = futures::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => return Some((Ok(Conn::new(stream, Some(peer))), listener)),
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
    .boxed();
    Ok(Transport {
        incoming,
        connector: connector(),
    })
}

/// A lazily connected gRPC channel to `addr` with the same keepalive as the members'
/// own channels, so a partitioned or crashed peer fails calls instead of hanging them.
///
/// # Errors
/// `addr` is not a valid authority.
pub fn channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .http2_keep_alive_interval(Duration::from_millis(300))
        .keep_alive_timeout(Duration::from_millis(900))
        .keep_alive_while_idle(true)
        .connect_with_connector_lazy(connector().service()))
}

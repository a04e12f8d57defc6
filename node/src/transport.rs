//! The byte-stream seam between the node and the network.
//!
//! The node never opens sockets itself: it is handed a stream of accepted connections
//! (for tonic's `serve_with_incoming`) and a [`Connector`] that dials a `host:port`
//! (for `Endpoint::connect_with_connector_lazy`). The daemon passes real TCP; the
//! turmoil simulation passes turmoil's simulated TCP, and so runs this exact code.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, future::BoxFuture};
use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Anything that carries bytes both ways.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// One connection, accepted or dialed, with its type erased so that production and
/// simulation share every type above this module.
pub struct Conn {
    io: Box<dyn ByteStream>,
    peer: Option<SocketAddr>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").field("peer", &self.peer).finish()
    }
}

impl Conn {
    /// Wraps a connected stream; `peer` is reported to services for logging.
    pub fn new(io: impl ByteStream, peer: Option<SocketAddr>) -> Self {
        Conn {
            io: Box::new(io),
            peer,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

/// What tonic learns about an accepted connection.
#[derive(Debug, Clone, Copy)]
pub struct PeerInfo {
    pub peer: Option<SocketAddr>,
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        PeerInfo { peer: self.peer }
    }
}

/// Accepted connections, in arrival order.
pub type Incoming = BoxStream<'static, io::Result<Conn>>;

type DialFn = dyn Fn(String) -> BoxFuture<'static, io::Result<Conn>> + Send + Sync;

/// Dials `host:port`. Cheap to clone.
#[derive(Clone)]
pub struct Connector(Arc<DialFn>);

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connector")
    }
}

impl Connector {
    /// A connector from a dial function.
    pub fn new<F, Fut>(dial: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<Conn>> + Send + 'static,
    {
        Connector(Arc::new(move |addr| dial(addr).boxed()))
    }

    /// Real TCP with `TCP_NODELAY` (Raft and forwards are small request/response
    /// exchanges; Nagle would add up to 40 ms to each).
    pub fn tcp() -> Self {
        Connector::new(|addr: String| async move {
            let stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            let peer = stream.peer_addr().ok();
            Ok(Conn::new(stream, peer))
        })
    }

    /// Dials the authority of `uri`.
    pub async fn dial(&self, uri: Uri) -> io::Result<Conn> {
        let addr = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{uri} has no host:port"),
                )
            })?;
        (self.0)(addr).await
    }

    /// The connector as the `tower::Service<Uri>` tonic's `Endpoint` wants.
    pub fn service(
        &self,
    ) -> impl tower::Service<
        Uri,
        Response = TokioIo<Conn>,
        Error = io::Error,
        Future = BoxFuture<'static, io::Result<TokioIo<Conn>>>,
    > + Clone
    + Send
    + 'static {
        let this = self.clone();
        tower::service_fn(move |uri: Uri| {
            let this = this.clone();
            async move { this.dial(uri).await.map(TokioIo::new) }.boxed()
        })
    }
}

/// The listener and the dialer a node runs on.
pub struct Transport {
    pub incoming: Incoming,
    pub connector: Connector,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Transport")
    }
}

impl Transport {
    /// Binds a real TCP listener on `addr`.
    ///
    /// # Errors
    /// The bind error (address in use, permission).
    pub async fn tcp(addr: SocketAddr) -> io::Result<Transport> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let incoming = futures::stream::unfold(listener, |listener| async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        return Some((Ok(Conn::new(stream, Some(peer))), listener));
                    }
                    // Out of descriptors or a connection reset before accept: keep
                    // serving the others instead of ending the server.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
            }
        })
        .boxed();
        Ok(Transport {
            incoming,
            connector: Connector::tcp(),
        })
    }
}

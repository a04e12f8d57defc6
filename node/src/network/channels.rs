//! One cached gRPC channel per peer address.
//!
//! A tonic `Channel` multiplexes every RPC to a peer over one HTTP/2 connection and
//! reconnects by itself, so building one per RPC (as openraft's example does) only adds
//! handshakes. HTTP/2 keepalive makes a dead connection fail fast instead of hanging,
//! which matters after a partition heals (see `research/rust-deps.md` §3.3).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};
use crate::transport::Connector;

/// Channels by `host:port`. Cheap to clone; clones share the cache.
#[derive(Clone, Debug)]
pub struct Channels {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connector: Connector,
    connect_timeout: Duration,
    // std Mutex: held only to look up or insert, never across an await.
    cache: Mutex<BTreeMap<String, Channel>>,
}

impl Channels {
    /// A cache dialing through `connector`; `connect_timeout` bounds each connect.
    pub fn new(connector: Connector, connect_timeout: Duration) -> Self {
        Channels {
            inner: Arc::new(Inner {
                connector,
                connect_timeout,
                cache: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The channel to `addr` (`host:port`), created lazily: no connection is made until
    /// the first RPC.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when `addr` is not a valid authority.
    pub fn get(&self, addr: &str) -> Result<Channel> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = cache.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| {
                Error::InvalidRequest(format!("peer address {addr:?} is not host:port: {e}"))
            })?
            .connect_timeout(self.inner.connect_timeout)
            .http2_keep_alive_interval(Duration::from_millis(500))
            .keep_alive_timeout(Duration::from_millis(1500))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(16 << 20));
        let channel = endpoint.connect_with_connector_lazy(self.inner.connector.service());
        cache.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Forgets the channel to `addr` (the peer was removed from the cluster).
    pub fn forget(&self, addr: &str) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }
}

/// Whether a failed call never reached the peer (nothing listening, connect refused or
/// timed out), as opposed to failing after it was sent. openraft backs off longer on
/// the former.
pub fn is_connect_failure(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused
                    | NotConnected
                    | AddrNotAvailable
                    | TimedOut
                    | HostUnreachable
                    | NetworkUnreachable
            ) {
                return true;
            }
        }
        let text = err.to_string();
        if text.contains("connect") || text.contains("dns error") {
            return true;
        }
        source = err.source();
    }
    status.message().contains("connect")
}

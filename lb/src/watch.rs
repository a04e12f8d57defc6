//! The cluster client: follows `Steering.Watch` on any member and hands every new
//! table to a [`TableSink`].
//!
//! Fails over between members with exponential backoff, resumes from the epoch it
//! holds (so a reconnect costs no full table unless something changed), and never
//! touches the installed table while the cluster is unreachable: the LB keeps
//! steering by its last table.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mfplane_proto::steering::WatchRequest;
use mfplane_proto::steering::steering_client::SteeringClient;
use rand::Rng;
use tonic::transport::Endpoint;
use tracing::{debug, info, warn};

use crate::error::Result;
use crate::table::{Epoch, SteeringTable};

/// Where new tables go (the BPF maps in the agent).
pub trait TableSink: Send {
    /// Makes `table` the one packets are steered by.
    fn install_table(&mut self, table: &SteeringTable) -> Result<()>;

    /// A stream from `endpoint` is open (news for readiness reporting; nothing to do by
    /// default).
    fn following(&mut self, endpoint: &str) {
        let _ = endpoint;
    }

    /// The stream from `endpoint` ended or could not be opened, for `error`; the
    /// installed table stays in use.
    fn stream_lost(&mut self, endpoint: &str, error: &str) {
        let _ = (endpoint, error);
    }
}

impl<T: TableSink> TableSink for Arc<Mutex<T>> {
    fn install_table(&mut self, table: &SteeringTable) -> Result<()> {
        // A poisoned lock means another thread panicked mid-call; the maps themselves
        // are still consistent (the flip is the last write), so carry on.
        let mut guard = self.lock().unwrap_or_else(|p| p.into_inner());
        guard.install_table(table)
    }
}

/// Timing of the watcher.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// First retry delay after a lost stream; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Limit for TCP connect and for the first response of a member.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive: a silently partitioned member is noticed after about twice
    /// this.
    pub keepalive: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            keepalive: Duration::from_secs(2),
        }
    }
}

/// Follows the cluster's steering table.
#[derive(Debug)]
pub struct Watcher {
    endpoints: Vec<String>,
    opts: WatchOptions,
    current: Option<SteeringTable>,
    /// Set when our table may not match the member's history (a rejected update):
    /// the next stream starts from a full table.
    resync: bool,
    epoch_tx: tokio::sync::watch::Sender<Epoch>,
}

impl Watcher {
    /// A watcher over `endpoints` (URIs such as `http://10.0.0.1:7000`).
    pub fn new(endpoints: Vec<String>, opts: WatchOptions) -> Self {
        Watcher {
            endpoints,
            opts,
            current: None,
            resync: false,
            epoch_tx: tokio::sync::watch::Sender::new(Epoch(0)),
        }
    }

    /// The epoch installed last, as it changes.
    pub fn epochs(&self) -> tokio::sync::watch::Receiver<Epoch> {
        self.epoch_tx.subscribe()
    }

    /// Runs until the future is dropped.
    pub async fn run(&mut self, sink: &mut impl TableSink) {
        if self.endpoints.is_empty() {
            warn!("no cluster endpoints: steering table will never be filled");
            return std::future::pending().await;
        }
        let mut delay = self.opts.backoff_min;
        let mut i = 0usize;
        loop {
            let endpoint = self.endpoints[i % self.endpoints.len()].clone();
            let (received, error) = match self.session(&endpoint, sink).await {
                Ok(received) => (received, "stream ended by the member".to_owned()),
                Err((received, e)) => (received, e),
            };
            metrics::gauge!("mfplane_lb_cluster_connected").set(0.0);
            sink.stream_lost(&endpoint, &error);
            if received {
                delay = self.opts.backoff_min;
            }
            let epoch = self.current.as_ref().map_or(0, |t| t.epoch.0);
            let jitter = rand::rng().random_range(0.8..1.2);
            let wait = delay.mul_f64(jitter);
            warn!(
                endpoint,
                error,
                epoch,
                retry_in_ms = wait.as_millis() as u64,
                "steering stream lost; keeping the installed table and trying the next member"
            );
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(self.opts.backoff_max);
            i = i.wrapping_add(1);
        }
    }

    /// One stream from one member. Returns whether any message arrived, and why it
    /// ended.
    async fn session(
        &mut self,
        endpoint: &str,
        sink: &mut impl TableSink,
    ) -> Result<bool, (bool, String)> {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| (false, format!("bad endpoint: {e}")))?
            .connect_timeout(self.opts.connect_timeout)
            .http2_keep_alive_interval(self.opts.keepalive)
            .keep_alive_timeout(self.opts.keepalive)
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(|e| (false, format!("connect: {e}")))?;
        let mut client = SteeringClient::new(channel);
        let from_epoch = match (&self.current, self.resync) {
            (Some(t), false) => t.epoch.0,
            _ => 0,
        };
        let request = client.watch(WatchRequest { from_epoch });
        let mut stream = tokio::time::timeout(self.opts.connect_timeout, request)
            .await
            .map_err(|_| (false, "no response to Watch".to_owned()))?
            .map_err(|s| (false, format!("Watch: {s}")))?
            .into_inner();
        info!(endpoint, from_epoch, "following the steering table");
        sink.following(endpoint);
        metrics::gauge!("mfplane_lb_cluster_connected").set(1.0);
        let mut received = false;
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(received),
                Err(s) => return Err((received, format!("stream: {s}"))),
            };
            received = true;
            match SteeringTable::apply(self.current.as_ref(), &msg) {
                Ok(Some(table)) => {
                    if let Err(e) = sink.install_table(&table) {
                        metrics::counter!("mfplane_lb_updates_total", "result" => "install_failed")
                            .increment(1);
                        self.resync = true;
                        return Err((received, format!("installing epoch {}: {e}", table.epoch.0)));
                    }
                    metrics::counter!("mfplane_lb_updates_total", "result" => "applied")
                        .increment(1);
                    metrics::gauge!("mfplane_lb_epoch").set(table.epoch.0 as f64);
                    metrics::gauge!("mfplane_lb_owners").set(table.owners.len() as f64);
                    metrics::gauge!("mfplane_lb_unowned_buckets")
                        .set(table.unowned_buckets() as f64);
                    info!(
                        epoch = table.epoch.0,
                        full = msg.full,
                        owners = table.owners.len(),
                        unowned = table.unowned_buckets(),
                        "steering table applied"
                    );
                    let epoch = table.epoch;
                    self.current = Some(table);
                    self.resync = false;
                    self.epoch_tx.send_replace(epoch);
                }
                Ok(None) => {
                    metrics::counter!("mfplane_lb_updates_total", "result" => "stale").increment(1);
                    debug!(epoch = msg.epoch, "stale steering update skipped");
                }
                Err(e) => {
                    metrics::counter!("mfplane_lb_updates_total", "result" => "rejected")
                        .increment(1);
                    self.resync = true;
                    return Err((received, e.to_string()));
                }
            }
        }
    }
}

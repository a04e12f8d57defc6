//! The agent: read the configuration (waiting for the file if needed), serve the HTTP
//! probes, load, configure, attach, follow the cluster, export metrics, detach.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{AgentConfig, Args};
use crate::config_file::{self, ConfigFile};
use crate::datapath::Datapath;
use crate::error::Result;
use crate::expect::ClusterExpectation;
use crate::health::Health;
use crate::http;
use crate::metrics;
use crate::table::SteeringTable;
use crate::watch::{TableSink, WatchOptions, Watcher};

/// How often the counters are copied into the metrics registry.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// The whole daemon, as `mfplane-lb` runs it, until `shutdown` completes.
///
/// With `--http-listen` on the command line the probes are served at once, so a pod
/// waiting for its `--config` file is alive (and says in `/readyz` what it waits
/// for). A `--config` file that does not exist yet is waited for, bounded only by
/// `shutdown`; one that exists but is invalid is an error.
///
/// # Errors
/// The configuration is invalid, the HTTP address cannot be bound, or [`run`] failed.
pub async fn launch(args: Args, shutdown: impl Future<Output = ()>) -> Result<()> {
    let health = Arc::new(Health::default());
    let prometheus = metrics::install();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut server = match args.http_listen {
        Some(listen) => Some(http::serve(listen, Arc::clone(&health), prometheus.clone()).await?),
        None => None,
    };
    let file = match &args.config {
        None => None,
        Some(path) => {
            health.waiting_for_config(path);
            tokio::select! {
                () = &mut shutdown => {
                    info!("shutting down while waiting for the configuration file");
                    return Ok(());
                }
                () = config_file::wait_for(path, config_file::WAIT_POLL) => {}
            }
            health.starting();
            Some(ConfigFile::load(path)?)
        }
    };
    let cfg = args.resolve_with(file.as_ref())?;
    if server.is_none() {
        server = Some(http::serve(cfg.http_listen, Arc::clone(&health), prometheus).await?);
    }
    let result = run(cfg, health, shutdown).await;
    drop(server);
    result
}

/// Runs the LB until `shutdown` completes, then detaches from every interface,
/// reporting each step to `health`.
///
/// # Errors
/// Loading, configuring or attaching failed (nothing stays attached then).
pub async fn run(
    cfg: AgentConfig,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    health.starting();
    let mut dp = Datapath::load_embedded()?;
    dp.set_settings(&cfg.settings)?;
    dp.set_fabric(cfg.fabric.index)?;
    let dp = Arc::new(Mutex::new(dp));
    let result = attach_and_serve(&cfg, &dp, &health, shutdown).await;
    health.shutting_down();
    lock(&dp).detach_all();
    result
}

fn lock(dp: &Arc<Mutex<Datapath>>) -> std::sync::MutexGuard<'_, Datapath> {
    // Map writes are single syscalls; a panic elsewhere leaves nothing half-done here.
    dp.lock().unwrap_or_else(|p| p.into_inner())
}

async fn attach_and_serve(
    cfg: &AgentConfig,
    dp: &Arc<Mutex<Datapath>>,
    health: &Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut attached = Vec::with_capacity(cfg.attach.len());
    for a in &cfg.attach {
        lock(dp).attach(&a.iface.name, cfg.xdp_mode)?;
        attached.push(format!("{} ({})", a.iface.name, a.side));
    }
    info!(
        interfaces = %attached.join(", "),
        fabric = %cfg.fabric.name,
        cluster = ?cfg.cluster,
        http = %cfg.http_listen,
        "mfplane-lb running"
    );
    health.attached(attached);
    let stats = {
        let dp = Arc::clone(dp);
        let prometheus = metrics::install();
        async move {
            let mut tick = tokio::time::interval(STATS_INTERVAL);
            loop {
                tick.tick().await;
                let snapshot = lock(&dp).counters();
                match snapshot {
                    Ok(s) => metrics::publish(&s),
                    Err(e) => warn!(error = %e, "reading counters failed"),
                }
                prometheus.run_upkeep();
            }
        }
    };
    let mut watcher = Watcher::new(cfg.cluster.clone(), WatchOptions::default());
    let mut sink = AgentSink {
        dp: Arc::clone(dp),
        expect: cfg.expect.clone(),
        health: Arc::clone(health),
    };
    tokio::select! {
        () = watcher.run(&mut sink) => {}
        () = stats => {}
        () = shutdown => info!("shutting down"),
    }
    // Final counters, so a scrape after shutdown-in-progress sees the last values.
    if let Ok(s) = lock(dp).counters() {
        metrics::publish(&s);
    }
    Ok(())
}

/// The maps, behind the configured cluster check, reporting to [`Health`].
struct AgentSink {
    dp: Arc<Mutex<Datapath>>,
    expect: ClusterExpectation,
    health: Arc<Health>,
}

impl TableSink for AgentSink {
    fn install_table(&mut self, table: &SteeringTable) -> Result<()> {
        let result = self
            .expect
            .check(table)
            .and_then(|()| self.dp.install_table(table));
        match &result {
            Ok(()) => self.health.table_installed(table.epoch),
            Err(e) => self.health.table_refused(e.to_string()),
        }
        result
    }

    fn following(&mut self, endpoint: &str) {
        self.health.following(endpoint);
    }

    fn stream_lost(&mut self, endpoint: &str, error: &str) {
        self.health.cluster_lost(format!("{endpoint}: {error}"));
    }
}

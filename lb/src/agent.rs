//! The agent: load, configure, attach, follow the cluster, export metrics, detach.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::AgentConfig;
use crate::datapath::Datapath;
use crate::error::{Error, Result};
use crate::metrics;
use crate::watch::{WatchOptions, Watcher};

/// How often the counters are copied into the metrics registry.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the LB until `shutdown` completes, then detaches from every interface.
///
/// # Errors
/// Loading, configuring or attaching failed (nothing stays attached then), or the
/// metrics listener could not start.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let mut dp = Datapath::load_embedded()?;
    dp.set_settings(&cfg.settings)?;
    dp.set_fabric(cfg.fabric.index)?;
    let dp = Arc::new(Mutex::new(dp));
    let result = attach_and_serve(&cfg, &dp, shutdown).await;
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
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    for iface in &cfg.attach {
        lock(dp).attach(&iface.name, cfg.xdp_mode)?;
    }
    metrics::install(cfg.metrics_listen).map_err(|e| Error::Metrics {
        listen: cfg.metrics_listen,
        reason: e.to_string(),
    })?;
    info!(
        metrics = %cfg.metrics_listen,
        fabric = %cfg.fabric.name,
        cluster = ?cfg.cluster,
        "mfplane-lb running"
    );
    let stats = {
        let dp = Arc::clone(dp);
        async move {
            let mut tick = tokio::time::interval(STATS_INTERVAL);
            loop {
                tick.tick().await;
                let snapshot = lock(&dp).counters();
                match snapshot {
                    Ok(s) => metrics::publish(&s),
                    Err(e) => warn!(error = %e, "reading counters failed"),
                }
            }
        }
    };
    let mut watcher = Watcher::new(cfg.cluster.clone(), WatchOptions::default());
    let mut sink = Arc::clone(dp);
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

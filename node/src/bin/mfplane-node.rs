//! `mfplane-node`: the worker daemon. A thin `main` over [`mfplane_node::Node`]: parse
//! and validate the configuration, open the data directory, bind the ports, run until
//! SIGTERM/SIGINT, then stop cleanly (leadership is handed over first).

use anyhow::Context;
use clap::Parser;
use mfplane_node::{Args, Node, Storage, Transport};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// Log filter unless `MFPLANE_LOG` says otherwise. openraft warns on every failed
/// heartbeat and replication attempt, 20 lines a second for each member that is down;
/// the controller logs the event that matters (a lapsed lease moving buckets) once.
const DEFAULT_LOG: &str = "info,openraft=warn,openraft::core::heartbeat=error,\
    openraft::replication=error,openraft::engine::handler::replication_handler=error";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::registry()
        .with(
            EnvFilter::try_from_env("MFPLANE_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)),
        )
        .with(tracing_subscriber::fmt::layer().with_target(false))
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mfplane-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse().merge_file()?;
    // The daemon seeds openraft's election jitter from the OS; only simulations fix it.
    let config = args.validate(rand::random::<u64>())?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("--data-dir {}: cannot create it", config.data_dir.display()))?;
    let storage = Storage::open_sled(&config.data_dir)?;
    let transport = Transport::tcp(config.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", config.listen))?;
    let prometheus = match mfplane_node::metrics::install_prometheus() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    };
    let http = config.http_listen;
    let datapath = config.datapath.clone();
    tracing::info!(name = %config.name, listen = %config.listen, advertise = %config.advertise, "starting");
    let node = Node::start(config, transport, storage).await?;
    if let Some(addr) = http {
        mfplane_node::http::serve(node.core.clone(), addr, prometheus)
            .await
            .with_context(|| format!("--http-listen {addr}: cannot bind"))?;
    }
    // The data path runs beside the control plane; if its socket fails the member
    // stops, rather than stay in the cluster owning buckets it cannot translate.
    let datapath = async {
        match datapath {
            Some(settings) => {
                let iface = settings.iface.clone();
                mfplane_node::datapath::serve(node.core.clone(), settings)
                    .await
                    .with_context(|| format!("--data-interface {iface}"))
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        signal = wait_for_signal() => {
            signal?;
            tracing::info!("signal received: shutting down");
        }
        failed = datapath => {
            node.shutdown().await;
            return failed;
        }
    }
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

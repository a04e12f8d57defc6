//! `mfplane-bench`: replication throughput and commit latency of a 3-member cluster of
//! real `mfplane-node` processes on loopback.
//!
//! Each member proposes synthetic sessions through its real `SessionProposer` (group
//! commit, forwarding to the leader, Raft replication to a majority, sled flushes, apply
//! on every member), driven by many concurrent callers. Prints committed sessions per
//! second over the whole cluster and the latency of one `propose` call (enqueue to
//! commit), per member.
//!
//! ```text
//! cargo build --release -p mfplane-node --bins
//! target/release/mfplane-bench --sessions 300000 --batch-max 1024
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mfplane_node::local_cluster::LocalCluster;

#[derive(Debug, Parser)]
#[command(
    name = "mfplane-bench",
    about = "Session replication throughput and commit latency of 3 local members"
)]
struct Args {
    /// Sessions to commit, spread evenly over the members.
    #[arg(long, default_value_t = 300_000)]
    sessions: u64,
    /// Largest batch proposed as one Raft entry (--batch-max of the members).
    #[arg(long, default_value_t = 1024)]
    batch_max: usize,
    /// Longest a session waits for its batch to fill (--batch-delay of the members).
    #[arg(long, default_value = "1ms")]
    batch_delay: String,
    /// Concurrent callers per member.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Sessions per propose call.
    #[arg(long, default_value_t = 64)]
    chunk: usize,
    /// Members in the cluster.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// The mfplane-node binary (default: next to this one).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// Keep the data directories and logs (printed at the end).
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match &args.node_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("mfplane-node"),
    };
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it (cargo build --release -p mfplane-node --bins) or pass --node-bin",
        bin.display()
    );
    let dir = tempfile::Builder::new().prefix("mfplane-bench").tempdir()?;
    let common = vec![
        "--auto-promote".to_string(),
        "--debug-synthetic-load".into(),
        "--batch-max".into(),
        args.batch_max.to_string(),
        "--batch-delay".into(),
        args.batch_delay.clone(),
    ];
    let mut cluster = LocalCluster::new(&bin, dir.path(), 77, 25100, common);
    // Eight external IPs: room for about 500k sessions at 256 buckets.
    let ips: Vec<String> = (1..=8).map(|i| format!("192.0.2.{i}")).collect();
    cluster
        .start_cluster(
            args.members,
            &["--external-ip".into(), ips.join(",")],
            Duration::from_secs(120),
        )
        .await
        .context("starting the cluster")?;
    println!(
        "{} members, batch_max {}, batch_delay {}, {} callers x {} sessions per member",
        args.members, args.batch_max, args.batch_delay, args.concurrency, args.chunk
    );

    let per = args.sessions / args.members as u64;
    let query = format!(
        "&concurrency={}&chunk={}&deadline_ms=600000",
        args.concurrency, args.chunk
    );
    let started = Instant::now();
    let loads = (0..args.members).map(|i| {
        let addr = cluster.addrs(i).http;
        let query = query.clone();
        tokio::spawn(async move {
            mfplane_node::local_cluster::load(&addr, per, i as u64 * 10_000_000, &query).await
        })
    });
    let loads: Vec<_> = loads.collect();
    let mut accepted = 0;
    let mut reports = Vec::new();
    for (i, l) in loads.into_iter().enumerate() {
        let r = l
            .await?
            .with_context(|| format!("load through n{}", i + 1))?;
        accepted += r.accepted;
        reports.push(r);
    }
    let wall = started.elapsed();
    let converged = cluster
        .wait_converged(
            &(0..args.members).collect::<Vec<_>>(),
            Duration::from_secs(120),
        )
        .await?;

    for (i, r) in reports.iter().enumerate() {
        println!(
            "  n{}: {} accepted, {} rejected, {} failed, {:.0} sessions/s, propose latency p50 {:.2} ms, p99 {:.2} ms",
            i + 1,
            r.accepted,
            r.rejected,
            r.failed,
            r.sessions_per_sec,
            r.p50_ms,
            r.p99_ms
        );
    }
    #[allow(clippy::cast_precision_loss, reason = "a rate for people")]
    let rate = accepted as f64 / wall.as_secs_f64();
    let p50 = reports.iter().map(|r| r.p50_ms).fold(0.0, f64::max);
    let p99 = reports.iter().map(|r| r.p99_ms).fold(0.0, f64::max);
    println!(
        "committed {accepted} sessions in {:.2} s: {rate:.0} sessions/s; commit latency p50 {p50:.2} ms, p99 {p99:.2} ms (worst member)",
        wall.as_secs_f64()
    );
    println!(
        "all {} members converged at {} with state hash {} ({} sessions)",
        args.members, converged.applied_log_id, converged.state_hash, converged.sessions
    );
    if args.keep {
        let kept = dir.keep();
        println!("data and logs kept in {}", kept.display());
    }
    Ok(())
}

//! `mfpctl lab up | drill | down`.
//!
//! `drill` is self-contained: it builds the lab, runs the drill, prints the report and
//! removes everything, so it is the one command to run. `up` keeps a lab running in the
//! foreground until Ctrl-C (then removes it), for poking at with `ip netns exec`.
//! `down` removes what a killed lab left behind.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::cluster::{Lab, LabSpec};
use super::drill::{self, DrillOptions, Fault};
use super::topology;
use super::{LabError, Result};

/// Default prefix of the lab's namespaces.
pub const DEFAULT_PREFIX: &str = "mfplab-";

/// The lab's subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab and keep it running until Ctrl-C.
    Up(UpArgs),
    /// Build the lab, run a failover drill with live TCP connections, print the
    /// report, and remove the lab. Exits non-zero unless every connection survived.
    Drill(DrillArgs),
    /// Remove every namespace (and with them links and XDP programs) of a lab.
    Down(DownArgs),
}

/// Options shared by `up` and `drill`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Workers to start with (1..=32).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub workers: u8,
    /// Prefix of the lab's namespaces (lets two labs coexist).
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Bucket lease of the workers: the main term of the failover stall.
    #[arg(long, default_value = "400ms", value_parser = humantime::parse_duration)]
    pub lease: Duration,
}

/// `mfpctl lab drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub lab: UpArgs,
    /// Long-lived TCP connections through the NAT.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub connections: u32,
    /// Crash the Raft leader instead of the busiest worker.
    #[arg(long, conflicts_with_all = ["scale_out", "scale_in"])]
    pub crash_leader: bool,
    /// Add a worker during traffic instead of crashing one.
    #[arg(long, conflicts_with = "scale_in")]
    pub scale_out: bool,
    /// Drain and remove a worker during traffic instead of crashing one.
    #[arg(long)]
    pub scale_in: bool,
    /// Traffic before the fault.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Traffic after the fault.
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    pub after: Duration,
}

/// `mfpctl lab down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
}

impl DrillArgs {
    /// The drill these flags describe.
    pub fn options(&self) -> DrillOptions {
        DrillOptions {
            connections: self.connections,
            fault: if self.scale_out {
                Fault::ScaleOut
            } else if self.scale_in {
                Fault::ScaleIn
            } else if self.crash_leader {
                Fault::CrashLeader
            } else {
                Fault::CrashBusiestWorker
            },
            warmup: self.warmup,
            after: self.after,
            ..DrillOptions::default()
        }
    }
}

fn spec(args: &UpArgs) -> Result<LabSpec> {
    if args.prefix.is_empty()
        || args.prefix.len() > 12
        || !args
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(LabError::Command {
            command: "mfpctl lab".into(),
            detail: format!(
                "--prefix {:?}: use 1 to 12 letters, digits or '-'",
                args.prefix
            ),
        });
    }
    let mut spec = LabSpec::new(&args.prefix, args.workers);
    spec.lease = args.lease;
    // Owners renew through Raft, so a lease spans at least 6 heartbeats; a short
    // lease brings the heartbeat down with it (10 ms is the daemon's floor).
    spec.heartbeat = spec
        .heartbeat
        .min(args.lease / 8)
        .max(Duration::from_millis(10));
    Ok(spec)
}

/// Runs a lab subcommand; returns whether it succeeded (a drill that lost a
/// connection did not).
/// Waits for SIGINT (Ctrl-C) or SIGTERM (`timeout`, `kill`, a service manager), the
/// lab's cue to remove everything it created.
async fn interrupted() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|source| LabError::Io {
        context: "installing the SIGTERM handler".into(),
        source,
    })?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

pub async fn run(cmd: &LabCommand) -> Result<bool> {
    super::netns::require_root()?;
    match cmd {
        LabCommand::Down(a) => {
            let n = topology::teardown(&a.prefix)?;
            println!("removed {n} namespaces with prefix {}", a.prefix);
            Ok(true)
        }
        LabCommand::Up(a) => {
            let lab = Lab::up(spec(a)?)?;
            let outcome = async {
                let status = lab
                    .wait_converged(usize::from(a.workers), Duration::from_secs(60))
                    .await?;
                println!(
                    "lab up: {} workers, leader {}, epoch {}; logs in {}",
                    status.members.len(),
                    status.leader_id,
                    status.epoch,
                    lab.spec.state_dir.display()
                );
                println!(
                    "try: ip netns exec {}client bash    (Ctrl-C or SIGTERM here removes the lab)",
                    a.prefix
                );
                interrupted().await?;
                Ok::<_, LabError>(true)
            }
            .await;
            lab.down()?;
            outcome
        }
        LabCommand::Drill(a) => {
            let mut lab = Lab::up(spec(&a.lab)?)?;
            let opts = a.options();
            // A drill killed by SIGINT or SIGTERM still removes its namespaces.
            let outcome = tokio::select! {
                r = drill::run(&mut lab, &opts, |line| println!("  {line}")) => r,
                r = interrupted() => r.and(Err(LabError::Interrupted)),
            };
            let dir = lab.spec.state_dir.clone();
            lab.down()?;
            let report = outcome?;
            println!("{report}");
            if !report.passed() {
                println!("  logs: {}", dir.display());
            }
            Ok(report.passed())
        }
    }
}

//! The daemon's data path: frames from a packet socket through the [`NatWorker`] and
//! back out, with new sessions proposed for replication and expired ones removed.
//!
//! One task owns the worker and the socket, so the engine needs no lock. Proposals run
//! in their own tasks (the proposer groups them into Raft entries); a session the
//! cluster refuses comes back to this task and is undone. The first packet of a new
//! session is forwarded at once (`commit_mode = optimistic`, DESIGN §2.3).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mfplane_core::SessionKey;
use mfplane_dataplane::engine::{Timestamp, Verdict};
use mfplane_dataplane::io::PacketIo;
use mfplane_raft_store::MacAddr;
use tokio::sync::{mpsc, watch};

use super::nat_worker::{NatWorker, WorkerOptions};
use crate::error::{Error, Result};
use crate::member::Member;
use crate::proposer::{Outcome, SessionProposer};

/// Largest frame the data path reads (jumbo frames plus a VLAN tag).
const MAX_FRAME: usize = 9216 + 18;
const ETH_HEADER: usize = 14;
/// How often the data path re-checks its lease and the bucket table outside of
/// applied changes; small against any lease (at least 6 heartbeats of 10 ms).
const OWNERSHIP_CHECK: Duration = Duration::from_millis(10);
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];

/// How the data path sends and what it translates.
#[derive(Clone, Debug)]
pub struct DatapathConfig {
    /// This member's data-plane MAC: only frames addressed to it are NAT traffic.
    pub own_mac: MacAddr,
    /// This member's data-plane IPv4: frames to it belong to the local stack (gRPC).
    pub own_ip: Ipv4Addr,
    /// Where every translated frame goes (the router on the fabric).
    pub next_hop_mac: MacAddr,
    pub worker: WorkerOptions,
    /// How often idle sessions are looked for.
    pub expiry_interval: Duration,
}

/// Wall-clock milliseconds: session records carry their creation time across members,
/// so the daemon's engine clock is the Unix clock.
fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// Runs the daemon's data path on `settings.iface` once the member runs and the
/// cluster is configured, until the node shuts down.
///
/// # Errors
/// The packet socket cannot be opened or fails, or the cluster configuration does not
/// suit the engine.
pub async fn serve(
    core: Arc<crate::node::Core>,
    settings: crate::config::DatapathSettings,
) -> Result<()> {
    let member = core.wait_member().await;
    let proposer = loop {
        if let Some(p) = core.proposer() {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    while member.state().config().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let io = mfplane_dataplane::io::AfPacket::open(&settings.iface)?;
    let cfg = DatapathConfig {
        own_mac: member.config.data_mac,
        own_ip: member.config.data_ip,
        next_hop_mac: settings.next_hop_mac,
        worker: WorkerOptions {
            inside_prefixes: settings.inside_prefixes,
        },
        expiry_interval: Duration::from_secs(1),
    };
    run(member, proposer, io, cfg, core.shutdown_signal()).await
}

/// Runs the data path until `shutdown` turns true.
///
/// # Errors
/// A failure of the packet socket itself (not of a single frame), or a worker that
/// cannot be built from the cluster configuration.
pub async fn run<I: PacketIo>(
    member: Arc<Member>,
    proposer: SessionProposer,
    mut io: I,
    cfg: DatapathConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut worker = NatWorker::new(member.clone(), &cfg.worker)?;
    let (refused_tx, mut refused_rx) = mpsc::unbounded_channel::<Vec<SessionKey>>();
    let mut buf = vec![0u8; MAX_FRAME];
    // Leases lapse with time, not with events: re-check ownership this often.
    let mut ownership = tokio::time::interval(OWNERSHIP_CHECK);
    ownership.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut expiry = tokio::time::interval(cfg.expiry_interval);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let own_mac = cfg.own_mac.0;
    let next_hop = cfg.next_hop_mac.0;
    let own_ip = cfg.own_ip.octets();
    tracing::info!(node = %member.id, "data path running");

    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            Some(keys) = refused_rx.recv() => {
                for key in &keys {
                    worker.reject(key);
                }
            }
            _ = worker.wait_applied(now()) => worker.sync(now()),
            _ = ownership.tick() => worker.refresh_ownership(),
            _ = expiry.tick() => {
                let keys = worker.expired(now());
                if !keys.is_empty() {
                    let proposer = proposer.clone();
                    tokio::spawn(async move {
                        if let Err(e) = proposer.remove(keys).await {
                            tracing::warn!(error = %e, "proposing expired sessions for removal failed; retrying next round");
                        }
                    });
                }
            }
            received = io.recv(&mut buf) => {
                let n = match received {
                    Ok(n) => n,
                    Err(e) if e.is_per_frame() => {
                        metrics::counter!("mfplane_datapath_frames_dropped_total", "reason" => "too_large").increment(1);
                        continue;
                    }
                    Err(e) => return Err(Error::PacketIo(e)),
                };
                let frame = &mut buf[..n];
                if !is_nat_traffic(frame, &own_mac, &own_ip) {
                    continue;
                }
                match worker.process(frame, now()) {
                    Verdict::Translated(_) => {
                        frame[0..6].copy_from_slice(&next_hop);
                        frame[6..12].copy_from_slice(&own_mac);
                        if let Err(e) = io.send(frame).await {
                            metrics::counter!("mfplane_datapath_frames_dropped_total", "reason" => "send_failed").increment(1);
                            tracing::debug!(error = %e, "sending a translated frame failed");
                        }
                    }
                    // Not ours to translate (the engine counted why).
                    Verdict::Pass | Verdict::Drop(_) => {}
                }
                let created = worker.take_created();
                if !created.is_empty() {
                    propose(&proposer, created, refused_tx.clone());
                }
            }
        }
    }
    tracing::info!(node = %member.id, "data path stopped");
    Ok(())
}

/// Frames addressed to this member's MAC that are IPv4 and not for its own address
/// (those belong to the local stack: Raft, gRPC, ARP are the kernel's).
fn is_nat_traffic(frame: &[u8], own_mac: &[u8; 6], own_ip: &[u8; 4]) -> bool {
    if frame.len() < ETH_HEADER + 20 || frame[0..6] != own_mac[..] {
        return false;
    }
    // A VLAN-tagged frame is the engine's to parse; only plain IPv4 to our own
    // address is filtered here.
    !(frame[12..14] == ETHERTYPE_IPV4 && frame[ETH_HEADER + 16..ETH_HEADER + 20] == own_ip[..])
}

/// Proposes `created` in the background; keys the cluster refuses are sent back to the
/// data path to be undone.
fn propose(
    proposer: &SessionProposer,
    created: Vec<mfplane_core::SessionRecord>,
    refused: mpsc::UnboundedSender<Vec<SessionKey>>,
) {
    let proposer = proposer.clone();
    tokio::spawn(async move {
        let keys: Vec<SessionKey> = created.iter().map(|r| r.key).collect();
        match proposer.propose(created).await {
            Ok(outcomes) => {
                let bad: Vec<SessionKey> = keys
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, o)| matches!(o, Outcome::Rejected(_)))
                    .map(|(k, _)| *k)
                    .collect();
                if !bad.is_empty() {
                    metrics::counter!("mfplane_datapath_sessions_refused_total")
                        .increment(bad.len() as u64);
                    let _ = refused.send(bad);
                }
            }
            Err(e) => {
                // Not committed and not refused: the cluster did not answer (no leader,
                // no lease). The mapping stays unreplicated; undo it so it cannot collide
                // with an allocation a new owner makes.
                tracing::warn!(error = %e, sessions = keys.len(), "proposing new sessions failed; undoing them");
                let _ = refused.send(keys);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_frames_to_our_mac_and_not_to_our_ip_are_nat_traffic() {
        let mac = [2, 0, 0, 0, 0, 1];
        let ip = [192, 0, 2, 131];
        let mut f = vec![0u8; 64];
        f[0..6].copy_from_slice(&mac);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        f[ETH_HEADER + 16..ETH_HEADER + 20].copy_from_slice(&[198, 51, 100, 10]);
        assert!(is_nat_traffic(&f, &mac, &ip));
        f[ETH_HEADER + 16..ETH_HEADER + 20].copy_from_slice(&ip);
        assert!(
            !is_nat_traffic(&f, &mac, &ip),
            "to our own IP: the kernel's"
        );
        f[0] = 0xff;
        assert!(!is_nat_traffic(&f, &mac, &ip), "another MAC");
        assert!(!is_nat_traffic(&f[..20], &mac, &ip), "runt");
    }
}

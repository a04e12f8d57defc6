//! The daemon's data path: frames from a packet socket through the [`NatWorker`] and
//! back out, with new sessions proposed for replication and expired ones removed.
//!
//! One task owns the worker and the socket, so the engine needs no lock. Proposals run
//! in their own tasks (the proposer groups them into Raft entries); a session the
//! cluster refuses comes back to this task and is undone. The first packet of a new
//! session is forwarded at once (`commit_mode = optimistic`, DESIGN §2.3), or, in
//! `strict` mode, held with the session's later frames until the session commits
//! ([`super::held`]).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mfplane_core::SessionKey;
use mfplane_dataplane::engine::{Timestamp, Verdict};
use mfplane_dataplane::io::PacketIo;
use mfplane_raft_store::MacAddr;
use tokio::sync::{mpsc, watch};

use super::held::{HeldFrames, Hold, HoldDrop, HoldLimits};
use super::nat_worker::{NatWorker, WorkerOptions};
use super::next_hop;
use crate::config::CommitMode;
use crate::error::{Error, Result};
use crate::member::Member;
use crate::proposer::{Outcome, SessionProposer};

/// Largest frame the data path reads (jumbo frames plus a VLAN tag).
const MAX_FRAME: usize = 9216 + 18;
const ETH_HEADER: usize = 14;
/// How often the data path re-checks its lease and the bucket table outside of
/// applied changes; small against any lease (at least 6 heartbeats of 10 ms).
pub const OWNERSHIP_CHECK: Duration = Duration::from_millis(10);
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
/// Pause before proposing again sessions whose proposal got no answer.
const PROPOSE_RETRY: Duration = Duration::from_millis(20);
/// How long the data path waits for the default gateway to answer ARP at start.
const GATEWAY_WAIT: Duration = Duration::from_secs(5);

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
    /// Whether a new session's frames wait for its commit (`strict`).
    pub commit_mode: CommitMode,
    /// How much `strict` mode may hold.
    pub hold: HoldLimits,
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
    // Merged super-frames would be untranslatable (see `io::offloads`).
    let off = mfplane_dataplane::io::offloads::disable_receive_offloads(&settings.iface)?;
    if off.gro || off.lro {
        tracing::info!(iface = %settings.iface, gro = off.gro, lro = off.lro, "turned receive offloads off on the data interface: the NAT translates frames as they are on the wire");
    }
    let next_hop_mac = match settings.next_hop_mac {
        Some(mac) => mac,
        None => {
            let (gateway, mac) = next_hop::resolve_gateway(&settings.iface, GATEWAY_WAIT)
                .await
                .map_err(|e| Error::Config {
                    flag: "--next-hop-mac",
                    message: e.to_string(),
                })?;
            tracing::info!(iface = %settings.iface, %gateway, %mac, "next hop: the default gateway of the data interface");
            mac
        }
    };
    let cfg = DatapathConfig {
        own_mac: member.config.data_mac,
        own_ip: member.config.data_ip,
        next_hop_mac,
        worker: WorkerOptions {
            inside_prefixes: settings.inside_prefixes,
            timeouts: settings.timeouts,
            ..WorkerOptions::default()
        },
        expiry_interval: Duration::from_secs(1),
        commit_mode: settings.commit_mode,
        hold: HoldLimits::default(),
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
    let mut worker = NatWorker::new(member.clone(), &cfg.worker, now())?;
    let (decided_tx, mut decided_rx) = mpsc::unbounded_channel::<Decided>();
    // Strict mode: frames of sessions whose proposal is in flight wait here.
    let mut held = (cfg.commit_mode == CommitMode::Strict).then(|| HeldFrames::new(cfg.hold));
    let mut buf = vec![0u8; MAX_FRAME];
    // Leases lapse with time, not with events: re-check ownership this often.
    let mut ownership = tokio::time::interval(OWNERSHIP_CHECK);
    ownership.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut expiry = tokio::time::interval(cfg.expiry_interval);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let own_mac = cfg.own_mac.0;
    let next_hop = cfg.next_hop_mac.0;
    let own_ip = cfg.own_ip.octets();
    tracing::info!(node = %member.id, commit_mode = ?cfg.commit_mode, "data path running");

    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            Some(decided) = decided_rx.recv() => {
                for rec in &decided.refused {
                    worker.reject(rec, now());
                    if let Some(h) = &mut held {
                        count_dropped(HoldDrop::Refused, h.refused(&rec.key));
                    }
                }
                if let Some(h) = &mut held {
                    for key in &decided.committed {
                        for f in h.committed(key) {
                            send(&mut io, &f).await;
                        }
                    }
                }
            }
            _ = worker.wait_applied(now()) => worker.sync(now()),
            _ = ownership.tick() => {
                worker.refresh_ownership();
                if let Some(h) = &mut held {
                    count_dropped(HoldDrop::TooLong, h.expire(now()));
                }
            }
            _ = expiry.tick() => propose_removal(&proposer, worker.expired(now())),
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
                let now = now();
                let verdict = worker.process(frame, now);
                let created = worker.take_created();
                if !created.is_empty() {
                    if let Some(h) = &mut held {
                        h.add_pending(&created);
                    }
                    propose(&proposer, created, held.is_some(), member.config.timing.lease, decided_tx.clone());
                }
                match verdict {
                    Verdict::Translated(_) => {
                        frame[0..6].copy_from_slice(&next_hop);
                        frame[6..12].copy_from_slice(&own_mac);
                        match held.as_mut().map_or(Hold::Send, |h| h.offer(frame, now)) {
                            Hold::Send => send(&mut io, frame).await,
                            Hold::Held => {}
                            Hold::Dropped(why) => count_dropped(why, 1),
                        }
                    }
                    // Not ours to translate (the engine counted why).
                    Verdict::Pass | Verdict::Drop(_) => {}
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

/// Sends one frame; a failure is counted and the frame is lost (the sender
/// retransmits), as on any congested link.
async fn send<I: PacketIo>(io: &mut I, frame: &[u8]) {
    if let Err(e) = io.send(frame).await {
        metrics::counter!("mfplane_datapath_frames_dropped_total", "reason" => "send_failed")
            .increment(1);
        tracing::debug!(error = %e, "sending a translated frame failed");
    }
}

fn count_dropped(why: HoldDrop, frames: usize) {
    if frames > 0 {
        metrics::counter!("mfplane_datapath_frames_dropped_total", "reason" => why.metric_label())
            .increment(frames as u64);
    }
}

/// The cluster's answer to one proposal, for the data path task.
#[derive(Debug, Default)]
pub struct Decided {
    /// Committed; reported only in strict mode, where their held frames can go.
    pub committed: Vec<SessionKey>,
    /// Refused or unanswered: to be undone with [`NatWorker::reject`] (and their held
    /// frames dropped).
    pub refused: Vec<mfplane_core::SessionRecord>,
}

/// Proposes the removal of expired sessions `keys` in the background; a failure is
/// logged and the next expiry round finds them again.
///
/// Public, like [`propose`], so that the simulation drives a [`NatWorker`] exactly as
/// this loop does.
pub fn propose_removal(proposer: &SessionProposer, keys: Vec<SessionKey>) {
    if keys.is_empty() {
        return;
    }
    let proposer = proposer.clone();
    tokio::spawn(async move {
        if let Err(e) = proposer.remove(keys).await {
            tracing::warn!(error = %e, "proposing expired sessions for removal failed; retrying next round");
        }
    });
}

/// Proposes `records` in the background and sends the outcome back to the data path:
/// refused keys always (they are undone), committed ones if `report_committed`.
///
/// A proposal the cluster does not answer (no leader, a timeout) has an unknown fate:
/// it may still commit. While this member holds its lease no other member allocates in
/// these buckets, so the mapping stays and is proposed again (an identical record
/// commits idempotently), for at most `retry_for` (the daemon passes the lease
/// duration). Undoing it at once would make the next packet allocate a second mapping
/// for the flow, which the far end would see change when the first one commits after
/// all. Only once the lease is gone (or `retry_for` has passed) is it undone, so it
/// cannot collide with an allocation a new owner makes; if it committed, the applied
/// stream brings it back.
pub fn propose(
    proposer: &SessionProposer,
    records: Vec<mfplane_core::SessionRecord>,
    report_committed: bool,
    retry_for: Duration,
    decided: mpsc::UnboundedSender<Decided>,
) {
    let proposer = proposer.clone();
    tokio::spawn(async move {
        let mut outcome = Decided::default();
        let give_up = tokio::time::Instant::now() + retry_for;
        loop {
            match proposer.propose(records.clone()).await {
                Ok(outcomes) => {
                    for (rec, o) in records.iter().zip(&outcomes) {
                        match o {
                            Outcome::Rejected(_) => outcome.refused.push(*rec),
                            Outcome::Accepted if report_committed => {
                                outcome.committed.push(rec.key);
                            }
                            Outcome::Accepted => {}
                        }
                    }
                    if !outcome.refused.is_empty() {
                        metrics::counter!("mfplane_datapath_sessions_refused_total")
                            .increment(outcome.refused.len() as u64);
                    }
                    break;
                }
                Err(e @ (Error::NoLease | Error::ShuttingDown)) => {
                    tracing::warn!(error = %e, sessions = records.len(), "new sessions not confirmed and no lease left; undoing them");
                    outcome.refused = records;
                    break;
                }
                Err(e) if tokio::time::Instant::now() >= give_up => {
                    tracing::warn!(error = %e, sessions = records.len(), "new sessions still not confirmed; undoing them");
                    outcome.refused = records;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, sessions = records.len(), "proposing new sessions got no answer; proposing them again");
                    tokio::time::sleep(PROPOSE_RETRY).await;
                }
            }
        }
        if !outcome.committed.is_empty() || !outcome.refused.is_empty() {
            // The data path has stopped if this fails: nothing left to undo.
            let _ = decided.send(outcome);
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

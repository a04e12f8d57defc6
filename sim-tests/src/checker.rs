//! The invariant checker (DESIGN §2.4), run between simulation steps.
//!
//! 1. **No lost or remapped session.** The first time a flow's session shows up in a
//!    member's applied state, its mapping and the applied log index are recorded.
//!    From then on every member whose applied index has reached that index must hold
//!    the same mapping, and every translation the remote side sees after that moment
//!    must use it. At the end, every flow must be committed and still answering.
//! 2. **No double allocation.** In every member's applied state each external
//!    endpoint belongs to one key; no engine holds, for a committed session or in a
//!    bucket its member owns in the newest table, a mapping that disagrees with the
//!    committed one; and no two members allocate in one bucket at the same time (the
//!    rule that leases and failover fences make hold).
//! 3. **Convergence.** After a fault, every bucket has a running owner that holds its
//!    lease, the LB steers by the newest epoch and every flow committed before the
//!    fault answers again, within the failover budget; the time it took is recorded.
//! 4. **Determinism.** What the checker sees is folded into a trace hash; the same
//!    seed must give the same hash.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mfplane_core::{BucketId, Endpoint, SessionKey};
use mfplane_dataplane::engine::Origin;
use mfplane_raft_store::{ClusterState, Epoch, NodeId};

use crate::world::{WorkerLive, World, lock};

/// Two members may both allocate in a bucket for a moment when it moves in a planned
/// way (no fence): each starts or stops when it applies the move, a few milliseconds
/// apart. An overlap longer than this is a violation, unless the extra allocators have
/// not applied the move yet: a lagging old owner may allocate until it learns of the
/// move, and the state machine refuses what it proposes meanwhile. In a fenced bucket
/// no overlap is tolerated at all.
const OVERLAP_SLACK_MS: u64 = 250;

#[derive(Debug, Clone, Copy)]
struct Committed {
    external: Endpoint,
    /// Applied index of the state it was first seen in.
    index: u64,
    /// Simulated time (ms) it was first seen.
    seen_ms: u64,
}

/// A fault whose recovery is being timed.
#[derive(Debug, Clone)]
struct Recovery {
    what: String,
    since_ms: u64,
    /// Flows committed when the fault happened: each must answer a probe sent after it.
    flows: Vec<usize>,
    budget_ms: u64,
}

/// One timed recovery.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub what: String,
    pub took: Duration,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Checker {
    committed: BTreeMap<SessionKey, Committed>,
    /// Per flow, how many of its recorded mappings were already checked.
    mappings_checked: Vec<usize>,
    /// Per bucket, since when (ms) more than one member has been allocating in it.
    overlap_since: BTreeMap<BucketId, u64>,
    recovering: Vec<Recovery>,
    pub recovered: Vec<Recovered>,
    pub violations: Vec<String>,
    trace: u64,
    checks: u64,
    /// The trace as text, one line per check or event, for finding where two runs of
    /// one seed diverged.
    pub trace_lines: Vec<String>,
    /// Translations that changed before their session committed (optimistic commit
    /// allows this; counted for the report).
    pub uncommitted_remaps: u64,
}

/// The running members, as the harness knows them.
#[derive(Debug, Clone)]
pub struct Live {
    pub index: usize,
    pub worker: WorkerLive,
}

impl Checker {
    /// No two members allocate in one bucket at the same time for longer than
    /// [`OVERLAP_SLACK_MS`], except while a planned move has not reached the extra
    /// allocators yet. A failover's fence (and before it, the lease) must keep the
    /// new owner out until the old one has stopped, even when the old one is alive
    /// behind a partition.
    fn check_allocators(
        &mut self,
        live: &[Live],
        newest: &ClusterState,
        now_ms: u64,
        found: &mut Vec<String>,
    ) {
        let mut allocators: BTreeMap<BucketId, Vec<(usize, Epoch)>> = BTreeMap::new();
        for l in live {
            let applied = l.worker.member.applied_epoch();
            let nat = lock(&l.worker.nat);
            for (bucket, _) in newest.buckets().iter() {
                if nat.allocates_in(bucket) {
                    allocators
                        .entry(bucket)
                        .or_default()
                        .push((l.index, applied));
                }
            }
        }
        let mut overlaps = BTreeMap::new();
        for (bucket, who) in allocators.into_iter().filter(|(_, w)| w.len() > 1) {
            let since = self.overlap_since.get(&bucket).copied().unwrap_or(now_ms);
            overlaps.insert(bucket, since);
            // A fence exists to rule out any overlap: none is tolerated in a fenced
            // bucket, not even for a moment.
            let fenced = newest.fence(bucket).is_some();
            let current = who.iter().filter(|(_, e)| *e >= newest.epoch()).count();
            let planned_lag = !fenced && current <= 1;
            if fenced || (now_ms > since + OVERLAP_SLACK_MS && !planned_lag) {
                found.push(format!(
                    "double allocation: members {:?} (applied epochs {:?}) all allocate in bucket {} since t={since}ms; the newest table (epoch {}) gives it to {:?}, fence {:?}",
                    who.iter().map(|(i, _)| format!("n{i}")).collect::<Vec<_>>(),
                    who.iter().map(|(_, e)| e.0).collect::<Vec<_>>(),
                    bucket.0,
                    newest.epoch(),
                    newest.owner_of(bucket),
                    newest.fence(bucket),
                ));
            }
        }
        self.overlap_since = overlaps;
    }

    fn violation(&mut self, now_ms: u64, msg: String) {
        if self.violations.len() < 50 {
            self.violations.push(format!("t={now_ms}ms: {msg}"));
        }
    }

    fn fold(&mut self, v: u64) {
        // FNV-1a over 64-bit words.
        let mut h = if self.trace == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.trace
        };
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.trace = h;
    }

    /// Folds a harness event (fault, operator action) into the trace.
    pub fn note(&mut self, now_ms: u64, event: &str) {
        self.trace_lines.push(format!("{now_ms} {event}"));
        self.fold(now_ms);
        for chunk in event.as_bytes().chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.fold(u64::from_le_bytes(w));
        }
    }

    /// The trace hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Starts timing the recovery from a fault that just happened.
    pub fn expect_recovery(&mut self, world: &World, now_ms: u64, what: &str, budget: Duration) {
        let traffic = lock(&world.traffic);
        let flows = traffic
            .flows
            .iter()
            .enumerate()
            .filter(|(_, f)| self.committed.contains_key(&f.key))
            .map(|(i, _)| i)
            .collect();
        self.recovering.push(Recovery {
            what: what.to_string(),
            since_ms: now_ms,
            flows,
            budget_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// Whether no recovery is pending.
    pub fn settled(&self) -> bool {
        self.recovering.is_empty()
    }

    /// One check at simulated time `now_ms` over the running members `live`;
    /// `healthy` are the members that may own buckets (running, not cut off).
    pub fn check(&mut self, world: &World, live: &[Live], healthy: &BTreeSet<u64>, now_ms: u64) {
        self.checks += 1;
        // Every member's applied state, newest first.
        let mut views: Vec<(u64, &Live)> = live
            .iter()
            .map(|l| {
                let idx = l
                    .worker
                    .member
                    .sm
                    .state()
                    .last_applied()
                    .map_or(0, |id| id.index);
                (idx, l)
            })
            .collect();
        views.sort_by_key(|(idx, l)| (std::cmp::Reverse(*idx), l.index));
        let Some(&(newest_index, newest)) = views.first() else {
            return;
        };
        let newest_member = newest.worker.member.clone();
        let state = newest_member.state();

        // Trace: what the newest member applied, and what the LB and generator see.
        self.fold(now_ms);
        self.fold(newest_index);
        self.fold(state.state_hash());
        let leader = newest_member.metrics().current_leader.map_or(0, |l| l.0);
        self.fold(leader);
        let (lb_epoch, probes, replies) = {
            let lb = lock(&world.lb);
            let t = lock(&world.traffic);
            (lb.epoch, t.probes_sent, t.replies_delivered)
        };
        self.fold(lb_epoch);
        self.fold(probes);
        self.fold(replies);
        self.trace_lines.push(format!(
            "{now_ms} n{} applied={newest_index} state={:016x} leader={leader} lb_epoch={lb_epoch} probes={probes} replies={replies}",
            newest.index,
            state.state_hash()
        ));

        // The newest bucket table (for the allocation rule and convergence).
        let epoch = state.epoch().0;
        let owners: Vec<Option<NodeId>> = state.buckets().owners().to_vec();

        // 1. Commitments of the generator's flows.
        let traffic = lock(&world.traffic).clone();
        if self.mappings_checked.len() != traffic.flows.len() {
            self.mappings_checked = vec![0; traffic.flows.len()];
        }
        for f in &traffic.flows {
            if let Some(r) = state.session(&f.key) {
                match self.committed.get(&f.key) {
                    None => {
                        self.committed.insert(
                            f.key,
                            Committed {
                                external: r.external,
                                index: newest_index,
                                seen_ms: now_ms,
                            },
                        );
                    }
                    Some(c) if c.external != r.external => {
                        let msg = format!(
                            "committed session {:?} remapped from {:?} to {:?}",
                            f.key, c.external, r.external
                        );
                        self.violation(now_ms, msg);
                    }
                    Some(_) => {}
                }
            }
        }
        drop(state);
        for &(idx, l) in &views {
            let s = l.worker.member.state();
            let mut bad = Vec::new();
            for (k, c) in &self.committed {
                if c.index > idx {
                    continue;
                }
                match s.session(k) {
                    Some(r) if r.external == c.external => {}
                    Some(r) => bad.push(format!(
                        "n{} (applied {idx}) maps committed session {k:?} to {:?}, committed as {:?}",
                        l.index, r.external, c.external
                    )),
                    None => bad.push(format!(
                        "n{} (applied {idx}) lost committed session {k:?} -> {:?}",
                        l.index, c.external
                    )),
                }
            }
            drop(s);
            for m in bad.into_iter().take(3) {
                self.violation(now_ms, m);
            }
        }
        // What the remote side saw.
        for (i, f) in traffic.flows.iter().enumerate() {
            let from = self.mappings_checked[i];
            self.mappings_checked[i] = f.mappings.len();
            let Some(c) = self.committed.get(&f.key).copied() else {
                continue;
            };
            for &(t, ext) in &f.mappings[from..] {
                if ext == c.external {
                    continue;
                }
                if t >= c.seen_ms {
                    let msg = format!(
                        "flow {:?} was translated to {ext:?} at t={t}ms although its session committed as {:?} (seen at t={}ms)",
                        f.key, c.external, c.seen_ms
                    );
                    self.violation(now_ms, msg);
                } else {
                    self.uncommitted_remaps += 1;
                }
            }
        }
        for v in &traffic.violations {
            if !self.violations.contains(v) && self.violations.len() < 50 {
                self.violations.push(v.clone());
            }
        }

        // 2. Double allocation: committed state, engines, lease rule.
        let state = newest_member.state();
        let mut found_state = Vec::new();
        if self.checks % 10 == 1 {
            for r in state.sessions() {
                match state.session_by_external(&r.external_key()) {
                    Some(o) if o.key == r.key => {}
                    other => {
                        let msg = format!(
                            "committed state: {:?} is held by {:?} but indexed to {:?}",
                            r.external,
                            r.key,
                            other.map(|o| o.key)
                        );
                        found_state.push(msg);
                    }
                }
            }
        }
        let mut found = found_state;
        for l in live {
            let me = l.worker.member.id;
            let w = lock(&l.worker.nat);
            let e = w.engine();
            for rec in e.export() {
                let Some(s) = e.session(&rec.key) else {
                    continue;
                };
                let owner = state.owner_of(rec.bucket);
                let steered_here = owner == Some(me);
                let imported = s.origin == Origin::Imported;
                if let Some(c) = state.session_by_external(&rec.external_key())
                    && c.key != rec.key
                    && (imported || steered_here)
                {
                    found.push(format!(
                        "double allocation: n{}'s engine maps {:?} to {:?}, committed to {:?}",
                        l.index, rec.key, rec.external, c.key
                    ));
                }
                if let Some(c) = state.session(&rec.key)
                    && c.external != rec.external
                    && (imported || steered_here)
                {
                    found.push(format!(
                        "n{}'s engine maps committed session {:?} to {:?}, committed as {:?}",
                        l.index, rec.key, rec.external, c.external
                    ));
                }
            }
        }
        // The allocation rule: no two members allocate in one bucket at once.
        self.check_allocators(live, &state, now_ms, &mut found);
        drop(state);
        for m in found.into_iter().take(5) {
            self.violation(now_ms, m);
        }

        // 3. Convergence.
        let lb_epoch = lock(&world.lb).epoch;
        let owned_ok = owners
            .iter()
            .all(|o| o.is_some_and(|n| healthy.contains(&n.0)));
        let steering_ok = lb_epoch == epoch;
        // New sessions open only where the owner holds its lease: an owner whose
        // renewals go unanswered (a dead connection not yet noticed) keeps its buckets
        // but opens nothing, which is no recovery yet.
        let owner_ids: BTreeSet<NodeId> = owners.iter().flatten().copied().collect();
        let leases_ok = live
            .iter()
            .filter(|l| owner_ids.contains(&l.worker.member.id))
            .all(|l| lock(&l.worker.nat).lease_held());
        let mut still = Vec::new();
        for r in std::mem::take(&mut self.recovering) {
            let flows_ok = r.flows.iter().all(|&i| {
                traffic.flows[i]
                    .last_ok_probe
                    .is_some_and(|p| p >= r.since_ms)
            });
            if owned_ok && steering_ok && leases_ok && flows_ok {
                self.recovered.push(Recovered {
                    what: r.what.clone(),
                    took: Duration::from_millis(now_ms - r.since_ms),
                });
            } else if now_ms - r.since_ms > r.budget_ms {
                let stuck = r
                    .flows
                    .iter()
                    .filter(|&&i| {
                        traffic.flows[i]
                            .last_ok_probe
                            .is_none_or(|p| p < r.since_ms)
                    })
                    .count();
                let msg = format!(
                    "no convergence within {}ms after {}: buckets owned by healthy members: {owned_ok}, owners hold their leases: {leases_ok}, LB on epoch {lb_epoch} of {epoch}, {stuck} of {} committed flows not answering",
                    r.budget_ms,
                    r.what,
                    r.flows.len()
                );
                self.violation(now_ms, msg);
            } else {
                still.push(r);
            }
        }
        self.recovering = still;
    }

    /// End-of-run liveness: every flow that started at least `settle` ago has a
    /// committed session and answered a probe sent within the last `settle`.
    pub fn finish(&mut self, world: &World, live: &[Live], now_ms: u64, settle: Duration) {
        let settle_ms = u64::try_from(settle.as_millis()).unwrap_or(u64::MAX);
        let traffic = lock(&world.traffic).clone();
        let mut uncommitted = 0;
        let mut silent = 0;
        let mut example = None;
        for f in &traffic.flows {
            if f.started_ms + settle_ms > now_ms {
                continue;
            }
            if !self.committed.contains_key(&f.key) {
                uncommitted += 1;
                example.get_or_insert(f.key);
            } else if f.last_ok_probe.is_none_or(|p| p + settle_ms < now_ms) {
                silent += 1;
                example.get_or_insert(f.key);
            }
        }
        if uncommitted + silent > 0 {
            self.violation(
                now_ms,
                format!(
                    "at the end {uncommitted} flows never committed and {silent} committed flows stopped answering (e.g. {example:?})"
                ),
            );
        }
        for r in std::mem::take(&mut self.recovering) {
            self.violation(now_ms, format!("{} never converged", r.what));
        }
        // Replicas that applied the same log agree.
        let mut by_index: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for l in live {
            let s = l.worker.member.sm.state();
            let idx = s.last_applied().map_or(0, |id| id.index);
            by_index.entry(idx).or_default().insert(s.state_hash());
        }
        for (idx, hashes) in by_index {
            if hashes.len() > 1 {
                self.violation(
                    now_ms,
                    format!("members at applied index {idx} disagree: {hashes:?}"),
                );
            }
        }
        self.note(now_ms, &format!("committed={}", self.committed.len()));
    }

    /// Sessions the checker has seen commit.
    pub fn committed_count(&self) -> usize {
        self.committed.len()
    }
}

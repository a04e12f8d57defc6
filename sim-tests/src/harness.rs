//! One simulated cluster: the turmoil world, its hosts, the fault and operator
//! actions a scenario takes, and the checker run every `check_every` of simulated
//! time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checker::{Checker, Live, Recovered};
use crate::net::{self, LB, OPERATOR, TRAFFIC};
use crate::traffic::{self, TrafficSpec};
use crate::worker::{self, SimTiming, WorkerSpec};
use crate::world::{Bug, World, lock};

/// Everything one run depends on; a run is a function of this.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub traffic: TrafficSpec,
    pub timing: SimTiming,
    pub bug: Bug,
    pub check_every: Duration,
    /// Longest a failover may take (fault to: every bucket owned by a healthy member,
    /// the LB on the newest epoch, every committed flow answering again).
    pub failover_budget: Duration,
}

impl SimConfig {
    /// The settings CI uses for `seed` (see `Scale` in the tests for larger runs).
    pub fn new(seed: u64, flows: usize) -> Self {
        SimConfig {
            seed,
            traffic: TrafficSpec {
                flows,
                probe_interval: Duration::from_millis(500),
                ramp: Duration::from_millis(1500),
                late_every: 10,
                late_window: Duration::from_secs(8),
            },
            timing: SimTiming::default(),
            bug: Bug::None,
            check_every: Duration::from_millis(100),
            failover_budget: Duration::from_secs(5),
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub violations: Vec<String>,
    pub trace_hash: u64,
    pub recovered: Vec<Recovered>,
    pub committed: usize,
    pub sim_time: Duration,
    pub probes: u64,
    pub replies: u64,
    pub uncommitted_remaps: u64,
    /// The trace as text (see `Checker::trace_lines`).
    pub trace: Vec<String>,
}

/// The simulated cluster.
pub struct Harness<'a> {
    pub sim: turmoil::Sim<'a>,
    pub world: Arc<World>,
    pub checker: Checker,
    pub cfg: SimConfig,
    next_check: Duration,
    /// Workers whose host software is not running.
    down: BTreeSet<usize>,
    /// Workers cut off from the majority (they cannot be expected to own buckets).
    isolated: BTreeSet<usize>,
    /// Workers registered as hosts.
    hosts: BTreeSet<usize>,
    /// Workers removed from the cluster.
    removed: BTreeSet<usize>,
    /// Results of operator actions, by action number.
    ops: Arc<Mutex<BTreeMap<u64, Result<String, String>>>>,
    op_seq: u64,
}

impl std::fmt::Debug for Harness<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("seed", &self.cfg.seed)
            .finish()
    }
}

/// Seed of member `i` in run `seed` (openraft's election jitter).
fn member_seed(seed: u64, i: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

impl<'a> Harness<'a> {
    /// A three-member cluster formed as the operator forms it (first member with
    /// `--init`, the others `--join` and are promoted through Admin), with the LB
    /// following it; traffic starts with [`start_traffic`](Self::start_traffic).
    ///
    /// # Errors
    /// The cluster did not form in time.
    pub fn start(cfg: SimConfig) -> Result<Harness<'a>, String> {
        let sim = turmoil::Builder::new()
            .rng_seed(cfg.seed)
            .simulation_duration(Duration::from_secs(3600))
            .tick_duration(Duration::from_millis(1))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(4))
            .tcp_capacity(1 << 16)
            .udp_capacity(1 << 16)
            .build();
        let mut h = Harness {
            sim,
            world: Arc::new(World::default()),
            checker: Checker::default(),
            cfg,
            next_check: Duration::ZERO,
            down: BTreeSet::new(),
            isolated: BTreeSet::new(),
            hosts: BTreeSet::new(),
            removed: BTreeSet::new(),
            ops: Arc::default(),
            op_seq: 0,
        };
        h.add_worker(1);
        h.add_worker(2);
        h.add_worker(3);
        let world = h.world.clone();
        let seeds: Vec<String> = (1..=3).map(net::worker).collect();
        h.sim
            .host(LB, move || crate::lb::run(seeds.clone(), world.clone()));
        h.run_until(Duration::from_secs(10), "the first member to start", |h| {
            h.live().iter().any(|l| l.index == 1)
        })?;
        let a = h.operator_promote(2);
        let b = h.operator_promote(3);
        h.wait_op(a, Duration::from_secs(20))?;
        h.wait_op(b, Duration::from_secs(20))?;
        h.run_until(
            Duration::from_secs(20),
            "a balanced table on three members",
            |h| h.balanced(3),
        )?;
        Ok(h)
    }

    /// Registers worker `i`'s host (the first one bootstraps, the others join).
    pub fn add_worker(&mut self, i: usize) {
        // The lease bug is n3's alone: it believes its lease lasts longer than the
        // others wait.
        let bug = match self.cfg.bug {
            Bug::LeaseMismatch if i != 3 => Bug::None,
            Bug::NoFence if i == 3 => Bug::None,
            bug => bug,
        };
        let spec = WorkerSpec {
            index: i,
            init: i == 1,
            join: if i == 1 {
                Vec::new()
            } else {
                (1..=3)
                    .filter(|j| *j != i)
                    .map(|j| net::grpc_addr(&net::worker(j)))
                    .collect()
            },
            timing: self.cfg.timing,
            seed: member_seed(self.cfg.seed, i),
            bug,
        };
        let world = self.world.clone();
        self.sim.host(net::worker(i).as_str(), move || {
            worker::run(spec.clone(), world.clone())
        });
        self.hosts.insert(i);
        let now = self.now_ms();
        self.checker.note(now, &format!("add n{i}"));
    }

    /// Starts the traffic generator.
    pub fn start_traffic(&mut self) {
        let world = self.world.clone();
        let spec = self.cfg.traffic;
        self.sim
            .host(TRAFFIC, move || traffic::run(spec, world.clone()));
    }

    /// Simulated milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.sim.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The running workers that have published their member.
    pub fn live(&self) -> Vec<Live> {
        lock(&self.world.workers)
            .iter()
            .filter(|(i, _)| !self.down.contains(i))
            .filter_map(|(i, slot)| {
                lock(&slot.live).clone().map(|w| Live {
                    index: *i,
                    worker: w,
                })
            })
            .collect()
    }

    /// Node ids of the members that may own buckets.
    pub fn healthy(&self) -> BTreeSet<u64> {
        self.live()
            .iter()
            .filter(|l| !self.isolated.contains(&l.index) && !self.removed.contains(&l.index))
            .map(|l| l.worker.member.id.0)
            .collect()
    }

    /// Index of the worker whose member leads, as the newest member sees it.
    pub fn leader(&self) -> Option<usize> {
        let live = self.live();
        let newest = live.iter().max_by_key(|l| {
            l.worker
                .member
                .sm
                .state()
                .last_applied()
                .map_or(0, |i| i.index)
        })?;
        let leader = newest.worker.member.metrics().current_leader?;
        live.iter()
            .find(|l| l.worker.member.id == leader)
            .map(|l| l.index)
    }

    /// The worker owning the most committed sessions, leaving out the leader when
    /// `followers_only` (its crash is a leader crash, a scenario of its own).
    pub fn busiest(&self, followers_only: bool) -> Option<usize> {
        let leader = if followers_only { self.leader() } else { None };
        let live = self.live();
        let newest = live.iter().max_by_key(|l| {
            l.worker
                .member
                .sm
                .state()
                .last_applied()
                .map_or(0, |i| i.index)
        })?;
        let state = newest.worker.member.state();
        live.iter()
            .filter(|l| Some(l.index) != leader)
            .max_by_key(|l| {
                (
                    state.sessions_owned_by(l.worker.member.id),
                    std::cmp::Reverse(l.index),
                )
            })
            .map(|l| l.index)
    }

    /// The worker owning the most committed sessions.
    pub fn busiest_owner(&self) -> Option<usize> {
        self.busiest(false)
    }

    /// Whether every bucket is owned, by `n` healthy members each holding its fair
    /// share, and the LB steers by that table.
    pub fn balanced(&self, n: usize) -> bool {
        let healthy = self.healthy();
        let live = self.live();
        let Some(newest) = live.iter().max_by_key(|l| {
            l.worker
                .member
                .sm
                .state()
                .last_applied()
                .map_or(0, |i| i.index)
        }) else {
            return false;
        };
        let state = newest.worker.member.state();
        let owners = state.buckets().owners();
        if owners.is_empty() || lock(&self.world.lb).epoch != state.epoch().0 {
            return false;
        }
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for o in owners {
            match o {
                Some(id) if healthy.contains(&id.0) => *counts.entry(id.0).or_default() += 1,
                _ => return false,
            }
        }
        let (lo, hi) = (owners.len() / n, owners.len().div_ceil(n));
        counts.len() == n && counts.values().all(|c| (lo..=hi).contains(c))
    }

    /// Steps the simulation for `d`, checking invariants on the way.
    ///
    /// # Errors
    /// A host failed (its error or panic ends the simulation).
    pub fn run_for(&mut self, d: Duration) -> Result<(), String> {
        let until = self.sim.elapsed() + d;
        while self.sim.elapsed() < until {
            self.step()?;
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        self.sim
            .step()
            .map_err(|e| format!("t={}ms: a host failed: {e}", self.now_ms()))?;
        if self.sim.elapsed() >= self.next_check {
            self.next_check = self.sim.elapsed() + self.cfg.check_every;
            let live = self.live();
            let healthy = self.healthy();
            let now = self.now_ms();
            self.checker.check(&self.world, &live, &healthy, now);
        }
        Ok(())
    }

    /// Steps until `pred` holds, at most `within`.
    ///
    /// # Errors
    /// `pred` did not hold in time (`what` says what was awaited), or a host failed.
    pub fn run_until(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Harness<'a>) -> bool,
    ) -> Result<Duration, String> {
        let start = self.sim.elapsed();
        loop {
            if pred(self) {
                return Ok(self.sim.elapsed() - start);
            }
            if self.sim.elapsed() - start > within {
                return Err(format!(
                    "t={}ms: {what} did not happen within {within:?}",
                    self.now_ms()
                ));
            }
            self.step()?;
        }
    }

    /// Crashes worker `i` (its storage survives).
    pub fn crash(&mut self, i: usize) {
        self.sim.crash(net::worker(i).as_str());
        self.down.insert(i);
        *lock(&self.world.slot(i).live) = None;
        let now = self.now_ms();
        self.checker.note(now, &format!("crash n{i}"));
    }

    /// Restarts crashed worker `i` on its persisted storage; with `power_loss`,
    /// writes it had not flushed are lost first.
    pub fn restart(&mut self, i: usize, power_loss: bool) {
        if power_loss {
            self.world.slot(i).backend.simulate_power_loss();
        }
        self.sim.bounce(net::worker(i).as_str());
        self.down.remove(&i);
        let now = self.now_ms();
        self.checker
            .note(now, &format!("restart n{i} power_loss={power_loss}"));
    }

    fn names(set: &[String]) -> String {
        set.join(",")
    }

    /// Cuts every link between the hosts in `a` and those in `b`; `cut_off` are the
    /// workers that lose the majority by it.
    pub fn partition(&mut self, a: &[String], b: &[String], cut_off: &[usize]) {
        for x in a {
            for y in b {
                self.sim.partition(x.as_str(), y.as_str());
            }
        }
        self.isolated.extend(cut_off.iter().copied());
        let now = self.now_ms();
        self.checker.note(
            now,
            &format!("partition {} | {}", Self::names(a), Self::names(b)),
        );
    }

    /// Heals what [`partition`](Self::partition) cut.
    pub fn repair(&mut self, a: &[String], b: &[String]) {
        for x in a {
            for y in b {
                self.sim.repair(x.as_str(), y.as_str());
            }
        }
        self.isolated.clear();
        let now = self.now_ms();
        self.checker.note(
            now,
            &format!("repair {} | {}", Self::names(a), Self::names(b)),
        );
    }

    /// Names of the workers that are hosts and not removed.
    pub fn members(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|i| !self.removed.contains(i))
            .map(|i| net::worker(*i))
            .collect()
    }

    fn spawn_op<F>(&mut self, what: String, fut: F) -> u64
    where
        F: std::future::Future<Output = Result<String, String>> + 'static,
    {
        self.op_seq += 1;
        let id = self.op_seq;
        let ops = self.ops.clone();
        let host = format!("{OPERATOR}{id}");
        self.sim.client(host.as_str(), async move {
            let r = fut.await;
            lock(&ops).insert(id, r);
            Ok(())
        });
        let now = self.now_ms();
        self.checker.note(now, &what);
        id
    }

    /// The operator promotes worker `i` once it has joined.
    pub fn operator_promote(&mut self, i: usize) -> u64 {
        let members = self.members();
        self.spawn_op(
            format!("promote n{i}"),
            crate::operator::promote(members, net::worker(i)),
        )
    }

    /// The operator removes worker `i` (drain, leave Raft, retire).
    pub fn operator_remove(&mut self, i: usize) -> u64 {
        let members: Vec<String> = self
            .members()
            .into_iter()
            .filter(|m| *m != net::worker(i))
            .collect();
        self.spawn_op(
            format!("remove n{i}"),
            crate::operator::remove(members, net::worker(i)),
        )
    }

    /// Waits for operator action `id` to finish.
    ///
    /// # Errors
    /// The action failed or did not finish within `within`.
    pub fn wait_op(&mut self, id: u64, within: Duration) -> Result<String, String> {
        let ops = self.ops.clone();
        self.run_until(within, &format!("operator action {id}"), move |_| {
            lock(&ops).contains_key(&id)
        })?;
        let r = lock(&self.ops)
            .remove(&id)
            .unwrap_or_else(|| Err("vanished".into()));
        r.map_err(|e| format!("operator action {id} failed: {e}"))
    }

    /// Marks worker `i` as removed from the cluster (after the operator removed it).
    pub fn mark_removed(&mut self, i: usize) {
        self.removed.insert(i);
    }

    /// Starts timing the recovery from a fault that just happened.
    pub fn expect_recovery(&mut self, what: &str) {
        let now = self.now_ms();
        let budget = self.cfg.failover_budget;
        self.checker.expect_recovery(&self.world, now, what, budget);
    }

    /// Runs until every pending recovery has converged (or failed the budget).
    ///
    /// # Errors
    /// A host failed.
    pub fn settle(&mut self) -> Result<(), String> {
        let budget = self.cfg.failover_budget + Duration::from_secs(1);
        let _ = self.run_until(budget, "recovery", |h| h.checker.settled());
        Ok(())
    }

    /// Final checks; the report of the run.
    pub fn finish(mut self, settle: Duration) -> Report {
        let live = self.live();
        let now = self.now_ms();
        self.checker.finish(&self.world, &live, now, settle);
        let t = lock(&self.world.traffic).clone();
        Report {
            seed: self.cfg.seed,
            violations: self.checker.violations.clone(),
            trace_hash: self.checker.trace_hash(),
            recovered: self.checker.recovered.clone(),
            committed: self.checker.committed_count(),
            sim_time: self.sim.elapsed(),
            probes: t.probes_sent,
            replies: t.replies_delivered,
            uncommitted_remaps: self.checker.uncommitted_remaps,
            trace: std::mem::take(&mut self.checker.trace_lines),
        }
    }
}

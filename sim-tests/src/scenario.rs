//! The scenarios of issue 4, each a function of its seed.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checker::Recovered;
use crate::harness::{Harness, Report, SimConfig};
use crate::net::{self, LB, TRAFFIC};
use crate::world::Bug;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub flows: usize,
}

impl Scale {
    /// CI: a thousand flows; `SIM_FLOWS` overrides.
    pub fn from_env() -> Scale {
        let flows = std::env::var("SIM_FLOWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        Scale { flows }
    }
}

/// Time the end-of-run check looks back: every flow must have answered within it.
const SETTLE: Duration = Duration::from_millis(1500);

type Run = Result<Harness<'static>, String>;

/// A formed cluster with traffic running and the early flows committed.
fn boot(seed: u64, scale: Scale, bug: Bug) -> Run {
    let mut cfg = SimConfig::new(seed, scale.flows);
    cfg.bug = bug;
    let ramp = cfg.traffic.ramp;
    let mut h = Harness::start(cfg)?;
    h.start_traffic();
    h.run_for(ramp + Duration::from_millis(1500))?;
    Ok(h)
}

fn finish(r: Result<Harness<'_>, String>, seed: u64) -> Report {
    match r {
        Ok(mut h) => {
            if let Err(e) = h.run_for(SETTLE) {
                let mut rep = h.finish(SETTLE);
                rep.violations.push(e);
                return rep;
            }
            h.finish(SETTLE)
        }
        Err(e) => Report {
            seed,
            violations: vec![e],
            ..Report::default()
        },
    }
}

fn pick<T: Copy>(what: &str, v: Option<T>) -> Result<T, String> {
    v.ok_or_else(|| format!("no {what} to pick"))
}

/// (1) Failover drill: crash the worker that owns the most sessions. The leader is
/// left out (its crash is scenario 2), so this measures a pure owner failover: the
/// leader notices the silence, then moves its buckets (fenced).
pub fn failover(seed: u64, scale: Scale) -> Report {
    let run = || -> Run {
        let mut h = boot(seed, scale, Bug::None)?;
        let target = pick("owner", h.busiest(true))?;
        h.crash(target);
        h.expect_recovery(&format!("crash of n{target} (busiest owner)"));
        h.settle()?;
        h.run_for(Duration::from_secs(1))?;
        Ok(h)
    };
    finish(run(), seed)
}

/// (2) Leader crash.
pub fn leader_crash(seed: u64, scale: Scale) -> Report {
    let run = || -> Run {
        let mut h = boot(seed, scale, Bug::None)?;
        let target = pick("leader", h.leader())?;
        h.crash(target);
        h.expect_recovery(&format!("crash of leader n{target}"));
        h.settle()?;
        h.run_for(Duration::from_secs(1))?;
        Ok(h)
    };
    finish(run(), seed)
}

/// (3) Scale out 3 -> 5 and in 5 -> 3 through the Admin API, as the operator does.
pub fn scale(seed: u64, scale: Scale) -> Report {
    let run = || -> Run {
        let mut h = boot(seed, scale, Bug::None)?;
        let t0 = h.now_ms();
        h.expect_recovery("scale out 3->5");
        h.add_worker(4);
        h.add_worker(5);
        let a = h.operator_promote(4);
        let b = h.operator_promote(5);
        h.wait_op(a, Duration::from_secs(30))?;
        h.wait_op(b, Duration::from_secs(30))?;
        h.run_until(
            Duration::from_secs(10),
            "a balanced table on five members",
            |h| h.balanced(5),
        )?;
        let took = Duration::from_millis(h.now_ms() - t0);
        h.checker.recovered.push(Recovered {
            what: "rebalance 3->5".into(),
            took,
        });
        h.settle()?;
        h.run_for(Duration::from_secs(1))?;
        let t1 = h.now_ms();
        h.expect_recovery("scale in 5->3");
        for i in [5, 4] {
            let op = h.operator_remove(i);
            h.wait_op(op, Duration::from_secs(40))?;
            h.mark_removed(i);
            // The StatefulSet shrinks: the pod goes away.
            h.crash(i);
        }
        h.run_until(
            Duration::from_secs(10),
            "a balanced table on three members",
            |h| h.balanced(3),
        )?;
        let took = Duration::from_millis(h.now_ms() - t1);
        h.checker.recovered.push(Recovered {
            what: "rebalance 5->3".into(),
            took,
        });
        h.settle()?;
        h.run_for(Duration::from_secs(1))?;
        Ok(h)
    };
    finish(run(), seed)
}

fn others(h: &Harness<'_>, except: &[usize]) -> Vec<String> {
    h.members()
        .into_iter()
        .filter(|m| !except.iter().any(|e| net::worker(*e) == *m))
        .collect()
}

/// (4) Partitions: the leader from the majority; an owner from the leader (the lease
/// case); an owner together with the LB and the traffic from the majority; each
/// healed after a while.
pub fn partitions(seed: u64, scale: Scale) -> Report {
    finish(partitions_run(seed, scale, Bug::None, false), seed)
}

/// Scenario 4's third step alone, on member n3 (the one [`Bug::LeaseMismatch`]
/// affects): what the lease test runs with and without the bug.
pub fn minority_with_lb(seed: u64, scale: Scale, bug: Bug) -> Report {
    finish(partitions_run(seed, scale, bug, true), seed)
}

fn partitions_run(seed: u64, scale: Scale, bug: Bug, only_minority: bool) -> Run {
    let mut h = boot(seed, scale, bug)?;
    let hold = Duration::from_millis(1500);
    if !only_minority {
        // (a) The leader loses the majority.
        let l = pick("leader", h.leader())?;
        let a = vec![net::worker(l)];
        let b = others(&h, &[l]);
        h.partition(&a, &b, &[l]);
        h.expect_recovery(&format!("leader n{l} cut off from the majority"));
        h.settle()?;
        h.run_for(hold)?;
        h.repair(&a, &b);
        h.expect_recovery(&format!("heal of leader n{l}"));
        h.settle()?;
        // (b) An owner loses the leader (and only the leader): its lease lapses.
        let l = pick("leader", h.leader())?;
        let o = pick(
            "owner",
            h.live().iter().map(|x| x.index).filter(|i| *i != l).max(),
        )?;
        let a = vec![net::worker(o)];
        let b = vec![net::worker(l)];
        h.partition(&a, &b, &[]);
        h.expect_recovery(&format!("n{o} cut off from leader n{l}"));
        h.run_for(hold)?;
        h.settle()?;
        h.repair(&a, &b);
        h.expect_recovery(&format!("heal of n{o}"));
        h.settle()?;
    }
    // (c) An owner, the LB and the traffic lose the majority: the LB keeps steering
    // by its last table, so only the owner's buckets work until the heal. The majority
    // moves the owner's buckets as soon as it falls silent, fenced: the owner must stop
    // allocating when its lease lapses, before the new owners' fence ends.
    let o = 3;
    let a = vec![net::worker(o), LB.to_string(), TRAFFIC.to_string()];
    let b = others(&h, &[o]);
    h.partition(&a, &b, &[o]);
    h.run_for(Duration::from_millis(2500))?;
    h.repair(&a, &b);
    h.expect_recovery(&format!("heal of n{o} with the LB"));
    h.settle()?;
    h.run_for(Duration::from_secs(1))?;
    Ok(h)
}

/// (5) Crash members and restart them on their persisted storage (power loss
/// included): the busiest owner, then the leader.
pub fn bounce(seed: u64, scale: Scale) -> Report {
    finish(bounce_run(seed, scale, Bug::None), seed)
}

/// Scenario 5 with a deliberate bug.
pub fn bounce_with(seed: u64, scale: Scale, bug: Bug) -> Report {
    finish(bounce_run(seed, scale, bug), seed)
}

fn bounce_run(seed: u64, scale: Scale, bug: Bug) -> Run {
    let mut h = boot(seed, scale, bug)?;
    for pick_leader in [false, true] {
        let target = if pick_leader {
            h.leader()
        } else {
            h.busiest_owner()
        };
        let target = pick("member", target)?;
        h.crash(target);
        h.run_for(Duration::from_millis(300))?;
        h.restart(target, true);
        h.expect_recovery(&format!("restart of n{target}"));
        h.settle()?;
        h.run_for(Duration::from_millis(500))?;
    }
    Ok(h)
}

/// (6) Soak: a random schedule of crashes (with restarts), partitions, latency and
/// loss, one fault at a time, each healed before the next.
pub fn soak(seed: u64, scale: Scale) -> Report {
    let run = || -> Run {
        let mut h = boot(seed, scale, Bug::None)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_50a4);
        for _ in 0..4 {
            let members: Vec<usize> = h.live().iter().map(|l| l.index).collect();
            let victim = members[rng.random_range(0..members.len())];
            let hold = Duration::from_millis(rng.random_range(300..2000));
            match rng.random_range(0..4u8) {
                0 => {
                    h.crash(victim);
                    h.expect_recovery(&format!("crash of n{victim}"));
                    h.run_for(hold)?;
                    h.restart(victim, rng.random_bool(0.5));
                    h.expect_recovery(&format!("restart of n{victim}"));
                }
                1 => {
                    let a = vec![net::worker(victim)];
                    let mut b = others(&h, &[victim]);
                    if rng.random_bool(0.3) {
                        b.truncate(1);
                    }
                    let cut_off = if b.len() > 1 {
                        vec![victim]
                    } else {
                        Vec::new()
                    };
                    h.partition(&a, &b, &cut_off);
                    if b.len() > 1 {
                        h.expect_recovery(&format!("n{victim} cut off"));
                    }
                    h.run_for(hold)?;
                    h.repair(&a, &b);
                    h.expect_recovery(&format!("heal of n{victim}"));
                }
                2 => {
                    let ms = rng.random_range(10..40);
                    h.sim.set_max_message_latency(Duration::from_millis(ms));
                    let now = h.now_ms();
                    h.checker.note(now, &format!("latency {ms}ms"));
                    h.run_for(hold)?;
                    h.sim.set_max_message_latency(Duration::from_millis(4));
                    h.expect_recovery(&format!("latency spike of {ms}ms"));
                }
                _ => {
                    let peer = members[rng.random_range(0..members.len())];
                    let (a, b) = (
                        net::worker(victim),
                        if peer == victim {
                            LB.to_string()
                        } else {
                            net::worker(peer)
                        },
                    );
                    h.sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.02);
                    let now = h.now_ms();
                    h.checker.note(now, &format!("loss {a}-{b}"));
                    h.run_for(hold)?;
                    h.sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.0);
                    h.expect_recovery(&format!("loss on {a}-{b}"));
                }
            }
            h.settle()?;
            h.run_for(Duration::from_millis(rng.random_range(200..1000)))?;
        }
        Ok(h)
    };
    finish(run(), seed)
}

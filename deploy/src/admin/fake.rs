//! A scripted stand-in for a cluster's Admin API: members, roles, a log that advances,
//! learners that catch up (or never do), pods that join themselves, and failures on
//! demand. It keeps its state in an `Arc`, so a test can drop the operator's context,
//! build a new one over the same fake (an operator restart) and carry on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;

use super::{
    ClusterAdmin, ClusterTarget, ClusterView, JoinOutcome, JoinRequest, MemberView, NodeId, Probe,
    Role,
};
use crate::error::AdminCode;
use crate::{Error, Result};

/// Log entries committed between two probes (session batches), so a member that does
/// not follow falls further behind.
pub const TRAFFIC_PER_PROBE: u64 = 50;

/// How a learner catches up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// At the next probe.
    Immediately,
    /// After this many probes.
    AfterProbes(u32),
    /// Never (a member with a broken disk or network).
    Never,
}

#[derive(Debug, Clone)]
struct FakeMember {
    view: MemberView,
    probes_until_caught_up: Option<u32>,
}

/// The fake cluster's state.
#[derive(Debug)]
pub struct FakeState {
    members: Vec<FakeMember>,
    next_id: u64,
    leader: Option<NodeId>,
    epoch: u64,
    last_log_index: u64,
    buckets: u32,
    /// Pods whose store is empty (answer Status with `pristine`).
    wiped: BTreeSet<String>,
    /// Pods that do not answer.
    pub down: BTreeSet<String>,
    /// How each pod's member will catch up, by pod name (default: immediately).
    pub catch_up: BTreeMap<String, CatchUp>,
    /// Pods join themselves at the next probe (as `--join` does).
    pub self_join: bool,
    /// The next change call fails with this code.
    pub fail_next: Option<AdminCode>,
    /// Every change call, in order, e.g. `Promote demo-1`.
    pub calls: Vec<String>,
    /// Every Join request that registered a member, as sent.
    pub joined: Vec<JoinRequest>,
}

/// The fake Admin API. Clones share one cluster.
#[derive(Debug, Clone)]
pub struct FakeAdmin(Arc<Mutex<FakeState>>);

impl Default for FakeAdmin {
    fn default() -> Self {
        FakeAdmin(Arc::new(Mutex::new(FakeState {
            members: Vec::new(),
            next_id: 1,
            leader: None,
            epoch: 0,
            last_log_index: 0,
            buckets: 256,
            wiped: BTreeSet::new(),
            down: BTreeSet::new(),
            catch_up: BTreeMap::new(),
            self_join: false,
            fail_next: None,
            calls: Vec::new(),
            joined: Vec::new(),
        })))
    }
}

impl FakeAdmin {
    /// The state, for scripting and assertions.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Names of the voters, in id order.
    pub fn voters(&self) -> Vec<String> {
        self.members_with(Role::Voter)
    }

    /// Names of the learners, in id order.
    pub fn learners(&self) -> Vec<String> {
        self.members_with(Role::Learner)
    }

    fn members_with(&self, role: Role) -> Vec<String> {
        self.state()
            .members
            .iter()
            .filter(|m| m.view.role == role)
            .map(|m| m.view.name.clone())
            .collect()
    }

    /// A fake with these members already in place (the first voter leads), as if an
    /// earlier operator had built them.
    pub fn with_members(voters: &[&str], learners: &[&str]) -> Self {
        let fake = FakeAdmin::default();
        fake.add_members(voters, learners);
        fake
    }

    /// Registers members directly (the first voter leads if there is no leader yet);
    /// set [`FakeState::catch_up`] first to script how they follow.
    pub fn add_members(&self, voters: &[&str], learners: &[&str]) {
        let mut s = self.state();
        for v in voters {
            s.last_log_index += 1;
            let id = s.register(v, Role::Voter);
            s.leader.get_or_insert(id);
        }
        for l in learners {
            s.last_log_index += 1;
            s.register(l, Role::Learner);
        }
        s.rebalance();
    }

    /// The pod restarts with an empty volume.
    pub fn wipe(&self, pod: &str) {
        self.state().wiped.insert(pod.to_owned());
    }
}

impl FakeState {
    fn change(&mut self, call: String) -> Result<()> {
        self.calls.push(call.clone());
        if let Some(code) = self.fail_next.take() {
            return Err(Error::Admin {
                call: "fake",
                target: call,
                code,
                message: "injected failure".into(),
            });
        }
        self.last_log_index += 1;
        Ok(())
    }

    fn register(&mut self, name: &str, role: Role) -> NodeId {
        let id = NodeId(self.next_id);
        self.next_id += 1;
        let policy = self
            .catch_up
            .get(name)
            .copied()
            .unwrap_or(CatchUp::Immediately);
        self.members.push(FakeMember {
            view: MemberView {
                id,
                name: name.to_owned(),
                role,
                draining: false,
                buckets: 0,
                sessions: 0,
                matched_index: if role == Role::Voter {
                    self.last_log_index + 1
                } else {
                    0
                },
                reachable: true,
            },
            probes_until_caught_up: match policy {
                CatchUp::Immediately => Some(0),
                CatchUp::AfterProbes(n) => Some(n),
                CatchUp::Never => None,
            },
        });
        self.wiped.remove(name);
        id
    }

    /// Spreads the buckets evenly over the voters that are not draining.
    fn rebalance(&mut self) {
        self.epoch += 1;
        let owners: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].view.role == Role::Voter && !self.members[i].view.draining)
            .collect();
        for m in &mut self.members {
            m.view.buckets = 0;
        }
        if owners.is_empty() {
            return;
        }
        let n = u32::try_from(owners.len()).unwrap_or(u32::MAX);
        for (k, &i) in owners.iter().enumerate() {
            let k = u32::try_from(k).unwrap_or(0);
            self.members[i].view.buckets = self.buckets / n + u32::from(k < self.buckets % n);
        }
    }

    fn member_mut(&mut self, id: NodeId, call: &'static str) -> Result<&mut FakeMember> {
        self.members
            .iter_mut()
            .find(|m| m.view.id == id)
            .ok_or_else(|| Error::Admin {
                call,
                target: id.to_string(),
                code: AdminCode::NotFound,
                message: format!("no member {id}"),
            })
    }

    fn tick(&mut self, target: &ClusterTarget) {
        if self.self_join && self.leader.is_some() {
            for (pod, _) in &target.members {
                let known = self.members.iter().any(|m| &m.view.name == pod);
                if !known && !self.down.contains(pod) {
                    self.calls.push(format!("self-join {pod}"));
                    self.last_log_index += 1;
                    self.register(pod, Role::Learner);
                }
            }
        }
        // Traffic: sessions commit between two looks at the cluster.
        if self.leader.is_some() {
            self.last_log_index += TRAFFIC_PER_PROBE;
        }
        let head = self.last_log_index;
        for m in &mut self.members {
            m.view.reachable =
                !self.down.contains(&m.view.name) && !self.wiped.contains(&m.view.name);
            match m.probes_until_caught_up {
                Some(0) if m.view.reachable => m.view.matched_index = head,
                Some(n) if n > 0 => m.probes_until_caught_up = Some(n - 1),
                _ => {}
            }
        }
    }
}

impl ClusterAdmin for FakeAdmin {
    fn probe<'a>(&'a self, target: &'a ClusterTarget) -> BoxFuture<'a, Probe> {
        Box::pin(async move {
            let mut s = self.state();
            s.tick(target);
            let mut probe = Probe::default();
            let mut answered_by = None;
            for (pod, _) in &target.members {
                if s.down.contains(pod) {
                    probe
                        .unreachable
                        .push((pod.clone(), "connection refused".into()));
                } else if s.wiped.contains(pod) || !s.members.iter().any(|m| &m.view.name == pod) {
                    probe.pristine.insert(pod.clone());
                } else if answered_by.is_none() {
                    answered_by = Some(pod.clone());
                }
            }
            let leader_up = s
                .leader
                .and_then(|l| s.members.iter().find(|m| m.view.id == l))
                .is_some_and(|m| !s.down.contains(&m.view.name));
            probe.view = answered_by.map(|pod| ClusterView {
                answered_by: pod,
                leader: s.leader,
                epoch: s.epoch,
                last_log_index: s.last_log_index,
                sessions: 0,
                from_leader: leader_up,
                members: s.members.iter().map(|m| m.view.clone()).collect(),
            });
            probe
        })
    }

    fn initialize<'a>(
        &'a self,
        _target: &'a ClusterTarget,
        pod: &'a str,
    ) -> BoxFuture<'a, Result<NodeId>> {
        Box::pin(async move {
            let mut s = self.state();
            s.change(format!("Initialize {pod}"))?;
            if !s.members.is_empty() {
                return Err(Error::Admin {
                    call: "Initialize",
                    target: pod.to_owned(),
                    code: AdminCode::FailedPrecondition,
                    message: "already in a cluster".into(),
                });
            }
            let id = s.register(pod, Role::Voter);
            s.leader = Some(id);
            s.rebalance();
            Ok(id)
        })
    }

    fn join<'a>(
        &'a self,
        _target: &'a ClusterTarget,
        request: &'a JoinRequest,
    ) -> BoxFuture<'a, Result<JoinOutcome>> {
        Box::pin(async move {
            let mut s = self.state();
            s.change(format!("Join {}", request.name))?;
            if s.members.iter().any(|m| m.view.name == request.name) {
                return Ok(JoinOutcome::AlreadyMember);
            }
            s.joined.push(request.clone());
            Ok(JoinOutcome::Joined(
                s.register(&request.name, Role::Learner),
            ))
        })
    }

    fn promote<'a>(
        &'a self,
        _target: &'a ClusterTarget,
        node: NodeId,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut s = self.state();
            let name = s.member_mut(node, "Promote")?.view.name.clone();
            s.change(format!("Promote {name}"))?;
            s.member_mut(node, "Promote")?.view.role = Role::Voter;
            s.rebalance();
            Ok(s.epoch)
        })
    }

    fn drain<'a>(&'a self, _target: &'a ClusterTarget, node: NodeId) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut s = self.state();
            let name = s.member_mut(node, "Drain")?.view.name.clone();
            s.change(format!("Drain {name}"))?;
            s.member_mut(node, "Drain")?.view.draining = true;
            s.rebalance();
            Ok(s.epoch)
        })
    }

    fn remove<'a>(
        &'a self,
        _target: &'a ClusterTarget,
        node: NodeId,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut s = self.state();
            let name = s.member_mut(node, "Remove")?.view.name.clone();
            s.change(format!("Remove {name}"))?;
            let voters = s
                .members
                .iter()
                .filter(|m| m.view.role == Role::Voter)
                .count();
            if voters == 1
                && s.members
                    .iter()
                    .any(|m| m.view.id == node && m.view.role == Role::Voter)
            {
                return Err(Error::Admin {
                    call: "Remove",
                    target: name,
                    code: AdminCode::FailedPrecondition,
                    message: "the last voter cannot be removed".into(),
                });
            }
            s.members.retain(|m| m.view.id != node);
            if s.leader == Some(node) {
                s.leader = s
                    .members
                    .iter()
                    .find(|m| m.view.role == Role::Voter)
                    .map(|m| m.view.id);
            }
            s.rebalance();
            Ok(s.epoch)
        })
    }
}

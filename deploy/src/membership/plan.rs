//! The planner: one membership decision from one observation.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::PodObservation;
use crate::admin::{ClusterView, JoinRequest, MemberView, NodeId, Probe, Role};
use crate::crd::MembershipPolicy;
use crate::names::NatNames;

/// Everything the planner looks at.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// The Nat's object names.
    pub names: &'a NatNames,
    /// `spec.replicas`.
    pub desired: u32,
    /// The StatefulSet's current `spec.replicas` (`None` before it exists).
    pub statefulset_replicas: Option<u32>,
    /// The worker pods that exist.
    pub pods: &'a [PodObservation],
    /// What the members said.
    pub probe: &'a Probe,
    /// `spec.membership`.
    pub policy: &'a MembershipPolicy,
    /// The time of the observation.
    pub now: Timestamp,
    /// Members this Nat's status last recorded (empty for a Nat that never had a
    /// cluster). A new cluster is initialized only when this is empty: if every worker
    /// looks empty but a cluster existed, its members may only be away, and a second
    /// cluster would split the first.
    pub recorded_members: &'a [String],
}

/// One change of the cluster's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Make the pod the first voter of a new cluster.
    Initialize {
        /// Pod name.
        pod: String,
    },
    /// Register the pod as a learner.
    Join(JoinRequest),
    /// Make a caught-up learner a voter.
    Promote {
        /// Pod name.
        pod: String,
        /// Its node id.
        id: NodeId,
    },
    /// Move every bucket away from the member (first step of removing it).
    Drain {
        /// Pod name.
        pod: String,
        /// Its node id.
        id: NodeId,
    },
    /// Remove the member from the cluster.
    Remove {
        /// Pod name.
        pod: String,
        /// Its node id.
        id: NodeId,
        /// Why, for people.
        why: String,
    },
}

impl Change {
    /// Event reason (CamelCase, fixed set).
    pub fn reason(&self) -> &'static str {
        match self {
            Change::Initialize { .. } => "Initialize",
            Change::Join(_) => "Join",
            Change::Promote { .. } => "Promote",
            Change::Drain { .. } => "Drain",
            Change::Remove { .. } => "Remove",
        }
    }

    /// One sentence for events and logs.
    pub fn describe(&self) -> String {
        match self {
            Change::Initialize { pod } => {
                format!("initializing a new cluster with {pod} as its first voter")
            }
            Change::Join(r) => format!(
                "joining {} as a learner (data address {} {})",
                r.name, r.data_ip, r.data_mac
            ),
            Change::Promote { pod, id } => format!("promoting {pod} (node {id}) to voter"),
            Change::Drain { pod, id } => {
                format!("draining {pod} (node {id}): moving its buckets to the other members")
            }
            Change::Remove { pod, id, why } => {
                format!("removing {pod} (node {id}) from the cluster: {why}")
            }
        }
    }
}

/// The phase a pod's readiness gate records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateReason {
    /// A caught-up voter: the gate is True.
    Voter,
    /// Running, not yet a member.
    Joining,
    /// A learner behind the leader's log.
    CatchingUp,
    /// Being drained or removed (scale-in).
    Leaving,
    /// A voter the leader has not heard from within the lease.
    Unreachable,
}

impl GateReason {
    /// The condition's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            GateReason::Voter => "Voter",
            GateReason::Joining => "Joining",
            GateReason::CatchingUp => "CatchingUp",
            GateReason::Leaving => "Leaving",
            GateReason::Unreachable => "Unreachable",
        }
    }
}

/// A readiness-gate condition to write on a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateUpdate {
    /// Pod name.
    pub pod: String,
    /// The phase; the gate is True only for [`GateReason::Voter`].
    pub reason: GateReason,
    /// For `kubectl describe pod`.
    pub message: String,
    /// `lastTransitionTime`: when the phase began.
    pub since: Timestamp,
}

/// What the cluster is doing, for the Scaling condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Membership matches the spec.
    Steady,
    /// No cluster yet.
    Initializing,
    /// Adding members.
    ScalingOut,
    /// Removing members.
    ScalingIn,
}

impl Progress {
    /// The Scaling condition's reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Progress::Steady => "Steady",
            Progress::Initializing => "Initializing",
            Progress::ScalingOut => "ScalingOut",
            Progress::ScalingIn => "ScalingIn",
        }
    }
}

/// Why a Nat is Degraded; the condition's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// No worker answered the Admin API.
    ClusterUnreachable,
    /// Every worker is empty but the Nat had a cluster.
    ClusterLost,
    /// No leader answered.
    NoLeader,
    /// Scale-in would remove the last voter.
    LastVoter,
    /// A member's pod came back without its data.
    MemberDataLost,
    /// A voter the leader has not heard from for too long.
    MemberUnreachable,
    /// A running pod that has not become a member in time.
    MemberNotJoining,
    /// A learner that has not caught up in time.
    MemberNotCatchingUp,
    /// The membership change of this reconcile failed.
    ChangeFailed,
}

impl Problem {
    /// The Degraded condition's reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::ClusterUnreachable => "ClusterUnreachable",
            Problem::ClusterLost => "ClusterLost",
            Problem::NoLeader => "NoLeader",
            Problem::LastVoter => "LastVoter",
            Problem::MemberDataLost => "MemberDataLost",
            Problem::MemberUnreachable => "MemberUnreachable",
            Problem::MemberNotJoining => "MemberNotJoining",
            Problem::MemberNotCatchingUp => "MemberNotCatchingUp",
            Problem::ChangeFailed => "ChangeFailed",
        }
    }
}

/// A problem that needs a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    /// What kind.
    pub problem: Problem,
    /// A full sentence with a hint.
    pub message: String,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The StatefulSet's `spec.replicas`.
    pub statefulset_replicas: u32,
    /// The one membership change to make now, if any.
    pub change: Option<Change>,
    /// Readiness gates whose phase changed.
    pub gates: Vec<GateUpdate>,
    /// What the cluster is doing.
    pub progress: Progress,
    /// What the orchestration waits for, for people.
    pub waiting: Vec<String>,
    /// Problems that need a person.
    pub degraded: Vec<Degraded>,
}

struct Planner<'o, 'a> {
    obs: &'o Observation<'a>,
    plan: Plan,
}

/// Decides the next step. See the module docs of [`crate::membership`].
pub fn plan(obs: &Observation<'_>) -> Plan {
    let mut p = Planner {
        obs,
        plan: Plan {
            statefulset_replicas: obs.desired,
            change: None,
            gates: Vec::new(),
            progress: Progress::Steady,
            waiting: Vec::new(),
            degraded: Vec::new(),
        },
    };
    match &obs.probe.view {
        None => p.no_cluster(),
        Some(view) => p.cluster(view),
    }
    p.plan
}

impl Planner<'_, '_> {
    fn pod(&self, ordinal: u32) -> Option<&PodObservation> {
        self.obs.pods.iter().find(|p| p.ordinal == ordinal)
    }

    fn timeout(&self) -> SignedDuration {
        SignedDuration::from_secs(i64::from(self.obs.policy.catch_up_timeout_seconds))
    }

    /// Records `pod`'s phase on its gate (keeping the start time while the phase is
    /// unchanged) and returns how long the phase has lasted.
    fn gate(
        &mut self,
        pod: &PodObservation,
        reason: GateReason,
        message: String,
    ) -> SignedDuration {
        let ready = reason == GateReason::Voter;
        let since = match &pod.gate {
            Some(g) if g.ready == ready && g.reason == reason.as_str() => g.since,
            _ if self.plan.gates.iter().any(|g| g.pod == pod.name) => self.obs.now,
            _ => {
                self.plan.gates.push(GateUpdate {
                    pod: pod.name.clone(),
                    reason,
                    message,
                    since: self.obs.now,
                });
                self.obs.now
            }
        };
        self.obs.now.duration_since(since)
    }

    fn degrade(&mut self, problem: Problem, message: String) {
        self.plan.degraded.push(Degraded { problem, message });
    }

    fn set_change(&mut self, change: Change) {
        if self.plan.change.is_none() {
            self.plan.change = Some(change);
        }
    }

    fn no_cluster(&mut self) {
        self.plan.progress = Progress::Initializing;
        // Nobody answered as a member. That is a new cluster, or every member is
        // restarting: never shrink the StatefulSet on such an observation, it could
        // delete a member that has not been removed yet.
        self.plan.statefulset_replicas = self
            .obs
            .desired
            .max(self.obs.statefulset_replicas.unwrap_or(0));
        let probe = self.obs.probe;
        let Some(first) = self.pod(0).cloned() else {
            self.plan.waiting.push(format!(
                "waiting for pod {} to be created",
                self.obs.names.pod(0)
            ));
            return;
        };
        if !first.running {
            self.plan
                .waiting
                .push(format!("waiting for pod {} to start", first.name));
            return;
        }
        let lasted = self.gate(
            &first,
            GateReason::Joining,
            "waiting for the cluster to be initialized".into(),
        );
        if !probe.unreachable.is_empty() {
            let who: Vec<String> = probe
                .unreachable
                .iter()
                .map(|(p, e)| format!("{p} ({e})"))
                .collect();
            self.plan.waiting.push(format!(
                "not initializing: every worker must answer first, and these did not: {}",
                who.join(", ")
            ));
            if lasted > self.timeout() {
                self.degrade(Problem::ClusterUnreachable, format!(
                    "no cluster after {}: {} did not answer the admin API; check the pods' logs (kubectl logs {})",
                    human(lasted),
                    who.join(", "),
                    first.name
                ));
            }
            return;
        }
        let silent: Vec<&str> = self
            .obs
            .pods
            .iter()
            .filter(|p| !probe.pristine.contains(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !silent.is_empty() {
            // A pod that is not running may hold the cluster's state.
            self.plan.waiting.push(format!(
                "not initializing until every worker pod answers as empty; waiting for {}",
                silent.join(", ")
            ));
        } else if !self.obs.recorded_members.is_empty() {
            self.degrade(Problem::ClusterLost, format!(
                "every worker reports an empty store, but this Nat had a cluster (members {}): not starting a new one, which would split it if the old members return; if their volumes are really gone, delete the Nat and create it again",
                self.obs.recorded_members.join(", ")
            ));
        } else if probe.pristine.contains(&first.name) {
            self.set_change(Change::Initialize {
                pod: first.name.clone(),
            });
        } else {
            self.plan
                .waiting
                .push(format!("waiting for {} to answer", first.name));
        }
    }

    fn ours<'v>(&self, view: &'v ClusterView) -> Vec<(u32, &'v MemberView)> {
        let mut v: Vec<_> = view
            .members
            .iter()
            .filter_map(|m| self.obs.names.ordinal_of(&m.name).map(|o| (o, m)))
            .collect();
        v.sort_by_key(|(o, _)| *o);
        v
    }

    fn cluster(&mut self, view: &ClusterView) {
        let obs = self.obs;
        let ours = self.ours(view);
        let highest = ours.last().map(|(o, _)| *o);
        // Lower the StatefulSet only below ordinals that are no longer members.
        self.plan.statefulset_replicas = obs.desired.max(highest.map_or(0, |h| h + 1));
        if self.plan.statefulset_replicas > obs.desired
            || obs
                .statefulset_replicas
                .is_some_and(|s| s > self.plan.statefulset_replicas)
        {
            self.plan.progress = Progress::ScalingIn;
        }

        if !view.from_leader {
            // A follower's view may lag the log (miss a member that just joined):
            // never shrink the StatefulSet on it.
            self.plan.statefulset_replicas = self
                .plan
                .statefulset_replicas
                .max(obs.statefulset_replicas.unwrap_or(0));
            let why = match view.leader {
                None => "the cluster has no leader (an election is running, or a quorum of voters is down)".to_owned(),
                Some(l) => format!("the leader (node {l}) did not answer"),
            };
            self.degrade(
                Problem::NoLeader,
                format!("{why}; membership changes wait until a leader answers"),
            );
            self.plan.waiting.push("waiting for a leader".into());
            return;
        }

        // 1. Finish a removal that has begun, whatever the spec says now: a drained
        //    member owns nothing and must not linger half-removed.
        if let Some((_, m)) = ours.iter().rev().find(|(_, m)| m.draining) {
            self.leaving(m.name.as_str());
            if m.buckets > 0 {
                self.set_change(Change::Drain {
                    pod: m.name.clone(),
                    id: m.id,
                });
            } else {
                self.set_change(Change::Remove {
                    pod: m.name.clone(),
                    id: m.id,
                    why: "scale-in (drained, owns no buckets)".into(),
                });
            }
            self.plan.progress = Progress::ScalingIn;
        }

        // 2. Scale in: the highest member beyond the desired size goes first.
        if let Some((ordinal, m)) = ours.iter().rev().find(|(o, _)| *o >= obs.desired) {
            self.plan.progress = Progress::ScalingIn;
            self.leaving(m.name.as_str());
            let other_voters = view
                .members
                .iter()
                .filter(|x| x.role == Role::Voter && x.id != m.id)
                .count();
            if m.role == Role::Learner {
                // A learner owns no buckets and has no vote: nothing to drain.
                self.set_change(Change::Remove {
                    pod: m.name.clone(),
                    id: m.id,
                    why: "scale-in (a learner, owns no buckets)".into(),
                });
            } else if other_voters == 0 {
                self.degrade(Problem::LastVoter, format!(
                    "cannot remove {} (node {}): it is the last voter; scale the Nat to at least {}",
                    m.name,
                    m.id,
                    ordinal + 1
                ));
            } else {
                self.set_change(Change::Drain {
                    pod: m.name.clone(),
                    id: m.id,
                });
            }
        }

        // 3. Members up to the desired size, lowest ordinal first.
        let target = obs.desired.min(self.plan.statefulset_replicas);
        for ordinal in 0..target {
            let name = obs.names.pod(ordinal);
            let member = view.member(&name);
            let Some(pod) = self.pod(ordinal).cloned() else {
                if member.is_none() {
                    self.scaling_out();
                    self.plan
                        .waiting
                        .push(format!("waiting for pod {name} to be created"));
                }
                continue;
            };
            match member {
                None => self.not_a_member(&pod),
                Some(m) if obs.probe.pristine.contains(&pod.name) => {
                    // The pod answers as a new, empty member: its volume was lost. The
                    // old registration must go before it can join again.
                    self.scaling_out();
                    if view.voters() > 1 || m.role == Role::Learner {
                        self.set_change(Change::Remove {
                            pod: pod.name.clone(),
                            id: m.id,
                            why: "its pod restarted without its data; it will join again as a new member".into(),
                        });
                    } else {
                        self.degrade(Problem::MemberDataLost, format!(
                            "{} (node {}) lost its data and is the only voter: the cluster's state is gone; delete and recreate the Nat",
                            pod.name, m.id
                        ));
                    }
                }
                Some(m) if m.role == Role::Learner => self.learner(&pod, m, view),
                Some(m) if m.reachable => {
                    if pod.running {
                        self.gate(
                            &pod,
                            GateReason::Voter,
                            format!("voting member, node {}", m.id),
                        );
                    }
                }
                Some(m) => {
                    // A voter the leader cannot hear serves no traffic: take it out of
                    // Ready (endpoints, the PDB's count) until it is back.
                    let lasted = self.gate(
                        &pod,
                        GateReason::Unreachable,
                        format!("voting member, node {}, not heard by the leader", m.id),
                    );
                    self.plan.waiting.push(format!(
                        "{} (node {}) is not reachable from the leader",
                        m.name, m.id
                    ));
                    if lasted > self.timeout() {
                        let leader = view
                            .leader_member()
                            .map_or_else(|| "the leader".to_owned(), |l| l.name.clone());
                        self.degrade(Problem::MemberUnreachable, format!(
                            "member {} (node {}) has been unreachable from the leader for {}: check the pod (kubectl describe pod {}) and its network path to {leader}",
                            m.name,
                            m.id,
                            human(lasted),
                            m.name
                        ));
                    }
                }
            }
        }
    }

    fn scaling_out(&mut self) {
        if self.plan.progress == Progress::Steady {
            self.plan.progress = Progress::ScalingOut;
        }
    }

    fn leaving(&mut self, name: &str) {
        if let Some(pod) = self.obs.pods.iter().find(|p| p.name == name).cloned() {
            self.gate(
                &pod,
                GateReason::Leaving,
                "leaving the cluster (scale-in)".into(),
            );
        }
    }

    fn not_a_member(&mut self, pod: &PodObservation) {
        self.scaling_out();
        if !pod.running {
            self.plan
                .waiting
                .push(format!("waiting for pod {} to start", pod.name));
            return;
        }
        if let Some((ip, mac)) = &pod.data_address {
            self.set_change(Change::Join(JoinRequest {
                name: pod.name.clone(),
                raft_addr: self.obs.names.grpc_address(pod.ordinal),
                data_ip: ip.clone(),
                data_mac: mac.clone(),
            }));
        }
        let lasted = self.gate(
            pod,
            GateReason::Joining,
            "waiting to join the cluster".into(),
        );
        self.plan
            .waiting
            .push(format!("waiting for {} to join", pod.name));
        if lasted > self.timeout() {
            let why = if self
                .obs
                .probe
                .unreachable
                .iter()
                .any(|(p, _)| *p == pod.name)
            {
                "it does not answer the admin API"
            } else if pod.data_address.is_none() {
                "it did not join itself (--join) and Multus reported no address for its data interface to join it with"
            } else {
                "the Join calls did not take effect"
            };
            self.degrade(
                Problem::MemberNotJoining,
                format!(
                    "{} has been running for {} but is not a member: {why}; check kubectl logs {}",
                    pod.name,
                    human(lasted),
                    pod.name
                ),
            );
        }
    }

    fn learner(&mut self, pod: &PodObservation, m: &MemberView, view: &ClusterView) {
        self.scaling_out();
        let lag = view.last_log_index.saturating_sub(m.matched_index);
        let max_lag = u64::try_from(self.obs.policy.max_catch_up_lag).unwrap_or(0);
        if m.reachable && lag <= max_lag {
            self.set_change(Change::Promote {
                pod: pod.name.clone(),
                id: m.id,
            });
            return;
        }
        let lasted = self.gate(
            pod,
            GateReason::CatchingUp,
            format!("learner, node {}", m.id),
        );
        self.plan.waiting.push(format!(
            "{} (node {}) is catching up: {lag} entries behind",
            pod.name, m.id
        ));
        if lasted > self.timeout() {
            let leader = view
                .leader_member()
                .map_or_else(|| "the leader".to_owned(), |l| l.name.clone());
            let state = if m.reachable {
                format!(
                    "it has log index {} of {} ({lag} behind; at most {max_lag} allowed)",
                    m.matched_index, view.last_log_index
                )
            } else {
                "the leader cannot reach it".to_owned()
            };
            self.degrade(Problem::MemberNotCatchingUp, format!(
                "member {} (node {}) has not caught up with the leader after {}: {state}; check its network path to {leader} and its disk (kubectl logs {})",
                pod.name,
                m.id,
                human(lasted),
                pod.name
            ));
        }
    }
}

/// `5m`, `1h2m`, `40s`.
fn human(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::GateCondition;

    struct World {
        names: NatNames,
        pods: Vec<PodObservation>,
        probe: Probe,
        policy: MembershipPolicy,
        now: Timestamp,
        recorded: Vec<String>,
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    impl World {
        fn new() -> Self {
            World {
                names: NatNames {
                    nat: "demo".into(),
                    namespace: "edge".into(),
                },
                pods: Vec::new(),
                probe: Probe::default(),
                policy: MembershipPolicy {
                    max_catch_up_lag: 5,
                    ..MembershipPolicy::default()
                },
                now: ts(0),
                recorded: Vec::new(),
            }
        }
        fn pod(mut self, ordinal: u32, gate: Option<(bool, &str, i64)>) -> Self {
            self.pods.push(PodObservation {
                ordinal,
                name: format!("demo-{ordinal}"),
                running: true,
                ready: gate.is_some_and(|g| g.0),
                gate: gate.map(|(ready, reason, at)| GateCondition {
                    ready,
                    reason: reason.into(),
                    since: ts(at),
                }),
                data_address: None,
            });
            self
        }
        fn member(mut self, ordinal: u32, role: Role, matched: u64) -> Self {
            let view = self.probe.view.get_or_insert_with(|| ClusterView {
                answered_by: "demo-0".into(),
                leader: Some(NodeId(1)),
                epoch: 1,
                last_log_index: 100,
                sessions: 0,
                from_leader: true,
                members: Vec::new(),
            });
            view.members.push(MemberView {
                id: NodeId(u64::from(ordinal) + 1),
                name: format!("demo-{ordinal}"),
                role,
                draining: false,
                buckets: if role == Role::Voter { 8 } else { 0 },
                sessions: 0,
                matched_index: matched,
                reachable: true,
            });
            self
        }
        fn plan(&self, desired: u32, sts: Option<u32>) -> Plan {
            plan(&Observation {
                names: &self.names,
                desired,
                statefulset_replicas: sts,
                pods: &self.pods,
                probe: &self.probe,
                policy: &self.policy,
                now: self.now,
                recorded_members: &self.recorded,
            })
        }
    }

    #[test]
    fn a_pristine_first_pod_initializes_the_cluster() {
        let mut w = World::new().pod(0, None);
        w.probe.pristine.insert("demo-0".into());
        let p = w.plan(3, None);
        assert_eq!(
            p.change,
            Some(Change::Initialize {
                pod: "demo-0".into()
            })
        );
        assert_eq!(p.statefulset_replicas, 3);
        assert_eq!(p.progress, Progress::Initializing);
    }

    #[test]
    fn never_starts_a_second_cluster() {
        // demo-0 lost its volume while demo-1 and demo-2 are away (their pods gone);
        // the Nat's status remembers them.
        let mut w = World::new().pod(0, None);
        w.probe.pristine.insert("demo-0".into());
        w.recorded = vec!["demo-0".into(), "demo-1".into(), "demo-2".into()];
        let p = w.plan(3, Some(3));
        assert_eq!(p.change, None);
        assert!(
            p.degraded[0].message.contains("would split it"),
            "{:?}",
            p.degraded
        );
        // A pod that exists but is not running may hold the state too.
        let mut w = World::new().pod(0, None).pod(1, None);
        w.pods[1].running = false;
        w.probe.pristine.insert("demo-0".into());
        assert_eq!(w.plan(3, Some(3)).change, None);
    }

    #[test]
    fn a_silent_cluster_never_shrinks_the_statefulset() {
        let mut w = World::new().pod(0, None).pod(1, None).pod(2, None);
        for p in ["demo-0", "demo-1", "demo-2"] {
            w.probe
                .unreachable
                .push((p.into(), "connection refused".into()));
        }
        let p = w.plan(2, Some(3));
        assert_eq!(p.statefulset_replicas, 3, "demo-2 may still be a member");
        assert_eq!(p.change, None);
    }

    #[test]
    fn never_initializes_while_a_worker_is_silent() {
        let mut w = World::new().pod(0, None).pod(1, None);
        w.probe.pristine.insert("demo-0".into());
        w.probe
            .unreachable
            .push(("demo-1".into(), "connection refused".into()));
        let p = w.plan(3, Some(3));
        assert_eq!(p.change, None, "demo-1 may hold the real cluster");
        assert!(p.waiting[0].contains("demo-1"), "{:?}", p.waiting);
    }

    #[test]
    fn scale_out_goes_join_promote_gate_one_at_a_time() {
        let mut w = World::new()
            .member(0, Role::Voter, 100)
            .pod(0, Some((true, "Voter", 0)))
            .pod(1, None);
        w.pods[1].data_address = Some(("192.0.2.11".into(), "02:00:00:00:00:11".into()));
        let p = w.plan(3, Some(1));
        assert_eq!(p.statefulset_replicas, 3);
        assert_eq!(p.progress, Progress::ScalingOut);
        match &p.change {
            Some(Change::Join(r)) => {
                assert_eq!(r.name, "demo-1");
                assert_eq!(r.raft_addr, "demo-1.demo.edge.svc:7700");
            }
            other => panic!("{other:?}"),
        }
        // demo-1 joined (or joined itself) and is behind: no promotion yet.
        let w = w.member(1, Role::Learner, 10);
        let p = w.plan(3, Some(3));
        assert_eq!(p.change, None);
        assert_eq!(p.gates.len(), 1);
        assert_eq!(p.gates[0].reason, GateReason::CatchingUp);
        // Caught up: promote.
        let mut w = w;
        w.probe.view.as_mut().unwrap().members[1].matched_index = 99;
        let p = w.plan(3, Some(3));
        assert_eq!(
            p.change,
            Some(Change::Promote {
                pod: "demo-1".into(),
                id: NodeId(2)
            })
        );
        // Voter: the gate opens, nothing else changes.
        w.probe.view.as_mut().unwrap().members[1].role = Role::Voter;
        let p = w.plan(3, Some(3));
        assert_eq!(p.change, None);
        assert_eq!(
            p.gates
                .iter()
                .map(|g| (g.pod.as_str(), g.reason))
                .collect::<Vec<_>>(),
            vec![("demo-1", GateReason::Voter)]
        );
        assert!(
            p.waiting.iter().any(|w| w.contains("demo-2")),
            "{:?}",
            p.waiting
        );
    }

    #[test]
    fn a_member_that_never_catches_up_degrades_after_the_timeout() {
        let mut w = World::new()
            .member(0, Role::Voter, 100)
            .member(1, Role::Learner, 3)
            .pod(0, Some((true, "Voter", 0)))
            .pod(1, Some((false, "CatchingUp", 0)));
        w.now = ts(299);
        assert!(w.plan(2, Some(2)).degraded.is_empty());
        w.now = ts(301);
        let p = w.plan(2, Some(2));
        assert_eq!(p.change, None);
        assert!(
            p.gates.is_empty(),
            "the phase is unchanged, so its start time is kept"
        );
        assert_eq!(p.degraded.len(), 1);
        let msg = &p.degraded[0].message;
        assert!(
            msg.contains("demo-1")
                && msg.contains("has not caught up")
                && msg.contains("5m1s")
                && msg.contains("3 of 100"),
            "{msg}"
        );
    }

    #[test]
    fn scale_in_drains_then_removes_then_lowers_the_statefulset() {
        let w = World::new()
            .member(0, Role::Voter, 100)
            .member(1, Role::Voter, 100)
            .member(2, Role::Voter, 100)
            .pod(0, Some((true, "Voter", 0)))
            .pod(1, Some((true, "Voter", 0)))
            .pod(2, Some((true, "Voter", 0)));
        let p = w.plan(2, Some(3));
        assert_eq!(
            p.statefulset_replicas, 3,
            "not lowered while demo-2 is a member"
        );
        assert_eq!(
            p.change,
            Some(Change::Drain {
                pod: "demo-2".into(),
                id: NodeId(3)
            })
        );
        assert_eq!(p.progress, Progress::ScalingIn);
        assert_eq!(p.gates[0].reason, GateReason::Leaving);
        let mut w = w;
        {
            let m = &mut w.probe.view.as_mut().unwrap().members[2];
            m.draining = true;
            m.buckets = 0;
        }
        w.pods[2].gate = Some(GateCondition {
            ready: false,
            reason: "Leaving".into(),
            since: ts(0),
        });
        let p = w.plan(2, Some(3));
        assert!(
            matches!(p.change, Some(Change::Remove { ref pod, id: NodeId(3), .. }) if pod == "demo-2"),
            "{p:?}"
        );
        assert_eq!(p.statefulset_replicas, 3);
        w.probe.view.as_mut().unwrap().members.pop();
        let p = w.plan(2, Some(3));
        assert_eq!(p.statefulset_replicas, 2);
        assert_eq!(p.change, None);
        assert_eq!(
            p.progress,
            Progress::ScalingIn,
            "the StatefulSet is still larger"
        );
        let p = w.plan(2, Some(2));
        assert_eq!(p.progress, Progress::Steady);
    }

    #[test]
    fn a_started_drain_is_finished_even_if_the_nat_grows_again() {
        let mut w = World::new()
            .member(0, Role::Voter, 100)
            .member(1, Role::Voter, 100)
            .pod(0, None)
            .pod(1, None);
        w.probe.view.as_mut().unwrap().members[1].draining = true;
        w.probe.view.as_mut().unwrap().members[1].buckets = 3;
        let p = w.plan(5, Some(2));
        assert_eq!(
            p.change,
            Some(Change::Drain {
                pod: "demo-1".into(),
                id: NodeId(2)
            })
        );
    }

    #[test]
    fn a_learner_beyond_the_size_is_removed_without_a_drain() {
        let w = World::new()
            .member(0, Role::Voter, 100)
            .member(1, Role::Learner, 10)
            .pod(0, None)
            .pod(1, None);
        let p = w.plan(1, Some(2));
        assert!(
            matches!(p.change, Some(Change::Remove { ref pod, .. }) if pod == "demo-1"),
            "{p:?}"
        );
    }

    #[test]
    fn the_last_voter_is_never_removed() {
        let w = World::new().member(1, Role::Voter, 100).pod(1, None);
        let p = w.plan(1, Some(2));
        assert_eq!(p.change, None);
        assert!(
            p.degraded[0].message.contains("last voter"),
            "{:?}",
            p.degraded
        );
    }

    #[test]
    fn a_pod_that_lost_its_volume_is_removed_and_rejoins() {
        let mut w = World::new()
            .member(0, Role::Voter, 100)
            .member(1, Role::Voter, 100)
            .member(2, Role::Voter, 100)
            .pod(0, None)
            .pod(1, None)
            .pod(2, None);
        w.probe.pristine.insert("demo-1".into());
        let p = w.plan(3, Some(3));
        assert!(
            matches!(p.change, Some(Change::Remove { ref pod, .. }) if pod == "demo-1"),
            "{p:?}"
        );
    }

    #[test]
    fn a_followers_view_never_shrinks_the_statefulset() {
        let mut w = World::new()
            .member(0, Role::Voter, 100)
            .pod(0, None)
            .pod(1, None);
        w.probe.view.as_mut().unwrap().from_leader = false;
        assert_eq!(w.plan(1, Some(2)).statefulset_replicas, 2);
    }

    #[test]
    fn no_leader_means_no_change_and_degraded() {
        let mut w = World::new()
            .member(0, Role::Voter, 100)
            .pod(0, None)
            .pod(1, None);
        let v = w.probe.view.as_mut().unwrap();
        v.from_leader = false;
        v.leader = None;
        let p = w.plan(2, Some(2));
        assert_eq!(p.change, None);
        assert!(p.degraded[0].message.contains("no leader"));
    }

    #[test]
    fn an_unreachable_voter_leaves_ready_and_degrades_after_the_timeout() {
        let mut w = World::new()
            .member(0, Role::Voter, 100)
            .member(1, Role::Voter, 100)
            .pod(0, Some((true, "Voter", 0)))
            .pod(1, Some((true, "Voter", 0)));
        w.probe.view.as_mut().unwrap().members[1].reachable = false;
        let p = w.plan(2, Some(2));
        assert_eq!(p.gates.len(), 1);
        assert_eq!(
            (p.gates[0].pod.as_str(), p.gates[0].reason),
            ("demo-1", GateReason::Unreachable)
        );
        assert!(p.degraded.is_empty());
        w.pods[1].gate = Some(GateCondition {
            ready: false,
            reason: "Unreachable".into(),
            since: ts(0),
        });
        w.now = ts(400);
        let p = w.plan(2, Some(2));
        assert!(p.gates.is_empty());
        assert!(
            p.degraded[0]
                .message
                .contains("unreachable from the leader for 6m40s"),
            "{:?}",
            p.degraded
        );
        // Back: the gate opens again.
        w.probe.view.as_mut().unwrap().members[1].reachable = true;
        let p = w.plan(2, Some(2));
        assert_eq!(p.gates[0].reason, GateReason::Voter);
        assert!(p.degraded.is_empty());
    }

    #[test]
    fn strangers_in_the_cluster_are_left_alone() {
        let mut w = World::new()
            .member(0, Role::Voter, 100)
            .pod(0, Some((true, "Voter", 0)));
        w.probe.view.as_mut().unwrap().members.push(MemberView {
            id: NodeId(9),
            name: "lab-box".into(),
            role: Role::Voter,
            draining: false,
            buckets: 4,
            sessions: 0,
            matched_index: 100,
            reachable: true,
        });
        let p = w.plan(1, Some(1));
        assert_eq!(p.change, None);
        assert_eq!(p.progress, Progress::Steady);
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human(SignedDuration::from_secs(40)), "40s");
        assert_eq!(human(SignedDuration::from_secs(300)), "5m");
        assert_eq!(human(SignedDuration::from_secs(3725)), "1h2m");
    }
}

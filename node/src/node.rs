//! Starting, running and stopping a member: [`Node::start`] wires the transport, the
//! storage and the configuration together and returns a [`NodeHandle`].
//!
//! A member starts in one of four ways: with an identity in its store (a restart: it
//! rejoins with its state), with `--init` (it bootstraps a new cluster as its first
//! voter), with `--join` (it asks a member to register it, persists the id it gets,
//! then starts Raft as a learner), or with none of these (pristine: it serves Admin
//! and waits for `Initialize`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mfplane_core::FlowHashKey;
use mfplane_proto::admin::{JoinRequest, admin_client::AdminClient};
use mfplane_raft_store::{
    ClusterConfig, Command, MemberInfo, NodeId, Response, state::FIRST_NODE_ID,
};
use openraft_rt::deterministic_rng::DeterministicRng;
use openraft_rt_tokio::TokioRuntime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::grpc;
use crate::lease::{LeaseTable, OwnLease};
use crate::member::Member;
use crate::network::{Channels, NetworkFactory};
use crate::proposer::SessionProposer;
use crate::store::{self, Raft, Storage};
use crate::transport::Transport;

/// State shared by the services from before the member has an id.
#[derive(Debug)]
pub struct Core {
    pub config: NodeConfig,
    pub channels: Channels,
    member: watch::Sender<Option<Arc<Member>>>,
    proposer: Mutex<Option<SessionProposer>>,
    /// The storage until a Raft instance takes it (pristine and joining members).
    pending: tokio::sync::Mutex<Option<Storage>>,
    /// Read handle on the state machine, available from the start.
    pub sm: store::StateMachineStore,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Core {
    /// The running member, once this node has an id and a Raft instance.
    pub fn member(&self) -> Option<Arc<Member>> {
        self.member.borrow().clone()
    }

    /// The member, or the error to return to a client asking for it.
    ///
    /// # Errors
    /// [`Error::NotMember`] while pristine or still joining.
    pub fn require_member(&self) -> Result<Arc<Member>> {
        self.member().ok_or(Error::NotMember)
    }

    /// Waits until the member runs.
    pub async fn wait_member(&self) -> Arc<Member> {
        let mut rx = self.member.subscribe();
        loop {
            if let Some(m) = rx.borrow_and_update().clone() {
                return m;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The session proposer, once the member runs.
    pub fn proposer(&self) -> Option<SessionProposer> {
        self.proposer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A receiver that turns true when the node shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(fut);
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Makes this pristine member the first voter of a new cluster (`--init` or
    /// `Admin.Initialize`).
    ///
    /// # Errors
    /// [`Error::FailedPrecondition`] when it already belongs to a cluster.
    pub async fn initialize(self: &Arc<Self>) -> Result<NodeId> {
        let storage = self.pending.lock().await.take();
        let Some(storage) = storage else {
            let id = self
                .member()
                .map(|m| m.id.to_string())
                .unwrap_or_else(|| "?".into());
            return Err(Error::FailedPrecondition(format!(
                "this member already belongs to a cluster (as node {id})"
            )));
        };
        if self.config.external_ips.is_empty() {
            *self.pending.lock().await = Some(storage);
            return Err(Error::FailedPrecondition(
                "this member has no --external-ip configured; a new cluster needs at least one"
                    .into(),
            ));
        }
        let id = FIRST_NODE_ID;
        let info = self.self_info();
        let member = self.start_member(id, storage).await?;
        let mut nodes = std::collections::BTreeMap::new();
        nodes.insert(id, info.clone());
        if let Err(e) = member.raft.initialize(nodes).await {
            return Err(Error::Raft(format!("initialize: {e}")));
        }
        wait_leader(&member, self.config.timing.rpc_timeout * 5).await?;
        let config = ClusterConfig {
            bucket_bits: self.config.bucket_bits,
            external_ips: self.config.external_ips.clone(),
            // Secret and random unless given: the LBs learn it from the steering stream.
            flow_hash_key: self
                .config
                .flow_hash_key
                .unwrap_or_else(|| FlowHashKey::new(rand::random(), rand::random())),
        };
        expect_ok(
            member.write(Command::Bootstrap { config }).await?.1,
            "Bootstrap",
        )?;
        match member.write(Command::RegisterNode { info }).await?.1 {
            Response::NodeRegistered(got) if got == id => {}
            other => {
                return Err(Error::Raft(format!(
                    "registering the first member returned {other:?}, expected node {id}"
                )));
            }
        }
        store::save_identity(&member.sm, id)?;
        tracing::info!(node = %id, "initialized a new cluster");
        Ok(id)
    }

    fn self_info(&self) -> MemberInfo {
        MemberInfo {
            name: self.config.name.clone(),
            raft_addr: self.config.advertise.clone(),
            data_ip: self.config.data_ip,
            data_mac: self.config.data_mac,
        }
    }

    /// Joins through the members in `--join`, tried in turn until one admits us.
    async fn join(self: &Arc<Self>) -> Result<NodeId> {
        let info = self.self_info();
        let req = JoinRequest {
            name: info.name.clone(),
            raft_addr: info.raft_addr.clone(),
            data_ip: info.data_ip.to_string(),
            data_mac: info.data_mac.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = String::new();
        loop {
            for peer in &self.config.join {
                let channel = self.channels.get(peer)?;
                let mut client = AdminClient::new(channel);
                match tokio::time::timeout(
                    self.config.timing.rpc_timeout * 3,
                    client.join(req.clone()),
                )
                .await
                {
                    Ok(Ok(resp)) => return Ok(NodeId(resp.into_inner().node_id)),
                    Ok(Err(s))
                        if matches!(
                            s.code(),
                            tonic::Code::AlreadyExists
                                | tonic::Code::InvalidArgument
                                | tonic::Code::FailedPrecondition
                        ) =>
                    {
                        return Err(Error::FailedPrecondition(format!(
                            "joining through {peer}: {}",
                            s.message()
                        )));
                    }
                    Ok(Err(s)) => last = format!("{peer}: {}", s.message()),
                    Err(_) => last = format!("{peer}: no answer"),
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Peer {
                    peer: self.config.join.join(","),
                    message: format!("no member admitted us within 120s; last error: {last}"),
                });
            }
            tracing::info!(error = %last, "join attempt failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Creates the Raft instance for `id` and starts the member's background tasks.
    async fn start_member(self: &Arc<Self>, id: NodeId, storage: Storage) -> Result<Arc<Member>> {
        let t = self.config.timing;
        let raft_config = openraft::Config {
            cluster_name: "mfplane".into(),
            heartbeat_interval: millis(t.heartbeat),
            election_timeout_min: millis(t.heartbeat * 4),
            election_timeout_max: millis(t.heartbeat * 8),
            install_snapshot_timeout: millis(t.rpc_timeout),
            max_payload_entries: 64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(2_000),
            max_in_snapshot_log_to_keep: 1_000,
            enable_tick: true,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| Error::Raft(format!("raft config: {e}")))?,
        );
        let network = NetworkFactory::new(id, self.channels.clone());
        let (log, sm) = storage.into_parts();
        let sm_read = sm.clone();
        // openraft draws election jitter from a task-local seed: enter it around the
        // creation, which spawns every task of the Raft instance.
        let raft: Raft = DeterministicRng::<TokioRuntime>::scope(
            self.config.seed,
            Raft::new(id, raft_config, network, log, sm),
        )
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;
        let member = Arc::new(Member {
            id,
            config: self.config.clone(),
            raft,
            sm: sm_read,
            channels: self.channels.clone(),
            leases: LeaseTable::default(),
            own_lease: OwnLease::default(),
            fences: crate::fences::FenceClock::default(),
            last_leader_contact: std::sync::Mutex::new(None),
            change_lock: tokio::sync::Mutex::new(()),
        });
        let proposer = SessionProposer::start(member.clone());
        *self.proposer.lock().unwrap_or_else(|p| p.into_inner()) = Some(proposer);
        self.spawn(crate::controller::run(
            member.clone(),
            self.shutdown_signal(),
        ));
        self.spawn(renew_leases(member.clone(), self.shutdown_signal()));
        self.spawn(crate::metrics::export(
            member.clone(),
            self.shutdown_signal(),
        ));
        self.member.send_replace(Some(member.clone()));
        tracing::info!(node = %id, "member started");
        Ok(member)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn expect_ok(r: Response, what: &str) -> Result<()> {
    match r {
        Response::Ok => Ok(()),
        Response::Rejected(r) => Err(Error::Rejected(r)),
        other => Err(Error::Raft(format!(
            "unexpected response to {what}: {other:?}"
        ))),
    }
}

/// Waits until some leader is known (after `initialize`, this member).
async fn wait_leader(member: &Member, within: Duration) -> Result<()> {
    member
        .wait_for(within, "a leader", |m| m.current_leader.is_some())
        .await
        .map(|_| ())
        .map_err(|_| Error::NoLeader)
}

/// Keeps this member's bucket lease renewed while it is a follower.
async fn renew_leases(member: Arc<Member>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(member.config.timing.renew_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = member.renew_lease().await {
            tracing::debug!(error = %e, "lease renewal failed");
        }
    }
}

/// A started node.
#[derive(Debug)]
pub struct Node;

/// Control of a started node: its shared core, and graceful shutdown.
#[derive(Debug)]
pub struct NodeHandle {
    pub core: Arc<Core>,
    server: JoinHandle<()>,
}

impl Node {
    /// Starts a member on `transport` with `storage`.
    ///
    /// Returns once the gRPC server runs and the member has its id (restart, `--init`,
    /// `--join`), or right away for a pristine member that waits for `Initialize`.
    ///
    /// # Errors
    /// Startup failures: [`Error::DataDir`] for unusable storage, [`Error::FailedPrecondition`]
    /// when the cluster refuses to admit us (e.g. the name is taken), [`Error::Peer`] when
    /// no `--join` member answered in time.
    pub async fn start(
        config: NodeConfig,
        transport: Transport,
        storage: Storage,
    ) -> Result<NodeHandle> {
        let identity = storage.identity()?;
        let (shutdown, _) = watch::channel(false);
        let channels = Channels::new(transport.connector.clone(), config.timing.rpc_timeout);
        let core = Arc::new(Core {
            sm: storage.state_machine(),
            config,
            channels,
            member: watch::channel(None).0,
            proposer: Mutex::new(None),
            pending: tokio::sync::Mutex::new(None),
            shutdown,
            tasks: Mutex::new(Vec::new()),
        });
        let span = tracing::info_span!("node", name = %core.config.name);
        let server =
            tokio::spawn(grpc::serve(core.clone(), transport.incoming).instrument(span.clone()));
        let result = async {
            match identity {
                Some(id) => {
                    tracing::info!(node = %id, "restarting with the stored identity");
                    core.start_member(id, storage).await?;
                }
                None if core.config.init => {
                    *core.pending.lock().await = Some(storage);
                    core.initialize().await?;
                }
                None if !core.config.join.is_empty() => {
                    // Serve Raft as soon as we have an id: the leader adds us as a learner
                    // and starts replicating right after the join is answered.
                    let id = core.join().await?;
                    store::save_identity(&storage.state_machine(), id)?;
                    core.start_member(id, storage).await?;
                    tracing::info!(node = %id, "joined the cluster");
                }
                None => {
                    *core.pending.lock().await = Some(storage);
                    tracing::info!("pristine member: waiting for Admin.Initialize or a restart with --init/--join");
                }
            }
            Ok::<_, Error>(())
        }
        .instrument(span)
        .await;
        let handle = NodeHandle { core, server };
        if let Err(e) = result {
            handle.shutdown().await;
            return Err(e);
        }
        Ok(handle)
    }
}

impl NodeHandle {
    /// The member, once running.
    pub fn member(&self) -> Option<Arc<Member>> {
        self.core.member()
    }

    /// The session proposer (the data path's entry point), once the member runs.
    pub fn proposer(&self) -> Option<SessionProposer> {
        self.core.proposer()
    }

    /// Stops cleanly: hands leadership to another voter if this member leads, stops
    /// the background tasks and Raft, and closes the server.
    pub async fn shutdown(self) {
        if let Some(member) = self.core.member() {
            transfer_leadership_away(&member).await;
            member.own_lease.revoke();
        }
        self.core.shutdown.send_replace(true);
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.core.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        if let Some(member) = self.core.member() {
            let _ = tokio::time::timeout(Duration::from_secs(5), member.raft.shutdown()).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.server).await;
        tracing::info!("stopped");
    }
}

/// If `member` leads, asks the most caught-up other voter to take over and waits (a
/// little) for it, so a planned restart costs no election timeout.
async fn transfer_leadership_away(member: &Member) {
    if !member.is_leader() {
        return;
    }
    let m = member.metrics();
    let Some(replication) = m.replication.as_ref() else {
        return;
    };
    let target = member
        .voters()
        .into_iter()
        .filter(|v| *v != member.id)
        .max_by_key(|v| {
            (
                replication.get(v).and_then(|l| l.as_ref()).map(|l| l.index),
                std::cmp::Reverse(*v),
            )
        });
    let Some(target) = target else { return };
    tracing::info!(%target, "handing leadership over before shutdown");
    if member.raft.trigger().transfer_leader(target).await.is_err() {
        return;
    }
    let me = member.id;
    let _ = member
        .wait_for(
            member.config.timing.heartbeat * 20,
            "a new leader",
            move |m| m.current_leader.is_some_and(|l| l != me),
        )
        .await;
}

//! The stores under a real openraft instance (single voter, so no network is needed):
//! commands commit and answer, snapshots are built and the log is purged behind them,
//! and a restart on the same data brings back the same state (snapshot + re-applied
//! committed entries).

#![allow(clippy::unwrap_used)] // reason: helpers of tests; a failed unwrap is a failed test.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, Cursor};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mfplane_core::BucketId;
use mfplane_raft_store::{
    Command, Epoch, LogStore, MemberInfo, MemoryBackend, NodeId, Response, Runtime,
    StateMachineStore, TypeConfig, typ,
};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Config, OptionalSend, SnapshotPolicy};
use openraft_rt::WatchReceiver;

/// A network with no peers: a single voter never sends anything.
struct NoNetwork;
struct NoPeer;

fn unreachable() -> Unreachable<TypeConfig> {
    Unreachable::new(&io::Error::other("single-node test has no peers"))
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoPeer;
    async fn new_client(&mut self, _target: NodeId, _node: &MemberInfo) -> NoPeer {
        NoPeer
    }
}

impl RaftNetworkV2<TypeConfig> for NoPeer {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: typ::Vote,
        _snapshot: typ::Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(unreachable()))
    }
}

async fn start(log: LogStore, sm: StateMachineStore) -> typ::Raft {
    let config = Config {
        snapshot_policy: SnapshotPolicy::LogsSinceLast(10),
        max_in_snapshot_log_to_keep: 0,
        ..Config::default()
    };
    let config = Arc::new(config.validate().unwrap());
    typ::Raft::new(NodeId(1), config, NoNetwork, log, sm)
        .await
        .unwrap()
}

async fn write(raft: &typ::Raft, cmd: Command) -> Response {
    raft.client_write(cmd).await.unwrap().data
}

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

async fn lifecycle(open: impl Fn() -> (LogStore, StateMachineStore)) {
    let (log, sm) = open();
    let raft = start(log, sm.clone()).await;
    raft.initialize(BTreeMap::from([(NodeId(1), member("n1"))]))
        .await
        .unwrap();
    raft.wait(WAIT)
        .current_leader(NodeId(1), "single voter leads")
        .await
        .unwrap();

    let setup = setup_commands(4);
    let mut responses = Vec::new();
    for c in setup {
        responses.push(write(&raft, c).await);
    }
    assert_eq!(responses[1], Response::NodeRegistered(NodeId(1)));
    assert_eq!(responses[3], Response::Epoch(Epoch(1)));
    for b in 0..30u16 {
        let sessions = (0..16u16)
            .map(|i| {
                session(
                    4,
                    0x0a00_0000 + u32::from(b * 16 + i),
                    1,
                    EXT_A,
                    1024 + 2 * (b * 16 + i),
                )
            })
            .collect();
        let r = write(
            &raft,
            Command::CreateSessions {
                owner: NodeId(1),
                epoch: Epoch(1),
                sessions,
            },
        )
        .await;
        assert_eq!(
            r,
            Response::Sessions {
                accepted: 16,
                rejected: vec![]
            }
        );
    }
    // A conflict is answered to the proposer through Raft.
    let taken = session(4, 0x0b00_0000, 1, EXT_A, 1024);
    let Response::Sessions {
        accepted: 0,
        rejected,
    } = write(
        &raft,
        Command::CreateSessions {
            owner: NodeId(1),
            epoch: Epoch(1),
            sessions: vec![taken],
        },
    )
    .await
    else {
        panic!("taken endpoint accepted");
    };
    assert_eq!(rejected.len(), 1);
    // Snapshots were taken by policy and the log was purged behind them.
    let last = raft.metrics().borrow_watched().last_applied.unwrap();
    // A trigger while a policy snapshot is still being built is dropped, so trigger
    // again until the snapshot covers `last` (bounded: 20 tries of 500 ms).
    let mut covered = false;
    for _ in 0..20 {
        raft.trigger().snapshot().await.unwrap();
        covered = raft
            .wait(Some(Duration::from_millis(500)))
            .metrics(
                |m| {
                    m.snapshot.is_some_and(|s| s.index >= last.index)
                        && m.purged.is_some_and(|p| p.index >= last.index)
                },
                "snapshot at the last applied entry, log purged up to it",
            )
            .await
            .is_ok();
        if covered {
            break;
        }
    }
    assert!(
        covered,
        "no snapshot at the last applied entry {last} with the log purged up to it: {:?}",
        raft.metrics().borrow_watched()
    );
    // More entries after the snapshot: these come back by re-applying the log.
    // (The response's log id, not the metrics: metrics may lag the response.)
    let applied = raft
        .client_write(Command::AssignBuckets {
            base_epoch: Epoch(1),
            moves: vec![(BucketId(1), None)],
        })
        .await
        .unwrap()
        .log_id;
    let hash = sm.state().state_hash();
    assert_eq!(sm.state().session_count(), 480);
    raft.shutdown().await.unwrap();
    drop(raft);
    drop(sm);

    let (log, sm) = open();
    let raft = start(log, sm.clone()).await;
    raft.wait(WAIT)
        .applied_index_at_least(Some(applied.index), "committed entries re-applied")
        .await
        .unwrap();
    assert_eq!(sm.state().state_hash(), hash);
    assert_eq!(sm.state().epoch(), Epoch(2));
    raft.wait(WAIT)
        .current_leader(NodeId(1), "leads again after restart")
        .await
        .unwrap();
    assert_eq!(
        write(&raft, Command::RegisterNode { info: member("n1") }).await,
        Response::Rejected(mfplane_raft_store::Rejection::NameTaken(NodeId(1)))
    );
    raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_under_openraft_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    Runtime::scope(
        11,
        lifecycle(|| mfplane_raft_store::open_sled(&path).unwrap()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_under_openraft_survives_a_crash() {
    let backend = MemoryBackend::new();
    Runtime::scope(
        12,
        lifecycle(|| {
            backend.simulate_power_loss();
            mfplane_raft_store::open_memory(&backend)
        }),
    )
    .await;
}

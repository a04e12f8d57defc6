//! Deterministic apply of the cluster state machine: every conflict rule, determinism of
//! the state hash, snapshot round trips (plain and through openraft's state-machine
//! interface).
#![allow(clippy::unwrap_used)] // reason: helpers of tests; a failed unwrap is a failed test.

mod common;

use std::io::Cursor;
use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use futures::stream;
use mfplane_core::{BucketId, Endpoint, Proto};
use mfplane_raft_store::{
    Applied, ClusterState, Command, Epoch, Fence, MemoryBackend, NodeId, Rejection, Response,
    StateMachineStore, TypeConfig, typ,
};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

fn apply(st: &mut ClusterState, cmd: Command) -> Response {
    st.apply(cmd, None)
}

fn rejected(r: Response) -> Rejection {
    match r {
        Response::Rejected(why) => why,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn create(owner: u64, sessions: Vec<mfplane_core::SessionRecord>) -> Command {
    Command::CreateSessions {
        owner: NodeId(owner),
        epoch: Epoch(1),
        sessions,
    }
}

#[test]
fn bootstrap_only_once_and_validated() {
    let mut st = ClusterState::default();
    let mut bad = config(8);
    bad.external_ips.clear();
    assert!(matches!(
        rejected(apply(&mut st, Command::Bootstrap { config: bad })),
        Rejection::InvalidConfig(_)
    ));
    let mut dup = config(8);
    dup.external_ips.push(EXT_A);
    assert!(matches!(
        rejected(apply(&mut st, Command::Bootstrap { config: dup })),
        Rejection::InvalidConfig(_)
    ));
    assert_eq!(
        apply(&mut st, Command::Bootstrap { config: config(8) }),
        Response::Ok
    );
    assert_eq!(st.buckets().len(), 256);
    assert_eq!(
        rejected(apply(&mut st, Command::Bootstrap { config: config(4) })),
        Rejection::AlreadyConfigured
    );
    assert_eq!(st.config().unwrap().bucket_bits.get(), 8);
}

#[test]
fn commands_before_bootstrap_are_refused() {
    let mut st = ClusterState::default();
    assert_eq!(
        rejected(apply(
            &mut st,
            Command::AssignBuckets {
                base_epoch: Epoch(0),
                moves: vec![]
            }
        )),
        Rejection::NotConfigured
    );
    assert_eq!(
        rejected(apply(
            &mut st,
            create(1, vec![session(8, 1, 1, EXT_A, 2048)])
        )),
        Rejection::NotConfigured
    );
}

#[test]
fn node_ids_come_from_a_counter_and_are_never_reused() {
    let mut st = setup(4);
    assert_eq!(
        rejected(apply(&mut st, Command::RegisterNode { info: member("n1") })),
        Rejection::NameTaken(NodeId(1))
    );
    assert_eq!(
        apply(&mut st, Command::RegisterNode { info: member("n3") }),
        Response::NodeRegistered(NodeId(3))
    );
    // n3 owns nothing: it can retire; its name becomes free but its id is gone for good.
    assert_eq!(
        apply(&mut st, Command::RetireNode { node: NodeId(3) }),
        Response::Ok
    );
    assert_eq!(
        apply(&mut st, Command::RetireNode { node: NodeId(3) }),
        Response::Ok,
        "retiring twice is idempotent"
    );
    assert_eq!(
        apply(&mut st, Command::RegisterNode { info: member("n3") }),
        Response::NodeRegistered(NodeId(4))
    );
    assert!(st.node(NodeId(3)).unwrap().retired);
    assert_eq!(st.next_node_id(), NodeId(5));
    assert_eq!(
        rejected(apply(
            &mut st,
            Command::SetDraining {
                node: NodeId(3),
                draining: true
            }
        )),
        Rejection::NodeRetired(NodeId(3))
    );
    assert_eq!(
        rejected(apply(&mut st, Command::RetireNode { node: NodeId(99) })),
        Rejection::UnknownNode(NodeId(99))
    );
    // A node that still owns buckets cannot retire.
    assert_eq!(
        rejected(apply(&mut st, Command::RetireNode { node: NodeId(1) })),
        Rejection::NodeOwnsBuckets {
            node: NodeId(1),
            buckets: 8
        }
    );
    assert_eq!(
        apply(
            &mut st,
            Command::SetDraining {
                node: NodeId(1),
                draining: true
            }
        ),
        Response::Ok
    );
    assert!(st.node(NodeId(1)).unwrap().draining);
}

#[test]
fn invalid_members_are_refused() {
    let mut st = ClusterState::default();
    let mut m = member("");
    assert!(matches!(
        rejected(apply(&mut st, Command::RegisterNode { info: m.clone() })),
        Rejection::InvalidMember(_)
    ));
    m.name = "x".repeat(300);
    assert!(matches!(
        rejected(apply(&mut st, Command::RegisterNode { info: m })),
        Rejection::InvalidMember(_)
    ));
    assert_eq!(
        st.next_node_id(),
        NodeId(1),
        "a refused registration takes no id"
    );
}

#[test]
fn bucket_assignment_is_a_compare_and_set() {
    let mut st = setup(4);
    assert_eq!(st.epoch(), Epoch(1));
    assert_eq!(st.owner_of(BucketId(3)), Some(NodeId(2)));
    assert_eq!(
        rejected(apply(
            &mut st,
            Command::AssignBuckets {
                base_epoch: Epoch(0),
                moves: vec![(BucketId(3), Some(NodeId(1)))]
            }
        )),
        Rejection::StaleEpoch { current: Epoch(1) }
    );
    for (moves, why) in [
        (
            vec![(BucketId(16), Some(NodeId(1)))],
            Rejection::BucketOutOfRange {
                bucket: BucketId(16),
                count: 16,
            },
        ),
        (
            vec![(BucketId(3), Some(NodeId(1))), (BucketId(3), None)],
            Rejection::DuplicateMove {
                bucket: BucketId(3),
            },
        ),
        (
            vec![
                (BucketId(1), Some(NodeId(1))),
                (BucketId(3), Some(NodeId(7))),
            ],
            Rejection::UnknownNode(NodeId(7)),
        ),
    ] {
        assert_eq!(
            rejected(apply(
                &mut st,
                Command::AssignBuckets {
                    base_epoch: Epoch(1),
                    moves
                }
            )),
            why
        );
    }
    // All-or-nothing: the refused commands above left bucket 1 alone.
    assert_eq!(st.owner_of(BucketId(1)), Some(NodeId(2)));
    assert_eq!(st.epoch(), Epoch(1));
    assert_eq!(
        apply(
            &mut st,
            Command::AssignBuckets {
                base_epoch: Epoch(1),
                moves: vec![(BucketId(3), Some(NodeId(1))), (BucketId(5), None)]
            }
        ),
        Response::Epoch(Epoch(2))
    );
    assert_eq!(st.owner_of(BucketId(3)), Some(NodeId(1)));
    assert_eq!(st.owner_of(BucketId(5)), None);
    assert_eq!(st.buckets().count_owned_by(NodeId(1)), 9);
}

#[test]
fn buckets_never_move_to_a_retired_node() {
    let mut st = setup(4);
    apply(&mut st, Command::RegisterNode { info: member("n3") });
    apply(&mut st, Command::RetireNode { node: NodeId(3) });
    assert_eq!(
        rejected(apply(
            &mut st,
            Command::AssignBuckets {
                base_epoch: Epoch(1),
                moves: vec![(BucketId(0), Some(NodeId(3)))]
            }
        )),
        Rejection::NodeRetired(NodeId(3))
    );
}

#[test]
fn session_conflicts_are_rejected_per_entry() {
    let mut st = setup(4);
    let base = session(4, 0x0a00_0001, 5000, EXT_A, 2048); // bucket 0, node 1
    assert_eq!(
        apply(&mut st, create(1, vec![base])),
        Response::Sessions {
            accepted: 1,
            rejected: vec![]
        }
    );

    let taken = session(4, 0x0a00_0002, 5000, EXT_A, 2048);
    let remap = session(4, 0x0a00_0001, 5000, EXT_A, 2064);
    let identical = base;
    let mut wrong_bucket = session(4, 0x0a00_0003, 5000, EXT_A, 2080);
    wrong_bucket.bucket = BucketId(2);
    let low_port = session(4, 0x0a00_0004, 5000, EXT_A, 16);
    let not_owned = session(4, 0x0a00_0005, 5000, EXT_A, 2049); // bucket 1: node 2's
    let foreign_ip = session(4, 0x0a00_0006, 5000, Ipv4Addr::new(198, 51, 100, 1), 2096);
    let good = session(4, 0x0a00_0007, 5000, EXT_B, 2048); // same port, other IP: fine

    let r = apply(
        &mut st,
        create(
            1,
            vec![
                taken,
                remap,
                identical,
                wrong_bucket,
                low_port,
                not_owned,
                foreign_ip,
                good,
            ],
        ),
    );
    assert_eq!(
        r,
        Response::Sessions {
            accepted: 2,
            rejected: vec![
                (taken.key, Rejection::ExternalTaken { by: base.key }),
                (
                    remap.key,
                    Rejection::KeyMapped {
                        existing: base.external
                    }
                ),
                (
                    wrong_bucket.key,
                    Rejection::PortNotInBucket {
                        port: 2080,
                        bucket: BucketId(2)
                    }
                ),
                (
                    low_port.key,
                    Rejection::PortNotInBucket {
                        port: 16,
                        bucket: BucketId(0)
                    }
                ),
                (
                    not_owned.key,
                    Rejection::NotOwner {
                        bucket: BucketId(1),
                        owner: Some(NodeId(2))
                    }
                ),
                (
                    foreign_ip.key,
                    Rejection::UnknownExternalIp(Ipv4Addr::new(198, 51, 100, 1))
                ),
            ],
        }
    );
    assert_eq!(st.session_count(), 2);
    assert_eq!(st.session(&base.key), Some(&base));
    assert_eq!(st.session_by_external(&good.external_key()), Some(&good));
    assert_eq!(st.sessions_in_bucket(BucketId(0)), 2);
    assert_eq!(st.sessions_owned_by(NodeId(1)), 2);
    assert_eq!(st.sessions_owned_by(NodeId(2)), 0);
    st.check_consistency().unwrap();
}

#[test]
fn two_entries_of_one_batch_cannot_share_an_endpoint() {
    let mut st = setup(4);
    let a = session(4, 1, 1, EXT_A, 4096);
    let b = session(4, 2, 2, EXT_A, 4096);
    let Response::Sessions { accepted, rejected } = apply(&mut st, create(1, vec![a, b])) else {
        panic!("not a session response");
    };
    assert_eq!(accepted, 1);
    assert_eq!(
        rejected,
        vec![(b.key, Rejection::ExternalTaken { by: a.key })]
    );
}

#[test]
fn the_new_owner_takes_over_after_a_move_and_the_old_one_cannot_allocate() {
    let mut st = setup(4);
    let s = session(4, 1, 1, EXT_A, 2048); // bucket 0
    apply(&mut st, create(1, vec![s]));
    apply(
        &mut st,
        Command::AssignBuckets {
            base_epoch: Epoch(1),
            moves: vec![(BucketId(0), Some(NodeId(2)))],
        },
    );
    let late = session(4, 2, 2, EXT_A, 2064);
    let Response::Sessions { accepted: 0, .. } = apply(&mut st, create(1, vec![late])) else {
        panic!("old owner allocated after the move");
    };
    // The new owner can expire the moved session; the old one cannot.
    let refused = apply(
        &mut st,
        Command::RemoveSessions {
            owner: NodeId(1),
            keys: vec![s.key],
        },
    );
    assert_eq!(
        refused,
        Response::SessionsRemoved {
            removed: 0,
            unknown: 0,
            refused: vec![(
                s.key,
                Rejection::NotOwner {
                    bucket: BucketId(0),
                    owner: Some(NodeId(2))
                }
            )]
        }
    );
    let removed = apply(
        &mut st,
        Command::RemoveSessions {
            owner: NodeId(2),
            keys: vec![s.key, key(Proto::Tcp, 9, 9)],
        },
    );
    assert_eq!(
        removed,
        Response::SessionsRemoved {
            removed: 1,
            unknown: 1,
            refused: vec![]
        }
    );
    assert_eq!(st.session_count(), 0);
    // The port is free again once the removal committed.
    let reuse = session(4, 3, 3, EXT_A, 2048);
    assert_eq!(
        apply(&mut st, create(2, vec![reuse])),
        Response::Sessions {
            accepted: 1,
            rejected: vec![]
        }
    );
    st.check_consistency().unwrap();
}

#[test]
fn a_failover_fences_only_the_buckets_it_takes_from_a_suspect() {
    let mut st = setup(4); // n1 owns the even buckets, n2 the odd ones
    apply(&mut st, Command::RegisterNode { info: member("n3") });
    let fence = Duration::from_millis(2500);
    let r = apply(
        &mut st,
        Command::FailOverBuckets {
            base_epoch: Epoch(1),
            moves: vec![
                (BucketId(0), Some(NodeId(2))), // from n1, the suspect: fenced
                (BucketId(1), Some(NodeId(3))), // from n2, not suspected: free
                (BucketId(2), None),            // from n1 to nobody: nothing to fence
            ],
            suspects: vec![NodeId(1)],
            fence,
        },
    );
    assert_eq!(r, Response::Epoch(Epoch(2)));
    assert_eq!(
        st.fence(BucketId(0)),
        Some(Fence {
            from: NodeId(1),
            since: Epoch(2),
            length: fence,
            claimed: false,
        })
    );
    assert_eq!(st.fence(BucketId(1)), None);
    assert_eq!(st.fence(BucketId(2)), None);
    assert_eq!(st.owner_of(BucketId(0)), Some(NodeId(2)));
    st.check_consistency().unwrap();

    // Until the new owner claims the bucket, the suspect's sessions in it still commit
    // (it may have been alive, and the new owner is not allocating behind the fence);
    // nobody else's do.
    let from_suspect = session(4, 1, 1, EXT_A, 2048); // bucket 0
    let accepted = Response::Sessions {
        accepted: 1,
        rejected: vec![],
    };
    assert_eq!(apply(&mut st, create(1, vec![from_suspect])), accepted);
    let from_bystander = session(4, 2, 2, EXT_A, 2064); // bucket 0
    assert!(matches!(
        apply(&mut st, create(3, vec![from_bystander])),
        Response::Sessions { accepted: 0, .. }
    ));
    // The new owner's first session claims it; then the suspect is refused.
    let from_owner = session(4, 3, 3, EXT_A, 2080); // bucket 0
    assert_eq!(apply(&mut st, create(2, vec![from_owner])), accepted);
    assert!(st.fence(BucketId(0)).is_some_and(|f| f.claimed));
    let late = session(4, 4, 4, EXT_A, 2096); // bucket 0
    assert_eq!(
        apply(&mut st, create(1, vec![late])),
        Response::Sessions {
            accepted: 0,
            rejected: vec![(
                late.key,
                Rejection::NotOwner {
                    bucket: BucketId(0),
                    owner: Some(NodeId(2))
                }
            )]
        }
    );
    // The suspect cannot expire what it committed there: only the owner removes.
    assert!(matches!(
        apply(
            &mut st,
            Command::RemoveSessions {
                owner: NodeId(1),
                keys: vec![from_suspect.key],
            }
        ),
        Response::SessionsRemoved { removed: 0, .. }
    ));
    st.check_consistency().unwrap();

    // A refused failover changes nothing; the next move of a bucket lifts its fence.
    let stale = Command::FailOverBuckets {
        base_epoch: Epoch(1),
        moves: vec![(BucketId(4), Some(NodeId(2)))],
        suspects: vec![NodeId(1)],
        fence,
    };
    assert!(matches!(
        rejected(apply(&mut st, stale)),
        Rejection::StaleEpoch { .. }
    ));
    let h = st.state_hash();
    apply(
        &mut st,
        Command::AssignBuckets {
            base_epoch: Epoch(2),
            moves: vec![(BucketId(0), Some(NodeId(3)))],
        },
    );
    assert_eq!(st.fence(BucketId(0)), None);
    assert_ne!(st.state_hash(), h);
}

#[test]
fn paging_walks_sessions_in_key_order() {
    let mut st = setup(4);
    let sessions: Vec<_> = (0..10u16)
        .map(|i| session(4, 100 - u32::from(i), 1, EXT_A, 2048 + 16 * i))
        .collect();
    apply(&mut st, create(1, sessions));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = st.sessions_range(after, 3);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.key);
        seen.extend(page);
    }
    assert_eq!(seen.len(), 10);
    assert!(seen.windows(2).all(|w| w[0].key < w[1].key));
}

/// A log exercising every command kind, with conflicts.
fn sample_log() -> Vec<Command> {
    let mut log = setup_commands(6);
    for batch in 0..20u32 {
        let owner = 1 + u64::from(batch % 2);
        let sessions = (0..64u32)
            .map(|i| {
                let port = 1024 + ((batch * 64 + i) as u16 % 60000);
                let ext = if i % 3 == 0 { EXT_B } else { EXT_A };
                session(6, 0x0a00_0000 + batch * 64 + i, 1000 + i as u16, ext, port)
            })
            .collect();
        log.push(create(owner, sessions));
        if batch % 5 == 4 {
            log.push(Command::RemoveSessions {
                owner: NodeId(owner),
                keys: (0..16u32)
                    .map(|i| key(Proto::Udp, 0x0a00_0000 + batch * 64 + i, 1000 + i as u16))
                    .collect(),
            });
        }
    }
    log.push(Command::RegisterNode { info: member("n3") });
    log.push(Command::AssignBuckets {
        base_epoch: Epoch(1),
        moves: vec![(BucketId(7), Some(NodeId(3)))],
    });
    log.push(Command::FailOverBuckets {
        base_epoch: Epoch(2),
        moves: vec![(BucketId(9), Some(NodeId(3)))],
        suspects: vec![NodeId(2)],
        fence: Duration::from_millis(700),
    });
    log.push(Command::SetDraining {
        node: NodeId(2),
        draining: true,
    });
    log
}

#[test]
fn apply_is_deterministic() {
    let log = sample_log();
    let mut a = ClusterState::default();
    let mut b = ClusterState::default();
    let ra: Vec<_> = log.iter().cloned().map(|c| a.apply(c, None)).collect();
    let mut events = Vec::new();
    let rb: Vec<_> = log
        .iter()
        .cloned()
        .map(|c| b.apply(c, Some(&mut events)))
        .collect();
    assert_eq!(ra, rb, "same log, same responses (with or without events)");
    assert_eq!(a, b);
    assert_eq!(a.state_hash(), b.state_hash());
    assert!(a.session_count() > 0);
    a.check_consistency().unwrap();

    // The hash sees every kind of change.
    let h = a.state_hash();
    apply(
        &mut a,
        Command::SetDraining {
            node: NodeId(1),
            draining: true,
        },
    );
    assert_ne!(a.state_hash(), h);
    let h = a.state_hash();
    let victim = *a.sessions().next().unwrap();
    let owner = a.owner_of(victim.bucket).unwrap();
    apply(
        &mut a,
        Command::RemoveSessions {
            owner,
            keys: vec![victim.key],
        },
    );
    assert_ne!(a.state_hash(), h);
    apply(&mut a, create(owner.0, vec![victim]));
    assert_eq!(
        a.state_hash(),
        h,
        "removing and re-adding restores the hash"
    );
}

#[test]
fn snapshot_round_trips() {
    let mut st = ClusterState::default();
    for c in sample_log() {
        st.apply(c, None);
    }
    assert!(
        st.fence(BucketId(9)).is_some(),
        "the sample log fences a bucket"
    );
    let bytes = st.to_bytes().unwrap();
    let back = ClusterState::from_bytes(&bytes).unwrap();
    assert_eq!(back, st);
    assert_eq!(back.fence(BucketId(9)), st.fence(BucketId(9)));
    assert_eq!(back.state_hash(), st.state_hash());

    // Damaged snapshots are errors, never a wrong state or a panic.
    assert!(ClusterState::from_bytes(&bytes[..bytes.len() / 2]).is_err());
    assert!(ClusterState::from_bytes(&[]).is_err());
    let mut newer = bytes.clone();
    newer[0] = mfplane_raft_store::RECORD_FORMAT + 1;
    assert!(ClusterState::from_bytes(&newer).is_err());
    for i in (1..bytes.len()).step_by(97) {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0xa5;
        if let Ok(s) = ClusterState::from_bytes(&flipped) {
            s.check_consistency().unwrap();
        }
    }
}

#[test]
fn apply_never_panics_on_hostile_content() {
    let mut st = setup(4);
    let hostile = vec![
        Command::AssignBuckets {
            base_epoch: Epoch(u64::MAX),
            moves: vec![(BucketId(u16::MAX), Some(NodeId(u64::MAX)))],
        },
        Command::AssignBuckets {
            base_epoch: Epoch(1),
            moves: vec![(BucketId(u16::MAX), None)],
        },
        create(
            u64::MAX,
            vec![mfplane_core::SessionRecord {
                key: key(Proto::Icmp, u32::MAX, u16::MAX),
                external: Endpoint::new(u32::MAX, u16::MAX),
                bucket: BucketId(u16::MAX),
                created_ms: u64::MAX,
            }],
        ),
        Command::RemoveSessions {
            owner: NodeId(0),
            keys: vec![key(Proto::Tcp, 0, 0)],
        },
        Command::SetDraining {
            node: NodeId(u64::MAX),
            draining: true,
        },
    ];
    for c in hostile {
        st.apply(c, None);
    }
    st.check_consistency().unwrap();
}

// ---- through openraft's state-machine interface ----

fn entries(log: &[Command], first_index: u64) -> Vec<typ::Entry> {
    log.iter()
        .enumerate()
        .map(|(i, c)| {
            let id = openraft::testing::log_id::<TypeConfig>(1, NodeId(1), first_index + i as u64);
            typ::Entry::new_normal(id, c.clone())
        })
        .collect()
}

async fn sm_apply(sm: &mut StateMachineStore, entries: Vec<typ::Entry>) {
    let items: Vec<std::io::Result<_>> = entries.into_iter().map(|e| Ok((e, None))).collect();
    sm.apply(stream::iter(items)).await.unwrap();
}

#[tokio::test]
async fn state_machine_store_publishes_and_snapshots() {
    let log = sample_log();
    let (split_at, total) = (10, log.len());
    let mut a = mfplane_raft_store::open_memory(&MemoryBackend::new()).1;
    let mut events = a.subscribe();
    let mut epoch = a.epoch_watch();
    sm_apply(&mut a, entries(&log[..split_at], 1)).await;

    assert_eq!(*epoch.borrow_and_update(), Epoch(1));
    let (mut created, mut removed) = (0, 0);
    let mut kinds = Vec::new();
    while let Ok(ev) = events.try_recv() {
        match &ev {
            Applied::SessionsCreated(v) => created += v.len(),
            Applied::SessionsRemoved(v) => removed += v.len(),
            _ => {}
        }
        kinds.push(std::mem::discriminant(&ev));
    }
    assert!(removed > 0);
    assert!(kinds.contains(&std::mem::discriminant(&Applied::Configured)));
    assert!(kinds.contains(&std::mem::discriminant(&Applied::BucketsChanged(Epoch(1)))));
    assert_eq!((created - removed) as u64, a.state().session_count());

    // Snapshot at `split_at`, install it on a fresh member, then both apply the rest.
    let snap = a
        .try_create_snapshot_builder(true)
        .await
        .unwrap()
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id.unwrap().index, split_at as u64);
    let mut b = mfplane_raft_store::open_memory(&MemoryBackend::new()).1;
    let mut b_events = b.subscribe();
    b.install_snapshot(&snap.meta, Cursor::new(snap.snapshot.into_inner()))
        .await
        .unwrap();
    assert_eq!(b_events.try_recv().unwrap(), Applied::SnapshotInstalled);
    assert_eq!(b.state().state_hash(), a.state().state_hash());
    assert_eq!(
        b.applied_state().await.unwrap(),
        a.applied_state().await.unwrap()
    );

    sm_apply(&mut a, entries(&log[split_at..], split_at as u64 + 1)).await;
    sm_apply(&mut b, entries(&log[split_at..], split_at as u64 + 1)).await;
    assert_eq!(a.state().state_hash(), b.state().state_hash());
    assert_eq!(a.state().last_applied().unwrap().index, total as u64);

    // A bad snapshot is refused and changes nothing.
    let before = b.state().state_hash();
    let err = b
        .install_snapshot(&snap.meta, Cursor::new(vec![1, 2, 3]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("snapshot"), "{err}");
    assert_eq!(b.state().state_hash(), before);
    assert_eq!(b.state().last_applied().unwrap().index, total as u64);
}

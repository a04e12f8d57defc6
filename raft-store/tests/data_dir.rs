//! Data directories: what survives a reopen, and what is refused (without being
//! modified) when a directory is not ours.
#![allow(clippy::unwrap_used)] // reason: helpers of tests; a failed unwrap is a failed test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use mfplane_raft_store::{
    Command, Error, LogStore, MemoryBackend, NodeId, Runtime, StateMachineStore, TypeConfig, typ,
};
use openraft::entry::RaftEntry;
use openraft::storage::{
    RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine,
};

fn log_id(index: u64) -> typ::LogId {
    openraft::testing::log_id::<TypeConfig>(1, NodeId(1), index)
}

fn entry(index: u64, cmd: Command) -> typ::Entry {
    typ::Entry::new_normal(log_id(index), cmd)
}

/// Appends `cmds` at `first..` durably and applies them.
async fn append_and_apply(
    log: &mut LogStore,
    sm: &mut StateMachineStore,
    first: u64,
    cmds: &[Command],
) {
    let entries: Vec<_> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| entry(first + i as u64, c.clone()))
        .collect();
    log.blocking_append(entries.clone()).await.unwrap();
    let items: Vec<std::io::Result<_>> = entries.into_iter().map(|e| Ok((e, None))).collect();
    sm.apply(futures::stream::iter(items)).await.unwrap();
    log.save_committed(Some(log_id(first + cmds.len() as u64 - 1)))
        .await
        .unwrap();
}

fn session_batch(owner: u64, n: u16, offset: u16) -> Command {
    Command::CreateSessions {
        owner: NodeId(owner),
        epoch: mfplane_raft_store::Epoch(1),
        sessions: (0..n)
            .map(|i| {
                let port = 1024 + 2 * (i + offset) + (owner as u16 - 1);
                session(
                    4,
                    0x0a00_0000 + 1000 * owner as u32 + u32::from(i + offset),
                    1,
                    EXT_A,
                    port,
                )
            })
            .collect(),
    }
}

async fn reopen_keeps_everything(open: impl Fn() -> (LogStore, StateMachineStore)) {
    let mut cmds = setup_commands(4);
    cmds.push(session_batch(1, 50, 0));
    let snap_at = cmds.len() as u64;
    let later = vec![session_batch(2, 50, 0), session_batch(1, 10, 50)];

    let (hash, vote) = {
        let (mut log, mut sm) = open();
        let vote = typ::Vote::new(3, NodeId(1));
        log.save_vote(&vote).await.unwrap();
        append_and_apply(&mut log, &mut sm, 1, &cmds).await;
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        log.purge(log_id(2)).await.unwrap();
        append_and_apply(&mut log, &mut sm, snap_at + 1, &later).await;
        sm.set_node_identity(NodeId(1), Some("lab".into())).unwrap();
        let hash = sm.state().state_hash();
        (hash, vote)
    };

    let (mut log, mut sm) = open();
    let mut reader = log.get_log_reader().await;
    assert_eq!(reader.read_vote().await.unwrap(), Some(vote));
    let state = log.get_log_state().await.unwrap();
    let last = snap_at + later.len() as u64;
    assert_eq!(state.last_purged_log_id, Some(log_id(2)));
    assert_eq!(state.last_log_id, Some(log_id(last)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(last)));
    let entries = reader.try_get_log_entries(3..=last).await.unwrap();
    assert_eq!(entries.len() as u64, last - 2);
    assert!(reader.try_get_log_entries(0..3).await.unwrap().is_empty());

    // The state machine comes back at the snapshot; openraft re-applies the committed
    // entries after it (done by hand here, as openraft's startup does).
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(snap_at)));
    let rest = reader
        .try_get_log_entries(snap_at + 1..=last)
        .await
        .unwrap();
    let items: Vec<std::io::Result<_>> = rest.into_iter().map(|e| Ok((e, None))).collect();
    sm.apply(futures::stream::iter(items)).await.unwrap();
    assert_eq!(sm.state().state_hash(), hash);
    assert_eq!(sm.state().session_count(), 110);
    let id = sm.node_identity().unwrap().unwrap();
    assert_eq!(id.node, NodeId(1));
    assert_eq!(id.cluster_id.as_deref(), Some("lab"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_reopen_after_drop_keeps_log_vote_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    Runtime::scope(
        7,
        reopen_keeps_everything(|| mfplane_raft_store::open_sled(&path).unwrap()),
    )
    .await;
}

#[tokio::test]
async fn memory_backend_survives_a_crash_with_everything_flushed() {
    let backend = MemoryBackend::new();
    Runtime::scope(
        8,
        reopen_keeps_everything(|| {
            // A crash loses only what was never flushed; acknowledged appends, votes and
            // snapshots were all flushed.
            backend.simulate_power_loss();
            mfplane_raft_store::open_memory(&backend)
        }),
    )
    .await;
}

// ---- refused directories ----

/// Every file under `dir` with its contents (to prove nothing was modified).
fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn open_err(path: &Path) -> Error {
    match mfplane_raft_store::open_sled(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    }
}

fn assert_names_path(e: &Error, path: &Path) {
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn a_file_is_not_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    std::fs::write(&path, b"hello").unwrap();
    let e = open_err(&path);
    assert!(matches!(e, Error::NotADirectory { .. }), "{e}");
    assert_names_path(&e, &path);
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
}

#[test]
fn a_foreign_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("notes.txt"), b"important").unwrap();
    let before = snapshot_tree(&path);
    let e = open_err(&path);
    assert!(matches!(e, Error::Foreign { .. }), "{e}");
    assert_names_path(&e, &path);
    assert!(e.to_string().contains("notes.txt"), "{e}");
    assert_eq!(snapshot_tree(&path), before);
}

#[test]
fn a_foreign_sled_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    {
        let db = sled::open(&path).unwrap();
        db.open_tree("someone-else")
            .unwrap()
            .insert(b"k", b"v")
            .unwrap();
        db.flush().unwrap();
    }
    let e = open_err(&path);
    assert!(matches!(e, Error::Foreign { .. }), "{e}");
    assert_names_path(&e, &path);
    // Still the other program's data.
    let db = sled::open(&path).unwrap();
    assert!(!db.tree_names().iter().any(|n| n.starts_with(b"mfplane")));
}

#[test]
fn garbage_sled_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("conf"), b"this is not a sled config\n").unwrap();
    std::fs::write(path.join("db"), vec![0xa5; 4096]).unwrap();
    let before = snapshot_tree(&path);
    let e = open_err(&path);
    assert_names_path(&e, &path);
    assert_eq!(snapshot_tree(&path), before, "{e}");
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    drop(mfplane_raft_store::open_sled(&path).unwrap());
    {
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree("mfplane/meta").unwrap();
        let mut h = meta.get(b"store").unwrap().unwrap().to_vec();
        *h.last_mut().unwrap() = mfplane_raft_store::STORE_FORMAT + 1;
        meta.insert(b"store", h).unwrap();
        db.flush().unwrap();
    }
    let e = open_err(&path);
    assert!(matches!(e, Error::NewerFormat { found: 2, .. }), "{e}");
    assert_names_path(&e, &path);
}

#[test]
fn a_record_of_an_unknown_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    drop(mfplane_raft_store::open_sled(&path).unwrap());
    {
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree("mfplane/meta").unwrap();
        meta.insert(b"vote", vec![mfplane_raft_store::RECORD_FORMAT + 1, 0, 0])
            .unwrap();
        db.flush().unwrap();
    }
    let e = open_err(&path);
    assert!(matches!(e, Error::NewerFormat { .. }), "{e}");
    assert_names_path(&e, &path);
    {
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree("mfplane/meta").unwrap();
        meta.insert(b"vote", vec![mfplane_raft_store::RECORD_FORMAT, 0xff])
            .unwrap();
        db.flush().unwrap();
    }
    let e = open_err(&path);
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("vote"), "{e}");
}

#[test]
fn a_store_is_reopened_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    {
        let (_log, sm) = mfplane_raft_store::open_sled(&path).unwrap();
        assert_eq!(sm.node_identity().unwrap(), None);
        sm.set_node_identity(NodeId(5), None).unwrap();
    }
    let (_log, sm) = mfplane_raft_store::open_sled(&path).unwrap();
    assert_eq!(sm.node_identity().unwrap().unwrap().node, NodeId(5));
}

#[test]
fn a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let first = mfplane_raft_store::open_sled(&path).unwrap();
    let e = open_err(&path);
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    assert_names_path(&e, &path);
    drop(first);
    mfplane_raft_store::open_sled(&path).unwrap();
}

/// The flush discipline, observed on the memory backend (which counts unflushed writes):
/// appends and votes are durable when acknowledged; the committed marker rides along
/// with the next flush.
#[tokio::test]
async fn appends_and_votes_are_durable_when_acknowledged() {
    let backend = MemoryBackend::new();
    let (mut log, _sm) = mfplane_raft_store::open_memory(&backend);
    Runtime::scope(9, async {
        log.blocking_append([entry(1, setup_commands(4).remove(0))])
            .await
            .unwrap();
        assert_eq!(backend.unflushed_writes(), 0);
        log.save_committed(Some(log_id(1))).await.unwrap();
        assert_eq!(backend.unflushed_writes(), 1);
        log.save_vote(&typ::Vote::new(1, NodeId(1))).await.unwrap();
        assert_eq!(backend.unflushed_writes(), 0);
        log.truncate_after(None).await.unwrap();
        assert_eq!(backend.unflushed_writes(), 0);
        log.purge(log_id(0)).await.unwrap();
        assert!(
            backend.unflushed_writes() > 0,
            "purge needs no flush of its own"
        );
    })
    .await;
}

//! The Raft log against a model, over random sequences of append, truncate, purge and
//! reopen, on both backends.

#![allow(clippy::unwrap_used)] // reason: helpers of tests; a failed unwrap is a failed test.

use std::collections::BTreeMap;

use mfplane_raft_store::{
    LogStore, MemoryBackend, NodeId, Runtime, StateMachineStore, TypeConfig, typ,
};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append this many entries after the last one, in a term at least the last one's.
    Append { n: u64, term_bump: u64 },
    /// Truncate after the entry at this fraction of the live range (0 = everything).
    TruncateAfter { at: u8 },
    /// Purge up to this fraction of the live range.
    Purge { at: u8 },
    /// Close and reopen the store.
    Reopen,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..6, 0u64..2).prop_map(|(n, term_bump)| Op::Append { n, term_bump }),
        1 => any::<u8>().prop_map(|at| Op::TruncateAfter { at }),
        1 => any::<u8>().prop_map(|at| Op::Purge { at }),
        1 => Just(Op::Reopen),
    ]
}

fn log_id(term: u64, index: u64) -> typ::LogId {
    openraft::testing::log_id::<TypeConfig>(term, NodeId(1), index)
}

#[derive(Default)]
struct Model {
    entries: BTreeMap<u64, typ::LogId>,
    last_purged: Option<typ::LogId>,
    term: u64,
}

impl Model {
    fn last(&self) -> Option<typ::LogId> {
        self.entries
            .values()
            .next_back()
            .copied()
            .or(self.last_purged)
    }

    /// The index at fraction `at/255` of the live entries, if any.
    fn pick(&self, at: u8) -> Option<u64> {
        let first = *self.entries.keys().next()?;
        let last = *self.entries.keys().next_back()?;
        Some(first + (last - first) * u64::from(at) / 255)
    }
}

async fn run(ops: Vec<Op>, open: impl Fn() -> (LogStore, StateMachineStore)) {
    let mut model = Model {
        term: 1,
        ..Model::default()
    };
    let (mut log, mut sm) = open();
    for op in ops {
        match op {
            Op::Append { n, term_bump } => {
                model.term += term_bump;
                let next = model.last().map_or(1, |l| l.index + 1);
                let new: Vec<typ::Entry> = (next..next + n)
                    .map(|i| typ::Entry::new_blank(log_id(model.term, i)))
                    .collect();
                for e in &new {
                    model.entries.insert(e.log_id.index, e.log_id);
                }
                log.blocking_append(new).await.unwrap();
            }
            Op::TruncateAfter { at } => {
                let Some(idx) = model.pick(at) else { continue };
                // Raft never truncates committed (purged) entries.
                let keep = model.entries.get(&idx).copied();
                model.entries.retain(|i, _| *i <= idx);
                log.truncate_after(keep).await.unwrap();
            }
            Op::Purge { at } => {
                let Some(idx) = model.pick(at) else { continue };
                let id = model.entries[&idx];
                model.entries.retain(|i, _| *i > idx);
                model.last_purged = Some(id);
                log.purge(id).await.unwrap();
            }
            Op::Reopen => {
                drop((log, sm));
                (log, sm) = open();
            }
        }
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, model.last_purged);
        assert_eq!(state.last_log_id, model.last());
        let got: Vec<typ::LogId> = log
            .get_log_reader()
            .await
            .try_get_log_entries(0..u64::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.log_id)
            .collect();
        let want: Vec<typ::LogId> = model.entries.values().copied().collect();
        assert_eq!(got, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_log_matches_the_model(ops in prop::collection::vec(arb_op(), 1..40)) {
        let backend = MemoryBackend::new();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(Runtime::scope(3, run(ops, || mfplane_raft_store::open_memory(&backend))));
    }
}

proptest! {
    // sled opens and flushes are slow; fewer, shorter cases.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn sled_log_matches_the_model(ops in prop::collection::vec(arb_op(), 1..20)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(Runtime::scope(4, run(ops, || mfplane_raft_store::open_sled(&path).unwrap())));
    }
}

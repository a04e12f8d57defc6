//! In-memory [`Backend`] for deterministic simulation.
//!
//! The simulation keeps a clone of the [`MemoryBackend`] outside the simulated host, so
//! the data survives a host crash and the restarted host reopens it. It also models the
//! durability boundary: [`MemoryBackend::simulate_power_loss`] throws away everything
//! written since the last flush, which is exactly what a real disk may lose.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::backend::{Backend, Batch, KeyRange, Op, Pairs, Tree};
use crate::error::Result;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Default, Clone)]
struct Trees([Map; 3]);

impl Trees {
    fn apply(&mut self, tree: Tree, batch: &Batch) {
        let map = &mut self.0[tree.index()];
        for op in &batch.ops {
            match op {
                Op::Insert(k, v) => {
                    map.insert(k.clone(), v.clone());
                }
                Op::Remove(k) => {
                    map.remove(k);
                }
            }
        }
    }

    fn remove_range(&mut self, tree: Tree, range: &KeyRange) {
        let map = &mut self.0[tree.index()];
        let keys: Vec<Vec<u8>> = map.range(range.clone()).map(|(k, _)| k.clone()).collect();
        for k in keys {
            map.remove(&k);
        }
    }
}

#[derive(Debug)]
enum Pending {
    Batch(Tree, Batch),
    RemoveRange(Tree, KeyRange),
}

#[derive(Debug, Default)]
struct Inner {
    /// What reads see.
    live: Trees,
    /// What survives a power loss.
    durable: Trees,
    /// Writes since the last flush, replayed onto `durable` by `flush`.
    pending: Vec<Pending>,
}

/// A shareable in-memory store; clones share the same data.
#[derive(Debug, Default, Clone)]
pub struct MemoryBackend {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the maps half-written (every mutation is a
        // complete insert/remove), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every write that was not flushed, as a power loss would. Call it while no
    /// store is open on this backend (i.e. after the simulated host crashed).
    pub fn simulate_power_loss(&self) {
        let mut inner = self.lock();
        inner.live = inner.durable.clone();
        inner.pending.clear();
    }

    /// Number of writes not yet flushed (tests of the flush discipline).
    pub fn unflushed_writes(&self) -> usize {
        self.lock().pending.len()
    }
}

impl Backend for MemoryBackend {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().live.0[tree.index()].get(key).cloned())
    }

    fn range(&self, tree: Tree, range: KeyRange, limit: usize) -> Result<Pairs> {
        Ok(self.lock().live.0[tree.index()]
            .range(range)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, tree: Tree) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self.lock().live.0[tree.index()]
            .last_key_value()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn apply(&self, tree: Tree, batch: Batch) -> Result<()> {
        let mut inner = self.lock();
        inner.live.apply(tree, &batch);
        inner.pending.push(Pending::Batch(tree, batch));
        Ok(())
    }

    fn remove_range(&self, tree: Tree, range: KeyRange) -> Result<()> {
        let mut inner = self.lock();
        inner.live.remove_range(tree, &range);
        inner.pending.push(Pending::RemoveRange(tree, range));
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        for p in inner.pending.drain(..) {
            match p {
                Pending::Batch(tree, batch) => inner.durable.apply(tree, &batch),
                Pending::RemoveRange(tree, range) => inner.durable.remove_range(tree, &range),
            }
        }
        Ok(())
    }

    fn flush_is_slow(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::*;

    #[test]
    fn power_loss_drops_only_unflushed_writes() {
        let b = MemoryBackend::new();
        let mut batch = Batch::default();
        batch.insert(b"a".to_vec(), b"1".to_vec());
        b.apply(Tree::Meta, batch).unwrap();
        b.flush().unwrap();
        let mut batch = Batch::default();
        batch.insert(b"b".to_vec(), b"2".to_vec());
        batch.remove(b"a".to_vec());
        b.apply(Tree::Meta, batch).unwrap();
        assert_eq!(b.unflushed_writes(), 1);
        assert_eq!(b.get(Tree::Meta, b"a").unwrap(), None);

        let survivor = b.clone();
        drop(b);
        survivor.simulate_power_loss();
        assert_eq!(survivor.get(Tree::Meta, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(survivor.get(Tree::Meta, b"b").unwrap(), None);
    }

    #[test]
    fn remove_range_is_replayed_on_flush() {
        let b = MemoryBackend::new();
        let mut batch = Batch::default();
        for i in 0u64..10 {
            batch.insert(i.to_be_bytes().to_vec(), vec![]);
        }
        b.apply(Tree::Log, batch).unwrap();
        b.remove_range(
            Tree::Log,
            (
                Bound::Included(5u64.to_be_bytes().to_vec()),
                Bound::Unbounded,
            ),
        )
        .unwrap();
        b.flush().unwrap();
        b.simulate_power_loss();
        let all = b
            .range(Tree::Log, (Bound::Unbounded, Bound::Unbounded), usize::MAX)
            .unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(
            b.last(Tree::Log).unwrap().unwrap().0,
            4u64.to_be_bytes().to_vec()
        );
    }
}

//! The session table: sessions by inside key (ordered, for paging) and the reverse index
//! by external endpoint, kept in step.
//!
//! Built for the apply hot path (DESIGN goal: ≥ 300k committed sessions/s on a small
//! machine that runs three members): both indexes are hash maps over keys packed into
//! `u64`s, with a cheap integer mixer, and an insert checks each index with a single
//! probe (entry API). An ordered tree measured about twice as slow at a million sessions
//! (cache misses per level). Key-order paging, which only tools use, is answered by a
//! bounded selection over the table instead (O(n log limit) per page).

use std::collections::hash_map::Entry as HashEntry;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use mfplane_core::{Endpoint, ExternalKey, SessionKey, SessionRecord};

use crate::command::Rejection;
use crate::stable_hash::splitmix64;

/// `(proto, ip, port)` packed so that `u64` order is the derived `Ord` of the key types
/// (proto, then ip, then port; `Proto`'s variants are declared in numeric order).
const fn pack(proto: u8, ep: Endpoint) -> u64 {
    ((proto as u64) << 48) | ((ep.ip as u64) << 16) | ep.port as u64
}

const fn pack_key(k: &SessionKey) -> u64 {
    pack(k.proto.number(), k.inside)
}

const fn pack_external(k: &ExternalKey) -> u64 {
    pack(k.proto.number(), k.external)
}

/// Hasher for already-integer keys: one SplitMix64 round. The keys are chosen by our own
/// allocators, not by outside parties, so no keyed (flood-resistant) hash is needed.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = splitmix64(self.0 ^ u64::from(*b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = splitmix64(self.0 ^ v);
    }
}

type Mix = BuildHasherDefault<MixHasher>;

/// Sessions by key and by external endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionIndex {
    by_key: HashMap<u64, SessionRecord, Mix>,
    by_external: HashMap<u64, SessionKey, Mix>,
}

/// What [`SessionIndex::try_insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    New,
    /// The same key already maps to the same external endpoint.
    Identical,
}

impl SessionIndex {
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.by_key.reserve(additional);
        self.by_external.reserve(additional);
    }

    pub(crate) fn get(&self, key: &SessionKey) -> Option<&SessionRecord> {
        self.by_key.get(&pack_key(key))
    }

    pub(crate) fn get_by_external(&self, key: &ExternalKey) -> Option<&SessionRecord> {
        self.by_external
            .get(&pack_external(key))
            .and_then(|k| self.get(k))
    }

    /// The first `limit` sessions in key order strictly after `after`.
    pub(crate) fn page_after(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Vec<SessionRecord> {
        if limit == 0 {
            return Vec::new();
        }
        let lower = after.map(pack_key);
        // Max-heap of the `limit` smallest keys seen so far.
        let mut heap: BinaryHeap<u64> = BinaryHeap::with_capacity(limit.min(self.len()) + 1);
        for &k in self.by_key.keys() {
            if lower.is_some_and(|l| k <= l) {
                continue;
            }
            if heap.len() < limit {
                heap.push(k);
            } else if heap.peek().is_some_and(|top| k < *top) {
                heap.pop();
                heap.push(k);
            }
        }
        heap.into_sorted_vec()
            .iter()
            .filter_map(|k| self.by_key.get(k).copied())
            .collect()
    }

    /// Every session, in no particular order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &SessionRecord> + '_ {
        self.by_key.values()
    }

    /// Inserts `rec` unless its key maps elsewhere or its external endpoint is taken.
    pub(crate) fn try_insert(&mut self, rec: SessionRecord) -> Result<Inserted, Rejection> {
        match self.by_key.entry(pack_key(&rec.key)) {
            HashEntry::Occupied(o) => {
                if o.get().external == rec.external {
                    Ok(Inserted::Identical)
                } else {
                    Err(Rejection::KeyMapped {
                        existing: o.get().external,
                    })
                }
            }
            HashEntry::Vacant(slot) => {
                match self.by_external.entry(pack_external(&rec.external_key())) {
                    HashEntry::Occupied(o) => Err(Rejection::ExternalTaken { by: *o.get() }),
                    HashEntry::Vacant(ext) => {
                        ext.insert(rec.key);
                        slot.insert(rec);
                        Ok(Inserted::New)
                    }
                }
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &SessionKey) -> Option<SessionRecord> {
        let rec = self.by_key.remove(&pack_key(key))?;
        self.by_external.remove(&pack_external(&rec.external_key()));
        Some(rec)
    }
}

#[cfg(test)]
mod tests {
    use mfplane_core::Proto;

    use super::*;

    fn key(proto: Proto, ip: u32, port: u16) -> SessionKey {
        SessionKey {
            proto,
            inside: Endpoint::new(ip, port),
        }
    }

    #[test]
    fn packed_order_is_key_order() {
        let keys = [
            key(Proto::Icmp, u32::MAX, u16::MAX),
            key(Proto::Tcp, 0, 0),
            key(Proto::Tcp, 0, 1),
            key(Proto::Tcp, 1, 0),
            key(Proto::Udp, 0, 0),
        ];
        for w in keys.windows(2) {
            assert!(w[0] < w[1]);
            assert!(pack_key(&w[0]) < pack_key(&w[1]));
        }
    }
}

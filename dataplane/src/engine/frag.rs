//! IPv4 fragment tracking (DESIGN §2.5).
//!
//! Only the first fragment carries the L4 header, so only it can be matched to a
//! session. Its translation (the new source and destination addresses) is
//! remembered under `(src, dst, IP id, proto)` of the *untranslated* packet, and
//! later fragments with the same key get the same address rewrite and a fresh
//! header checksum. Later fragments that arrive before their first fragment, or
//! after its entry timed out or was evicted, are dropped and counted
//! (`fragment_no_head`); holding them back for reordering is not done.
//!
//! The tracker is bounded: when full, the oldest entry is evicted.

use std::collections::{HashMap, VecDeque};

use foldhash::fast::FixedState;
use mfplane_core::FragKey;

use super::counters::Direction;

/// The remembered translation of a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragDecision {
    pub new_src: u32,
    pub new_dst: u32,
    pub direction: Direction,
}

#[derive(Debug)]
pub struct FragTracker {
    map: HashMap<FragKey, (FragDecision, u64), FixedState>,
    order: VecDeque<(FragKey, u64)>,
    capacity: usize,
    timeout_ms: u64,
}

impl FragTracker {
    pub fn new(capacity: usize, timeout_ms: u64, seed: u64) -> Self {
        FragTracker {
            map: HashMap::with_capacity_and_hasher(capacity, FixedState::with_seed(seed)),
            order: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
            timeout_ms,
        }
    }

    /// Remembers the decision for the first fragment of `key`.
    pub fn insert(&mut self, key: FragKey, decision: FragDecision, now_ms: u64) {
        if let Some(e) = self.map.get_mut(&key) {
            *e = (decision, now_ms);
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some((k, t)) => {
                    if self.map.get(&k).is_some_and(|(_, at)| *at == t) {
                        self.map.remove(&k);
                    }
                }
                None => break,
            }
        }
        self.map.insert(key, (decision, now_ms));
        self.order.push_back((key, now_ms));
    }

    /// The decision for a later fragment, if its first fragment was seen recently.
    pub fn get(&mut self, key: &FragKey, now_ms: u64) -> Option<FragDecision> {
        let (d, at) = *self.map.get(key)?;
        if now_ms.saturating_sub(at) > self.timeout_ms {
            self.map.remove(key);
            return None;
        }
        Some(d)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> FragDecision {
        FragDecision {
            new_src: 1,
            new_dst: 2,
            direction: Direction::Outbound,
        }
    }

    #[test]
    fn remembers_expires_and_evicts() {
        let mut t = FragTracker::new(2, 1000, 0);
        let (a, b, c) = (
            FragKey::new(1, 2, 3, 17),
            FragKey::new(1, 2, 4, 17),
            FragKey::new(1, 2, 5, 17),
        );
        t.insert(a, d(), 0);
        assert_eq!(t.get(&a, 500), Some(d()));
        assert_eq!(t.get(&a, 1001), None, "timed out");
        t.insert(a, d(), 2000);
        t.insert(b, d(), 2001);
        t.insert(c, d(), 2002);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&a, 2003), None, "oldest evicted");
        assert!(t.get(&b, 2003).is_some() && t.get(&c, 2003).is_some());
    }
}

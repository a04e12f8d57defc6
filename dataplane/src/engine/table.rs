//! The session table: a trait, so the engine can run on in-memory maps (simulation,
//! userspace mode) now and on BPF maps (the worker's XDP fast path) later.
//!
//! A table indexes each session twice: by its inside endpoint ([`SessionKey`], for
//! outbound packets) and by its external endpoint ([`ExternalKey`], for inbound
//! packets). The engine guarantees it never inserts a session whose keys are
//! already present, so both indexes stay one-to-one (RFC 4787 REQ-3: no port
//! overloading).

use std::collections::HashMap;

use foldhash::fast::FixedState;
use mfplane_core::{ExternalKey, SessionKey};

use super::session::Session;

/// Storage of sessions by both keys.
pub trait SessionTable {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, key: &SessionKey) -> Option<&Session>;

    fn get_mut(&mut self, key: &SessionKey) -> Option<&mut Session>;

    fn get_by_external(&self, key: &ExternalKey) -> Option<&Session>;

    fn get_by_external_mut(&mut self, key: &ExternalKey) -> Option<&mut Session>;

    /// Inserts a session. The caller has checked that neither its inside nor its
    /// external key is present.
    fn insert(&mut self, session: Session);

    fn remove(&mut self, key: &SessionKey) -> Option<Session>;

    /// Visits every session (order unspecified but deterministic for a given
    /// history).
    fn for_each(&self, f: &mut dyn FnMut(&Session));

    /// Visits a bounded part of the table, for sweeps that must not stall the
    /// packet path: positions `cursor..`, at most `limit` of them. Returns the cursor
    /// to continue from, or `None` when the end was reached. Sessions inserted or
    /// removed between calls may be visited once more or skipped once.
    fn scan(&self, cursor: usize, limit: usize, f: &mut dyn FnMut(&Session)) -> Option<usize>;
}

/// In-memory table: sessions in a slab, two seeded hash indexes into it, so a
/// lookup is one hash probe and one array index. The indexes are keyed by the key
/// packed into a `u64` (`proto << 48 | ip << 16 | port`): one hasher round per
/// lookup instead of one per field.
#[derive(Debug)]
pub struct MemTable {
    slots: Vec<Option<Session>>,
    free: Vec<u32>,
    by_inside: HashMap<u64, u32, FixedState>,
    by_external: HashMap<u64, u32, FixedState>,
}

#[inline(always)]
fn pack(proto: mfplane_core::Proto, ep: mfplane_core::Endpoint) -> u64 {
    (u64::from(proto.number()) << 48) | (u64::from(ep.ip) << 16) | u64::from(ep.port)
}

#[inline(always)]
fn inside_key(k: &SessionKey) -> u64 {
    pack(k.proto, k.inside)
}

#[inline(always)]
fn external_key(k: &ExternalKey) -> u64 {
    pack(k.proto, k.external)
}

impl MemTable {
    /// A table with room for `capacity` sessions before it reallocates. `seed` makes
    /// hashing deterministic (simulation) yet unpredictable from outside.
    pub fn with_capacity(capacity: usize, seed: u64) -> Self {
        MemTable {
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            by_inside: HashMap::with_capacity_and_hasher(capacity, FixedState::with_seed(seed)),
            by_external: HashMap::with_capacity_and_hasher(
                capacity,
                FixedState::with_seed(seed ^ 0x9e37_79b9_7f4a_7c15),
            ),
        }
    }

    fn slot(&self, i: u32) -> Option<&Session> {
        self.slots.get(i as usize).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, i: u32) -> Option<&mut Session> {
        self.slots.get_mut(i as usize).and_then(Option::as_mut)
    }
}

impl SessionTable for MemTable {
    fn len(&self) -> usize {
        self.by_inside.len()
    }

    #[inline]
    fn get(&self, key: &SessionKey) -> Option<&Session> {
        let i = *self.by_inside.get(&inside_key(key))?;
        self.slot(i)
    }

    #[inline]
    fn get_mut(&mut self, key: &SessionKey) -> Option<&mut Session> {
        let i = *self.by_inside.get(&inside_key(key))?;
        self.slot_mut(i)
    }

    #[inline]
    fn get_by_external(&self, key: &ExternalKey) -> Option<&Session> {
        let i = *self.by_external.get(&external_key(key))?;
        self.slot(i)
    }

    #[inline]
    fn get_by_external_mut(&mut self, key: &ExternalKey) -> Option<&mut Session> {
        let i = *self.by_external.get(&external_key(key))?;
        self.slot_mut(i)
    }

    fn insert(&mut self, session: Session) {
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(session);
                i
            }
            None => {
                self.slots.push(Some(session));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_inside.insert(inside_key(&session.record.key), i);
        self.by_external
            .insert(external_key(&session.record.external_key()), i);
    }

    fn remove(&mut self, key: &SessionKey) -> Option<Session> {
        let i = self.by_inside.remove(&inside_key(key))?;
        let s = self.slots.get_mut(i as usize)?.take()?;
        self.by_external
            .remove(&external_key(&s.record.external_key()));
        self.free.push(i);
        Some(s)
    }

    fn for_each(&self, f: &mut dyn FnMut(&Session)) {
        self.slots.iter().flatten().for_each(f);
    }

    fn scan(&self, cursor: usize, limit: usize, f: &mut dyn FnMut(&Session)) -> Option<usize> {
        let end = cursor.saturating_add(limit).min(self.slots.len());
        self.slots
            .get(cursor..end)
            .unwrap_or_default()
            .iter()
            .flatten()
            .for_each(f);
        (end < self.slots.len()).then_some(end)
    }
}

/// A conformance suite for [`SessionTable`] implementations (the in-memory table
/// runs it in its tests; a BPF-map table should run it too). It panics, with a
/// message naming the broken rule, on the first violation.
pub mod conformance {
    use mfplane_core::{BucketId, Endpoint, ExternalKey, Proto, SessionKey, SessionRecord};

    use super::SessionTable;
    use crate::engine::session::{Origin, Session, TcpState};

    fn session(proto: Proto, port: u16, ext_port: u16) -> Session {
        Session {
            record: SessionRecord {
                key: SessionKey {
                    proto,
                    inside: Endpoint::new(0x0a00_0001, port),
                },
                external: Endpoint::new(0xc633_6401, ext_port),
                bucket: BucketId(ext_port & 0xff),
                created_ms: 1,
            },
            last_seen_ms: 1,
            tcp: TcpState::Established,
            origin: Origin::Local,
            seen_outbound: true,
        }
    }

    /// Runs every rule against an empty table made by `make`.
    pub fn run<T: SessionTable>(make: impl Fn() -> T) {
        both_keys_find_the_session(make());
        protocols_are_separate_key_spaces(make());
        mutation_through_either_key_is_seen_by_both(make());
        removal_clears_both_keys(make());
        scan_visits_everything_once(make());
    }

    fn both_keys_find_the_session<T: SessionTable>(mut t: T) {
        let s = session(Proto::Udp, 1000, 2000);
        assert!(t.is_empty(), "a new table is empty");
        t.insert(s);
        assert_eq!(t.len(), 1, "len counts sessions");
        assert_eq!(t.get(&s.record.key), Some(&s), "lookup by inside key");
        assert_eq!(
            t.get_by_external(&s.record.external_key()),
            Some(&s),
            "lookup by external key"
        );
    }

    fn protocols_are_separate_key_spaces<T: SessionTable>(mut t: T) {
        let u = session(Proto::Udp, 1000, 2000);
        let c = session(Proto::Tcp, 1000, 2000);
        t.insert(u);
        t.insert(c);
        assert_eq!(
            t.len(),
            2,
            "same endpoints, different protocols: two sessions"
        );
        assert_eq!(
            t.get(&c.record.key).map(|s| s.record.key.proto),
            Some(Proto::Tcp)
        );
        let ext = ExternalKey {
            proto: Proto::Icmp,
            external: u.record.external,
        };
        assert!(
            t.get_by_external(&ext).is_none(),
            "no ICMP session was inserted"
        );
    }

    fn mutation_through_either_key_is_seen_by_both<T: SessionTable>(mut t: T) {
        let s = session(Proto::Tcp, 1000, 2000);
        t.insert(s);
        if let Some(x) = t.get_mut(&s.record.key) {
            x.last_seen_ms = 7;
        }
        assert_eq!(
            t.get_by_external(&s.record.external_key())
                .map(|x| x.last_seen_ms),
            Some(7)
        );
        if let Some(x) = t.get_by_external_mut(&s.record.external_key()) {
            x.tcp = TcpState::Closing;
        }
        assert_eq!(t.get(&s.record.key).map(|x| x.tcp), Some(TcpState::Closing));
    }

    fn removal_clears_both_keys<T: SessionTable>(mut t: T) {
        let a = session(Proto::Udp, 1000, 2000);
        let b = session(Proto::Udp, 1001, 2001);
        t.insert(a);
        t.insert(b);
        assert_eq!(
            t.remove(&a.record.key),
            Some(a),
            "remove returns the session"
        );
        assert_eq!(
            t.remove(&a.record.key),
            None,
            "a second remove finds nothing"
        );
        assert!(
            t.get_by_external(&a.record.external_key()).is_none(),
            "external key cleared"
        );
        assert_eq!(t.get(&b.record.key), Some(&b), "others untouched");
        // The external endpoint can be reused by a new session.
        let c = session(Proto::Udp, 1002, 2000);
        t.insert(c);
        assert_eq!(
            t.get_by_external(&c.record.external_key())
                .map(|s| s.record.key),
            Some(c.record.key)
        );
    }

    fn scan_visits_everything_once<T: SessionTable>(mut t: T) {
        for i in 0..100u16 {
            t.insert(session(Proto::Udp, 1000 + i, 2000 + i));
        }
        for i in (0..100u16).step_by(3) {
            t.remove(&session(Proto::Udp, 1000 + i, 2000 + i).record.key);
        }
        let mut all = Vec::new();
        t.for_each(&mut |s| all.push(s.record.key.inside.port));
        all.sort_unstable();
        let mut stepped = Vec::new();
        let mut cursor = Some(0);
        while let Some(c) = cursor {
            cursor = t.scan(c, 10, &mut |s| stepped.push(s.record.key.inside.port));
        }
        stepped.sort_unstable();
        assert_eq!(all.len(), t.len(), "for_each visits every session");
        assert_eq!(stepped, all, "a stepped scan visits the same sessions once");
    }
}

#[cfg(test)]
mod tests {
    use mfplane_core::{BucketId, Endpoint, Proto, SessionRecord};

    use super::*;
    use crate::engine::session::{Origin, TcpState};

    fn session(port: u16, ext_port: u16) -> Session {
        Session {
            record: SessionRecord {
                key: SessionKey {
                    proto: Proto::Udp,
                    inside: Endpoint::new(0x0a00_0001, port),
                },
                external: Endpoint::new(0xc633_6401, ext_port),
                bucket: BucketId(ext_port & 0xff),
                created_ms: 0,
            },
            last_seen_ms: 0,
            tcp: TcpState::Established,
            origin: Origin::Local,
            seen_outbound: true,
        }
    }

    #[test]
    fn mem_table_passes_the_conformance_suite() {
        super::conformance::run(|| MemTable::with_capacity(16, 3));
    }

    #[test]
    fn both_indexes_follow_insert_and_remove() {
        let mut t = MemTable::with_capacity(4, 1);
        let a = session(1000, 2000);
        let b = session(1001, 2001);
        t.insert(a);
        t.insert(b);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&a.record.key), Some(&a));
        assert_eq!(t.get_by_external(&b.record.external_key()), Some(&b));
        assert_eq!(t.remove(&a.record.key), Some(a));
        assert!(t.get_by_external(&a.record.external_key()).is_none());
        // The freed slot is reused.
        let c = session(1002, 2002);
        t.insert(c);
        assert_eq!(t.get_by_external(&c.record.external_key()), Some(&c));
        let mut n = 0;
        t.for_each(&mut |_| n += 1);
        assert_eq!(n, 2);
        // A bounded scan in steps of one visits the same sessions.
        let (mut cursor, mut m) = (Some(0), 0);
        while let Some(c) = cursor {
            cursor = t.scan(c, 1, &mut |_| m += 1);
        }
        assert_eq!(m, 2);
    }
}

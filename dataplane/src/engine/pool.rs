//! Per-bucket external port allocation.
//!
//! A bucket owns the ports `p` with `p & mask == bucket` (and `p >= 1024`) on every
//! external IP ([`BucketPorts`]). TCP, UDP and ICMP have separate port spaces (a
//! session's external key includes the protocol), so the engine keeps one free list
//! per (external IP, protocol): a pool has `lists` of them, indexed by the caller.
//! Each list holds the free ports of the bucket as a FIFO doubly linked list over
//! port indices: allocation takes the head, freeing appends at the tail, and
//! marking an arbitrary port used (an imported session) unlinks it: all O(1), with
//! no random probing. FIFO means a freed port rests as long as possible before
//! reuse. The initial order is a keyed affine permutation (so external ports do not
//! simply count up) that is the same on every worker; a list is built on its first
//! use.

use mfplane_core::{BucketBits, BucketId, BucketPorts, FlowHashKey, flow_hash};

const NIL: u16 = u16::MAX;
/// `prev` of a port that is handed out (not in the free list).
const USED: u16 = u16::MAX - 1;
/// `head` of a list not built yet.
const UNBUILT: u16 = u16::MAX - 2;

/// One port index's links, kept together so an operation touches one cache line.
#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u16,
    next: u16,
}

/// Head, tail and size of one free list, and the permutation `(a, c)` its initial
/// order follows (used once, when the list is built).
#[derive(Debug, Clone, Copy)]
struct Ends {
    head: u16,
    tail: u16,
    free: u16,
    perm_a: u16,
    perm_c: u16,
}

/// The free lists of one bucket over one shared link array (list `l` uses
/// `links[l * count..][..count]`), so an allocation touches the list's ends and two
/// links and chases no further pointers.
#[derive(Debug, Clone)]
struct FreeLists {
    ends: Vec<Ends>,
    links: Vec<Link>,
    count: usize,
}

impl FreeLists {
    fn new(count: usize, n_lists: usize) -> Self {
        FreeLists {
            ends: vec![
                Ends {
                    head: NIL,
                    tail: NIL,
                    free: 0,
                    perm_a: 1,
                    perm_c: 0,
                };
                n_lists
            ],
            links: vec![
                Link {
                    prev: USED,
                    next: NIL
                };
                count * n_lists
            ],
            count,
        }
    }

    #[inline]
    fn link(&mut self, list: usize, i: u16) -> &mut Link {
        &mut self.links[list * self.count + usize::from(i)]
    }

    fn push_back(&mut self, list: usize, i: u16) -> bool {
        if self.link(list, i).prev != USED {
            return false;
        }
        let tail = self.ends[list].tail;
        *self.link(list, i) = Link {
            prev: tail,
            next: NIL,
        };
        if tail == NIL {
            self.ends[list].head = i;
        } else {
            self.link(list, tail).next = i;
        }
        let e = &mut self.ends[list];
        e.tail = i;
        e.free += 1;
        true
    }

    fn unlink(&mut self, list: usize, i: u16) -> bool {
        let Link { prev: p, next: n } = *self.link(list, i);
        if p == USED {
            return false;
        }
        if p == NIL {
            self.ends[list].head = n;
        } else {
            self.link(list, p).next = n;
        }
        if n == NIL {
            self.ends[list].tail = p;
        } else {
            self.link(list, n).prev = p;
        }
        *self.link(list, i) = Link {
            prev: USED,
            next: NIL,
        };
        self.ends[list].free -= 1;
        true
    }

    fn pop_front(&mut self, list: usize) -> Option<u16> {
        let h = self.ends.get(list)?.head;
        if h == NIL {
            return None;
        }
        self.unlink(list, h);
        Some(h)
    }
}

const fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// All external ports of one owned bucket, in several free lists (the engine uses
/// one per external IP and protocol).
#[derive(Debug, Clone)]
pub struct BucketPool {
    ports: BucketPorts,
    lists: FreeLists,
}

impl BucketPool {
    /// A pool with every port free in each of `n_lists` lists. A list is built on
    /// first use, so owning many buckets with many IPs costs little until they
    /// allocate.
    pub fn new(
        bits: BucketBits,
        bucket: BucketId,
        n_lists: usize,
        key: &FlowHashKey,
    ) -> Option<Self> {
        let ports = BucketPorts::new(bits, bucket)?;
        let n = ports.count();
        let mut lists = FreeLists::new(n as usize, n_lists);
        for (list, e) in lists.ends.iter_mut().enumerate() {
            // Keyed affine permutation of the port indices: i -> (a * i + c) mod n
            // with gcd(a, n) = 1, from a hash of (list, bucket). O(n), no sorting.
            let h = flow_hash(key, list as u32 ^ (u32::from(bucket.0) << 8), 0, 0xff);
            let mut a = ((h >> 16) % n.max(1)) | 1;
            while gcd(a, n) != 1 {
                a += 1;
            }
            // n <= 4096, so both fit in u16.
            e.perm_a = a as u16;
            e.perm_c = ((h & 0xffff) % n.max(1)) as u16;
            e.head = UNBUILT;
        }
        Some(BucketPool { ports, lists })
    }

    /// Builds `list` if this is its first use; `false` if there is no such list.
    #[inline]
    fn ensure(&mut self, list: usize) -> bool {
        let Some(e) = self.lists.ends.get_mut(list) else {
            return false;
        };
        if e.head == UNBUILT {
            let (n, a, mut i) = (self.ports.count(), u32::from(e.perm_a), u32::from(e.perm_c));
            e.head = NIL;
            for _ in 0..n {
                self.lists.push_back(list, i as u16);
                i = (i + a) % n;
            }
        }
        true
    }

    pub fn bucket(&self) -> BucketId {
        self.ports.bucket()
    }

    /// Takes a free port from `list`.
    #[inline]
    pub fn allocate(&mut self, list: usize) -> Option<u16> {
        if !self.ensure(list) {
            return None;
        }
        let i = self.lists.pop_front(list)?;
        self.ports.nth(u32::from(i))
    }

    /// Marks `port` used (an imported or pre-existing session). `false` if it was
    /// already used or is not a port of this bucket.
    pub fn mark_used(&mut self, list: usize, port: u16) -> bool {
        match self.ports.index_of(port) {
            Some(i) if self.ensure(list) => self.lists.unlink(list, i as u16),
            _ => false,
        }
    }

    /// Returns `port` to the free set. `false` if it was already free.
    pub fn free(&mut self, list: usize, port: u16) -> bool {
        match self.ports.index_of(port) {
            Some(i) if self.ensure(list) => self.lists.push_back(list, i as u16),
            _ => false,
        }
    }

    /// Free ports in `list`.
    pub fn free_count(&self, list: usize) -> u32 {
        match self.lists.ends.get(list) {
            None => 0,
            Some(e) if e.head == UNBUILT => self.ports.count(),
            Some(e) => u32::from(e.free),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn pool(bits: u8, b: u16, ips: usize) -> BucketPool {
        BucketPool::new(
            BucketBits::new(bits).unwrap(),
            BucketId(b),
            ips,
            &FlowHashKey::DEFAULT,
        )
        .unwrap()
    }

    #[test]
    fn allocates_every_port_once_then_exhausts() {
        let mut p = pool(8, 7, 2);
        let mut seen = HashSet::new();
        while let Some(port) = p.allocate(1) {
            assert_eq!(port & 0xff, 7);
            assert!(port >= 1024);
            assert!(seen.insert(port));
        }
        assert_eq!(seen.len(), 252);
        assert_eq!(p.free_count(1), 0);
        assert_eq!(p.free_count(0), 252);
    }

    #[test]
    fn freed_ports_rest_longest_fifo() {
        let mut p = pool(8, 7, 1);
        let a = p.allocate(0).unwrap();
        let b = p.allocate(0).unwrap();
        assert!(p.free(0, a));
        assert!(!p.free(0, a), "double free is refused");
        // `a` is now at the tail: all other free ports come first.
        for _ in 0..250 {
            assert_ne!(p.allocate(0), Some(a));
        }
        assert_eq!(p.allocate(0), Some(a));
        assert!(p.free(0, b));
    }

    #[test]
    fn mark_used_removes_from_the_middle() {
        let mut p = pool(4, 3, 1);
        let port = 1024 + 16 * 100 + 3;
        assert!(p.mark_used(0, port));
        assert!(!p.mark_used(0, port));
        assert!(!p.mark_used(0, port + 1), "not a port of the bucket");
        while let Some(x) = p.allocate(0) {
            assert_ne!(x, port);
        }
    }

    #[test]
    fn order_is_the_same_on_every_worker() {
        let mut a = pool(8, 9, 1);
        let mut b = pool(8, 9, 1);
        for _ in 0..20 {
            assert_eq!(a.allocate(0), b.allocate(0));
        }
    }

    proptest! {
        /// Any sequence of allocate / free / mark_used keeps the free count equal to
        /// the number of ports not handed out, and never hands out a port twice.
        #[test]
        fn pool_never_double_allocates(ops in proptest::collection::vec((0u8..3, any::<u16>()), 1..400)) {
            let mut p = pool(6, 5, 1);
            let total = p.free_count(0);
            let mut out: HashSet<u16> = HashSet::new();
            for (op, x) in ops {
                match op {
                    0 => if let Some(port) = p.allocate(0) {
                        prop_assert!(out.insert(port), "port {} handed out twice", port);
                    },
                    1 => {
                        let port = out.iter().copied().nth(usize::from(x) % out.len().max(1));
                        if let Some(port) = port {
                            prop_assert!(p.free(0, port));
                            out.remove(&port);
                        }
                    }
                    _ => {
                        let port = 1024 + (x % 1000) * 64 + 5;
                        if p.mark_used(0, port) {
                            prop_assert!(out.insert(port));
                        }
                    }
                }
                prop_assert_eq!(p.free_count(0) as usize + out.len(), total as usize);
            }
        }
    }
}

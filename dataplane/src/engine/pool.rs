//! Per-bucket external port allocation.
//!
//! A bucket owns the ports `p` with `p & mask == bucket` (and `p >= 1024`) on every
//! external IP ([`BucketPorts`]). For each external IP, the free ports of the bucket
//! form a FIFO doubly linked list over port indices: allocation takes the head,
//! freeing appends at the tail, and marking an arbitrary port used (an imported
//! session) unlinks it: all O(1), with no random probing. FIFO means a freed port
//! rests as long as possible before reuse. The initial order is a keyed affine
//! permutation (so external ports do not simply count up) that is the same on every
//! worker.

use mfplane_core::{BucketBits, BucketId, BucketPorts, FlowHashKey, flow_hash};

const NIL: u16 = u16::MAX;
/// `prev` of a port that is handed out (not in the free list).
const USED: u16 = u16::MAX - 1;

/// One port index's links, kept together so an operation touches one cache line.
#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u16,
    next: u16,
}

/// Head, tail and size of one free list.
#[derive(Debug, Clone, Copy)]
struct Ends {
    head: u16,
    tail: u16,
    free: u32,
}

/// The free lists of one bucket, one per external IP, over one shared link array
/// (list `ip` uses `links[ip * count..][..count]`), so an allocation touches the
/// list's ends and two links and chases no further pointers.
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

/// All external ports of one owned bucket, per external IP.
#[derive(Debug, Clone)]
pub struct BucketPool {
    ports: BucketPorts,
    lists: FreeLists,
}

impl BucketPool {
    /// A pool with every port free, for `n_ips` external IPs (index order of the
    /// engine's configuration).
    pub fn new(
        bits: BucketBits,
        bucket: BucketId,
        n_ips: usize,
        key: &FlowHashKey,
    ) -> Option<Self> {
        let ports = BucketPorts::new(bits, bucket)?;
        let n = ports.count();
        let mut lists = FreeLists::new(n as usize, n_ips);
        for ip_index in 0..n_ips {
            // Keyed affine permutation of the port indices: i -> (a * i + c) mod n
            // with gcd(a, n) = 1, from a hash of (ip, bucket). O(n), no sorting.
            let h = flow_hash(key, ip_index as u32 ^ (u32::from(bucket.0) << 8), 0, 0xff);
            let mut a = ((h >> 16) % n.max(1)) | 1;
            while gcd(a, n) != 1 {
                a += 1;
            }
            let c = (h & 0xffff) % n.max(1);
            let mut i = c;
            for _ in 0..n {
                lists.push_back(ip_index, i as u16);
                i = (i + a) % n;
            }
        }
        Some(BucketPool { ports, lists })
    }

    pub fn bucket(&self) -> BucketId {
        self.ports.bucket()
    }

    /// Takes a free port on external IP `ip_index`.
    #[inline]
    pub fn allocate(&mut self, ip_index: usize) -> Option<u16> {
        let i = self.lists.pop_front(ip_index)?;
        self.ports.nth(u32::from(i))
    }

    /// Marks `port` used (an imported or pre-existing session). `false` if it was
    /// already used or is not a port of this bucket.
    pub fn mark_used(&mut self, ip_index: usize, port: u16) -> bool {
        match self.ports.index_of(port) {
            Some(i) if ip_index < self.lists.ends.len() => self.lists.unlink(ip_index, i as u16),
            _ => false,
        }
    }

    /// Returns `port` to the free set. `false` if it was already free.
    pub fn free(&mut self, ip_index: usize, port: u16) -> bool {
        match self.ports.index_of(port) {
            Some(i) if ip_index < self.lists.ends.len() => self.lists.push_back(ip_index, i as u16),
            _ => false,
        }
    }

    /// Free ports on `ip_index`.
    pub fn free_count(&self, ip_index: usize) -> u32 {
        self.lists.ends.get(ip_index).map_or(0, |e| e.free)
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

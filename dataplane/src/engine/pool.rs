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

/// The free ports of one bucket on one external IP.
#[derive(Debug, Clone)]
struct FreeList {
    next: Vec<u16>,
    prev: Vec<u16>,
    head: u16,
    tail: u16,
    free: u32,
    used: Vec<bool>,
}

impl FreeList {
    fn new(order: &[u16]) -> Self {
        let n = order.len();
        let mut l = FreeList {
            next: vec![NIL; n],
            prev: vec![NIL; n],
            head: NIL,
            tail: NIL,
            free: 0,
            used: vec![true; n],
        };
        for &i in order {
            l.push_back(i);
        }
        l
    }

    fn push_back(&mut self, i: u16) -> bool {
        let iu = usize::from(i);
        if !self.used[iu] {
            return false;
        }
        self.used[iu] = false;
        self.next[iu] = NIL;
        self.prev[iu] = self.tail;
        if self.tail == NIL {
            self.head = i;
        } else {
            self.next[usize::from(self.tail)] = i;
        }
        self.tail = i;
        self.free += 1;
        true
    }

    fn unlink(&mut self, i: u16) -> bool {
        let iu = usize::from(i);
        if self.used[iu] {
            return false;
        }
        let (p, n) = (self.prev[iu], self.next[iu]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[usize::from(p)] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[usize::from(n)] = p;
        }
        self.used[iu] = true;
        self.free -= 1;
        true
    }

    fn pop_front(&mut self) -> Option<u16> {
        let h = self.head;
        if h == NIL {
            return None;
        }
        self.unlink(h);
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
    per_ip: Vec<FreeList>,
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
        let count = ports.count();
        let per_ip = (0..n_ips)
            .map(|ip_index| {
                // Keyed affine permutation of the port indices: i -> (a * i + c) mod n
                // with gcd(a, n) = 1, from a hash of (ip, bucket). O(n), no sorting.
                let n = count;
                let h = flow_hash(key, ip_index as u32 ^ (u32::from(bucket.0) << 8), 0, 0xff);
                let mut a = ((h >> 16) % n.max(1)) | 1;
                while gcd(a, n) != 1 {
                    a += 1;
                }
                let c = (h & 0xffff) % n.max(1);
                let order: Vec<u16> = (0..n).map(|i| ((a * i + c) % n) as u16).collect();
                FreeList::new(&order)
            })
            .collect();
        Some(BucketPool { ports, per_ip })
    }

    pub fn bucket(&self) -> BucketId {
        self.ports.bucket()
    }

    /// Takes a free port on external IP `ip_index`.
    pub fn allocate(&mut self, ip_index: usize) -> Option<u16> {
        let i = self.per_ip.get_mut(ip_index)?.pop_front()?;
        self.ports.nth(u32::from(i))
    }

    /// Marks `port` used (an imported or pre-existing session). `false` if it was
    /// already used or is not a port of this bucket.
    pub fn mark_used(&mut self, ip_index: usize, port: u16) -> bool {
        match (self.ports.index_of(port), self.per_ip.get_mut(ip_index)) {
            (Some(i), Some(l)) => l.unlink(i as u16),
            _ => false,
        }
    }

    /// Returns `port` to the free set. `false` if it was already free.
    pub fn free(&mut self, ip_index: usize, port: u16) -> bool {
        match (self.ports.index_of(port), self.per_ip.get_mut(ip_index)) {
            (Some(i), Some(l)) => l.push_back(i as u16),
            _ => false,
        }
    }

    /// Free ports on `ip_index`.
    pub fn free_count(&self, ip_index: usize) -> u32 {
        self.per_ip.get(ip_index).map_or(0, |l| l.free)
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

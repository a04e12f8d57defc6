//! The bucket rules: which bucket a packet belongs to, and which external ports a
//! bucket may allocate.
//!
//! - Outbound (inside -> outside): `flow_hash(src_ip, src_port, proto) & mask`.
//! - Inbound (outside -> external IP): `dst_port & mask`.
//! - Allocation: a session of bucket `b` gets an external port `p` with
//!   `p & mask == b` and `p >= FIRST_NAT_PORT`, so the reply's destination port
//!   names the same bucket the LB steered the first packet by, and the LB needs no
//!   per-flow state.
//!
//! The ports of bucket `b` are `b + k * B` for `k` in `k_min..=k_max`; [`BucketPorts`]
//! numbers them `0..count` so an allocator can keep a dense free set per bucket.

use crate::hash::{FlowHashKey, flow_hash};
use crate::types::{BucketBits, BucketId, FIRST_NAT_PORT};

/// The bucket of an outbound packet (or of a session, by its inside endpoint).
/// For ICMP echo `src_port` is the echo identifier.
#[inline(always)]
pub fn outbound_bucket(
    key: &FlowHashKey,
    bits: BucketBits,
    src_ip: u32,
    src_port: u16,
    proto: u8,
) -> BucketId {
    BucketId((flow_hash(key, src_ip, src_port, proto) & bits.mask()) as u16)
}

/// The bucket of an inbound packet, from its destination port (ICMP: identifier).
#[inline(always)]
pub fn inbound_bucket(bits: BucketBits, dst_port: u16) -> BucketId {
    BucketId((dst_port as u32 & bits.mask()) as u16)
}

/// `true` if `bucket` is a valid bucket number for `bits`.
#[inline(always)]
pub fn bucket_in_range(bits: BucketBits, bucket: BucketId) -> bool {
    (bucket.0 as u32) < bits.count()
}

/// The external ports one bucket owns on each external IP.
///
/// Construct with [`BucketPorts::new`], which rejects a bucket outside the table, so
/// every method here is total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketPorts {
    bits: BucketBits,
    bucket: BucketId,
    /// Smallest multiplier `k` with `bucket + k * B >= FIRST_NAT_PORT`.
    k_min: u32,
    /// Number of usable ports.
    count: u32,
}

impl BucketPorts {
    /// `None` when `bucket` is not below `bits.count()`.
    pub const fn new(bits: BucketBits, bucket: BucketId) -> Option<Self> {
        let b = bucket.0 as u32;
        if b >= bits.count() {
            return None;
        }
        let step = bits.count();
        let first = FIRST_NAT_PORT as u32;
        let k_min = if b >= first {
            0
        } else {
            (first - b).div_ceil(step)
        };
        let k_max = (u16::MAX as u32 - b) / step;
        Some(BucketPorts {
            bits,
            bucket,
            k_min,
            count: k_max + 1 - k_min,
        })
    }

    pub const fn bucket(&self) -> BucketId {
        self.bucket
    }

    pub const fn bits(&self) -> BucketBits {
        self.bits
    }

    /// How many ports the bucket owns on one external IP.
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The `n`th port of the bucket (`0..count`), in increasing port order.
    #[inline(always)]
    pub const fn nth(&self, n: u32) -> Option<u16> {
        if n >= self.count {
            return None;
        }
        Some((self.bucket.0 as u32 + ((self.k_min + n) << self.bits.get())) as u16)
    }

    /// The index of `port` among the bucket's ports, or `None` if the bucket does not
    /// own it (wrong low bits, or below [`FIRST_NAT_PORT`]).
    #[inline(always)]
    pub const fn index_of(&self, port: u16) -> Option<u32> {
        if !self.contains(port) {
            return None;
        }
        Some((port as u32 >> self.bits.get()) - self.k_min)
    }

    /// `true` if the bucket may allocate `port`.
    #[inline(always)]
    pub const fn contains(&self, port: u16) -> bool {
        port >= FIRST_NAT_PORT && (port as u32 & self.bits.mask()) == self.bucket.0 as u32
    }

    /// The ports in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.count).filter_map(|n| self.nth(n))
    }
}

/// `true` if `port` is a port that bucket allocation may ever hand out in `bucket`.
#[inline(always)]
pub fn port_in_bucket(bits: BucketBits, bucket: BucketId, port: u16) -> bool {
    port >= FIRST_NAT_PORT && inbound_bucket(bits, port) == bucket
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bits(n: u8) -> BucketBits {
        BucketBits::new(n).unwrap()
    }

    #[test]
    fn known_counts() {
        // 256 buckets: 65536 / 256 = 256 ports each, minus the 4 multiples below 1024.
        let p = BucketPorts::new(bits(8), BucketId(5)).unwrap();
        assert_eq!(p.count(), 252);
        assert_eq!(p.nth(0), Some(1024 + 5));
        assert_eq!(p.nth(251), Some(65280 + 5));
        assert_eq!(p.nth(252), None);
        assert_eq!(p.index_of(1029), Some(0));
        assert_eq!(p.index_of(1030), None);
        assert_eq!(p.index_of(5), None);
        // 4096 buckets: bucket 1024 and above lose nothing, bucket 3 loses port 3.
        assert_eq!(BucketPorts::new(bits(12), BucketId(3)).unwrap().count(), 15);
        assert_eq!(
            BucketPorts::new(bits(12), BucketId(1024)).unwrap().count(),
            16
        );
        assert_eq!(
            BucketPorts::new(bits(12), BucketId(1024)).unwrap().nth(0),
            Some(1024)
        );
        assert!(BucketPorts::new(bits(4), BucketId(16)).is_none());
    }

    #[test]
    fn inbound_bucket_is_low_port_bits() {
        assert_eq!(inbound_bucket(bits(8), 0x1234), BucketId(0x34));
        assert_eq!(inbound_bucket(bits(4), 0x1234), BucketId(0x4));
        assert!(port_in_bucket(bits(8), BucketId(0x34), 0x1234));
        assert!(!port_in_bucket(bits(8), BucketId(0x34), 0x0034));
    }

    #[test]
    fn outbound_bucket_in_range_and_uses_hash() {
        let k = FlowHashKey::DEFAULT;
        let b = outbound_bucket(&k, bits(8), 0x0a00_0001, 40000, 6);
        assert_eq!(
            b.0 as u32,
            crate::hash::flow_hash(&k, 0x0a00_0001, 40000, 6) & 0xff
        );
    }

    #[test]
    fn every_usable_port_belongs_to_exactly_one_bucket() {
        for n in [4u8, 8, 11, 12] {
            let total: u32 = (0..bits(n).count())
                .map(|b| {
                    BucketPorts::new(bits(n), BucketId(b as u16))
                        .unwrap()
                        .count()
                })
                .sum();
            assert_eq!(total, 65536 - FIRST_NAT_PORT as u32, "bits {n}");
        }
    }

    proptest! {
        #[test]
        fn nth_and_index_of_are_inverse(n in 4u8..=12, b in 0u16..4096, i in 0u32..5000) {
            let bits = bits(n);
            let b = BucketId(b % bits.count() as u16);
            let ports = BucketPorts::new(bits, b).unwrap();
            match ports.nth(i) {
                Some(p) => {
                    prop_assert!(p >= FIRST_NAT_PORT);
                    prop_assert_eq!(inbound_bucket(bits, p), b);
                    prop_assert_eq!(ports.index_of(p), Some(i));
                }
                None => prop_assert!(i >= ports.count()),
            }
        }

        #[test]
        fn iter_lists_exactly_the_contained_ports(n in 4u8..=12, b in 0u16..4096) {
            let bits = bits(n);
            let b = BucketId(b % bits.count() as u16);
            let ports = BucketPorts::new(bits, b).unwrap();
            let listed: Vec<u16> = ports.iter().collect();
            let expected: Vec<u16> = (0..=u16::MAX).filter(|p| ports.contains(*p)).collect();
            prop_assert_eq!(listed, expected);
        }
    }
}

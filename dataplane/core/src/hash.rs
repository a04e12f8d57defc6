//! The keyed flow hash that places an outbound flow in a bucket.
//!
//! SipHash-1-3 (the variant Rust's `HashMap` uses) over one 8-byte message that packs
//! `(src_ip, src_port, proto)`. Keyed, so an outside party who does not know the key
//! cannot aim many flows at one bucket; fixed rounds and no loops, so it compiles to
//! straight-line code the eBPF verifier accepts; pure integer arithmetic, so the LB's
//! eBPF program, the worker's eBPF program and the userspace engine compute the same
//! value on every build and every architecture.
//!
//! The destination is deliberately not an input: the mapping of an inside endpoint
//! must not depend on where it sends (RFC 4787 REQ-1), so all its flows land in one
//! bucket and therefore on one owner.

use crate::types::Proto;

/// The 128-bit key of the flow hash. Every LB and worker of a cluster must use the
/// same key (it travels in [`crate::maps::DataplaneConfig`]), or they would steer the
/// same flow to different owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(C)]
pub struct FlowHashKey {
    pub k0: u64,
    pub k1: u64,
}

impl FlowHashKey {
    /// The documented default key: the ASCII bytes of `"mfplane flowhash"` read as two
    /// little-endian `u64`s. A cluster that wants resistance against crafted flows sets
    /// its own random key at bootstrap; the default keeps tests and labs reproducible.
    pub const DEFAULT: FlowHashKey = FlowHashKey {
        k0: u64::from_le_bytes(*b"mfplane "),
        k1: u64::from_le_bytes(*b"flowhash"),
    };

    pub const fn new(k0: u64, k1: u64) -> Self {
        FlowHashKey { k0, k1 }
    }

    /// The 16 bytes [`FlowHashKey::from_bytes`] reads back.
    pub const fn to_bytes(&self) -> [u8; 16] {
        let (a, b) = (self.k0.to_le_bytes(), self.k1.to_le_bytes());
        [
            a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1], b[2], b[3], b[4], b[5],
            b[6], b[7],
        ]
    }

    /// The key from 16 bytes, `k0` then `k1`, each little-endian (how the node's
    /// `--flow-hash-key` hex digits are read).
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        FlowHashKey {
            k0: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            k1: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        }
    }
}

impl Default for FlowHashKey {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The hash of an outbound flow, identified by its inside endpoint and protocol.
///
/// `src_ip` is host order; for ICMP echo `src_port` is the echo identifier. Returns
/// the low 32 bits of SipHash-1-3 over `src_ip as le u32 || src_port as le u16 ||
/// proto || 0`; the bucket is `flow_hash(..) & bucket_bits.mask()`.
#[inline(always)]
pub fn flow_hash(key: &FlowHashKey, src_ip: u32, src_port: u16, proto: u8) -> u32 {
    let m = (src_ip as u64) | ((src_port as u64) << 32) | ((proto as u64) << 48);
    sip_one_word::<1, 3>(key, m) as u32
}

/// [`flow_hash`] for a [`Proto`].
#[inline(always)]
pub fn flow_hash_proto(key: &FlowHashKey, src_ip: u32, src_port: u16, proto: Proto) -> u32 {
    flow_hash(key, src_ip, src_port, proto.number())
}

/// SipHash-C-D of exactly one 8-byte message `m` (little-endian word), as in the
/// SipHash paper: one compression block, then the length block `8 << 56`.
#[inline(always)]
fn sip_one_word<const C: usize, const D: usize>(key: &FlowHashKey, m: u64) -> u64 {
    let mut v = [
        key.k0 ^ 0x736f_6d65_7073_6575,
        key.k1 ^ 0x646f_7261_6e64_6f6d,
        key.k0 ^ 0x6c79_6765_6e65_7261,
        key.k1 ^ 0x7465_6462_7974_6573,
    ];
    compress::<C>(&mut v, m);
    compress::<C>(&mut v, 8u64 << 56);
    v[2] ^= 0xff;
    // The loop bound is a constant, so it unrolls to straight-line code.
    let mut i = 0;
    while i < D {
        sip_round(&mut v);
        i += 1;
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline(always)]
fn compress<const C: usize>(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    let mut i = 0;
    while i < C {
        sip_round(v);
        i += 1;
    }
    v[0] ^= m;
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SipHash paper's test key `00 01 .. 0f`.
    const PAPER_KEY: FlowHashKey = FlowHashKey {
        k0: 0x0706_0504_0302_0100,
        k1: 0x0f0e_0d0c_0b0a_0908,
    };

    #[test]
    fn key_bytes_are_read_as_two_little_endian_words() {
        let paper: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(FlowHashKey::from_bytes(paper), PAPER_KEY);
        assert_eq!(PAPER_KEY.to_bytes(), paper);
        assert_eq!(
            FlowHashKey::from_bytes(*b"mfplane flowhash"),
            FlowHashKey::DEFAULT
        );
    }

    #[test]
    fn siphash24_matches_reference_vector() {
        // Reference vector of SipHash-2-4 (vectors.h, 64-bit output) for the 8-byte
        // message 00 01 .. 07 under the paper's key.
        let m = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(sip_one_word::<2, 4>(&PAPER_KEY, m), 0x93f5_f579_9a93_2462);
    }

    #[allow(
        deprecated,
        reason = "SipHasher is the std SipHash-2-4 reference we compare against"
    )]
    #[test]
    fn siphash24_matches_std_siphasher() {
        use std::hash::{Hasher, SipHasher};
        for i in 0u64..1000 {
            let m = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let k = FlowHashKey::new(i, !i);
            let mut h = SipHasher::new_with_keys(k.k0, k.k1);
            h.write(&m.to_le_bytes());
            assert_eq!(sip_one_word::<2, 4>(&k, m), h.finish());
        }
    }

    #[test]
    fn flow_hash_is_pinned() {
        // These values must never change: the LB and workers of a running cluster, maybe
        // built at different times, must agree on every bucket.
        let k = FlowHashKey::DEFAULT;
        assert_eq!(k.k0, 0x2065_6e61_6c70_666d);
        assert_eq!(k.k1, 0x6873_6168_776f_6c66);
        let got = [
            flow_hash(&k, 0x0a00_0001, 40000, 6),
            flow_hash(&k, 0x0a00_0001, 40000, 17),
            flow_hash(&k, 0x0a00_0002, 40000, 6),
            flow_hash(&k, 0xc0a8_0101, 1, 1),
        ];
        assert_eq!(got, PINNED);
    }

    const PINNED: [u32; 4] = [375_619_214, 1_665_692_847, 596_552_645, 2_698_647_600];

    #[test]
    fn flow_hash_depends_on_every_input_and_the_key() {
        let k = FlowHashKey::DEFAULT;
        let base = flow_hash(&k, 0x0a00_0001, 40000, 6);
        assert_ne!(base, flow_hash(&k, 0x0a00_0002, 40000, 6));
        assert_ne!(base, flow_hash(&k, 0x0a00_0001, 40001, 6));
        assert_ne!(base, flow_hash(&k, 0x0a00_0001, 40000, 17));
        assert_ne!(
            base,
            flow_hash(&FlowHashKey::new(1, 2), 0x0a00_0001, 40000, 6)
        );
    }

    #[test]
    fn flow_hash_spreads_evenly_over_buckets() {
        // 65536 flows of one /24 over 256 buckets: every bucket within 40% of the mean.
        let k = FlowHashKey::DEFAULT;
        let mut counts = [0u32; 256];
        for host in 0..256u32 {
            for port in 0..256u16 {
                let h = flow_hash(&k, 0x0a00_0000 | host, 1024 + port * 7, 17);
                counts[(h & 255) as usize] += 1;
            }
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(
            *min > 256 * 6 / 10 && *max < 256 * 14 / 10,
            "min {min} max {max}"
        );
    }
}

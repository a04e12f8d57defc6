//! A hash that is the same on every platform, process and Rust release, for comparing
//! state machines across members (`std`'s hashers promise none of that).

use mfplane_core::SessionRecord;

/// FNV-1a over an explicit byte encoding, finished with a SplitMix64 mix.
#[derive(Debug, Clone)]
pub(crate) struct StableHasher(u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl StableHasher {
    pub(crate) fn new() -> Self {
        StableHasher(FNV_OFFSET)
    }

    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    pub(crate) fn write_u8(&mut self, v: u8) {
        self.write_bytes(&[v]);
    }

    pub(crate) fn write_u32(&mut self, v: u32) {
        self.write_bytes(&v.to_le_bytes());
    }

    pub(crate) fn write_u64(&mut self, v: u64) {
        self.write_bytes(&v.to_le_bytes());
    }

    /// Length-prefixed so that `("ab", "c")` and `("a", "bc")` differ.
    pub(crate) fn write_str(&mut self, s: &str) {
        self.write_u64(s.len() as u64);
        self.write_bytes(s.as_bytes());
    }

    pub(crate) fn finish(&self) -> u64 {
        splitmix64(self.0)
    }
}

/// SplitMix64 finalizer: a bijective mix with full avalanche.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Digest of one session. Sessions are combined by wrapping addition, which is order
/// independent and can be undone on removal, so the state hash is maintained in O(1) per
/// change.
pub(crate) fn record_digest(r: &SessionRecord) -> u64 {
    let a = (u64::from(r.key.proto.number()) << 48)
        | (u64::from(r.key.inside.port) << 32)
        | u64::from(r.key.inside.ip);
    let b = (u64::from(r.bucket.0) << 48)
        | (u64::from(r.external.port) << 32)
        | u64::from(r.external.ip);
    splitmix64(splitmix64(splitmix64(a) ^ b) ^ r.created_ms)
}

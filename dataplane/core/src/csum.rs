//! Internet checksum arithmetic: incremental updates (RFC 1624) and a full sum.
//!
//! A NAT changes a few 16-bit words of a packet (addresses, ports, the ICMP
//! identifier). Recomputing the IP, TCP, UDP or ICMP checksum over the whole packet
//! would touch every payload byte; RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, updates
//! it from the changed words alone. [`CsumDelta`] accumulates `~m + m'` for any number
//! of changed words so one delta can be applied to every checksum that covers them
//! (the IPv4 header checksum, the TCP/UDP checksum through its pseudo-header, and the
//! checksum of an ICMP error that quotes the header).
//!
//! UDP is special (RFC 768): a transmitted checksum of 0 means "not computed" and must
//! stay 0; a computed value of 0 is transmitted as `0xffff`. Use
//! [`CsumDelta::apply_udp`] for UDP checksums.

/// Folds a 32-bit one's-complement accumulator to 16 bits with end-around carry.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The one's-complement sum of `~old + new` over changed 16-bit words: a pending
/// checksum update. `Copy` and tiny, so it can be returned from rewrite helpers and
/// applied to several checksums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CsumDelta {
    acc: u16,
}

impl CsumDelta {
    /// No change.
    pub const ZERO: CsumDelta = CsumDelta { acc: 0 };

    /// Records that a 16-bit word changed from `old` to `new` (host-order values of
    /// big-endian packet words).
    #[inline(always)]
    #[must_use]
    pub const fn word(self, old: u16, new: u16) -> Self {
        CsumDelta {
            acc: fold(self.acc as u32 + (!old) as u32 + new as u32),
        }
    }

    /// Records that a 32-bit field (two words, e.g. an IPv4 address) changed.
    #[inline(always)]
    #[must_use]
    pub const fn dword(self, old: u32, new: u32) -> Self {
        self.word((old >> 16) as u16, (new >> 16) as u16)
            .word(old as u16, new as u16)
    }

    /// Records the change of a big-endian 2-byte field.
    #[inline(always)]
    #[must_use]
    pub const fn bytes2(self, old: [u8; 2], new: [u8; 2]) -> Self {
        self.word(u16::from_be_bytes(old), u16::from_be_bytes(new))
    }

    /// Combines two pending updates.
    #[inline(always)]
    #[must_use]
    pub const fn merge(self, other: CsumDelta) -> Self {
        CsumDelta {
            acc: fold(self.acc as u32 + other.acc as u32),
        }
    }

    /// `true` when no word changed (or the changes cancel out).
    pub const fn is_zero(self) -> bool {
        self.acc == 0 || self.acc == 0xffff
    }

    /// Applies the update to a checksum (IPv4 header, TCP, ICMP): RFC 1624 eqn. 3.
    #[inline(always)]
    #[must_use]
    pub const fn apply(self, csum: u16) -> u16 {
        !fold((!csum) as u32 + self.acc as u32)
    }

    /// Applies the update to a UDP checksum: 0 ("no checksum") stays 0, and a result
    /// of 0 is sent as `0xffff` (RFC 768).
    #[inline(always)]
    #[must_use]
    pub const fn apply_udp(self, csum: u16) -> u16 {
        if csum == 0 {
            return 0;
        }
        match self.apply(csum) {
            0 => 0xffff,
            c => c,
        }
    }

    /// [`apply`](Self::apply) on a big-endian checksum field in place.
    #[inline(always)]
    pub fn apply_to(self, field: &mut [u8; 2]) {
        *field = self.apply(u16::from_be_bytes(*field)).to_be_bytes();
    }

    /// [`apply_udp`](Self::apply_udp) on a big-endian checksum field in place.
    #[inline(always)]
    pub fn apply_udp_to(self, field: &mut [u8; 2]) {
        *field = self.apply_udp(u16::from_be_bytes(*field)).to_be_bytes();
    }
}

/// RFC 1624 eqn. 3 for one changed 16-bit word.
#[inline(always)]
pub const fn update16(csum: u16, old: u16, new: u16) -> u16 {
    CsumDelta::ZERO.word(old, new).apply(csum)
}

/// RFC 1624 eqn. 3 for one changed 32-bit field.
#[inline(always)]
pub const fn update32(csum: u16, old: u32, new: u32) -> u16 {
    CsumDelta::ZERO.dword(old, new).apply(csum)
}

/// One's-complement sum of `data` (big-endian words, an odd last byte padded with a
/// zero), added to `initial`; not folded. For userspace and tests: eBPF programs use
/// the incremental updates instead of looping over packet bytes.
pub fn sum_bytes(initial: u32, data: &[u8]) -> u32 {
    // Adding big-endian 32-bit words is the same one's-complement sum as adding the
    // 16-bit words (2^16 = 1 mod 2^16 - 1), with half the additions.
    let mut sum = initial as u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        sum += u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    match *words.remainder() {
        [a, b, c] => sum += u16::from_be_bytes([a, b]) as u64 + ((c as u64) << 8),
        [a, b] => sum += u16::from_be_bytes([a, b]) as u64,
        [a] => sum += (a as u64) << 8,
        _ => {}
    }
    while sum > 0xffff_ffff {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    sum as u32
}

/// The Internet checksum of `data` (e.g. an IPv4 header with its checksum field zeroed).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_bytes(0, data))
}

/// The sum of the TCP/UDP pseudo-header: source, destination, protocol, L4 length.
pub const fn pseudo_header_sum(src: u32, dst: u32, proto: u8, l4_len: u16) -> u32 {
    (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto as u32 + l4_len as u32
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_bytes(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_known_vector() {
        // A classic header from the Wikipedia IPv4 checksum example: checksum b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
        // Change the source to 10.0.0.1 incrementally and compare with a recompute.
        let new = update32(0xb861, 0xc0a8_0001, 0x0a00_0001);
        h[12..16].copy_from_slice(&[10, 0, 0, 1]);
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(new, checksum(&h));
    }

    #[test]
    fn rfc1624_section4_example() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn udp_zero_checksum_stays_zero_and_computed_zero_is_ffff() {
        let d = CsumDelta::ZERO.word(0x1234, 0x4321);
        assert_eq!(d.apply_udp(0), 0);
        // Find an update whose plain result is 0: apply to the checksum that yields 0.
        let hc = d.acc;
        assert_eq!(d.apply(hc), 0);
        assert_eq!(d.apply_udp(hc), 0xffff);
    }

    fn set_word(data: &mut [u8], at: usize, v: u16) {
        data[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// The plain RFC 1071 loop, to check the 32-bit-word version against.
    fn naive_sum(data: &[u8]) -> u16 {
        let mut sum: u64 = 0;
        for (i, b) in data.iter().enumerate() {
            sum += if i % 2 == 0 {
                (*b as u64) << 8
            } else {
                *b as u64
            };
        }
        fold((sum & 0xffff_ffff) as u32 + (sum >> 32) as u32)
    }

    proptest! {
        #[test]
        fn word_sum_equals_naive_sum(data in proptest::collection::vec(any::<u8>(), 0..200usize)) {
            prop_assert_eq!(fold(sum_bytes(0, &data)), naive_sum(&data));
        }

        /// Incremental update of any set of changed words equals a full recompute.
        #[test]
        fn incremental_equals_full_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 4..64usize),
            changes in proptest::collection::vec((any::<usize>(), any::<u16>()), 1..6),
        ) {
            if data.len() % 2 == 1 { data.pop(); }
            // Word 0 holds the checksum.
            set_word(&mut data, 0, 0);
            let hc = checksum(&data);
            set_word(&mut data, 0, hc);
            let words = data.len() / 2;
            prop_assume!(words > 1);
            let mut delta = CsumDelta::ZERO;
            for (at, new) in changes {
                let at = 2 * (1 + at % (words - 1));
                let old = u16::from_be_bytes([data[at], data[at + 1]]);
                delta = delta.word(old, new);
                set_word(&mut data, at, new);
            }
            let incremental = delta.apply(hc);
            set_word(&mut data, 0, 0);
            let full = checksum(&data);
            // 0x0000 and 0xffff both encode one's-complement zero: a receiver accepts
            // either; we only allow the difference for an all-zero body.
            if data.iter().all(|b| *b == 0) {
                prop_assert!(incremental == 0xffff || incremental == 0);
            } else {
                prop_assert_eq!(incremental, full);
            }
        }

        /// A 32-bit update equals two 16-bit updates and a recompute of a pseudo-header.
        #[test]
        fn pseudo_header_address_change(src in any::<u32>(), dst in any::<u32>(),
                                        new_src in any::<u32>(), len in 8u16..1500,
                                        payload in any::<u32>()) {
            let body = pseudo_header_sum(src, dst, 17, len) + (payload >> 16) + (payload & 0xffff);
            let hc = !fold(body);
            let body2 = pseudo_header_sum(new_src, dst, 17, len) + (payload >> 16) + (payload & 0xffff);
            prop_assert_eq!(update32(hc, src, new_src), !fold(body2));
            let two = update16(update16(hc, (src >> 16) as u16, (new_src >> 16) as u16),
                               src as u16, new_src as u16);
            prop_assert_eq!(two, update32(hc, src, new_src));
        }
    }
}

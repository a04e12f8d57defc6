//! Vocabulary types shared by the data path, the replicated state and the tools.
//!
//! Addresses are IPv4 in host representation (`u32`, `0x0a000001` is 10.0.0.1) so that
//! the same types work in eBPF, in the engine and in the replicated state.

/// Smallest and largest supported number of bucket bits (16 to 4096 buckets).
pub const MIN_BUCKET_BITS: u8 = 4;
/// See [`MIN_BUCKET_BITS`].
pub const MAX_BUCKET_BITS: u8 = 12;
/// Ports below this are never allocated to sessions (well-known ports).
pub const FIRST_NAT_PORT: u16 = 1024;

/// How many bits of the flow hash select a bucket: `B = 2^bits` buckets.
///
/// Validated on construction so that every `BucketBits` in the program is in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "u8", into = "u8"))]
pub struct BucketBits(u8);

impl BucketBits {
    /// The default: 256 buckets.
    pub const DEFAULT: BucketBits = BucketBits(8);

    /// Returns `None` when `bits` is outside `MIN_BUCKET_BITS..=MAX_BUCKET_BITS`.
    pub const fn new(bits: u8) -> Option<Self> {
        if bits >= MIN_BUCKET_BITS && bits <= MAX_BUCKET_BITS {
            Some(BucketBits(bits))
        } else {
            None
        }
    }

    /// The number of bits.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The number of buckets, `2^bits`.
    pub const fn count(self) -> u32 {
        1u32 << self.0
    }

    /// The mask that selects a bucket from a hash or a port.
    pub const fn mask(self) -> u32 {
        self.count() - 1
    }
}

impl Default for BucketBits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u8> for BucketBits {
    type Error = InvalidBucketBits;
    fn try_from(bits: u8) -> Result<Self, Self::Error> {
        BucketBits::new(bits).ok_or(InvalidBucketBits(bits))
    }
}

impl From<BucketBits> for u8 {
    fn from(b: BucketBits) -> u8 {
        b.0
    }
}

/// A bucket-bits value outside the supported range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidBucketBits(pub u8);

impl core::fmt::Display for InvalidBucketBits {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "bucket bits {} out of range: use {}..={}",
            self.0, MIN_BUCKET_BITS, MAX_BUCKET_BITS
        )
    }
}

/// A slice of the flow space; the unit of ownership and of steering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(transparent)]
pub struct BucketId(pub u16);

impl core::fmt::Display for BucketId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The L4 protocols the NAT translates. Values are the IP protocol numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum Proto {
    /// ICMP echo; the identifier stands in for the port.
    Icmp = 1,
    Tcp = 6,
    Udp = 17,
}

impl Proto {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The protocol for an IP protocol number, if the NAT translates it.
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(Proto::Icmp),
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// An IPv4 address and port (or ICMP identifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Endpoint {
    /// Host-order IPv4 address.
    pub ip: u32,
    pub port: u16,
}

impl Endpoint {
    pub const fn new(ip: u32, port: u16) -> Self {
        Endpoint { ip, port }
    }
}

impl core::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.ip.to_be_bytes();
        write!(f, "{a}.{b}.{c}.{d}:{}", self.port)
    }
}

/// Identifies a session by its inside endpoint: the mapping is endpoint-independent
/// (RFC 4787 REQ-1), so the destination is not part of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SessionKey {
    pub proto: Proto,
    pub inside: Endpoint,
}

/// The external side of a session: what the outside world sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ExternalKey {
    pub proto: Proto,
    pub external: Endpoint,
}

/// The compact replication record of one session: everything another worker needs to
/// keep translating it. Created by the bucket owner, committed through Raft.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SessionRecord {
    pub key: SessionKey,
    pub external: Endpoint,
    pub bucket: BucketId,
    /// Creation time, milliseconds since the Unix epoch, as seen by the owner.
    pub created_ms: u64,
}

impl SessionRecord {
    /// The reverse-index key of this session.
    pub const fn external_key(&self) -> ExternalKey {
        ExternalKey {
            proto: self.key.proto,
            external: self.external,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bits_range() {
        assert!(BucketBits::new(3).is_none());
        assert!(BucketBits::new(13).is_none());
        let b = BucketBits::new(8).unwrap();
        assert_eq!(b.count(), 256);
        assert_eq!(b.mask(), 255);
    }

    #[test]
    fn endpoint_display() {
        assert_eq!(Endpoint::new(0xc000_0201, 80).to_string(), "192.0.2.1:80");
    }
}

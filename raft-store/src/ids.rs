//! Identifier newtypes of the replicated state: node ids, bucket-table epochs, MAC
//! addresses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A cluster member's id: assigned once by the replicated counter on `RegisterNode` and
/// never reused (reusing a removed Raft id can split the cluster into two quorums). It is
/// also openraft's node id, so it must be `Copy + Ord + Display`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for NodeId {
    fn from(id: u64) -> Self {
        NodeId(id)
    }
}

impl From<NodeId> for u64 {
    fn from(id: NodeId) -> u64 {
        id.0
    }
}

impl FromStr for NodeId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(NodeId)
    }
}

/// Version of the bucket table. 0 means "no table yet"; every committed `AssignBuckets`
/// adds one, so steering consumers (the LBs) can tell a newer table from an older one and
/// a controller's compare-and-set (`base_epoch`) detects a concurrent change.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch of a state machine that has no bucket table yet.
    pub const NONE: Epoch = Epoch(0);

    /// The epoch after one more reassignment. Saturates instead of wrapping so that a
    /// (practically impossible) overflow can never make a newer table look older.
    pub const fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An Ethernet address, `"aa:bb:cc:dd:ee:ff"` in text. The LB rewrites the destination MAC
/// to the owner's data-plane MAC, so it is part of a member's replicated record.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A string that is not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like aa:bb:cc:dd:ee:ff")]
pub struct InvalidMacAddr(pub String);

impl FromStr for MacAddr {
    type Err = InvalidMacAddr;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidMacAddr(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac: MacAddr = "02:00:5e:10:00:0a".parse().unwrap();
        assert_eq!(mac.0, [2, 0, 0x5e, 0x10, 0, 0x0a]);
        assert_eq!(mac.to_string(), "02:00:5e:10:00:0a");
    }

    #[test]
    fn mac_rejects_garbage() {
        for bad in [
            "",
            "02:00:5e:10:00",
            "02:00:5e:10:00:0a:01",
            "zz:00:00:00:00:00",
            "123:0:0:0:0:0",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(err.to_string().contains("aa:bb:cc:dd:ee:ff"), "{err}");
        }
    }

    #[test]
    fn node_id_displays_as_number() {
        assert_eq!(NodeId(42).to_string(), "42");
        assert_eq!("7".parse::<NodeId>().unwrap(), NodeId(7));
    }

    #[test]
    fn epoch_saturates() {
        assert_eq!(Epoch(u64::MAX).next(), Epoch(u64::MAX));
        assert_eq!(Epoch::NONE.next(), Epoch(1));
    }
}

//! The bucket -> owner table: what the LBs steer by and what decides who may allocate.

use mfplane_core::{BucketBits, BucketId};
use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// Owner of every bucket, indexed by `BucketId`. Empty until the cluster is bootstrapped;
/// then exactly `bucket_bits.count()` entries, `None` for an unowned bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BucketTable {
    owners: Vec<Option<NodeId>>,
}

impl BucketTable {
    /// A table of `2^bits` unowned buckets.
    pub fn unowned(bits: BucketBits) -> Self {
        BucketTable {
            owners: vec![None; bits.count() as usize],
        }
    }

    /// Builds a table from a full owner list (tests and tools; the state machine changes
    /// its table only through `AssignBuckets`).
    pub fn from_owners(owners: Vec<Option<NodeId>>) -> Self {
        BucketTable { owners }
    }

    /// Number of buckets (0 before bootstrap).
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True before bootstrap.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// The owner of `bucket`, `None` when unowned or out of range.
    pub fn owner(&self, bucket: BucketId) -> Option<NodeId> {
        self.owners.get(usize::from(bucket.0)).copied().flatten()
    }

    /// Every bucket's owner, in bucket order.
    pub fn owners(&self) -> &[Option<NodeId>] {
        &self.owners
    }

    /// `(bucket, owner)` pairs in bucket order.
    pub fn iter(&self) -> impl Iterator<Item = (BucketId, Option<NodeId>)> + '_ {
        self.owners
            .iter()
            .enumerate()
            .map(|(i, owner)| (BucketId(bucket_index(i)), *owner))
    }

    /// The buckets `node` owns, in order.
    pub fn owned_by(&self, node: NodeId) -> impl Iterator<Item = BucketId> + '_ {
        self.iter()
            .filter(move |(_, owner)| *owner == Some(node))
            .map(|(bucket, _)| bucket)
    }

    /// How many buckets `node` owns.
    pub fn count_owned_by(&self, node: NodeId) -> u32 {
        let n = self.owners.iter().filter(|o| **o == Some(node)).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub(crate) fn set(&mut self, bucket: BucketId, owner: Option<NodeId>) {
        if let Some(slot) = self.owners.get_mut(usize::from(bucket.0)) {
            *slot = owner;
        }
    }
}

/// Bucket indexes fit in `u16` because `MAX_BUCKET_BITS` is 12; saturate defensively.
fn bucket_index(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

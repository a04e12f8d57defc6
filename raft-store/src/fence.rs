//! Allocation fences: how a bucket changes hands before its old owner's lease is over.
//!
//! A failover that waits out a dead owner's lease stalls every flow of its buckets for
//! that long. The leader instead moves the buckets of an owner it *suspects* (no
//! heartbeat acknowledged for a few heartbeats) at once, and fences them: the new owner
//! translates the buckets' committed sessions immediately, which needs no lease, but
//! opens no new session in them until the fence has passed. The suspect may be alive
//! behind a partition and still allocating under its lease; the fence outlasts that
//! lease, so two members never allocate in one bucket at the same time (DESIGN §2.3).
//!
//! Meanwhile the suspect's allocations still commit: until the new owner's first
//! session in the bucket commits, the state machine accepts the suspect's sessions in
//! it as well. The fence guarantees the new owner is not allocating then, so nothing
//! can clash, and a suspect that was only slow loses none of the connections it
//! opened just before the move.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{Epoch, NodeId};

/// A bucket that was taken from a suspected owner, as recorded in the replicated state.
///
/// The fence is measured by the new owner from the moment *it* applies the move: the
/// old owner's lease ends at most one lease after the move was proposed, which is
/// before any member can have applied it, so a fence of lease + margin from the local
/// apply covers it without comparing clocks across machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    /// The suspect the bucket was taken from.
    pub from: NodeId,
    /// The epoch of the bucket table that made the move; a later move of the bucket
    /// replaces or lifts the fence.
    pub since: Epoch,
    /// How long the new owner waits after applying the move before it allocates.
    pub length: Duration,
    /// Whether the new owner's first session in the bucket has committed. Until then
    /// the suspect's sessions in it are accepted too; from then on only the owner's.
    pub claimed: bool,
}

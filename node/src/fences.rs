//! This member's clock on the allocation fences of the buckets it owns.
//!
//! The replicated state says *that* a bucket was taken from a suspected owner and how
//! long its new owner must wait ([`Fence`]); only the new owner can say *from when*.
//! It counts from the moment it first sees the fence in its applied state, which is no
//! earlier than the moment it applied the move, so the wait covers the old owner's lease
//! without comparing clocks across machines (see `mfplane_raft_store::fence`).
//!
//! Every allocator of this member asks [`FenceClock::allocatable`] for the buckets it
//! may open sessions in, so the NAT engine and the synthetic load agree on the rule.

use std::collections::BTreeMap;
use std::sync::Mutex;

use mfplane_core::BucketId;
use mfplane_raft_store::{ClusterState, Epoch, Fence, NodeId};
use tokio::time::Instant;

/// When each fence this member has seen ends, by its own clock.
#[derive(Debug, Default)]
pub struct FenceClock {
    // std Mutex: short critical sections, never held across an await.
    ends: Mutex<BTreeMap<(BucketId, Epoch), Instant>>,
}

/// The buckets a member may allocate in right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocatable {
    /// Owned, and not behind a fence, in bucket order.
    pub buckets: Vec<BucketId>,
    /// Owned but fenced, in bucket order.
    pub fenced: Vec<BucketId>,
    /// When the next of those fences ends (the answer changes then, if nothing else
    /// changes first).
    pub next_fence_end: Option<Instant>,
}

impl FenceClock {
    /// The buckets `me` owns in `state` and may allocate in at `now`: those without a
    /// fence, or whose fence has run its length since this member first saw it.
    pub fn allocatable(&self, state: &ClusterState, me: NodeId, now: Instant) -> Allocatable {
        let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Allocatable::default();
        let mut live = BTreeMap::new();
        for bucket in state.buckets().owned_by(me) {
            let Some(Fence { since, length, .. }) = state.fence(bucket) else {
                out.buckets.push(bucket);
                continue;
            };
            let end = ends
                .get(&(bucket, since))
                .copied()
                .unwrap_or_else(|| now + length);
            live.insert((bucket, since), end);
            if now < end {
                out.fenced.push(bucket);
                out.next_fence_end = Some(out.next_fence_end.map_or(end, |e| e.min(end)));
            } else {
                out.buckets.push(bucket);
            }
        }
        // Forget fences of buckets that moved on: at most one entry per owned bucket.
        *ends = live;
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use mfplane_core::{BucketBits, FlowHashKey};
    use mfplane_raft_store::{ClusterConfig, Command, MacAddr, MemberInfo, Response};

    use super::*;

    const FENCE: Duration = Duration::from_millis(500);

    /// Two members, n1 owning every even bucket and n2 every odd one, then a failover
    /// of `buckets` to n2 with n1 suspected.
    fn state_after_failover(buckets: &[u16]) -> ClusterState {
        let mut st = ClusterState::default();
        let bits = BucketBits::new(4).unwrap();
        let mut log = vec![Command::Bootstrap {
            config: ClusterConfig {
                bucket_bits: bits,
                external_ips: vec![Ipv4Addr::new(192, 0, 2, 1)],
                flow_hash_key: FlowHashKey::default(),
            },
        }];
        for name in ["n1", "n2"] {
            log.push(Command::RegisterNode {
                info: MemberInfo {
                    name: name.into(),
                    raft_addr: format!("{name}:7001"),
                    data_ip: Ipv4Addr::new(10, 0, 0, 1),
                    data_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                },
            });
        }
        log.push(Command::AssignBuckets {
            base_epoch: Epoch(0),
            moves: (0..16)
                .map(|b| (BucketId(b), Some(NodeId(1 + u64::from(b % 2)))))
                .collect(),
        });
        log.push(Command::FailOverBuckets {
            base_epoch: Epoch(1),
            moves: buckets
                .iter()
                .map(|&b| (BucketId(b), Some(NodeId(2))))
                .collect(),
            suspects: vec![NodeId(1)],
            fence: FENCE,
        });
        for cmd in log {
            let r = st.apply(cmd, None);
            assert!(!matches!(r, Response::Rejected(_)), "{r:?}");
        }
        st
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_bucket_opens_its_fence_length_after_it_was_first_seen() {
        let st = state_after_failover(&[0, 2]);
        let clock = FenceClock::default();
        let t0 = Instant::now();
        let a = clock.allocatable(&st, NodeId(2), t0);
        assert_eq!(a.fenced, vec![BucketId(0), BucketId(2)]);
        assert_eq!(a.buckets.len(), 8, "the odd buckets n2 always had are free");
        assert_eq!(a.next_fence_end, Some(t0 + FENCE));

        // Looking again later does not restart the fence.
        tokio::time::advance(FENCE - Duration::from_millis(1)).await;
        let a = clock.allocatable(&st, NodeId(2), Instant::now());
        assert_eq!(a.fenced.len(), 2);
        tokio::time::advance(Duration::from_millis(1)).await;
        let a = clock.allocatable(&st, NodeId(2), Instant::now());
        assert!(a.fenced.is_empty());
        assert_eq!(a.buckets.len(), 10);
        assert_eq!(a.next_fence_end, None);

        // The suspect owns what it was not moved from, and no fence is its concern.
        let a = clock.allocatable(&st, NodeId(1), Instant::now());
        assert_eq!(a.buckets.len(), 6);
        assert!(a.fenced.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_that_sees_a_fence_late_waits_the_whole_length_from_then() {
        // A restarted member, or one that installed a snapshot, cannot know when it
        // applied the move: counting from now is the safe side.
        let st = state_after_failover(&[4]);
        tokio::time::advance(FENCE * 10).await;
        let clock = FenceClock::default();
        let a = clock.allocatable(&st, NodeId(2), Instant::now());
        assert_eq!(a.fenced, vec![BucketId(4)]);
    }
}

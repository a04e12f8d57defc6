//! Property tests over random command sequences: the invariants of DESIGN §2.4 that the
//! state machine owns (no double allocation, consistent indexes, determinism).
#![allow(clippy::unwrap_used)] // reason: helpers of tests; a failed unwrap is a failed test.

mod common;

use std::collections::HashSet;

use common::*;
use mfplane_core::{BucketId, Endpoint, Proto, SessionRecord};
use mfplane_raft_store::{ClusterState, Command, Epoch, NodeId};
use proptest::prelude::*;

const BITS: u8 = 4;

/// Commands over a deliberately tiny space (few inside hosts, few ports, 3 nodes) so
/// that collisions, remaps, stale epochs and ownership conflicts are frequent.
fn arb_command() -> impl Strategy<Value = Command> {
    let record = (
        0u32..6,
        0u16..3,
        0usize..3,
        0u16..48,
        0u16..3,
        any::<bool>(),
    )
        .prop_map(|(host, port, ip, ext_port, proto, honest_bucket)| {
            let ext_port = 1000 + ext_port; // some below FIRST_NAT_PORT
            let ips = [
                u32::from(EXT_A),
                u32::from(EXT_B),
                u32::from(std::net::Ipv4Addr::new(198, 51, 100, 9)),
            ];
            let proto = [Proto::Udp, Proto::Tcp, Proto::Icmp][usize::from(proto)];
            let bucket = if honest_bucket {
                ext_port & 0xf
            } else {
                (ext_port + 1) & 0xf
            };
            SessionRecord {
                key: key(proto, 0x0a00_0000 + host, 4000 + port),
                external: Endpoint::new(ips[ip], ext_port),
                bucket: BucketId(bucket),
                created_ms: u64::from(host),
            }
        });
    let node = (0u64..5).prop_map(NodeId);
    prop_oneof![
        4 => (node.clone(), 0u64..4, prop::collection::vec(record.clone(), 0..12))
            .prop_map(|(owner, epoch, sessions)| Command::CreateSessions {
                owner,
                epoch: Epoch(epoch),
                sessions,
            }),
        2 => (node.clone(), prop::collection::vec(record, 0..8)).prop_map(|(owner, rs)| {
            Command::RemoveSessions {
                owner,
                keys: rs.into_iter().map(|r| r.key).collect(),
            }
        }),
        2 => (0u64..4, prop::collection::vec((0u16..18, prop::option::of(0u64..5)), 0..6))
            .prop_map(|(base, moves)| Command::AssignBuckets {
                base_epoch: Epoch(base),
                moves: moves
                    .into_iter()
                    .map(|(b, n)| (BucketId(b), n.map(NodeId)))
                    .collect(),
            }),
        1 => (0u64..4, prop::collection::vec((0u16..18, prop::option::of(0u64..5)), 0..6), prop::collection::vec(0u64..5, 0..3), 0u64..5000)
            .prop_map(|(base, moves, suspects, fence_ms)| Command::FailOverBuckets {
                base_epoch: Epoch(base),
                moves: moves
                    .into_iter()
                    .map(|(b, n)| (BucketId(b), n.map(NodeId)))
                    .collect(),
                suspects: suspects.into_iter().map(NodeId).collect(),
                fence: std::time::Duration::from_millis(fence_ms),
            }),
        1 => (0u8..4).prop_map(|i| Command::RegisterNode {
            info: member(&format!("n{i}")),
        }),
        1 => (node.clone(), any::<bool>())
            .prop_map(|(node, draining)| Command::SetDraining { node, draining }),
        1 => node.prop_map(|node| Command::RetireNode { node }),
    ]
}

fn check_invariants(st: &ClusterState) -> Result<(), TestCaseError> {
    let mut externals = HashSet::new();
    for r in st.sessions() {
        prop_assert!(
            externals.insert(r.external_key()),
            "external endpoint {} used twice",
            r.external
        );
        prop_assert_eq!(st.session_by_external(&r.external_key()), Some(r));
        prop_assert!(r.external.port >= mfplane_core::FIRST_NAT_PORT);
        prop_assert_eq!(u32::from(r.bucket.0), u32::from(r.external.port) & 0xf);
    }
    prop_assert_eq!(externals.len() as u64, st.session_count());
    st.check_consistency().map_err(TestCaseError::fail)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_command(cmds in prop::collection::vec(arb_command(), 0..60)) {
        let mut st = setup(BITS);
        for c in cmds {
            st.apply(c, None);
            check_invariants(&st)?;
        }
    }

    #[test]
    fn same_log_same_state_also_through_a_snapshot(
        cmds in prop::collection::vec(arb_command(), 0..60),
        cut in 0usize..60,
    ) {
        let mut a = setup(BITS);
        let mut b = setup(BITS);
        let cut = cut.min(cmds.len());
        let mut ra = Vec::new();
        let mut rb = Vec::new();
        for c in &cmds[..cut] {
            ra.push(a.apply(c.clone(), None));
            rb.push(b.apply(c.clone(), Some(&mut Vec::new())));
        }
        // b restarts from a snapshot of itself half-way.
        let mut b = ClusterState::from_bytes(&b.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(a.state_hash(), b.state_hash());
        for c in &cmds[cut..] {
            ra.push(a.apply(c.clone(), None));
            rb.push(b.apply(c.clone(), None));
        }
        prop_assert_eq!(ra, rb);
        prop_assert_eq!(a.state_hash(), b.state_hash());
        prop_assert_eq!(&a, &b);
    }
}

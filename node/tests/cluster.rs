//! Three `mfplane-node` processes on loopback: 100k sessions proposed through the real
//! batching path, the leader killed with SIGKILL and restarted; then every session is
//! on every member, no external endpoint is used twice, the dead member's buckets moved
//! at once behind a fence of lease + margin, and the table is balanced again once it is
//! back.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Cluster, LEASE, LEASE_MARGIN, wait_until};
use mfplane_node::synthetic::synthetic_key;
use mfplane_proto::sessions::{ListRequest, sessions_client::SessionsClient};

const SESSIONS: u64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_loses_no_session_and_moves_buckets_only_after_the_lease() {
    let mut c = Cluster::new(41, 24100);
    c.start_cluster(3).await;

    // 1. 100k sessions, a third through each member, concurrently.
    let per = SESSIONS / 3;
    let counts = [per + SESSIONS % 3, per, per];
    let bases = [0u64, 1_000_000, 2_000_000];
    let (r0, r1, r2) = tokio::join!(
        c.load(0, counts[0], bases[0]),
        c.load(1, counts[1], bases[1]),
        c.load(2, counts[2], bases[2])
    );
    for (i, r) in [r0, r1, r2].iter().enumerate() {
        assert_eq!(
            (r.accepted, r.rejected, r.failed),
            (counts[i], 0, 0),
            "load through n{}: {r:?}",
            i + 1
        );
        println!(
            "n{}: {} sessions/s, p50 {:.1} ms, p99 {:.1} ms",
            i + 1,
            r.sessions_per_sec as u64,
            r.p50_ms,
            r.p99_ms
        );
    }
    let before = c.wait_converged(&[0, 1, 2], Duration::from_secs(60)).await;
    assert_eq!(before.sessions, SESSIONS);

    // 2. Kill the leader.
    let leader = c.leader_index(&[0, 1, 2]).await.expect("a leader");
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let dead_id = c.state(leader).await.unwrap().node;
    let dead_buckets = c.state(leader).await.unwrap().buckets_owned;
    assert!(dead_buckets > 0);
    let killed_at = Instant::now();
    c.kill(leader);

    // 3. While the cluster fails over, keep proposing through a survivor.
    let during = tokio::spawn({
        let addrs = c.addrs(survivors[0]).http;
        async move {
            let path = "/debug/synthetic-sessions?count=5000&key_base=3000000&deadline_ms=60000";
            common::http(&addrs, "POST", path).await
        }
    });

    // The dead member's buckets move as soon as the new leader finds it silent, fenced:
    // its lease may still have been running, so the new owners translate its sessions
    // at once but allocate in its buckets only after lease + margin.
    wait_until(
        Duration::from_secs(60),
        "the dead leader's buckets to move",
        || async {
            let Some(st) = c.status(survivors[0]).await else {
                return false;
            };
            st.members
                .iter()
                .find(|m| m.node_id == dead_id)
                .is_some_and(|m| m.buckets == 0)
        },
    )
    .await;
    let waited = killed_at.elapsed();
    let new_leader = c.leader_index(&survivors).await.expect("a new leader");
    let leases = c.leases(new_leader).await.unwrap();
    let failover = leases
        .failovers
        .iter()
        .find(|f| f.node == dead_id)
        .expect("the new leader recorded the failover");
    assert!(
        failover.fenced,
        "a silent owner's buckets move behind a fence: {failover:?}"
    );
    assert_eq!(
        (
            u128::from(failover.lease_ms),
            u128::from(failover.margin_ms)
        ),
        (LEASE.as_millis(), LEASE_MARGIN.as_millis()),
        "the fence is the cluster's lease + margin"
    );
    println!("buckets of the dead leader moved {waited:?} after the kill ({failover:?})");

    let during: common::LoadReport =
        serde_json::from_str(&during.await.unwrap().expect("load during failover")).unwrap();
    assert_eq!(during.failed, 0, "{during:?}");
    assert_eq!(during.rejected, 0, "{during:?}");

    // 4. Restart the dead member on its data directory: it rejoins with its state.
    c.start(leader, &[]);
    c.wait_balanced(3).await;
    let after = c.wait_converged(&[0, 1, 2], Duration::from_secs(90)).await;
    assert_eq!(after.sessions, SESSIONS + during.accepted);
    assert_eq!(
        c.state(leader).await.unwrap().node,
        dead_id,
        "the restarted member kept its id"
    );

    // 5. Every member holds every session, each external endpoint once.
    for i in 0..3 {
        let ch = common::channel(&c.addrs(i).grpc).await.unwrap();
        let mut client = SessionsClient::new(ch).max_decoding_message_size(64 << 20);
        let (mut token, mut inside, mut external) =
            (String::new(), BTreeSet::new(), BTreeSet::new());
        loop {
            let page = client
                .list(ListRequest {
                    limit: 10_000,
                    page_token: token,
                    owner: 0,
                })
                .await
                .unwrap()
                .into_inner();
            for s in &page.sessions {
                assert!(
                    inside.insert((s.proto.clone(), s.inside_ip.clone(), s.inside_port)),
                    "key listed twice: {s:?}"
                );
                assert!(
                    external.insert((s.proto.clone(), s.external_ip.clone(), s.external_port)),
                    "external endpoint used twice: {s:?}"
                );
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(inside.len() as u64, after.sessions, "n{}", i + 1);
        for (base, count) in bases.iter().zip(counts) {
            for k in (0..count).step_by(97) {
                let key = synthetic_key(base + k);
                let ip = std::net::Ipv4Addr::from(key.inside.ip).to_string();
                assert!(
                    inside.contains(&("udp".to_string(), ip, u32::from(key.inside.port))),
                    "n{} lacks session {key:?}",
                    i + 1
                );
            }
        }
    }
}

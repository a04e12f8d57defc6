//! Kill -9 members again and again while the others propose sessions;
//! after every restart the member's log and state must match the others' exactly
//! (same applied log id, same state hash), and nothing acknowledged may be lost.

mod common;

use std::time::Duration;

use common::Cluster;

const ROUNDS: usize = 4;
const PER_ROUND: u64 = 25_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_members_come_back_with_the_same_log_and_state() {
    let mut c = Cluster::new(42, 24200);
    c.start_cluster(3).await;
    let mut acknowledged = 0u64;
    for round in 0..ROUNDS {
        // Alternate between killing the leader and killing a follower.
        let leader = c.leader_index(&[0, 1, 2]).await.expect("a leader");
        let victim = if round % 2 == 0 {
            leader
        } else {
            (leader + 1) % 3
        };
        let others: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
        let base = 10_000_000 * (round as u64 + 1);
        let loads = others.iter().enumerate().map(|(k, &i)| {
            let addr = c.addrs(i).http;
            // Few callers with small chunks keep the round going for seconds even on an
            // idle machine, so the kill always lands mid-load (at full speed a round can
            // finish between two polls of the committed count).
            let path = format!(
                "/debug/synthetic-sessions?count={PER_ROUND}&key_base={}&deadline_ms=60000&concurrency=2&chunk=16",
                base + k as u64 * 1_000_000
            );
            tokio::spawn(async move { common::http(&addr, "POST", &path).await })
        });
        let loads: Vec<_> = loads.collect();
        // Kill in the middle of the proposing: once a quarter of the round committed.
        let target = acknowledged + PER_ROUND / 2;
        common::wait_until(
            Duration::from_secs(60),
            "the round's load to get going",
            || async {
                c.state(others[0])
                    .await
                    .is_some_and(|s| s.sessions >= target)
            },
        )
        .await;
        let committed_at_kill = c.state(others[0]).await.map(|s| s.sessions).unwrap_or(0);
        c.kill(victim);
        let mut retries = 0;
        for l in loads {
            let body = l.await.unwrap().expect("load finished");
            let r: common::LoadReport = serde_json::from_str(&body).unwrap();
            assert_eq!(r.failed, 0, "round {round}: {r:?}");
            acknowledged += r.accepted;
            retries += r.retries;
        }
        // The kill must land in the middle of the proposing, not after it.
        assert!(
            committed_at_kill < acknowledged,
            "round {round}: the load had finished before the kill; shorten the delay"
        );
        c.start(victim, &[]);
        let s = c.wait_converged(&[0, 1, 2], Duration::from_secs(90)).await;
        let victim_state = c.state(victim).await.unwrap();
        assert_eq!(
            victim_state.applied_log_id, s.applied_log_id,
            "round {round}: log of the restarted member"
        );
        assert_eq!(
            victim_state.state_hash, s.state_hash,
            "round {round}: state of the restarted member"
        );
        assert_eq!(
            s.sessions, acknowledged,
            "round {round}: every acknowledged session is committed, nothing else"
        );
        println!(
            "round {round}: killed n{} ({}) at {committed_at_kill} of {acknowledged} sessions ({retries} retried chunks), state {}",
            victim + 1,
            if victim == leader {
                "leader"
            } else {
                "follower"
            },
            s.state_hash
        );
    }
}

//! Throughput of the replicated-state hot paths, printed as figures (not a timed test).
//!
//! `cargo bench -p mfplane-raft-store --bench apply [-- SESSIONS [BATCH]]`
//!
//! - apply of `CreateSessions` batches to `ClusterState` (no subscribers / with events),
//! - the same through openraft's `RaftStateMachine::apply` with one subscriber,
//! - snapshot encode and decode of the resulting state,
//! - Raft log appends on sled (one durable flush per append call) and in memory.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use mfplane_core::{BucketBits, BucketId, Endpoint, FlowHashKey, Proto, SessionKey, SessionRecord};
use mfplane_raft_store::{
    ClusterConfig, ClusterState, Command, Epoch, MacAddr, MemberInfo, MemoryBackend, NodeId,
    Runtime, TypeConfig, typ,
};
use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogStorageExt, RaftStateMachine};

const BITS: u8 = 8;
const EXTERNAL_IPS: u32 = 16;

fn setup_commands() -> Vec<Command> {
    vec![
        Command::Bootstrap {
            config: ClusterConfig {
                bucket_bits: BucketBits::new(BITS).unwrap_or_default(),
                external_ips: (0..EXTERNAL_IPS)
                    .map(|i| Ipv4Addr::from(0xc000_0200 + i))
                    .collect(),
                flow_hash_key: FlowHashKey::DEFAULT,
            },
        },
        Command::RegisterNode {
            info: MemberInfo {
                name: "bench".into(),
                raft_addr: "127.0.0.1:7000".into(),
                data_ip: Ipv4Addr::LOCALHOST,
                data_mac: MacAddr::default(),
            },
        },
        Command::AssignBuckets {
            base_epoch: Epoch(0),
            moves: (0..1u16 << BITS)
                .map(|b| (BucketId(b), Some(NodeId(1))))
                .collect(),
        },
    ]
}

/// Session `i`: a distinct inside endpoint and a distinct external endpoint.
fn record(i: u32) -> SessionRecord {
    let ip = 0xc000_0200 + i % EXTERNAL_IPS;
    let port = 1024 + (i / EXTERNAL_IPS) as u16;
    SessionRecord {
        key: SessionKey {
            proto: Proto::Udp,
            inside: Endpoint::new(0x0a00_0000 + i, 40000),
        },
        external: Endpoint::new(ip, port),
        bucket: BucketId(port & ((1 << BITS) - 1)),
        created_ms: 1_700_000_000_000 + u64::from(i),
    }
}

fn batches(total: u32, batch: u32) -> Vec<Command> {
    (0..total.div_ceil(batch))
        .map(|b| Command::CreateSessions {
            owner: NodeId(1),
            epoch: Epoch(1),
            sessions: (b * batch..((b + 1) * batch).min(total))
                .map(record)
                .collect(),
        })
        .collect()
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:>12.0}/s", n as f64 / d.as_secs_f64())
}

fn bench_state(total: u32, batch: u32, events: bool) -> ClusterState {
    let mut st = ClusterState::default();
    for c in setup_commands() {
        st.apply(c, None);
    }
    let cmds = batches(total, batch);
    let mut sink = Vec::new();
    let t = Instant::now();
    for c in cmds {
        if events {
            st.apply(c, Some(&mut sink));
            sink.clear();
        } else {
            st.apply(c, None);
        }
    }
    let d = t.elapsed();
    println!(
        "ClusterState::apply  batch {batch:>5}  events {events:<5}  {} sessions  {}  ({:.0} ns/session)",
        st.session_count(),
        rate(st.session_count(), d),
        d.as_nanos() as f64 / f64::from(total)
    );
    st
}

fn entries(cmds: Vec<Command>, first: u64) -> Vec<typ::Entry> {
    cmds.into_iter()
        .enumerate()
        .map(|(i, c)| {
            typ::Entry::new_normal(
                openraft::testing::log_id::<TypeConfig>(1, NodeId(1), first + i as u64),
                c,
            )
        })
        .collect()
}

async fn bench_sm(total: u32, batch: u32) {
    let (_log, mut sm) = mfplane_raft_store::open_memory(&MemoryBackend::new());
    let mut sub = sm.subscribe();
    let drain = tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok(ev) = sub.recv().await {
            if let mfplane_raft_store::Applied::SessionsCreated(v) = ev {
                n += v.len();
            }
        }
        n
    });
    let setup: Vec<std::io::Result<_>> = entries(setup_commands(), 1)
        .into_iter()
        .map(|e| Ok((e, None)))
        .collect();
    let _ = sm.apply(futures::stream::iter(setup)).await;
    let items: Vec<std::io::Result<_>> = entries(batches(total, batch), 4)
        .into_iter()
        .map(|e| Ok((e, None)))
        .collect();
    let t = Instant::now();
    if let Err(e) = sm.apply(futures::stream::iter(items)).await {
        println!("apply failed: {e}");
    }
    let d = t.elapsed();
    let n = sm.state().session_count();
    drop(sm);
    let _ = drain.await;
    println!(
        "StateMachineStore::apply (1 subscriber)  batch {batch:>5}  {n} sessions  {}",
        rate(n, d)
    );
}

fn bench_snapshot(st: &ClusterState) {
    let t = Instant::now();
    let bytes = match st.to_bytes() {
        Ok(b) => b,
        Err(e) => return println!("snapshot encode failed: {e}"),
    };
    let enc = t.elapsed();
    let t = Instant::now();
    let back = ClusterState::from_bytes(&bytes);
    let dec = t.elapsed();
    println!(
        "snapshot of {} sessions: {} bytes, encode {:?}, decode+index {:?}, round trip ok: {}",
        st.session_count(),
        bytes.len(),
        enc,
        dec,
        back.map(|b| b.state_hash() == st.state_hash())
            .unwrap_or(false)
    );
}

async fn bench_log(
    name: &str,
    mut log: mfplane_raft_store::LogStore,
    appends: u32,
    per_append: u32,
    batch: u32,
) {
    let cmds = batches(appends * per_append * batch, batch);
    let all = entries(cmds, 1);
    let t = Instant::now();
    for chunk in all.chunks(per_append as usize) {
        if let Err(e) = log.blocking_append(chunk.to_vec()).await {
            return println!("append failed: {e}");
        }
    }
    let d = t.elapsed();
    println!(
        "{name} log append  {appends} appends x {per_append} entries x {batch} sessions: {:.2} ms/append, {} entries, {} sessions",
        d.as_secs_f64() * 1000.0 / f64::from(appends),
        rate(u64::from(appends * per_append), d),
        rate(u64::from(appends * per_append * batch), d)
    );
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let total: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let batch: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let total = total.min(EXTERNAL_IPS * (65536 - 1024));

    let st = bench_state(total, batch, false);
    bench_state(total, batch, true);
    bench_snapshot(&st);

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return println!("no tokio runtime: {e}"),
    };
    rt.block_on(Runtime::scope(1, async {
        bench_sm(total, batch).await;
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => return println!("no temp dir: {e}"),
        };
        match mfplane_raft_store::open_sled(dir.path().join("data")) {
            Ok((log, _sm)) => {
                bench_log("sled  ", log, 200, 1, batch).await;
            }
            Err(e) => println!("sled open failed: {e}"),
        }
        match mfplane_raft_store::open_sled(dir.path().join("data2")) {
            Ok((log, _sm)) => bench_log("sled  ", log, 50, 16, batch).await,
            Err(e) => println!("sled open failed: {e}"),
        }
        let (log, _sm) = mfplane_raft_store::open_memory(&MemoryBackend::new());
        bench_log("memory", log, 200, 1, batch).await;
    }));
}

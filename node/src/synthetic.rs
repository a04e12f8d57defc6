//! Synthetic sessions, for tests, demos and the benchmark: allocated the way the data
//! path allocates (a free external endpoint in a bucket this member owns and may
//! allocate in, only while it holds a lease) and proposed through the real
//! [`SessionProposer`], by many concurrent callers so that group commit forms real
//! batches.
//!
//! Served on the HTTP port only with `--debug-synthetic-load`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use mfplane_core::{
    BucketBits, BucketId, Endpoint, ExternalKey, FIRST_NAT_PORT, Proto, SessionKey, SessionRecord,
};
use mfplane_raft_store::ClusterState;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::member::Member;
use crate::proposer::{Outcome, SessionProposer};

/// A load request.
#[derive(Debug, Clone, Deserialize)]
pub struct LoadRequest {
    /// Sessions to create.
    pub count: u64,
    /// First synthetic inside-endpoint index: runs with disjoint ranges create distinct
    /// sessions; repeating a range re-proposes the same sessions.
    #[serde(default)]
    pub key_base: u64,
    /// Sessions per `propose` call.
    #[serde(default = "default_chunk")]
    pub chunk: usize,
    /// Concurrent callers.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Give up retrying failed chunks after this many milliseconds.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
}

fn default_chunk() -> usize {
    64
}
fn default_concurrency() -> usize {
    64
}
fn default_deadline_ms() -> u64 {
    60_000
}

/// What a load run achieved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    pub requested: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Sessions whose chunk still failed at the deadline (fate unknown).
    pub failed: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    pub elapsed_ms: u64,
    pub sessions_per_sec: f64,
    /// Latency of one `propose` call (enqueue to commit), over successful calls.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Keys of rejected sessions with the reason (at most 20, for diagnosis).
    pub sample_rejections: Vec<String>,
}

/// Hands out free external endpoints in the buckets this member owns.
#[derive(Debug, Default)]
pub struct Allocator {
    /// Next port index to try per bucket: port = bucket + k * B over each external IP.
    cursor: std::collections::BTreeMap<BucketId, u64>,
    /// Endpoints handed out but maybe not committed yet.
    reserved: BTreeSet<(u32, u16)>,
    next_bucket: usize,
}

impl Allocator {
    /// Allocates a record for each of `keys` under one read of the state, or `None`
    /// (allocating nothing) when the owned buckets cannot hold them all.
    fn allocate_all(
        &mut self,
        member: &Member,
        keys: impl Iterator<Item = SessionKey>,
        created_ms: u64,
    ) -> Option<Vec<SessionRecord>> {
        let state = member.state();
        let config = state.config()?;
        let ips: Vec<u32> = config
            .external_ips
            .iter()
            .map(|ip| u32::from(*ip))
            .collect();
        let owned = member
            .fences
            .allocatable(&state, member.id, Instant::now())
            .buckets;
        if owned.is_empty() || ips.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(keys.size_hint().0);
        for key in keys {
            match self.allocate(&state, config.bucket_bits, &ips, &owned, key, created_ms) {
                Some(r) => out.push(r),
                None => {
                    for r in &out {
                        self.release(r);
                    }
                    return None;
                }
            }
        }
        Some(out)
    }

    /// Allocates one record for `key` in one of `owned`, or `None` when all are full.
    fn allocate(
        &mut self,
        state: &ClusterState,
        bits: BucketBits,
        ips: &[u32],
        owned: &[BucketId],
        key: SessionKey,
        created_ms: u64,
    ) -> Option<SessionRecord> {
        let per_ip = u64::from((65_536u32 >> bits.get()).max(1));
        for _ in 0..owned.len() {
            let bucket = owned[self.next_bucket % owned.len()];
            self.next_bucket = self.next_bucket.wrapping_add(1);
            let cursor = self.cursor.entry(bucket).or_insert(0);
            let slots = per_ip * ips.len() as u64;
            while *cursor < slots {
                let k = *cursor;
                *cursor += 1;
                let ip = ips[(k / per_ip) as usize];
                let Ok(port) =
                    u16::try_from(u64::from(bucket.0) + (k % per_ip) * u64::from(bits.count()))
                else {
                    continue;
                };
                if port < FIRST_NAT_PORT || self.reserved.contains(&(ip, port)) {
                    continue;
                }
                let external = Endpoint::new(ip, port);
                if state
                    .session_by_external(&ExternalKey {
                        proto: key.proto,
                        external,
                    })
                    .is_some()
                {
                    continue;
                }
                self.reserved.insert((ip, port));
                return Some(SessionRecord {
                    key,
                    external,
                    bucket,
                    created_ms,
                });
            }
        }
        None
    }

    fn release(&mut self, r: &SessionRecord) {
        self.reserved.remove(&(r.external.ip, r.external.port));
    }
}

/// The synthetic inside endpoint number `i`: 10.x.y.z, ports 1024..=65023.
pub fn synthetic_key(i: u64) -> SessionKey {
    let ip = 0x0a00_0000u32 | u32::try_from((i / 64_000) & 0x00ff_ffff).unwrap_or(0);
    let port = 1024 + u16::try_from(i % 64_000).unwrap_or(0);
    SessionKey {
        proto: Proto::Udp,
        inside: Endpoint::new(ip, port),
    }
}

/// Runs a load: allocates `count` sessions and proposes them through `proposer`.
///
/// # Errors
/// [`Error::InvalidRequest`] for nonsensical parameters.
pub async fn run(
    member: Arc<Member>,
    proposer: SessionProposer,
    alloc: Arc<Mutex<Allocator>>,
    req: LoadRequest,
) -> Result<LoadReport> {
    if req.count == 0
        || req.count > 10_000_000
        || req.chunk == 0
        || req.chunk > 65_536
        || req.concurrency == 0
        || req.concurrency > 4096
    {
        return Err(Error::InvalidRequest(
            "count must be 1..=10000000, chunk 1..=65536, concurrency 1..=4096".into(),
        ));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_millis(req.deadline_ms);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..req.concurrency {
        let (member, proposer, alloc, next, req) = (
            member.clone(),
            proposer.clone(),
            alloc.clone(),
            next.clone(),
            req.clone(),
        );
        workers.push(tokio::spawn(async move {
            worker(member, proposer, alloc, next, req, deadline).await
        }));
    }
    let mut report = LoadReport {
        requested: req.count,
        ..Default::default()
    };
    let mut latencies = Vec::new();
    for w in workers {
        if let Ok((r, lat)) = w.await {
            report.accepted += r.accepted;
            report.rejected += r.rejected;
            report.failed += r.failed;
            report.retries += r.retries;
            if report.sample_rejections.len() < 20 {
                report
                    .sample_rejections
                    .extend(r.sample_rejections.into_iter().take(20));
            }
            latencies.extend(lat);
        }
    }
    let elapsed = started.elapsed();
    report.elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    #[allow(clippy::cast_precision_loss, reason = "a rate for people")]
    {
        report.sessions_per_sec = report.accepted as f64 / elapsed.as_secs_f64().max(1e-9);
    }
    latencies.sort_unstable();
    report.p50_ms = percentile(&latencies, 0.50);
    report.p99_ms = percentile(&latencies, 0.99);
    Ok(report)
}

/// The `q` quantile of sorted durations, in milliseconds.
pub fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

async fn worker(
    member: Arc<Member>,
    proposer: SessionProposer,
    alloc: Arc<Mutex<Allocator>>,
    next: Arc<std::sync::atomic::AtomicU64>,
    req: LoadRequest,
    deadline: Instant,
) -> (LoadReport, Vec<Duration>) {
    use std::sync::atomic::Ordering;
    let mut report = LoadReport::default();
    let mut latencies = Vec::new();
    let created_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    loop {
        let start = next.fetch_add(req.chunk as u64, Ordering::Relaxed);
        if start >= req.count {
            break;
        }
        let end = (start + req.chunk as u64).min(req.count);
        let records;
        // Wait (bounded) for buckets and a lease before allocating.
        loop {
            if member.lease_valid() {
                let keys = (start..end).map(|i| synthetic_key(req.key_base + i));
                if let Some(r) = alloc.lock().await.allocate_all(&member, keys, created_ms) {
                    records = r;
                    break;
                }
            }
            if Instant::now() >= deadline {
                report.failed += end - start;
                return (report, latencies);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        loop {
            let t = Instant::now();
            match proposer.propose(records.clone()).await {
                Ok(outcomes) => {
                    latencies.push(t.elapsed());
                    let mut a = alloc.lock().await;
                    for (rec, o) in records.iter().zip(outcomes) {
                        a.release(rec);
                        match o {
                            Outcome::Accepted => report.accepted += 1,
                            Outcome::Rejected(why) => {
                                report.rejected += 1;
                                if report.sample_rejections.len() < 20 {
                                    report.sample_rejections.push(format!(
                                        "{:?} {}: {why}",
                                        rec.key.proto, rec.key.inside
                                    ));
                                }
                            }
                        }
                    }
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    report.retries += 1;
                    tracing::debug!(error = %e, "synthetic chunk failed; retrying the same sessions");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => {
                    report.failed += records.len() as u64;
                    let mut a = alloc.lock().await;
                    for r in &records {
                        a.release(r);
                    }
                    break;
                }
            }
        }
    }
    (report, latencies)
}

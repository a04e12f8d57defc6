//! Group commit of session creations and removals.
//!
//! The data path allocates sessions one at a time; proposing each as its own Raft entry
//! would cap the cluster at a few thousand sessions per second. The [`SessionProposer`]
//! collects records from any number of callers into one `CreateSessions` entry, flushed
//! when it holds `batch_max` records or its oldest record has waited `batch_delay`, and
//! keeps several batches in flight so replication of one overlaps the filling of the
//! next. When all in-flight slots are taken, the next batch keeps filling (up to
//! `batch_max`; one caller's records are never split, so a batch may exceed it by one
//! call's worth) until a slot frees, so batches grow with load. Each caller gets the outcome of each of its own records back.

use std::collections::BTreeMap;
use std::sync::Arc;

use mfplane_core::{SessionKey, SessionRecord};
use mfplane_raft_store::{Command, Rejection, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::member::Member;

/// Batches allowed in flight at once: enough to keep the pipeline full at a few
/// milliseconds of commit latency, few enough to bound memory and queueing delay.
pub const MAX_IN_FLIGHT: usize = 8;

/// The fate of one proposed session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed (or already committed with the same mapping).
    Accepted,
    /// Refused by the state machine; the mapping must not be used.
    Rejected(Rejection),
}

/// Result of a removal batch, summed over the caller's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub removed: u32,
    pub unknown: u32,
    pub refused: Vec<(SessionKey, Rejection)>,
}

enum Op {
    Create(Vec<SessionRecord>, oneshot::Sender<Result<Vec<Outcome>>>),
    Remove(Vec<SessionKey>, oneshot::Sender<Result<Removed>>),
}

/// Handle for proposing sessions; cheap to clone, usable from any task.
#[derive(Clone, Debug)]
pub struct SessionProposer {
    tx: mpsc::Sender<Op>,
    member: Arc<Member>,
}

impl SessionProposer {
    /// Starts the batching task for `member`.
    pub(crate) fn start(member: Arc<Member>) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(member.clone(), rx));
        SessionProposer { tx, member }
    }

    /// Proposes `records` (allocated by this member in buckets it owns) and waits until
    /// their batch has committed.
    ///
    /// # Returns
    /// One [`Outcome`] per record, in order.
    ///
    /// # Errors
    /// [`Error::NoLease`] when this member holds no valid bucket lease (nothing was
    /// proposed); [`Error::NoLeader`], [`Error::Peer`] or [`Error::Raft`] when the batch
    /// could not be committed (its fate is unknown: it may still commit).
    pub async fn propose(&self, records: Vec<SessionRecord>) -> Result<Vec<Outcome>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if !self.member.lease_valid() {
            return Err(Error::NoLease);
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Create(records, tx))
            .await
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Proposes the removal of `keys` (expired or closed sessions of this member's
    /// buckets) and waits for the commit.
    ///
    /// # Errors
    /// As [`propose`](Self::propose), except that removals need no lease: they only
    /// free ports, and the state machine refuses removals from non-owners.
    pub async fn remove(&self, keys: Vec<SessionKey>) -> Result<Removed> {
        if keys.is_empty() {
            return Ok(Removed::default());
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Remove(keys, tx))
            .await
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }
}

/// One batch being filled.
struct Batch<T, R> {
    items: Vec<T>,
    waiters: Vec<(usize, oneshot::Sender<Result<R>>)>,
    first: Option<Instant>,
}

impl<T, R> Batch<T, R> {
    fn new() -> Self {
        Batch {
            items: Vec::new(),
            waiters: Vec::new(),
            first: None,
        }
    }

    fn add(&mut self, items: Vec<T>, tx: oneshot::Sender<Result<R>>) {
        self.first.get_or_insert_with(Instant::now);
        self.waiters.push((items.len(), tx));
        self.items.extend(items);
    }
    fn take(&mut self) -> Batch<T, R> {
        std::mem::replace(self, Batch::new())
    }
}

async fn run(member: Arc<Member>, mut rx: mpsc::Receiver<Op>) {
    let timing = member.config.timing;
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut creates: Batch<SessionRecord, Vec<Outcome>> = Batch::new();
    let mut removes: Batch<SessionKey, Removed> = Batch::new();
    loop {
        let now = Instant::now();
        let due = |first: Option<Instant>, len: usize| {
            len >= timing.batch_max || first.is_some_and(|f| now >= f + timing.batch_delay)
        };
        let (c_due, r_due) = (
            due(creates.first, creates.items.len()),
            due(removes.first, removes.items.len()),
        );
        // Flush due batches while a slot is free. When every slot is taken, a due batch
        // keeps filling (up to `batch_max`) until one frees: under load the batches grow
        // instead of the callers queueing behind a fixed pipeline depth.
        if c_due && let Ok(permit) = slots.clone().try_acquire_owned() {
            flush_creates(&member, permit, creates.take());
            continue;
        }
        if r_due && let Ok(permit) = slots.clone().try_acquire_owned() {
            flush_removes(&member, permit, removes.take());
            continue;
        }
        let blocked = c_due || r_due;
        let full =
            creates.items.len() >= timing.batch_max || removes.items.len() >= timing.batch_max;
        let deadline = if blocked {
            None
        } else {
            [creates.first, removes.first]
                .into_iter()
                .flatten()
                .min()
                .map(|t| t + timing.batch_delay)
        };
        tokio::select! {
            biased;
            permit = slots.clone().acquire_owned(), if blocked => {
                let Ok(permit) = permit else { break };
                if c_due {
                    flush_creates(&member, permit, creates.take());
                } else {
                    flush_removes(&member, permit, removes.take());
                }
            }
            op = rx.recv(), if !full => match op {
                Some(Op::Create(r, tx)) => creates.add(r, tx),
                Some(Op::Remove(k, tx)) => removes.add(k, tx),
                None => break,
            },
            _ = sleep_until(deadline) => {}
        }
    }
    for (_, tx) in creates.waiters {
        let _ = tx.send(Err(Error::ShuttingDown));
    }
    for (_, tx) in removes.waiters {
        let _ = tx.send(Err(Error::ShuttingDown));
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn flush_creates(
    member: &Arc<Member>,
    permit: OwnedSemaphorePermit,
    batch: Batch<SessionRecord, Vec<Outcome>>,
) {
    let member = member.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let started = batch.first.unwrap_or_else(Instant::now);
        let n = batch.items.len();
        let keys: Vec<SessionKey> = batch.items.iter().map(|r| r.key).collect();
        let cmd = Command::CreateSessions {
            owner: member.id,
            epoch: member.applied_epoch(),
            sessions: batch.items,
        };
        let result = member.write(cmd).await;
        crate::metrics::record_commit(member.id.0, n, started.elapsed());
        let outcomes = match result {
            Ok((_, Response::Sessions { rejected, .. })) => Ok(assign_rejections(&keys, rejected)),
            Ok((_, Response::Rejected(r))) => Ok(vec![Outcome::Rejected(r); keys.len()]),
            Ok((_, other)) => Err(Error::Raft(format!(
                "unexpected response to CreateSessions: {other:?}"
            ))),
            Err(e) => Err(e),
        };
        match outcomes {
            Ok(all) => {
                let mut rest = all.into_iter();
                for (len, tx) in batch.waiters {
                    let _ = tx.send(Ok(rest.by_ref().take(len).collect()));
                }
            }
            Err(e) => {
                let message = e.to_string();
                let label = e.metric_label();
                for (_, tx) in batch.waiters {
                    let _ = tx.send(Err(same_error(label, &message)));
                }
            }
        }
    });
}

fn flush_removes(
    member: &Arc<Member>,
    permit: OwnedSemaphorePermit,
    batch: Batch<SessionKey, Removed>,
) {
    let member = member.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let keys = batch.items.clone();
        let result = member
            .write(Command::RemoveSessions {
                owner: member.id,
                keys: batch.items,
            })
            .await;
        match result {
            Ok((_, Response::SessionsRemoved { refused, .. })) => {
                // The response sums the whole batch; split it per caller by key.
                let refused: BTreeMap<SessionKey, Rejection> = refused.into_iter().collect();
                let mut rest = keys.into_iter();
                for (len, tx) in batch.waiters {
                    let mine: Vec<SessionKey> = rest.by_ref().take(len).collect();
                    let mut out = Removed::default();
                    for k in mine {
                        match refused.get(&k) {
                            Some(r) => out.refused.push((k, r.clone())),
                            None => out.removed += 1,
                        }
                    }
                    let _ = tx.send(Ok(out));
                }
            }
            Ok((_, other)) => {
                let message = format!("unexpected response to RemoveSessions: {other:?}");
                for (_, tx) in batch.waiters {
                    let _ = tx.send(Err(Error::Raft(message.clone())));
                }
            }
            Err(e) => {
                let (label, message) = (e.metric_label(), e.to_string());
                for (_, tx) in batch.waiters {
                    let _ = tx.send(Err(same_error(label, &message)));
                }
            }
        }
    });
}

/// The state machine lists rejections by key, in apply order. For a key that occurs
/// more than once in the batch the first occurrence is the one that can be accepted,
/// so rejections are matched to the *last* occurrences.
fn assign_rejections(keys: &[SessionKey], rejected: Vec<(SessionKey, Rejection)>) -> Vec<Outcome> {
    let mut out = vec![Outcome::Accepted; keys.len()];
    if rejected.is_empty() {
        return out;
    }
    let mut positions: BTreeMap<SessionKey, Vec<usize>> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        positions.entry(*k).or_default().push(i);
    }
    for (key, why) in rejected {
        if let Some(i) = positions.get_mut(&key).and_then(|p| p.pop()) {
            out[i] = Outcome::Rejected(why);
        }
    }
    out
}

/// The batch's error, once per waiter (errors are not `Clone`).
fn same_error(label: &str, message: &str) -> Error {
    match label {
        "no_leader" => Error::NoLeader,
        "shutting_down" => Error::ShuttingDown,
        _ => Error::Raft(message.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use mfplane_core::{Endpoint, Proto};

    use super::*;

    fn key(port: u16) -> SessionKey {
        SessionKey {
            proto: Proto::Udp,
            inside: Endpoint::new(0x0a00_0001, port),
        }
    }

    #[test]
    fn rejections_land_on_the_right_records() {
        let keys = [key(1), key(2), key(1), key(3)];
        let out = assign_rejections(
            &keys,
            vec![
                (
                    key(1),
                    Rejection::KeyMapped {
                        existing: Endpoint::new(1, 2000),
                    },
                ),
                (key(3), Rejection::NotConfigured),
            ],
        );
        assert_eq!(out[0], Outcome::Accepted);
        assert_eq!(out[1], Outcome::Accepted);
        assert!(matches!(
            out[2],
            Outcome::Rejected(Rejection::KeyMapped { .. })
        ));
        assert_eq!(out[3], Outcome::Rejected(Rejection::NotConfigured));
    }
}

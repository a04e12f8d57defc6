//! Acknowledges log appends only once they are durable, in order, with one flush per
//! group of appends.
//!
//! For a disk backend the flush runs on a dedicated thread: `append` returns as soon as
//! the entries are written (readable), and the thread completes every queued append's
//! `IOFlushed` callback after one `flush` that covers them all (group commit), in the
//! order the appends were made. For the memory backend the flush is a cheap in-process
//! step and runs inline, which keeps simulations free of thread scheduling.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use openraft::storage::IOFlushed;

use crate::TypeConfig;
use crate::backend::Backend;
use crate::error::{Error, Result};

enum Job {
    /// Complete an append's callback after the flush.
    Append(IOFlushed<TypeConfig>),
    /// Wake a waiter (vote, truncate) after the flush.
    Wait(tokio::sync::oneshot::Sender<Result<(), String>>),
}

#[derive(Debug)]
struct Background {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        // Closing the channel ends the thread after it finished the queued jobs; joining
        // makes sure the backend (and sled's file lock) is released when the store is.
        self.tx.take();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the store's flusher thread panicked");
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Flusher {
    backend: Arc<dyn Backend>,
    background: Option<Background>,
}

fn flush_error(e: &Error) -> std::io::Error {
    std::io::Error::other(format!("flush failed: {e}"))
}

impl Flusher {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Result<Self> {
        let background = if backend.flush_is_slow() {
            let (tx, rx) = mpsc::channel::<Job>();
            let b = Arc::clone(&backend);
            let thread = std::thread::Builder::new()
                .name("mfplane-flush".into())
                .spawn(move || run(&*b, &rx))
                .map_err(|e| Error::Backend(format!("cannot start the flusher thread: {e}")))?;
            Some(Background {
                tx: Some(tx),
                thread: Some(thread),
            })
        } else {
            None
        };
        Ok(Flusher {
            backend,
            background,
        })
    }

    fn sender(&self) -> Option<&mpsc::Sender<Job>> {
        self.background.as_ref().and_then(|b| b.tx.as_ref())
    }

    /// Completes `callback` once everything written so far is durable.
    pub(crate) fn ack_when_durable(&self, callback: IOFlushed<TypeConfig>) {
        match self.sender() {
            Some(tx) => {
                if let Err(mpsc::SendError(Job::Append(cb))) = tx.send(Job::Append(callback)) {
                    cb.io_completed(Err(flush_error(&Error::FlusherGone)));
                }
            }
            None => callback.io_completed(self.backend.flush().map_err(|e| flush_error(&e))),
        }
    }

    /// Returns once everything written so far is durable.
    pub(crate) async fn flush(&self) -> Result<()> {
        match self.sender() {
            Some(tx) => {
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                tx.send(Job::Wait(done_tx))
                    .map_err(|_| Error::FlusherGone)?;
                done_rx
                    .await
                    .map_err(|_| Error::FlusherGone)?
                    .map_err(Error::Backend)
            }
            None => self.backend.flush(),
        }
    }
}

fn run(backend: &dyn Backend, rx: &mpsc::Receiver<Job>) {
    let mut jobs = Vec::new();
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        jobs.extend(rx.try_iter());
        let result = backend.flush();
        if let Err(e) = &result {
            tracing::error!(error = %e, "flushing the store failed");
        }
        for job in jobs.drain(..) {
            match job {
                Job::Append(cb) => {
                    cb.io_completed(result.as_ref().map(|_| ()).map_err(flush_error))
                }
                Job::Wait(tx) => {
                    // The waiter may have gone away (cancelled); nothing to do then.
                    let _ = tx.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                }
            }
        }
    }
}

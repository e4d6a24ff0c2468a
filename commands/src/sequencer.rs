//! The single writer: commands queue in a bounded channel; one thread drains up to
//! `batch_max` of them, decides each in order against in-memory state, writes them all in
//! one synced RocksDB batch, then answers every waiter. One fsync serves the whole batch.

use crate::clock::Clock;
use event_store::{Batch, LogWriter, RegistryTime, Seq, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What the sequencer runs for each command.
pub trait Handler: Send + 'static {
    type Command: Send + 'static;
    type Reply: Send + 'static;

    /// Decides one command against the current state plus what earlier commands of this
    /// batch staged, and stages its events and writes into `batch` — all of them or none.
    /// `batch.recorded_at()` is the registry's `now` for this command.
    fn handle(&mut self, writer: &mut LogWriter, batch: &mut Batch, cmd: Self::Command) -> Self::Reply;

    /// The batch was not written: forget whatever `handle` staged in memory.
    fn rolled_back(&mut self) {}

    /// The batch ending at `last` is durable and its waiters are answered.
    fn committed(&mut self, _last: Seq) {}

    /// Every handle is gone and the queue is drained: nothing more will be written.
    fn stopped(&mut self) {}
}

/// Bounds of the sequencer. Every queue has one.
#[derive(Debug, Clone, Copy)]
pub struct SequencerConfig {
    /// Commands waiting for the writer; past this, `submit` waits up to `enqueue_wait`.
    pub queue_max: usize,
    /// Commands per group commit.
    pub batch_max: usize,
    /// How long `submit` waits for room in a full queue before answering `Busy`.
    pub enqueue_wait: Duration,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self { queue_max: 8192, batch_max: 2048, enqueue_wait: Duration::from_secs(2) }
    }
}

/// Why a command got no answer from the domain. In every case nothing of it was written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    #[error("the registry is busy: {queue_max} commands are queued; retry shortly")]
    Busy { queue_max: usize },
    #[error("the registry could not write to its disk, nothing was recorded; retry later ({0})")]
    Storage(Arc<StoreError>),
    #[error("the registry's writer has stopped; nothing was recorded")]
    Stopped,
}

impl SubmitError {
    /// Whether the same command may succeed if sent again.
    pub fn retryable(&self) -> bool {
        match self {
            SubmitError::Busy { .. } => true,
            SubmitError::Storage(e) => e.retryable(),
            SubmitError::Stopped => false,
        }
    }
}

/// Counters for `/metrics` and benchmarks.
#[derive(Debug, Default)]
pub struct SequencerStats {
    pub commands: AtomicU64,
    pub batches: AtomicU64,
    pub failed_batches: AtomicU64,
    pub commit_micros: AtomicU64,
    pub last_seq: AtomicU64,
}

struct Job<H: Handler> {
    cmd: H::Command,
    reply: oneshot::Sender<Result<H::Reply, SubmitError>>,
}

/// A handle to submit commands; cheap to clone. The writer thread stops when every handle
/// is dropped, after answering everything already queued.
pub struct Sequencer<H: Handler> {
    tx: mpsc::Sender<Job<H>>,
    config: SequencerConfig,
    stats: Arc<SequencerStats>,
}

impl<H: Handler> Clone for Sequencer<H> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), config: self.config, stats: Arc::clone(&self.stats) }
    }
}

impl<H: Handler> Sequencer<H> {
    /// Starts the writer thread. Join the returned handle to wait for a clean stop.
    pub fn start(
        writer: LogWriter,
        handler: H,
        clock: Arc<dyn Clock>,
        config: SequencerConfig,
    ) -> (Self, std::thread::JoinHandle<()>) {
        assert!(config.queue_max > 0 && config.batch_max > 0, "sequencer bounds must be positive");
        let (tx, rx) = mpsc::channel(config.queue_max);
        let stats = Arc::new(SequencerStats::default());
        stats.last_seq.store(writer.store().last_seq().0, Ordering::Relaxed);
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("kyso-sequencer".into())
            .spawn(move || run(writer, handler, clock, config, rx, &thread_stats))
            .expect("spawning the sequencer thread");
        (Self { tx, config, stats }, thread)
    }

    /// Submits one command and waits for its answer.
    ///
    /// `Ok(reply)` is the domain's answer; if the command was accepted, its events are
    /// durable (fsynced), have their seqs and are in the Merkle tree. `Err` means nothing of
    /// the command was written; `retryable()` says whether sending it again may help.
    pub async fn submit(&self, cmd: H::Command) -> Result<H::Reply, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { cmd, reply };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(SubmitError::Stopped),
            Err(mpsc::error::TrySendError::Full(job)) => {
                match tokio::time::timeout(self.config.enqueue_wait, self.tx.send(job)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(SubmitError::Stopped),
                    Err(_) => return Err(SubmitError::Busy { queue_max: self.config.queue_max }),
                }
            }
        }
        answer.await.map_err(|_| SubmitError::Stopped)?
    }

    /// Whether the writer thread has stopped (every later `submit` answers `Stopped`).
    pub fn is_stopped(&self) -> bool {
        self.tx.is_closed()
    }

    /// Commands waiting for the writer right now.
    pub fn queue_depth(&self) -> usize {
        self.config.queue_max - self.tx.capacity()
    }

    pub fn stats(&self) -> &SequencerStats {
        &self.stats
    }
}

fn run<H: Handler>(
    mut writer: LogWriter,
    mut handler: H,
    clock: Arc<dyn Clock>,
    config: SequencerConfig,
    mut rx: mpsc::Receiver<Job<H>>,
    stats: &SequencerStats,
) {
    let mut jobs: Vec<Job<H>> = Vec::with_capacity(config.batch_max);
    let mut replies = Vec::with_capacity(config.batch_max);
    // The registry clock never runs backwards, whatever the wall clock does.
    let mut last_now = RegistryTime(i64::MIN);
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        while jobs.len() < config.batch_max {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let now = clock.now().max(last_now);
        last_now = now;
        let mut batch = writer.begin(now);
        for job in jobs.drain(..) {
            let answer = handler.handle(&mut writer, &mut batch, job.cmd);
            replies.push((answer, job.reply));
        }
        let started = Instant::now();
        let outcome = if batch.is_empty() { Ok(None) } else { writer.commit(batch).map(Some) };
        stats.commit_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.commands.fetch_add(replies.len() as u64, Ordering::Relaxed);
        match outcome {
            Ok(committed) => {
                if let Some(c) = committed {
                    stats.last_seq.store(c.last_seq.0, Ordering::Relaxed);
                }
                for (answer, reply) in replies.drain(..) {
                    // A waiter that gave up is fine: its command is durable all the same.
                    let _ = reply.send(Ok(answer));
                }
                if let Some(c) = committed {
                    handler.committed(c.last_seq);
                }
            }
            Err(e) => {
                handler.rolled_back();
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "group commit failed; every command in the batch is refused");
                let e = Arc::new(e);
                for (_, reply) in replies.drain(..) {
                    let _ = reply.send(Err(SubmitError::Storage(Arc::clone(&e))));
                }
            }
        }
    }
    handler.stopped();
}

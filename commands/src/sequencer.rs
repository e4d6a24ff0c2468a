//! The single writer: commands queue in a bounded channel; one thread drains up to
//! `batch_max` of them, decides each in order against in-memory state, and hands them to a
//! second thread as one synced RocksDB batch; every waiter is answered once it is durable.
//! One fsync serves the whole batch, and under load the next batch is decided during it.

use crate::clock::Clock;
use event_store::pipeline::WriteThread;
use event_store::{Batch, Committed, LogWriter, Prepared, RegistryTime, Seq, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the sequencer runs for each command.
pub trait Handler: Send + 'static {
    type Command: Send + 'static;
    type Reply: Send + 'static;

    /// Decides one command against the current state plus what earlier commands of this
    /// batch staged, and stages its events and writes into `batch` — all of them or none.
    /// `batch.recorded_at()` is the registry's `now` for this command.
    fn handle(&mut self, writer: &mut LogWriter, batch: &mut Batch, cmd: Self::Command) -> Self::Reply;

    /// A batch was not written, nor any prepared after it: forget whatever `handle` staged
    /// in memory beyond the last durable batch.
    fn rolled_back(&mut self) {}

    /// The batch ending at `durable` is durable and its waiters are answered. The state
    /// `handle` keeps reflects every event up to `staged` (≥ `durable`): the batches after
    /// `durable` are prepared and on their way to disk, and may still be rolled back.
    fn committed(&mut self, _durable: Seq, _staged: Seq) {}

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
    /// Under load, measured by batch size: while a batch of at least this many commands is
    /// being written, the commands arriving meanwhile are decided during the write, and
    /// their batch is prepared (encoded, hashed, its `WriteBatch` built) as soon as it has
    /// this many too. Below it they wait for the write, as before pipelining: deciding
    /// each as it arrives costs a thread wake-up per command, which a CPU-bound server
    /// (HTTP) pays for and a lightly loaded one does not need. And when the disk is idle, a
    /// batch goes to it once it has this many: the rest queued are decided during its write.
    pub overlap_at: usize,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        // Overlapping keeps the disk busy under many submitters (RecordIssuance at 1024 in
        // kyso-bench: ~80k cmds/s against ~65k one batch at a time); under HTTP load batches
        // of ~60 are usual, and recorded lookups there lost ~10 % to per-command wake-ups.
        Self { queue_max: 8192, batch_max: 2048, enqueue_wait: Duration::from_secs(2), overlap_at: 256 }
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
    /// Commands answered, reads included.
    pub commands: AtomicU64,
    pub batches: AtomicU64,
    pub failed_batches: AtomicU64,
    pub commit_micros: AtomicU64,
    pub last_seq: AtomicU64,
}

enum Job<H: Handler> {
    Command { cmd: H::Command, reply: oneshot::Sender<Result<H::Reply, SubmitError>> },
    Read(Read<H>),
}

/// A read runs on the writer's thread; what it gives back is held until everything it saw
/// is durable, then delivered (or refused, if that was rolled back).
type Read<H> = Box<dyn FnOnce(&H) -> Deliver + Send>;
type Deliver = Box<dyn FnOnce(Result<(), SubmitError>) + Send>;

/// Someone waiting for the batch they were decided in to be durable.
enum Waiter<H: Handler> {
    Command(H::Reply, oneshot::Sender<Result<H::Reply, SubmitError>>),
    Read(Deliver),
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
        self.enqueue(Job::Command { cmd, reply }).await?;
        answer.await.map_err(|_| SubmitError::Stopped)?
    }

    /// Runs `read` on the writer's thread, in turn with the commands: it sees the state
    /// every command queued before it left, and its answer comes once all of that is
    /// durable. So it includes every acknowledged write and nothing a failed batch could
    /// still take back. Appends nothing; for state only the writer holds (the registry),
    /// which is cheap to read and too large to copy per batch.
    pub async fn read<R: Send + 'static>(&self, read: impl FnOnce(&H) -> R + Send + 'static) -> Result<R, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let read: Read<H> = Box::new(move |handler| {
            let value = read(handler);
            Box::new(move |outcome: Result<(), SubmitError>| {
                // A reader that gave up is fine: nothing was written for it.
                let _ = reply.send(outcome.map(|()| value));
            })
        });
        self.enqueue(Job::Read(read)).await?;
        answer.await.map_err(|_| SubmitError::Stopped)?
    }

    /// Queues a job, waiting up to `enqueue_wait` for room.
    async fn enqueue(&self, job: Job<H>) -> Result<(), SubmitError> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Stopped),
            Err(mpsc::error::TrySendError::Full(job)) => {
                match tokio::time::timeout(self.config.enqueue_wait, self.tx.send(job)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(SubmitError::Stopped),
                    Err(_) => Err(SubmitError::Busy { queue_max: self.config.queue_max }),
                }
            }
        }
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

/// Answers waiting for their batch to be durable.
type Replies<H> = Vec<Waiter<H>>;

/// What the log-write thread reports for each batch: its outcome and RocksDB's time.
type Written = (Result<Committed, StoreError>, Duration);

fn run<H: Handler>(
    writer: LogWriter,
    handler: H,
    clock: Arc<dyn Clock>,
    config: SequencerConfig,
    rx: mpsc::Receiver<Job<H>>,
    stats: &SequencerStats,
) {
    let (written, landed) = mpsc::unbounded_channel();
    let disk = WriteThread::spawn(Arc::clone(writer.store()), move |outcome, took| {
        // The sequencer gone means nobody waits for the answer.
        let _ = written.send((outcome, took));
    });
    let pipeline = Pipeline {
        writer,
        handler,
        clock,
        last_now: RegistryTime(i64::MIN),
        stats,
        batch_max: config.batch_max,
        overlap_at: config.overlap_at,
    };
    // A runtime of this thread alone: it waits on the queue and the disk at once.
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("the sequencer's runtime");
    let mut handler = runtime.block_on(pipeline.run(rx, &disk, landed));
    drop(disk);
    handler.stopped();
}

/// Two stages on two threads: under load (see [`SequencerConfig::overlap_at`]) this one
/// decides the commands that arrive while the log-write thread makes the batch before them
/// durable, so deciding and the disk overlap instead of taking turns, and a batch still
/// holds everything that queued during the last write. A batch's answers wait until it is
/// durable; a failed batch takes the one decided on top of it down with it, unwritten.
struct Pipeline<'a, H: Handler> {
    writer: LogWriter,
    handler: H,
    clock: Arc<dyn Clock>,
    /// The registry clock never runs backwards, whatever the wall clock does.
    last_now: RegistryTime,
    stats: &'a SequencerStats,
    batch_max: usize,
    overlap_at: usize,
}

impl<H: Handler> Pipeline<'_, H> {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Job<H>>,
        disk: &WriteThread,
        mut landed: mpsc::UnboundedReceiver<Written>,
    ) -> H {
        // The batch on its way to disk (its answers), the one being decided meanwhile, and
        // that one once prepared early.
        let mut in_flight: Option<Replies<H>> = None;
        let mut next: Option<(Batch, Replies<H>)> = None;
        let mut ready: Option<(Prepared, Replies<H>)> = None;
        let mut open = true;
        loop {
            let Some(writing) = in_flight.take() else {
                if let Some((batch, replies)) = ready.take() {
                    disk.send(batch);
                    in_flight = Some(replies);
                    continue;
                }
                // The disk is idle: what was decided meanwhile goes now, or else what comes next.
                // Not everything queued: deciding hundreds of commands before the first write
                // left the disk idle as long, and deciding and writing took turns (RecordIssuance
                // at 1024 submitters: batches of ~750 one after the other; ~500 overlapped).
                if next.is_none() {
                    match rx.recv().await {
                        Some(job) => self.decide(&mut next, job),
                        None => break,
                    }
                }
                self.drain(&mut rx, &mut next, self.overlap_at.min(self.batch_max));
                let (batch, replies) = next.take().expect("a command was just decided");
                if batch.is_empty() {
                    // Nothing to write, and everything it was decided against is durable.
                    self.stats.commands.fetch_add(replies.len() as u64, Ordering::Relaxed);
                    answer::<H>(replies);
                } else {
                    disk.send(self.writer.prepare(batch));
                    in_flight = Some(replies);
                }
                continue;
            };
            let room = open
                && ready.is_none()
                && writing.len() >= self.overlap_at
                && next.as_ref().is_none_or(|(_, r)| r.len() < self.batch_max);
            tokio::select! {
                biased;
                written = landed.recv() => {
                    let written = written.expect("the log-write thread runs as long as this one");
                    let staged = next.as_ref().map(|(b, _)| Seq(b.next_seq().0 - 1));
                    if let Err(e) = self.land(written, writing, staged) {
                        // Decided on top of the failed batch (the rewind forgot them too).
                        let ready = ready.take().map(|(_, replies)| (true, replies));
                        let next = next.take().map(|(batch, replies)| (!batch.is_empty(), replies));
                        for (had_writes, replies) in ready.into_iter().chain(next) {
                            self.stats.failed_batches.fetch_add(u64::from(had_writes), Ordering::Relaxed);
                            refuse::<H>(replies, &e);
                        }
                    }
                }
                job = rx.recv(), if room => {
                    in_flight = Some(writing);
                    match job {
                        Some(job) => {
                            self.decide(&mut next, job);
                            self.drain(&mut rx, &mut next, self.batch_max);
                            if next.as_ref().is_some_and(|(b, r)| r.len() >= self.overlap_at && !b.is_empty()) {
                                let (batch, replies) = next.take().expect("checked just above");
                                ready = Some((self.writer.prepare(batch), replies));
                            }
                        }
                        None => open = false,
                    }
                }
            }
        }
        self.handler
    }

    /// Decides one command into the batch being built (begun now if there is none).
    fn decide(&mut self, next: &mut Option<(Batch, Replies<H>)>, job: Job<H>) {
        let (batch, replies) = next.get_or_insert_with(|| {
            let now = self.clock.now().max(self.last_now);
            self.last_now = now;
            (self.writer.begin(now), Vec::new())
        });
        replies.push(match job {
            Job::Command { cmd, reply } => Waiter::Command(self.handler.handle(&mut self.writer, batch, cmd), reply),
            Job::Read(read) => Waiter::Read(read(&self.handler)),
        });
    }

    /// Decides whatever is queued already, until the batch holds `max` commands.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Job<H>>, next: &mut Option<(Batch, Replies<H>)>, max: usize) {
        while next.as_ref().is_none_or(|(_, r)| r.len() < max) {
            match rx.try_recv() {
                Ok(job) => self.decide(next, job),
                Err(_) => break,
            }
        }
    }

    /// A batch is back from the disk: answer its waiters, or on a failure forget it and
    /// everything decided after it. `staged` is the last seq decided beyond what was sent.
    fn land(
        &mut self,
        (outcome, took): Written,
        replies: Replies<H>,
        staged: Option<Seq>,
    ) -> Result<(), Arc<StoreError>> {
        let stats = self.stats;
        stats.commit_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.commands.fetch_add(replies.len() as u64, Ordering::Relaxed);
        match outcome {
            Ok(committed) => {
                self.writer.durable(committed.last_seq);
                stats.last_seq.store(committed.last_seq.0, Ordering::Relaxed);
                answer::<H>(replies);
                // A batch being decided starts past everything prepared, which includes this one.
                let staged = staged.unwrap_or(self.writer.last_prepared());
                self.handler.committed(committed.last_seq, staged);
                Ok(())
            }
            Err(e) => {
                self.writer.rewind();
                self.handler.rolled_back();
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "group commit failed; every command in the batch is refused");
                let e = Arc::new(e);
                refuse::<H>(replies, &e);
                Err(e)
            }
        }
    }
}

fn answer<H: Handler>(replies: Replies<H>) {
    for waiter in replies {
        match waiter {
            // A waiter that gave up is fine: its command is durable all the same.
            Waiter::Command(answer, reply) => drop(reply.send(Ok(answer))),
            Waiter::Read(deliver) => deliver(Ok(())),
        }
    }
}

fn refuse<H: Handler>(replies: Replies<H>, e: &Arc<StoreError>) {
    for waiter in replies {
        let refused = SubmitError::Storage(Arc::clone(e));
        match waiter {
            Waiter::Command(_, reply) => drop(reply.send(Err(refused))),
            Waiter::Read(deliver) => deliver(Err(refused)),
        }
    }
}

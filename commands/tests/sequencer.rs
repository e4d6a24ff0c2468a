//! The single writer under concurrency: every acknowledged append is durable, in one order,
//! with conflicts decided by that order.

use commands::{AppendToStreams, Handler, ManualClock, Sequencer, SequencerConfig, StreamAppender, SubmitError};
use event_store::{
    AppendError, Batch, EventData, EventStore, ExpectedVersion, LogWriter, Metadata, RegistryTime, Seq, StreamAppend,
    StreamId,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn cmd(stream: &str, expected: ExpectedVersion) -> AppendToStreams {
    AppendToStreams {
        meta: Metadata { actor: "test".into(), ..Metadata::default() },
        appends: vec![StreamAppend {
            stream: StreamId::new(stream),
            expected,
            events: vec![EventData {
                event_type: "Tested".into(),
                schema_version: 1,
                payload: stream.as_bytes().to_vec(),
                subject: None,
            }],
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submitters_get_distinct_durable_seqs_and_one_winner_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = EventStore::open(dir.path(), true).unwrap();
    let clock = Arc::new(ManualClock::new(RegistryTime(42)));
    let (seq, thread) = Sequencer::start(writer, StreamAppender, clock, SequencerConfig::default());
    let mut tasks = Vec::new();
    for i in 0..400u32 {
        let seq = seq.clone();
        // Two submitters race for every stream; NoStream lets only the first in.
        tasks.push(tokio::spawn(
            async move { seq.submit(cmd(&format!("s{}", i / 2), ExpectedVersion::NoStream)).await },
        ));
    }
    let mut acked = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Ok(staged) => acked.push(staged.first_seq.0),
            Err(AppendError::Conflict(_)) => conflicts += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((acked.len(), conflicts), (200, 200));
    acked.sort_unstable();
    assert_eq!(acked, (1..=200).collect::<Vec<_>>(), "acknowledged seqs are exactly 1..=200");
    assert!(seq.stats().batches.load(Ordering::Relaxed) < 400, "commands were grouped");
    drop(seq);
    thread.join().unwrap();
    let events: Vec<_> = store.read_from(Seq(1)).collect::<Result<_, _>>().unwrap();
    assert_eq!(events.len(), 200);
    assert!(events.iter().all(|e| e.recorded_at == RegistryTime(42)));
}

/// A handler that holds the writer until the test opens the gate.
struct Gated(Arc<AtomicBool>);

impl Handler for Gated {
    type Command = AppendToStreams;
    type Reply = Result<event_store::Staged, AppendError>;
    fn handle(&mut self, writer: &mut LogWriter, batch: &mut Batch, cmd: AppendToStreams) -> Self::Reply {
        while !self.0.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        StreamAppender.handle(writer, batch, cmd)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_busy_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, writer) = EventStore::open(dir.path(), true).unwrap();
    let gate = Arc::new(AtomicBool::new(false));
    let config =
        SequencerConfig { queue_max: 1, batch_max: 1, enqueue_wait: Duration::from_millis(20), ..Default::default() };
    let (seq, thread) = Sequencer::start(writer, Gated(Arc::clone(&gate)), Arc::new(ManualClock::default()), config);
    // The writer holds at most one command and the queue one more: the rest must hear Busy.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let seq = seq.clone();
            tokio::spawn(async move { seq.submit(cmd(&format!("b{i}"), ExpectedVersion::Any)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.store(true, Ordering::SeqCst);
    let mut busy = 0;
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Ok(_)) => accepted += 1,
            Err(e @ SubmitError::Busy { queue_max: 1 }) => {
                assert!(e.retryable());
                busy += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(accepted <= 2, "a queue of one plus the command in hand, got {accepted}");
    assert_eq!(busy + accepted, 16);
    drop(seq);
    thread.join().unwrap();
}

/// Remembers the last seq it staged, as the registrar's registry does, for reads.
#[derive(Default)]
struct Counting {
    staged: u64,
}

impl Handler for Counting {
    type Command = AppendToStreams;
    type Reply = Result<event_store::Staged, AppendError>;
    fn handle(&mut self, writer: &mut LogWriter, batch: &mut Batch, cmd: AppendToStreams) -> Self::Reply {
        let staged = StreamAppender.handle(writer, batch, cmd)?;
        self.staged = staged.last_seq.0;
        Ok(staged)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sees_every_command_acknowledged_before_it_and_only_what_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = EventStore::open(dir.path(), true).unwrap();
    let config = SequencerConfig { overlap_at: 4, ..Default::default() };
    let (seq, thread) = Sequencer::start(writer, Counting::default(), Arc::new(ManualClock::default()), config);
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let (seq, store) = (seq.clone(), Arc::clone(&store));
            tokio::spawn(async move {
                // Readers between the writers see batches still on their way to disk.
                let before = seq.read(|h: &Counting| h.staged).await.unwrap();
                assert!(store.last_seq().0 >= before, "read {before} before it was durable");
                let acked = seq.submit(cmd(&format!("r{i}"), ExpectedVersion::Any)).await.unwrap().unwrap();
                let after = seq.read(|h: &Counting| h.staged).await.unwrap();
                assert!(after >= acked.last_seq.0, "a read after seq {} saw {after}", acked.last_seq.0);
                assert!(store.last_seq().0 >= after, "read {after} before it was durable");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(seq.read(|h: &Counting| h.staged).await.unwrap(), 300);
    drop(seq);
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_decided_in_a_batch_that_fails_is_refused_like_its_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = EventStore::open(dir.path(), true).unwrap();
    let gate = Arc::new(AtomicBool::new(false));
    let (seq, thread) = Sequencer::start(
        writer,
        Gated(Arc::clone(&gate)),
        Arc::new(ManualClock::default()),
        SequencerConfig::default(),
    );
    // The writer takes the command and holds it until the gate opens; the read queues
    // meanwhile, joins the command's batch, and that batch fails. A first poll queues each.
    let mut command = Box::pin(seq.submit(cmd("f", ExpectedVersion::Any)));
    assert!(futures::poll!(&mut command).is_pending());
    while seq.queue_depth() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut read = Box::pin(seq.read(|_: &Gated| "seen"));
    assert!(futures::poll!(&mut read).is_pending());
    assert_eq!(seq.queue_depth(), 1, "the writer is held");
    store.fail_next_writes(1);
    gate.store(true, Ordering::SeqCst);
    assert!(matches!(command.await, Err(SubmitError::Storage(_))));
    assert!(matches!(read.await, Err(SubmitError::Storage(_))));
    assert_eq!(seq.read(|_: &Gated| "seen").await.unwrap(), "seen", "a read after the failure is answered");
    assert_eq!(store.last_seq(), Seq(0));
    drop(seq);
    thread.join().unwrap();
}

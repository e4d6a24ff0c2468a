//! A child for the kill -9 tests: appends under load from many tasks through the real
//! sequencer and prints `ACK <first_seq> <last_seq> <stream>` the moment each append is
//! acknowledged, until it is killed. A third argument writes stream heads and salts out
//! every that many events (see `LogWriter::set_index_every`), so kills land around
//! write-outs. Every event is personal (its stream id is its subject), so each stream has
//! a salt to keep.

use commands::{AppendToStreams, Sequencer, SequencerConfig, StreamAppender, SystemClock};
use event_store::{EventData, EventStore, ExpectedVersion, Metadata, StreamAppend, StreamId};
use std::io::Write;
use std::sync::Arc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: crash-writer DATA_DIR TASKS [INDEX_EVERY]");
    let tasks: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(64);
    let index_every: Option<u64> = args.next().and_then(|t| t.parse().ok());
    let run = std::process::id();
    let (_store, mut writer) = EventStore::open(&dir, true).expect("opening the store");
    if let Some(events) = index_every {
        writer.set_index_every(events);
    }
    let (sequencer, _thread) =
        Sequencer::start(writer, StreamAppender, Arc::new(SystemClock), SequencerConfig::default());
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<String>();
    for task in 0..tasks {
        let sequencer = sequencer.clone();
        let acks = acks.clone();
        tokio::spawn(async move {
            for n in 0u64.. {
                // Streams are per run and task, and each append expects the exact version,
                // so a lost or reordered ack would surface as a conflict.
                let stream = StreamId::new(format!("crash-{run}-{task}"));
                let cmd = AppendToStreams {
                    meta: Metadata { actor: "crash-writer".into(), ..Metadata::default() },
                    appends: vec![StreamAppend {
                        stream: stream.clone(),
                        expected: if n == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(n) },
                        events: vec![EventData {
                            event_type: "CrashTested".into(),
                            schema_version: 1,
                            payload: n.to_be_bytes().to_vec(),
                            // Personal, so each stream also has a salt to keep.
                            subject: Some(stream.as_str().to_owned()),
                        }],
                    }],
                };
                let staged = sequencer.submit(cmd).await.expect("submit").expect("append");
                if acks.send(format!("ACK {} {} {stream}", staged.first_seq, staged.last_seq)).is_err() {
                    return;
                }
            }
        });
    }
    drop(acks);
    let mut out = std::io::stdout().lock();
    while let Some(line) = acked.recv().await {
        // Written and flushed only after the ack: the parent may trust every line it reads.
        writeln!(out, "{line}").and_then(|()| out.flush()).expect("stdout");
    }
}

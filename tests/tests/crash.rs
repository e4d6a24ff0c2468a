//! Guarantee 1, tested for real: `kill -9` at a random moment loses no acknowledged event,
//! seqs stay gap-free, the Merkle root recomputed from the events equals the stored one, and
//! every stream's head and subject's salt (kept behind the log and written out in bulk) is
//! the log's.
//! `KYSO_CRASH_ROUNDS` sets the number of rounds (default 5); `KYSO_SEED` replays a run.

use event_store::{EventStore, Seq, StreamHead, StreamId};
use rand::Rng;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn kill_9_under_load_loses_no_acknowledged_event() {
    let mut rng = kyso_tests::seed::rng("kill_9_under_load_loses_no_acknowledged_event");
    let rounds: usize = std::env::var("KYSO_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let mut total_acked = 0usize;
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(dir.path())
            .arg("64")
            // Heads and salts written out every 1000 events: kills land before, in and after that.
            .arg("1000")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, acks) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok).filter(|l| l.starts_with("ACK ")) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        // The kill lands at a random moment once the child is under load, however slow its start.
        let first = acks.recv_timeout(Duration::from_secs(120)).expect("the child acknowledged nothing for 2 minutes");
        std::thread::sleep(Duration::from_millis(rng.random_range(100..1200)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acked: Vec<String> = std::iter::once(first).chain(acks.try_iter()).collect();

        let store = EventStore::open_read_only(dir.path()).unwrap();
        let last = store.last_seq();
        for line in &acked {
            let mut parts = line.split(' ').skip(1);
            let first: u64 = parts.next().unwrap().parse().unwrap();
            let last_acked: u64 = parts.next().unwrap().parse().unwrap();
            let stream = parts.next().unwrap();
            assert!(last_acked <= last.0, "round {round}: acknowledged seq {last_acked} lost (log ends at {last})");
            let event = store.event(Seq(first)).unwrap();
            assert_eq!(event.stream.as_str(), stream, "round {round}: seq {first} holds another stream's event");
        }
        // Gap-free seqs from 1 and the stored root, with the auditors' own verifier.
        let report = replay_tools::verify_log(&store, None, |_| {}).unwrap();
        assert_eq!(report.events, last.0);
        let heads = heads_in_log(&store);
        assert_heads_are(&store, &heads, round);
        total_acked += acked.len();
        let through = store.heads_indexed_through().unwrap();
        eprintln!(
            "round {round}: {} acks, log at seq {last}, verified, {} stream heads ({through} written out)",
            acked.len(),
            heads.len()
        );
    }
    assert!(total_acked > rounds, "the load was real");
    // The writer's open reads the heads back the same way the read-only one did.
    let (store, _writer) = EventStore::open(dir.path(), false).unwrap();
    assert_heads_are(&store, &heads_in_log(&store), rounds);
    assert!(store.heads_indexed_through().unwrap() > Seq(0), "the rounds crossed heads write-outs");
    assert!(store.salts_indexed_through().unwrap() > Seq(0), "the rounds crossed salts write-outs");
}

fn heads_in_log(store: &EventStore) -> HashMap<String, StreamHead> {
    let mut heads = HashMap::new();
    for env in store.read_from(Seq(1)) {
        let env = env.unwrap();
        heads.insert(env.stream.0, StreamHead { version: env.stream_version, last_seq: env.seq });
    }
    heads
}

/// Each stream's head is its last event's, and its subject's salt the one indexed at its
/// first event (which the verifier checked every leaf with).
fn assert_heads_are(store: &EventStore, heads: &HashMap<String, StreamHead>, round: usize) {
    let salts: HashMap<Seq, [u8; 32]> = store.salts_by_first_seq().map(Result::unwrap).collect();
    for (stream, head) in heads {
        let stored = store.stream_head(&StreamId::new(stream.as_str())).unwrap();
        assert_eq!(stored, *head, "round {round}: head of stream {stream}");
        let first = store.read_stream(&StreamId::new(stream.as_str()), 1).unwrap()[0].seq;
        assert_eq!(store.salt(stream).unwrap().as_ref(), salts.get(&first), "round {round}: salt of {stream}");
    }
}

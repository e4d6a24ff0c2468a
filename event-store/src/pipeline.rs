//! Two stages on two cores:
//! - for passes over the whole log (a rebuild, `kyso-replay verify`), a producer thread
//!   reads the next chunks while the calling thread works on this one ([`two_stage`]);
//! - for appends, a thread makes one batch durable while the writer prepares the next
//!   ([`WriteThread`]).

use crate::error::StoreError;
use crate::store::{Committed, EventStore, Prepared};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// A thread that makes prepared batches durable ([`EventStore::write`]), in the order sent,
/// one at a time: the disk's half of a pipelined writer. Whoever sends must wait for each
/// outcome before sending the next batch, and rewind its writer on a failure.
pub struct WriteThread {
    to_disk: Option<mpsc::SyncSender<Prepared>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriteThread {
    /// `written` hears each batch's outcome and how long RocksDB took, in the order sent.
    pub fn spawn(
        store: Arc<EventStore>,
        mut written: impl FnMut(Result<Committed, StoreError>, Duration) + Send + 'static,
    ) -> Self {
        let (to_disk, prepared) = mpsc::sync_channel::<Prepared>(1);
        let thread = std::thread::Builder::new()
            .name("kyso-log-write".into())
            .spawn(move || {
                for batch in prepared {
                    let started = Instant::now();
                    let outcome = store.write(batch);
                    written(outcome, started.elapsed());
                }
            })
            .expect("spawning the log-write thread");
        Self { to_disk: Some(to_disk), thread: Some(thread) }
    }

    /// Starts writing `batch`.
    pub fn send(&self, batch: Prepared) {
        self.to_disk
            .as_ref()
            .expect("present until drop")
            .send(batch)
            .expect("the log-write thread runs until it is dropped");
    }
}

impl Drop for WriteThread {
    fn drop(&mut self) {
        drop(self.to_disk.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Chunks handed over at most this many ahead of the consuming side.
const AHEAD: usize = 4;

/// The producing side of [`two_stage`].
pub struct Handoff<C, E> {
    out: mpsc::SyncSender<Result<C, E>>,
    returned: mpsc::Receiver<C>,
}

impl<C, E> Handoff<C, E> {
    /// Hands a chunk over; false once the consuming side has stopped, and so should the
    /// producer.
    pub fn send(&self, chunk: C) -> bool {
        self.out.send(Ok(chunk)).is_ok()
    }

    /// A chunk the consuming side is done with, to clear and reuse. Chunks come back to be
    /// dropped on this thread, which allocated them: glibc frees another thread's
    /// allocations slowly (measured: dropping decoded chunks on the consuming side cost three
    /// times a rebuild's fold).
    pub fn spare(&self) -> Option<C> {
        self.returned.try_iter().last()
    }
}

/// Runs `produce` on a second thread and `consume` on this one, on each chunk in the order
/// produced. The first error of either side ends both and is returned; a producer's error
/// reaches the consumer after every chunk sent before it.
pub fn two_stage<C: Send, E: Send>(
    produce: impl FnOnce(&Handoff<C, E>) -> Result<(), E> + Send,
    mut consume: impl FnMut(&C) -> Result<(), E>,
) -> Result<(), E> {
    std::thread::scope(|scope| {
        let (out, received) = mpsc::sync_channel(AHEAD);
        let (used, returned) = mpsc::channel();
        scope.spawn(move || {
            let handoff = Handoff { out, returned };
            if let Err(e) = produce(&handoff) {
                let _ = handoff.out.send(Err(e));
            }
            // The consuming side ends when the sender goes, and the last chunks come back
            // after that (its `used` goes when this scope's closure returns, before the join).
            let Handoff { out, returned } = handoff;
            drop(out);
            returned.into_iter().for_each(drop);
        });
        for chunk in received {
            let chunk = chunk?;
            consume(&chunk)?;
            // The producer waits for every chunk to come back, so this fails only if it panicked.
            let _ = used.send(chunk);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_arrive_in_order_and_either_side_can_stop_both() {
        let mut seen = Vec::new();
        let all = two_stage(
            |h: &Handoff<Vec<u32>, String>| {
                for i in 0..100 {
                    let mut c = h.spare().unwrap_or_default();
                    c.clear();
                    c.push(i);
                    assert!(h.send(c));
                }
                Ok(())
            },
            |c| {
                seen.extend(c);
                Ok(())
            },
        );
        assert_eq!((all, seen), (Ok(()), (0..100).collect::<Vec<_>>()));

        let mut consumed = 0;
        let produced = two_stage(
            |h: &Handoff<u32, String>| {
                (0..10).for_each(|i| assert!(h.send(i)));
                Err("chunk 10 is corrupt".to_string())
            },
            |_| {
                consumed += 1;
                Ok(())
            },
        );
        assert_eq!((produced, consumed), (Err("chunk 10 is corrupt".to_string()), 10));

        let mut sends = 0;
        let consumer = two_stage(
            |h: &Handoff<u32, String>| {
                while h.send(1) {
                    sends += 1;
                }
                Ok(())
            },
            |_| Err("the consumer stops".to_string()),
        );
        assert_eq!(consumer, Err("the consumer stops".to_string()));
        assert!(sends <= AHEAD + 1, "the producer stopped soon after the consumer: {sends} sends");
    }
}

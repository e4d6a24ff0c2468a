//! The log's events as stored: bundles of consecutive envelopes under the first one's
//! seq ([`Cf::Bundles`], format 7 on), after the one-envelope-per-key values older
//! formats wrote ([`Cf::Events`]). [`LogCursor`] reads both in seq order from any seq.
//!
//! [`Cf::Bundles`]: crate::Cf::Bundles
//! [`Cf::Events`]: crate::Cf::Events

use crate::cf::{self, BUNDLE_LEN_BYTES};
use crate::envelope::{EnvelopeRef, Seq};
use crate::error::StoreError;
use crate::store::{EventStore, decode_seq_key};
use rocksdb::{ColumnFamily, DBRawIterator, WriteBatch};

/// One bundle being built by the writer: envelopes encoded straight into it, each behind
/// its length.
#[derive(Default)]
pub(crate) struct BundleBuf {
    first_seq: u64,
    events: usize,
    bytes: Vec<u8>,
}

impl BundleBuf {
    pub(crate) fn is_full(&self) -> bool {
        self.events == cf::BUNDLE_EVENTS
    }

    pub(crate) fn push(&mut self, env: &EnvelopeRef<'_>) {
        if self.events == 0 {
            self.first_seq = env.seq.0;
        }
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; BUNDLE_LEN_BYTES]);
        env.encode_into(&mut self.bytes);
        let len = u32::try_from(self.bytes.len() - at - BUNDLE_LEN_BYTES)
            .expect("an envelope is bounded by the request and stream id limits, far below 4 GiB");
        self.bytes[at..at + BUNDLE_LEN_BYTES].copy_from_slice(&len.to_le_bytes());
        self.events += 1;
    }

    /// Adds the bundle to `wb` under its first seq, if it holds any event, and empties it
    /// for the next (its buffer kept).
    pub(crate) fn write_into(&mut self, wb: &mut WriteBatch, bundles: &ColumnFamily) {
        if self.events > 0 {
            wb.put_cf(bundles, cf::seq_key(self.first_seq), &self.bytes);
        }
        self.events = 0;
        self.bytes.clear();
    }
}

/// Appends one already encoded envelope to a bundle value, behind its length.
pub(crate) fn push_entry(value: &mut Vec<u8>, entry: &[u8]) {
    let len = u32::try_from(entry.len()).expect("an envelope is far below 4 GiB");
    value.extend_from_slice(&len.to_le_bytes());
    value.extend_from_slice(entry);
}

/// Every entry of one bundle value: `first_seq` and on, each entry's seq and bytes.
pub(crate) fn entries(first_seq: u64, value: &[u8]) -> impl Iterator<Item = Result<(u64, &[u8]), StoreError>> {
    let mut offset = 0;
    let mut seq = first_seq;
    std::iter::from_fn(move || {
        if offset == value.len() {
            return None;
        }
        let entry = entry_at(value, offset, seq);
        match &entry {
            Ok(range) => offset = range.end,
            Err(_) => offset = value.len(),
        }
        seq += 1;
        Some(entry.map(|range| (seq - 1, &value[range])))
    })
}

/// The bytes of the entry at `offset` of a bundle, which holds `seq`.
fn entry_at(value: &[u8], offset: usize, seq: u64) -> Result<std::ops::Range<usize>, StoreError> {
    let truncated = || StoreError::Corrupt { seq: Seq(seq), reason: "its bundle is truncated".into() };
    let start = offset + BUNDLE_LEN_BYTES;
    let len = value.get(offset..start).ok_or_else(truncated)?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    let end = start.checked_add(len).filter(|&end| end <= value.len()).ok_or_else(truncated)?;
    Ok(start..end)
}

/// Reads the log's stored envelopes in seq order from any seq, checking there is no gap:
/// from [`Cf::Events`] below the store's first bundled seq, then from [`Cf::Bundles`].
/// Not an `Iterator`: each entry borrows the value the cursor is on.
pub struct LogCursor<'a> {
    store: &'a EventStore,
    raw: DBRawIterator<'a>,
    bundles: bool,
    /// Whether `raw` is on a value that `at` and `offset` describe.
    placed: bool,
    /// The value's entries before `offset` were read or skipped.
    offset: usize,
    /// The seq of the entry at `offset`.
    at: u64,
    /// The seq to read next.
    next: u64,
    /// Every entry of the current value was read: move on before reading again.
    spent: bool,
}

impl<'a> LogCursor<'a> {
    pub(crate) fn new(store: &'a EventStore, from: u64) -> Self {
        let next = from.max(1);
        let bundles = next >= store.bundled_from();
        let mut raw = store.events_iterator(bundles);
        if bundles {
            // The bundle holding `next` starts at or before it.
            raw.seek_for_prev(cf::seq_key(next));
            if !raw.valid() {
                raw.seek(cf::seq_key(next));
            }
        } else {
            raw.seek(cf::seq_key(next));
        }
        LogCursor { store, raw, bundles, placed: false, offset: 0, at: 0, next, spent: false }
    }

    /// The next event's seq and stored bytes (an `Envelope` in postcard); `None` past the
    /// last stored event.
    #[allow(clippy::should_implement_trait)] // lending: the bytes borrow the cursor
    pub fn next(&mut self) -> Option<Result<(Seq, &[u8]), StoreError>> {
        let range = match self.locate() {
            Ok(Some(range)) => range,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        let seq = self.next;
        self.next += 1;
        self.at += 1;
        self.offset = range.end;
        let value = self.raw.value().expect("placed on a value");
        // One event per value before bundles: the next one is under the next key.
        self.spent = !self.bundles || range.end == value.len();
        Some(Ok((Seq(seq), &value[range])))
    }

    /// Places the cursor on the entry of `self.next` and returns its bytes' range.
    fn locate(&mut self) -> Result<Option<std::ops::Range<usize>>, StoreError> {
        loop {
            if self.spent {
                self.raw.next();
                (self.placed, self.spent) = (false, false);
            }
            if !self.bundles && self.next >= self.store.bundled_from() {
                self.bundles = true;
                self.placed = false;
                self.raw = self.store.events_iterator(true);
                self.raw.seek(cf::seq_key(self.next));
            }
            if !self.placed {
                if !self.raw.valid() {
                    self.raw.status()?;
                    return Ok(None);
                }
                let key = self.raw.key().and_then(decode_seq_key).ok_or_else(|| StoreError::Corrupt {
                    seq: Seq(self.next),
                    reason: "an events key is not 8 bytes".into(),
                })?;
                if key > self.next {
                    return Err(StoreError::Corrupt {
                        seq: Seq(self.next),
                        reason: format!("missing: the log jumps to seq {key}"),
                    });
                }
                (self.placed, self.offset, self.at) = (true, 0, key);
            }
            let value = self.raw.value().expect("placed on a value");
            if !self.bundles {
                return Ok(Some(0..value.len()));
            }
            // A bundle a seek found may start before the seq asked for: skip to it. One
            // that ends before it means the seq is under a later key.
            if self.offset == value.len() && self.offset > 0 {
                self.spent = true;
                continue;
            }
            let range = entry_at(value, self.offset, self.at)?;
            if self.at == self.next {
                return Ok(Some(range));
            }
            self.offset = range.end;
            self.at += 1;
        }
    }
}

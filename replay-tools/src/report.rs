//! `kyso-replay report`: the example a reporting team copies. It consumes the registry's
//! JetStream stream and keeps issued certificates per day, district and CA — the CSV the
//! province sends upward (R15) — and it is idempotent by seq: its state file holds the
//! last seq it counted together with the counts, written atomically, so a redelivered or
//! republished event is never counted twice.
//!
//! It counts exactly what the registry's counts projection counts (`issued`: first
//! issuances, not switches), keyed by the same cell (`Cell::of`).

use async_nats::jetstream::{self, consumer::pull};
use commands::domain::Event;
use event_store::Envelope;
use futures::StreamExt;
use projections::counts::Cell;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: not a report state file: {1}")]
    State(PathBuf, String),
    #[error("stream message {0}: {1}")]
    Message(u64, String),
    #[error("the stream jumps from seq {last} to {next}: events are missing; not counting past the gap")]
    Gap { last: u64, next: u64 },
}

fn nats(e: impl std::fmt::Display) -> ReportError {
    ReportError::Nats(e.to_string())
}

/// What the consumer keeps between runs.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportState {
    /// Every seq up to this one is counted; nothing after it.
    pub last_seq: u64,
    /// `(day, district, CA)` → issued; stored as rows (JSON keys must be strings).
    #[serde(with = "rows")]
    pub issued: BTreeMap<(String, String, String), u64>,
}

mod rows {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    type Counts = BTreeMap<(String, String, String), u64>;

    pub fn serialize<S: Serializer>(counts: &Counts, s: S) -> Result<S::Ok, S::Error> {
        counts.iter().map(|((day, district, ca), n)| (day, district, ca, n)).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Counts, D::Error> {
        let rows: Vec<(String, String, String, u64)> = Vec::deserialize(d)?;
        Ok(rows.into_iter().map(|(day, district, ca, n)| ((day, district, ca), n)).collect())
    }
}

impl ReportState {
    pub fn load(path: &Path) -> Result<Self, ReportError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ReportError::State(path.into(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ReportError::Io { path: path.into(), source }),
        }
    }

    /// Counts one event of the stream; events at or before `last_seq` are skipped.
    pub fn count(&mut self, env: &Envelope) -> Result<(), ReportError> {
        if env.seq.0 <= self.last_seq {
            return Ok(());
        }
        if env.seq.0 != self.last_seq + 1 {
            return Err(ReportError::Gap { last: self.last_seq, next: env.seq.0 });
        }
        let event = commands::codec::decode(env).map_err(|e| ReportError::Message(env.seq.0, e.to_string()))?;
        if let Event::IssuanceRecorded(i) = &event
            && i.switched_from.is_none()
        {
            let cell = Cell::of(i);
            *self.issued.entry((cell.day.to_string(), cell.district, cell.ca.to_string())).or_default() += 1;
        }
        self.last_seq = env.seq.0;
        Ok(())
    }

    /// Writes the state and the CSV, each to a temporary file renamed into place.
    pub fn save(&self, state: &Path, csv: &Path) -> Result<(), ReportError> {
        let mut out = b"day,district,ca,issued\n".to_vec();
        for ((day, district, ca), n) in &self.issued {
            out.extend_from_slice(format!("{day},{district},{ca},{n}\n").as_bytes());
        }
        write_atomically(csv, &out)?;
        let json = serde_json::to_vec(self).expect("the state serialises");
        write_atomically(state, &json)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io = |source| ReportError::Io { path: path.into(), source };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Consumes `stream` from after the state's last seq, saving after every fetched batch.
/// Without `follow`, returns once a fetch brings nothing new.
pub async fn run(
    url: &str,
    stream: &str,
    state_path: &Path,
    csv: &Path,
    follow: bool,
) -> Result<ReportState, ReportError> {
    let mut state = ReportState::load(state_path)?;
    let js = jetstream::new(async_nats::connect(url).await.map_err(nats)?);
    let stream = js.get_stream(stream).await.map_err(nats)?;
    // An ephemeral consumer starting after our own checkpoint: the state file is the cursor,
    // so nothing needs acknowledging.
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: state.last_seq + 1 },
            ack_policy: jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    loop {
        let mut batch =
            consumer.fetch().max_messages(4096).expires(Duration::from_secs(1)).messages().await.map_err(nats)?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(nats)?;
            let env: Envelope = postcard::from_bytes(&message.payload)
                .map_err(|e| ReportError::Message(state.last_seq + 1, format!("not a postcard envelope: {e}")))?;
            state.count(&env)?;
            got += 1;
        }
        if got > 0 {
            state.save(state_path, csv)?;
        } else if !follow {
            state.save(state_path, csv)?;
            return Ok(state);
        }
    }
}

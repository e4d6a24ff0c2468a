//! Runs the campaign domain inside the sequencer: decide against the in-memory registry,
//! log the refusals audits need, stage events with their subjects, and apply them.

use crate::codec::{self, DecodeError};
use crate::domain::event::DemandId;
use crate::domain::{Campaign, Command, Event, Registry, Rejection, apply, decide, refusal_event};
use crate::sequencer::Handler;
use event_store::{
    AppendError, Batch, Cf, EventStore, ExpectedVersion, LogWriter, Metadata, RegistryTime, Seq, StoreError,
    StreamAppend,
};
use std::sync::Arc;

/// A command and who sent it.
#[derive(Debug, Clone)]
pub struct Submission {
    pub meta: Metadata,
    pub command: Command,
}

/// The command happened. `events` is empty when it changed nothing (e.g. a re-import).
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub seqs: Option<(Seq, Seq)>,
    pub events: Vec<Event>,
}

/// Why a submitted command did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A rule said no. `logged_seq` is the `AttemptRefused` fact recorded for audits (R13).
    #[error("{rejection}")]
    Rejected { rejection: Rejection, logged_seq: Option<Seq> },
    #[error(transparent)]
    Storage(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

pub struct Registrar {
    registry: Registry,
    store: Arc<EventStore>,
    campaign: Campaign,
}

/// Folds the whole log into a registry.
pub fn replay(store: &EventStore, campaign: &Campaign) -> Result<Registry, OpenError> {
    let mut registry = Registry::new(campaign.clone());
    for env in store.read_from(Seq(1)) {
        let env = env?;
        apply(&mut registry, env.seq, env.recorded_at, &codec::decode(&env)?);
    }
    Ok(registry)
}

impl Registrar {
    pub fn open(store: Arc<EventStore>, campaign: Campaign) -> Result<Self, OpenError> {
        Ok(Self { registry: replay(&store, &campaign)?, store, campaign })
    }

    /// Stages the events of one command (all or none) and applies them.
    fn record(
        &mut self,
        writer: &mut LogWriter,
        batch: &mut Batch,
        meta: &Metadata,
        events: &[Event],
    ) -> Result<Option<(Seq, Seq)>, StoreError> {
        if events.is_empty() {
            return Ok(None);
        }
        let recorded_at = batch.recorded_at();
        let appends = events
            .iter()
            .map(|e| {
                let (stream, data) = codec::encode(e);
                StreamAppend { stream, expected: ExpectedVersion::Any, events: vec![data] }
            })
            .collect();
        let staged = writer.stage(batch, meta, appends).map_err(|e| match e {
            AppendError::Store(e) => e,
            // Any version is expected and stream ids are ours: neither can fail.
            other => unreachable!("domain appends cannot conflict: {other}"),
        })?;
        for (offset, e) in events.iter().enumerate() {
            self.index_deadline(batch, e);
            apply(&mut self.registry, Seq(staged.first_seq.0 + offset as u64), recorded_at, e);
        }
        Ok(Some((staged.first_seq, staged.last_seq)))
    }
}

/// `due_at (i64 BE, offset so that byte order is time order) ‖ demand id (u64 BE)`.
pub fn deadline_key(due_at: RegistryTime, demand: DemandId) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&((due_at.0 as u64) ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(&demand.to_be_bytes());
    key
}

/// Parses a `deadlines` key back; `None` if it is not one.
pub fn parse_deadline_key(key: &[u8]) -> Option<(RegistryTime, DemandId)> {
    let due = u64::from_be_bytes(key.get(..8)?.try_into().ok()?) ^ (1 << 63);
    let demand = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    Some((RegistryTime(due as i64), demand))
}

impl Registrar {
    /// R12: an open demand has an entry in the deadline index until the CA acts, it expires
    /// or an issuance closes it; the entry changes in the same batch as the event.
    fn index_deadline(&self, batch: &mut Batch, e: &Event) {
        let closed = match e {
            Event::DemandRegistered { demand, expires_at, .. } => {
                batch.put(Cf::Deadlines, deadline_key(*expires_at, *demand), Vec::new());
                return;
            }
            Event::DemandAcknowledged { demand, .. } | Event::DemandExpired { demand, .. } => Some(*demand),
            Event::IssuanceRecorded(i) => i.closed_demand,
            _ => None,
        };
        if let Some(d) = closed.and_then(|id| self.registry.demands.get(&id).map(|d| (id, d))) {
            batch.delete(Cf::Deadlines, deadline_key(d.1.expires_at, d.0));
        }
    }
}

impl Handler for Registrar {
    type Command = Submission;
    type Reply = Result<Accepted, CommandError>;

    fn handle(&mut self, writer: &mut LogWriter, batch: &mut Batch, sub: Submission) -> Self::Reply {
        match decide(&self.registry, &sub.command, batch.recorded_at()) {
            Ok(events) => {
                let seqs = self.record(writer, batch, &sub.meta, &events)?;
                Ok(Accepted { seqs, events })
            }
            Err(rejection) => {
                let logged: Vec<Event> = refusal_event(&sub.command, &rejection).into_iter().collect();
                let logged_seq = self.record(writer, batch, &sub.meta, &logged)?.map(|(first, _)| first);
                Err(CommandError::Rejected { rejection, logged_seq })
            }
        }
    }

    /// The batch never reached disk: the registry forgets it by folding the log again.
    /// Slow, and only after a failed write (e.g. a full disk).
    fn rolled_back(&mut self) {
        match replay(&self.store, &self.campaign) {
            Ok(registry) => self.registry = registry,
            Err(e) => panic!("the committed log no longer replays after a failed batch: {e}"),
        }
    }
}

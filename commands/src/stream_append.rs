//! The generic command: append events to streams with an expected version. The foundation
//! runs on it (crash tests, benchmarks); the campaign domain adds its own handler.

use crate::sequencer::Handler;
use event_store::{AppendError, Batch, LogWriter, Metadata, Staged, StreamAppend};

/// Append these events, each stream at its expected version, all or nothing.
#[derive(Debug, Clone)]
pub struct AppendToStreams {
    pub meta: Metadata,
    pub appends: Vec<StreamAppend>,
}

/// Runs [`AppendToStreams`] with no domain rules beyond optimistic concurrency.
#[derive(Debug, Default)]
pub struct StreamAppender;

impl Handler for StreamAppender {
    type Command = AppendToStreams;
    type Reply = Result<Staged, AppendError>;

    fn handle(&mut self, writer: &mut LogWriter, batch: &mut Batch, cmd: AppendToStreams) -> Self::Reply {
        writer.stage(batch, &cmd.meta, cmd.appends)
    }
}

//! Commands and the one writer that runs them.
//!
//! - [`sequencer`]: bounded queue → one thread → group commit → answers.
//! - [`clock`]: the only place time comes from.
//! - [`stream_append`]: the generic append command.

pub mod clock;
pub mod sequencer;
pub mod stream_append;

pub use clock::{Clock, ManualClock, SystemClock};
pub use sequencer::{Handler, Sequencer, SequencerConfig, SequencerStats, SubmitError};
pub use stream_append::{AppendToStreams, StreamAppender};

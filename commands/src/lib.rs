//! Commands and the one writer that runs them.
//!
//! - [`sequencer`]: bounded queue → one thread → group commit → answers.
//! - [`clock`]: the only place time comes from.
//! - [`stream_append`]: the generic append command.
//! - [`domain`]: the campaign's rules, pure (`decide`, `apply`); [`registrar`] runs them in
//!   the sequencer, [`codec`] maps their events to stored envelopes and [`snapshot`] keeps
//!   the registry's state so start-up folds only the log's tail.

pub mod clock;
pub mod codec;
pub mod domain;
pub mod import;
pub mod registrar;
pub mod scheduler;
pub mod sequencer;
pub mod snapshot;
pub mod stream_append;

pub use clock::{Clock, ManualClock, SystemClock};
pub use sequencer::{Handler, Sequencer, SequencerConfig, SequencerStats, SubmitError};
pub use stream_append::{AppendToStreams, StreamAppender};

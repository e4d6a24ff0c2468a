//! Where the registry's time comes from. The domain never reads a clock: the sequencer reads
//! one of these once per batch and hands `now` in, so a replay sees the same time.

use event_store::RegistryTime;
use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> RegistryTime;
}

/// The wall clock (UTC milliseconds).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
    fn now(&self) -> RegistryTime {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("the system clock is after 1970");
        RegistryTime(since_epoch.as_millis() as i64)
    }
}

/// A clock that moves only when told: tests and `--test-clock`.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: RegistryTime) -> Self {
        Self(AtomicI64::new(start.0))
    }
    pub fn set(&self, t: RegistryTime) {
        self.0.store(t.0, Ordering::SeqCst);
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> RegistryTime {
        RegistryTime(self.0.load(Ordering::SeqCst))
    }
}

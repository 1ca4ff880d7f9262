//! Go's back-off for failures that resources freeing up will cure.

use std::time::Duration;

/// Go's accept back-off: 5 ms, doubling, at most 1 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    delay: Duration,
    pub(crate) failures: u64,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Backoff {
            delay: Self::MIN,
            failures: 0,
        }
    }

    /// Returns the delay to wait now, and doubles the next.
    pub(crate) fn next(&mut self) -> Duration {
        let d = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        self.failures += 1;
        d
    }

    /// After a success: returns how many failures the episode had.
    pub(crate) fn reset(&mut self) -> u64 {
        self.delay = Self::MIN;
        std::mem::take(&mut self.failures)
    }
}

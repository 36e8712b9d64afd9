//! The service's notion of "now": the wall clock read once at start, advanced by tokio's
//! monotonic clock. Timers sleep on tokio's clock, so tests drive them with a paused clock.

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct TimeSource {
    wall0: Timestamp,
    mono0: Instant,
}

impl TimeSource {
    pub fn new(wall_now: Timestamp) -> Self {
        Self {
            wall0: wall_now,
            mono0: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.mono0.elapsed()).unwrap_or(SignedDuration::MAX);
        self.wall0.saturating_add(elapsed).unwrap_or(self.wall0)
    }

    /// The tokio instant at which the wall clock will read `t` (now if `t` has passed).
    pub fn instant_at(&self, t: Timestamp) -> Instant {
        let ahead = t.duration_since(self.now());
        if ahead.is_negative() {
            return Instant::now();
        }
        Instant::now() + ahead.unsigned_abs()
    }
}

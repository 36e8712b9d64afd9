//! The service's clock: wall time anchored once at start and advanced by tokio's monotonic
//! clock. Events get their instants from it, and timers turn due instants back into tokio
//! deadlines with it, so a test on tokio's paused clock moves both together.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: Timestamp,
    mono: Instant,
}

impl Clock {
    /// Anchored at the wall clock now.
    pub fn start() -> Self {
        Self::starting_at(Timestamp::now())
    }

    /// Anchored at `wall` (tests).
    pub fn starting_at(wall: Timestamp) -> Self {
        Self {
            wall,
            mono: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.mono.elapsed()).unwrap_or(SignedDuration::MAX);
        self.wall.checked_add(elapsed).unwrap_or(Timestamp::MAX)
    }

    /// The tokio instant at which `at` comes (now, if it is past).
    pub fn instant_at(&self, at: Timestamp) -> Instant {
        let since = at.duration_since(self.wall);
        if since.is_negative() {
            return self.mono;
        }
        let d = Duration::try_from(since).unwrap_or(Duration::from_secs(u32::MAX as u64));
        self.mono
            .checked_add(d)
            .unwrap_or_else(|| self.mono + Duration::from_secs(u32::MAX as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wall_time_follows_tokio_time() {
        let t0: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let clock = Clock::starting_at(t0);
        assert_eq!(clock.now(), t0);
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), "2026-12-02T10:01:30Z".parse().unwrap());
        let due: Timestamp = "2026-12-02T10:05:00Z".parse().unwrap();
        tokio::time::sleep_until(clock.instant_at(due)).await;
        assert_eq!(clock.now(), due);
        assert!(clock.instant_at(t0) <= Instant::now());
    }
}

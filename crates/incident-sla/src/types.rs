//! Small vocabulary types shared by every module: [`Priority`], [`Status`], [`ClockKind`] and
//! [`ReopenMode`].
//!
//! `Priority` and `Status` are the incident domain's own (same serde spelling: `"P1"`,
//! `"on_hold"`), so clocks and incidents speak one vocabulary.

use serde::{Deserialize, Serialize};
use std::fmt;

pub use incident_domain::{Priority, Status};

/// Which of an incident's two clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    /// Opening -> acknowledgement (or resolution when nobody acknowledged).
    Response,
    /// Opening -> resolution.
    Resolution,
}

impl ClockKind {
    /// `"response"` or `"resolution"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClockKind::Response => "response",
            ClockKind::Resolution => "resolution",
        }
    }
}

impl fmt::Display for ClockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a reopen does to the resolution clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReopenMode {
    /// A new resolution cycle starts at the reopen instant with zero elapsed time (default).
    #[default]
    Restart,
    /// The resolution clock resumes from the business time it had when it was resolved; the
    /// time between resolution and reopen is not counted.
    Continue,
}

impl ReopenMode {
    /// `"restart"` or `"continue"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReopenMode::Restart => "restart",
            ReopenMode::Continue => "continue",
        }
    }
}

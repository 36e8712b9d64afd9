//! Small vocabulary types shared by every module: [`Priority`], [`Status`], [`ClockKind`] and
//! [`ReopenMode`].
//!
//! They mirror `incident-domain`'s `Priority` and `Status` (same serde spelling: `"P1"`,
//! `"on_hold"`) without depending on that crate, so this crate stays a leaf that can be built,
//! tested and replayed on its own. The service maps one to the other one-to-one.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Incident priority; P1 is the most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    /// Most urgent.
    P1,
    /// High.
    P2,
    /// Medium.
    P3,
    /// Low.
    P4,
    /// Lowest.
    P5,
}

impl Priority {
    /// All priorities, most urgent first.
    pub const ALL: [Priority; 5] = [
        Priority::P1,
        Priority::P2,
        Priority::P3,
        Priority::P4,
        Priority::P5,
    ];

    /// `"P1"` .. `"P5"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
            Priority::P5 => "P5",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not `P1`..`P5` (any case).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?}; expected P1, P2, P3, P4 or P5")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    /// Parses `P1`..`P5`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownPriority(s.to_string()))
    }
}

/// Incident lifecycle status, as the domain spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Newly opened, nobody acknowledged it yet.
    Open,
    /// Someone took it.
    Acknowledged,
    /// Work is going on.
    InProgress,
    /// Waiting on someone else; paused by default.
    OnHold,
    /// Fixed.
    Resolved,
    /// Closed after resolution.
    Closed,
}

impl Status {
    /// All statuses in lifecycle order.
    pub const ALL: [Status; 6] = [
        Status::Open,
        Status::Acknowledged,
        Status::InProgress,
        Status::OnHold,
        Status::Resolved,
        Status::Closed,
    ];

    /// The snake_case name used in policies and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::InProgress => "in_progress",
            Status::OnHold => "on_hold",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    /// `resolved` or `closed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Resolved | Status::Closed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the six statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown status {0:?}; expected one of open, acknowledged, in_progress, on_hold, resolved, closed"
)]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    /// Parses the snake_case name (exact, lowercase).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s.trim())
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// Which of an incident's two SLA clocks.
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

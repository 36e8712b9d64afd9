//! Every error this crate returns: [`PolicyError`] for configuration (policies, calendars) with
//! the place in the file it is about, and [`ClockError`] for running the clocks.

use crate::types::Priority;
use jiff::Timestamp;
use thiserror::Error;

/// A policy file, a calendar or a recorded policy version was rejected. `place` names where
/// (`calendars.paris-office.hours.mon`, `policies[0] "standard".response.P1`, ...).
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{place}: {kind}")]
pub struct PolicyError {
    /// Where the problem is, as a dotted path into the file.
    pub place: String,
    /// What is wrong.
    pub kind: PolicyErrorKind,
}

impl PolicyError {
    pub(crate) fn new(place: impl Into<String>, kind: PolicyErrorKind) -> Self {
        PolicyError {
            place: place.into(),
            kind,
        }
    }
}

/// The kinds of configuration errors.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The text is not valid TOML or does not have the expected shape (unknown key, wrong type);
    /// the message carries the line and column.
    #[error("cannot read the policy file: {0}")]
    Parse(String),
    /// A recorded policy version is not valid JSON of the expected shape.
    #[error("cannot read the recorded policy JSON: {0}")]
    Json(String),
    /// A policy names a calendar that is neither defined nor built in.
    #[error("unknown calendar {name:?} (known: {known})")]
    UnknownCalendar {
        /// The name used.
        name: String,
        /// The names that exist, comma separated.
        known: String,
    },
    /// `24x7` is the built-in always-working calendar and cannot be redefined.
    #[error("calendar name {0:?} is reserved for the built-in always-working calendar")]
    ReservedCalendarName(String),
    /// Not an IANA time zone name known to the system's tz database.
    #[error("unknown time zone {name:?}: {reason}")]
    BadTimeZone {
        /// The name used.
        name: String,
        /// What jiff said.
        reason: String,
    },
    /// Working hours are not `"HH:MM-HH:MM"` ranges separated by commas.
    #[error(
        "bad working hours {value:?}: {reason}; expected ranges like \"08:00-12:00,13:00-17:00\""
    )]
    BadHours {
        /// The text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key in `hours` is not `mon`..`sun`.
    #[error("unknown weekday {0:?}; expected mon, tue, wed, thu, fri, sat or sun")]
    UnknownWeekday(String),
    /// Two ranges of the same day overlap.
    #[error("working hours {first} and {second} overlap")]
    OverlappingHours {
        /// The earlier range.
        first: String,
        /// The range that starts before `first` ends.
        second: String,
    },
    /// A calendar without any working hours would never let an SLA elapse.
    #[error("calendar has no working hours on any weekday")]
    NoWorkingHours,
    /// A holiday that is not a `YYYY-MM-DD` date.
    #[error("bad holiday date {value:?}: {reason}")]
    BadHoliday {
        /// The text.
        value: String,
        /// What jiff said.
        reason: String,
    },
    /// A target that is not a positive `"1h30m"`-style duration.
    #[error("bad duration {value:?}: {reason}")]
    BadDuration {
        /// The text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `warn_at` fractions must be strictly between 0 and 1 (1.0 is the breach itself).
    #[error("warning fraction {0} must be strictly between 0 and 1")]
    WarnAtOutOfRange(f64),
    /// Escalation `at` must be a finite number greater than 0 (it may exceed 1).
    #[error("escalation `at` {0} must be a number greater than 0")]
    EscalationAtNotPositive(f64),
    /// Escalation levels start at 1.
    #[error("escalation level must be at least 1")]
    EscalationLevelZero,
    /// Each escalation level may appear once per policy.
    #[error("escalation level {0} is used more than once")]
    DuplicateEscalationLevel(u32),
    /// A priority key or filter value that is not `P1`..`P5`.
    #[error("unknown priority {0:?}; expected P1, P2, P3, P4 or P5")]
    UnknownPriority(String),
    /// A `pause_on` entry that is not a status.
    #[error(
        "unknown status {0:?}; expected one of open, acknowledged, in_progress, on_hold, resolved, closed"
    )]
    UnknownStatus(String),
    /// `reopen` must be `restart` or `continue`.
    #[error("unknown reopen mode {0:?}; expected \"restart\" or \"continue\"")]
    BadReopenMode(String),
    /// Policies need a name (it is reported with every timer).
    #[error("policy name must not be empty")]
    EmptyPolicyName,
    /// Policy names identify policies in reports and must be unique.
    #[error("policy name {0:?} is used more than once")]
    DuplicatePolicyName(String),
    /// A policy set needs at least one `[[policies]]`.
    #[error("no [[policies]] defined")]
    NoPolicies,
}

/// Running the clocks failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClockError {
    /// Inputs must be applied in time order; this one is earlier than one already applied.
    #[error("input at {at} is earlier than the last applied input at {last}")]
    OutOfOrder {
        /// The rejected input's instant.
        at: Timestamp,
        /// The latest instant already applied.
        last: Timestamp,
    },
    /// No policy of the set matches the incident and there is no catch-all policy.
    #[error("no policy matches service {service:?}, group {group:?}, priority {priority}")]
    NoMatchingPolicy {
        /// The incident's service.
        service: String,
        /// The incident's assignment group.
        group: String,
        /// The incident's priority.
        priority: Priority,
    },
}

//! # incident-sla
//!
//! Pure SLA arithmetic for the incident backend: business calendars, policies loaded from TOML,
//! per-incident response and resolution clocks, timers (warnings, breaches, escalations) as
//! data, and reporting. No I/O, no clock reads, no async: time comes in as
//! [`jiff::Timestamp`] values and every answer is a function of (policy, calendar, inputs), so
//! a service can persist what it derives and a tool can replay history under another policy.
//!
//! | module | owns |
//! |---|---|
//! | [`calendar`] | time zones, working hours, holidays, `24x7`; business elapsed / add |
//! | [`duration`] | `"1h30m"`-style durations |
//! | [`policy`] | the TOML contract, validation, selection, content hash, JSON versions |
//! | [`clock`] | the per-incident state machine and its due timers |
//! | [`report`] | compliance statistics and what-if replays |
//!
//! Durations are [`jiff::SignedDuration`] everywhere; policy targets are whole seconds.
//!
//! ## Example
//!
//! ```
//! use incident_sla::{ClockInput, ClockState, DueKind, IncidentClocks, PolicySet, Priority, Status};
//! use jiff::{SignedDuration, Timestamp};
//!
//! let policies = PolicySet::from_toml(r#"
//!     [calendars.paris-office]
//!     timezone = "Europe/Paris"
//!     hours = { mon = "08:00-18:00", tue = "08:00-18:00", wed = "08:00-18:00", thu = "08:00-18:00", fri = "08:00-18:00" }
//!     holidays = ["2026-12-25"]
//!
//!     [[policies]]
//!     name = "standard"
//!     calendar = "paris-office"
//!     warn_at = [0.5]
//!     [policies.calendars]
//!     P1 = "24x7"
//!     [policies.response]
//!     P1 = "15m"
//!     P3 = "1h"
//!     [policies.resolution]
//!     P1 = "4h"
//!     P3 = "2h"
//!     [[policies.escalation]]
//!     at = 1.0
//!     level = 1
//! "#)?;
//! println!("policy version {}", policies.hash());
//!
//! // Friday 2026-03-06 17:00 in Paris, a P3 incident on the office calendar.
//! let opened: Timestamp = "2026-03-06T16:00:00Z".parse()?;
//! let mut clocks = IncidentClocks::start(&policies, opened, Priority::P3, "mail", "it-ops")?;
//!
//! // 2h of business time: 1h on Friday, 1h on Monday morning -> Monday 09:00 Paris.
//! let state = clocks.state_at(opened);
//! assert_eq!(state.resolution.due_at, Some("2026-03-09T08:00:00Z".parse()?));
//!
//! // Timers are data: the first is the response warning at 30 business minutes.
//! let first = clocks.next_due().expect("a timer");
//! assert!(matches!(first.kind, DueKind::Warning { fraction: 0.5, .. }));
//! assert_eq!(first.at, "2026-03-06T16:30:00Z".parse()?);
//! clocks.mark_fired(&first, first.at)?; // recorded as an input, so replay agrees
//!
//! clocks.apply(ClockInput::Acknowledged { at: "2026-03-06T16:40:00Z".parse()? })?;
//! clocks.apply(ClockInput::StatusChanged { at: "2026-03-06T16:50:00Z".parse()?, status: Status::OnHold })?;
//! let state = clocks.state_at("2026-03-09T12:00:00Z".parse()?);
//! assert_eq!(state.response.state, ClockState::Met);
//! assert_eq!(state.resolution.state, ClockState::Paused);
//! assert_eq!(state.resolution.elapsed, SignedDuration::from_mins(50));
//! assert_eq!(state.resolution.due_at, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod calendar;
pub mod clock;
pub mod duration;
pub mod error;
pub mod incident_events;
pub mod policy;
pub mod report;
pub mod types;

pub use calendar::{ALWAYS, Calendar, CalendarSpec, TimeRange};
pub use clock::{
    ClockInput, ClockState, ClockView, CycleSummary, Due, DueKey, DueKind, DueWhy, IncidentClocks,
    IncidentState, PausedInterval,
};
pub use duration::{DurationError, format_duration, parse_duration};
pub use error::{ClockError, PolicyError, PolicyErrorKind};
pub use policy::{
    Escalation, EscalationSpec, MatchFilter, MatchSpec, Policy, PolicyBinding, PolicySet,
    PolicySetSpec, PolicySpec,
};
pub use report::{
    ClockOutcome, Compliance, IncidentHistory, IncidentOutcome, SlaResult, Stats, TimeBasis,
    WhatIfReport, WhatIfSkip, report_by, report_by_priority, summarize, what_if,
};
pub use types::{ClockKind, Priority, ReopenMode, Status};

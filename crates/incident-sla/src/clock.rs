//! The per-incident SLA clocks as a pure state machine, and the timers derived from them.
//!
//! [`IncidentClocks`] owns a **response** clock (opening -> acknowledgement, or resolution when
//! nobody acknowledged) and a **resolution** clock (opening -> resolution). Both are paused
//! while the status is in the policy's `pause_on`, re-targeted when the priority changes, and
//! the resolution clock restarts or continues on reopen per the policy.
//!
//! Everything is a function of (binding, opening, inputs): [`IncidentClocks::apply`] takes
//! [`ClockInput`]s in time order, [`IncidentClocks::state_at`] answers for any instant (earlier
//! instants are answered by replaying the recorded inputs), and [`IncidentClocks::due`] lists
//! the timers ([`Due`]) that have not been marked fired. Marking is itself an input
//! ([`ClockInput::TimerFired`]), so replaying the same input log gives the same answers.
//!
//! # Rules
//!
//! * Business time of a clock is the sum of its *running segments*, each measured on the
//!   calendar in force during that segment (the calendar may change with the priority).
//! * A clock breaches when its elapsed business time reaches its target (a stop exactly at the
//!   deadline is a breach). When a priority change lowers the target below the time already
//!   elapsed, the breach happens at the change instant. A breach is sticky: a clock stopped
//!   after breaching reports [`ClockState::Breached`] with `stopped_at` set.
//! * A threshold (warning, breach, escalation) becomes due at the instant elapsed business time
//!   reaches it, or at the instant the current target was set if that is later.
//! * Paused and stopped clocks have no due items; clocks without a target have none either.
//! * Fired items are remembered per resolution *cycle* (a restart on reopen starts a new
//!   cycle): a warning is re-armed when the target changes (a new 50% instant is a new
//!   warning), a breach fires once per cycle, an escalation level fires once per cycle.
//! * Warnings are not offered any more once the clock has breached.

use crate::error::ClockError;
use crate::policy::{PolicyBinding, PolicySet};
use crate::report::IncidentOutcome;
use crate::types::{ClockKind, Priority, ReopenMode, Status};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::sync::Arc;

/// Something that happened to the incident, with the instant it happened. Apply in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClockInput {
    /// The status changed. Drives pausing; also, for callers that only feed status changes:
    /// `acknowledged`/`in_progress` before any acknowledgement acknowledges, `resolved`/`closed`
    /// resolves, and a non-terminal status after resolution reopens.
    StatusChanged {
        /// When.
        at: Timestamp,
        /// The new status.
        status: Status,
    },
    /// Someone acknowledged the incident: the response clock is met (if not already stopped).
    Acknowledged {
        /// When.
        at: Timestamp,
    },
    /// The incident was resolved: both clocks stop.
    Resolved {
        /// When.
        at: Timestamp,
    },
    /// The incident was reopened after resolution; ignored otherwise. The status goes back to
    /// `in_progress` (or `open` if it was never acknowledged).
    Reopened {
        /// When.
        at: Timestamp,
    },
    /// The priority changed: running and paused clocks get the new target and calendar,
    /// keeping the business time already elapsed.
    PriorityChanged {
        /// When.
        at: Timestamp,
        /// The new priority.
        priority: Priority,
    },
    /// The caller fired a due item; it is not offered again.
    TimerFired {
        /// When it was fired.
        at: Timestamp,
        /// The [`Due::key`] of the fired item.
        key: DueKey,
    },
}

impl ClockInput {
    /// The instant of the input.
    pub fn at(&self) -> Timestamp {
        match self {
            ClockInput::StatusChanged { at, .. }
            | ClockInput::Acknowledged { at }
            | ClockInput::Resolved { at }
            | ClockInput::Reopened { at }
            | ClockInput::PriorityChanged { at, .. }
            | ClockInput::TimerFired { at, .. } => *at,
        }
    }
}

/// A stretch of time during which a clock did not run: a pausing status, or (for the resolution
/// clock with `reopen = "continue"`) the time between resolution and reopen (`status =
/// resolved`). `to` is `None` while the pause lasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PausedInterval {
    /// Start of the pause.
    pub from: Timestamp,
    /// End of the pause, `None` while ongoing.
    pub to: Option<Timestamp>,
    /// The status that caused it.
    pub status: Status,
}

/// Reported state of a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockState {
    /// Counting.
    Running,
    /// Not counting because of a pausing status.
    Paused,
    /// Stopped before reaching its target (or stopped without a target).
    Met,
    /// Reached its target; may still be running, paused or stopped (see `stopped_at`).
    Breached,
}

/// A finished resolution cycle, kept when a reopen restarts the resolution clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleSummary {
    /// Cycle number (0 for the first).
    pub cycle: u32,
    /// When the cycle started.
    pub started_at: Timestamp,
    /// When it stopped.
    pub stopped_at: Timestamp,
    /// Its target when it stopped.
    pub target: Option<SignedDuration>,
    /// Business time it counted.
    pub elapsed: SignedDuration,
    /// When it breached, if it did.
    pub breached_at: Option<Timestamp>,
    /// Its pauses.
    pub paused: Vec<PausedInterval>,
}

/// A clock as seen at an instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockView {
    /// Which clock.
    pub clock: ClockKind,
    /// Running, paused, met or breached.
    pub state: ClockState,
    /// Current target; `None` when the policy sets none for the priority.
    pub target: Option<SignedDuration>,
    /// Business time elapsed in the current cycle.
    pub elapsed: SignedDuration,
    /// `target - elapsed`; negative once overdue.
    pub remaining: Option<SignedDuration>,
    /// The instant the target is (or was) reached while running; `None` when paused, stopped or
    /// without target.
    pub due_at: Option<Timestamp>,
    /// When the current cycle breached.
    pub breached_at: Option<Timestamp>,
    /// When the clock stopped (met, or breached-then-stopped).
    pub stopped_at: Option<Timestamp>,
    /// Start of the ongoing pause.
    pub paused_since: Option<Timestamp>,
    /// Pauses of the current cycle.
    pub paused: Vec<PausedInterval>,
    /// Name of the calendar currently in force.
    pub calendar: String,
    /// Current cycle number (resolution restarts increment it).
    pub cycle: u32,
    /// When the current cycle started.
    pub started_at: Timestamp,
    /// Earlier resolution cycles (restart on reopen).
    pub previous_cycles: Vec<CycleSummary>,
}

impl ClockView {
    /// True when this or any earlier cycle breached: what compliance counts.
    pub fn ever_breached(&self) -> bool {
        self.breached_at.is_some() || self.previous_cycles.iter().any(|c| c.breached_at.is_some())
    }

    /// Business time of this and every earlier cycle.
    pub fn total_elapsed(&self) -> SignedDuration {
        self.previous_cycles
            .iter()
            .fold(self.elapsed, |acc, c| acc.saturating_add(c.elapsed))
    }
}

/// The whole incident as seen at an instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentState {
    /// The instant this state is for.
    pub as_of: Timestamp,
    /// Name of the policy in force.
    pub policy: String,
    /// Hash of the policy set it came from.
    pub policy_hash: String,
    /// Current priority.
    pub priority: Priority,
    /// Current status.
    pub status: Status,
    /// Opening instant.
    pub opened_at: Timestamp,
    /// First acknowledgement.
    pub acknowledged_at: Option<Timestamp>,
    /// Latest resolution, `None` while (re)opened.
    pub resolved_at: Option<Timestamp>,
    /// The response clock.
    pub response: ClockView,
    /// The resolution clock.
    pub resolution: ClockView,
}

/// What a due item is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DueKind {
    /// `fraction` of the clock's target reached.
    Warning {
        /// Which clock.
        clock: ClockKind,
        /// One of the policy's `warn_at`.
        fraction: f64,
    },
    /// The clock's target reached.
    Breach {
        /// Which clock.
        clock: ClockKind,
    },
    /// Escalate to `level` (`fraction` of the resolution target reached).
    Escalation {
        /// Level from the policy.
        level: u32,
        /// The step's `at`.
        fraction: f64,
    },
}

impl DueKind {
    /// The clock the item is measured on (escalations use the resolution clock).
    pub fn clock(&self) -> ClockKind {
        match self {
            DueKind::Warning { clock, .. } | DueKind::Breach { clock } => *clock,
            DueKind::Escalation { .. } => ClockKind::Resolution,
        }
    }

    fn rank(&self) -> (u8, u8, f64, u32) {
        let clock_rank = |c: &ClockKind| match c {
            ClockKind::Response => 0,
            ClockKind::Resolution => 1,
        };
        match self {
            DueKind::Warning { clock, fraction } => (0, clock_rank(clock), *fraction, 0),
            DueKind::Breach { clock } => (1, clock_rank(clock), 1.0, 0),
            DueKind::Escalation { level, fraction } => (2, 1, *fraction, *level),
        }
    }
}

/// Identity of a due item, handed back in [`ClockInput::TimerFired`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DueKey {
    /// What it is.
    pub kind: DueKind,
    /// Resolution cycle (always 0 for the response clock).
    pub cycle: u32,
    /// The target the threshold was computed from.
    pub target: SignedDuration,
}

impl DueKey {
    /// Does firing `self` account for `other`? Warnings: same clock, fraction, cycle and target.
    /// Breaches: same clock and cycle. Escalations: same level and cycle.
    pub fn covers(&self, other: &DueKey) -> bool {
        if self.cycle != other.cycle {
            return false;
        }
        match (&self.kind, &other.kind) {
            (
                DueKind::Warning {
                    clock: a,
                    fraction: fa,
                },
                DueKind::Warning {
                    clock: b,
                    fraction: fb,
                },
            ) => a == b && fa == fb && self.target == other.target,
            (DueKind::Breach { clock: a }, DueKind::Breach { clock: b }) => a == b,
            (DueKind::Escalation { level: a, .. }, DueKind::Escalation { level: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// Why a due item is due: everything needed to explain it later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DueWhy {
    /// Policy name.
    pub policy: String,
    /// Hash of the policy set.
    pub policy_hash: String,
    /// Priority at the time of computation.
    pub priority: Priority,
    /// The clock it is measured on.
    pub clock: ClockKind,
    /// The clock's target.
    pub target: SignedDuration,
    /// Business time at which the item is due (`fraction x target`, rounded to the second).
    pub threshold: SignedDuration,
    /// Business time elapsed at `Due::at` (greater than `threshold` when the item became due
    /// because the target changed).
    pub elapsed: SignedDuration,
    /// Calendar in force.
    pub calendar: String,
    /// Pauses of the cycle that started before `Due::at`.
    pub paused: Vec<PausedInterval>,
}

/// A timer to set: at `at`, do `kind`. Items with `at` in the past are overdue: fire now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Due {
    /// When.
    pub at: Timestamp,
    /// What.
    pub kind: DueKind,
    /// Identity, to pass back in [`ClockInput::TimerFired`].
    pub key: DueKey,
    /// Explanation.
    pub why: DueWhy,
}

/// A finished running stretch of a clock, measured on the calendar in force during it.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    from: Timestamp,
    to: Timestamp,
    calendar: Arc<str>,
    /// Business time of the segment.
    elapsed: SignedDuration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Counting since `since`: the open segment, measured on the clock's current calendar.
    Running {
        since: Timestamp,
    },
    Paused {
        since: Timestamp,
    },
    Stopped {
        at: Timestamp,
    },
}

/// One clock. Memory matters here (a service holds two per open incident): the open segment
/// lives in [`Phase::Running`], the calendar name is shared with the policy, and what the clock
/// has been through is out of line in [`ClockPast`], so a clock that has only ever run holds no
/// allocation of its own. Serialises in the form it always had (a list of segments, the open
/// one last), see [`ClockRepr`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "ClockRepr", try_from = "ClockRepr")]
struct Clock {
    kind: ClockKind,
    cycle: u32,
    cycle_started_at: Timestamp,
    target: Option<SignedDuration>,
    /// When the current target was set (a threshold cannot be due before it).
    target_since: Timestamp,
    calendar: Arc<str>,
    phase: Phase,
    breached_at: Option<Timestamp>,
    /// `None` until there is something to keep (never `Some` of an empty past).
    past: Option<Box<ClockPast>>,
}

/// What a clock has been through: empty for a clock that has only run (most open incidents), so
/// it is allocated on the first pause, stop or restart.
#[derive(Debug, Clone, PartialEq, Default)]
struct ClockPast {
    /// Closed segments of the current cycle, in order; the open one is in [`Phase::Running`].
    closed: Vec<Segment>,
    /// Pauses of the current cycle.
    paused: Vec<PausedInterval>,
    /// Earlier resolution cycles.
    previous: Vec<CycleSummary>,
}

impl ClockPast {
    fn boxed(
        closed: Vec<Segment>,
        paused: Vec<PausedInterval>,
        previous: Vec<CycleSummary>,
    ) -> Option<Box<ClockPast>> {
        let empty = closed.is_empty() && paused.is_empty() && previous.is_empty();
        (!empty).then(|| {
            Box::new(ClockPast {
                closed,
                paused,
                previous,
            })
        })
    }
}

/// The serialised form of a [`Clock`] (unchanged from when every segment was kept in a list).
#[derive(Serialize, Deserialize)]
struct ClockRepr {
    kind: ClockKind,
    cycle: u32,
    cycle_started_at: Timestamp,
    target: Option<SignedDuration>,
    target_since: Timestamp,
    calendar: String,
    segments: Vec<SegmentRepr>,
    paused: Vec<PausedInterval>,
    phase: PhaseRepr,
    breached_at: Option<Timestamp>,
    previous: Vec<CycleSummary>,
}

#[derive(Serialize, Deserialize)]
struct SegmentRepr {
    from: Timestamp,
    to: Option<Timestamp>,
    calendar: String,
    /// Business time of the segment once closed (zero while open).
    elapsed: SignedDuration,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum PhaseRepr {
    Running,
    Paused { since: Timestamp },
    Stopped { at: Timestamp },
}

impl From<Clock> for ClockRepr {
    fn from(c: Clock) -> ClockRepr {
        let past = c.past.map(|p| *p).unwrap_or_default();
        let mut segments: Vec<SegmentRepr> = past
            .closed
            .iter()
            .map(|s| SegmentRepr {
                from: s.from,
                to: Some(s.to),
                calendar: s.calendar.to_string(),
                elapsed: s.elapsed,
            })
            .collect();
        let phase = match c.phase {
            Phase::Running { since } => {
                segments.push(SegmentRepr {
                    from: since,
                    to: None,
                    calendar: c.calendar.to_string(),
                    elapsed: SignedDuration::ZERO,
                });
                PhaseRepr::Running
            }
            Phase::Paused { since } => PhaseRepr::Paused { since },
            Phase::Stopped { at } => PhaseRepr::Stopped { at },
        };
        ClockRepr {
            kind: c.kind,
            cycle: c.cycle,
            cycle_started_at: c.cycle_started_at,
            target: c.target,
            target_since: c.target_since,
            calendar: c.calendar.to_string(),
            segments,
            paused: past.paused,
            phase,
            breached_at: c.breached_at,
            previous: past.previous,
        }
    }
}

impl TryFrom<ClockRepr> for Clock {
    type Error = String;

    fn try_from(r: ClockRepr) -> Result<Clock, String> {
        let mut segments = r.segments;
        let phase = match r.phase {
            PhaseRepr::Running => match segments.pop() {
                Some(SegmentRepr { from, to: None, .. }) => Phase::Running { since: from },
                _ => return Err("a running clock ends with its open segment".into()),
            },
            PhaseRepr::Paused { since } => Phase::Paused { since },
            PhaseRepr::Stopped { at } => Phase::Stopped { at },
        };
        let closed = segments
            .into_iter()
            .map(|s| match s.to {
                Some(to) => Ok(Segment {
                    from: s.from,
                    to,
                    calendar: Arc::from(s.calendar),
                    elapsed: s.elapsed,
                }),
                None => Err("only the last segment of a running clock is open".to_string()),
            })
            .collect::<Result<_, _>>()?;
        Ok(Clock {
            kind: r.kind,
            cycle: r.cycle,
            cycle_started_at: r.cycle_started_at,
            target: r.target,
            target_since: r.target_since,
            calendar: Arc::from(r.calendar),
            phase,
            breached_at: r.breached_at,
            past: ClockPast::boxed(closed, r.paused, r.previous),
        })
    }
}

impl Clock {
    fn new(
        kind: ClockKind,
        at: Timestamp,
        target: Option<SignedDuration>,
        calendar: Arc<str>,
    ) -> Clock {
        Clock {
            kind,
            cycle: 0,
            cycle_started_at: at,
            target,
            target_since: at,
            calendar,
            phase: Phase::Running { since: at },
            breached_at: None,
            past: None,
        }
    }

    fn closed(&self) -> &[Segment] {
        self.past.as_deref().map_or(&[], |p| &p.closed)
    }

    fn paused(&self) -> &[PausedInterval] {
        self.past.as_deref().map_or(&[], |p| &p.paused)
    }

    fn previous(&self) -> &[CycleSummary] {
        self.past.as_deref().map_or(&[], |p| &p.previous)
    }

    /// The past, allocated if this is the first thing to keep; push to it right away.
    fn past_mut(&mut self) -> &mut ClockPast {
        self.past.get_or_insert_default()
    }

    fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped { .. })
    }

    /// Closes the open segment (if running) at `at`; the caller sets the next phase.
    fn close_segment(&mut self, b: &PolicyBinding, at: Timestamp) {
        if let Phase::Running { since } = self.phase {
            let elapsed = b.calendar(&self.calendar).business_elapsed(since, at);
            let calendar = self.calendar.clone();
            self.past_mut().closed.push(Segment {
                from: since,
                to: at,
                calendar,
                elapsed,
            });
        }
    }

    /// Business time elapsed in the current cycle at `t`.
    fn elapsed_at(&self, b: &PolicyBinding, t: Timestamp) -> SignedDuration {
        let closed = self.closed().iter().fold(SignedDuration::ZERO, |acc, seg| {
            if seg.to <= t {
                acc.saturating_add(seg.elapsed)
            } else {
                acc.saturating_add(
                    b.calendar(&seg.calendar)
                        .business_elapsed(seg.from, t.min(seg.to).max(seg.from)),
                )
            }
        });
        match self.phase {
            Phase::Running { since } => closed.saturating_add(
                b.calendar(&self.calendar)
                    .business_elapsed(since, t.max(since)),
            ),
            _ => closed,
        }
    }

    /// The instant the cycle's elapsed business time reaches `need`, if it does (always for a
    /// running clock).
    fn crossing(&self, b: &PolicyBinding, need: SignedDuration) -> Option<Timestamp> {
        if need <= SignedDuration::ZERO {
            return Some(self.cycle_started_at);
        }
        let mut acc = SignedDuration::ZERO;
        for seg in self.closed() {
            if acc.saturating_add(seg.elapsed) < need {
                acc = acc.saturating_add(seg.elapsed);
            } else {
                let left = need.saturating_sub(acc);
                return Some(b.calendar(&seg.calendar).add_business(seg.from, left));
            }
        }
        match self.phase {
            Phase::Running { since } => {
                let left = need.saturating_sub(acc);
                Some(b.calendar(&self.calendar).add_business(since, left))
            }
            _ => None,
        }
    }

    /// When `need` is (or was) reached under the current target.
    fn due_instant(&self, b: &PolicyBinding, need: SignedDuration) -> Option<Timestamp> {
        self.crossing(b, need).map(|c| c.max(self.target_since))
    }

    /// The breach instant if it is at or before `t`.
    fn breach_as_of(&self, b: &PolicyBinding, t: Timestamp) -> Option<Timestamp> {
        if self.breached_at.is_some() {
            return self.breached_at;
        }
        let target = self.target?;
        self.due_instant(b, target).filter(|&at| at <= t)
    }

    fn settle(&mut self, b: &PolicyBinding, t: Timestamp) {
        if self.breached_at.is_none() {
            self.breached_at = self.breach_as_of(b, t);
        }
    }

    fn pause(&mut self, b: &PolicyBinding, at: Timestamp, status: Status) {
        if let Phase::Running { .. } = self.phase {
            self.close_segment(b, at);
            self.phase = Phase::Paused { since: at };
            self.past_mut().paused.push(PausedInterval {
                from: at,
                to: None,
                status,
            });
        }
    }

    fn close_pause(&mut self, at: Timestamp) {
        if let Some(p) = self.past.as_mut().and_then(|p| p.paused.last_mut())
            && p.to.is_none()
        {
            p.to = Some(at);
        }
    }

    fn resume(&mut self, at: Timestamp) {
        if let Phase::Paused { .. } = self.phase {
            self.close_pause(at);
            self.phase = Phase::Running { since: at };
        }
    }

    fn stop(&mut self, b: &PolicyBinding, at: Timestamp) {
        match self.phase {
            Phase::Running { .. } => self.close_segment(b, at),
            Phase::Paused { .. } => self.close_pause(at),
            Phase::Stopped { .. } => return,
        }
        self.phase = Phase::Stopped { at };
    }

    fn set_target(&mut self, at: Timestamp, target: Option<SignedDuration>) {
        if target != self.target {
            self.target = target;
            self.target_since = at;
        }
    }

    fn retarget(
        &mut self,
        b: &PolicyBinding,
        at: Timestamp,
        target: Option<SignedDuration>,
        calendar: &Arc<str>,
    ) {
        if self.is_stopped() {
            return;
        }
        if **calendar != *self.calendar {
            let running = matches!(self.phase, Phase::Running { .. });
            if running {
                self.close_segment(b, at);
            }
            self.calendar = calendar.clone();
            if running {
                self.phase = Phase::Running { since: at };
            }
        }
        self.set_target(at, target);
    }

    /// Reopen with `restart`: archive the cycle, start a fresh one at `at`.
    fn restart(&mut self, b: &PolicyBinding, at: Timestamp, target: Option<SignedDuration>) {
        let stopped_at = match self.phase {
            Phase::Stopped { at } => at,
            _ => at,
        };
        let elapsed = self.elapsed_at(b, stopped_at);
        let mut past = self.past.take().unwrap_or_default();
        past.previous.push(CycleSummary {
            cycle: self.cycle,
            started_at: self.cycle_started_at,
            stopped_at,
            target: self.target,
            elapsed,
            breached_at: self.breached_at,
            paused: std::mem::take(&mut past.paused),
        });
        // the new cycle keeps only the earlier cycles
        past.closed = Vec::new();
        let calendar = self.calendar.clone();
        *self = Clock::new(self.kind, at, target, calendar);
        self.cycle = past.previous.len().try_into().unwrap_or(u32::MAX);
        self.past = Some(past);
    }

    /// Reopen with `continue`: the time since resolution counts as a pause.
    fn resume_after_stop(&mut self, at: Timestamp, target: Option<SignedDuration>) {
        if let Phase::Stopped { at: stopped } = self.phase {
            self.past_mut().paused.push(PausedInterval {
                from: stopped,
                to: Some(at),
                status: Status::Resolved,
            });
            self.phase = Phase::Running { since: at };
            self.set_target(at, target);
        }
    }

    /// The state [`Clock::view`] reports at `now`, without building the view.
    fn state_at(&self, b: &PolicyBinding, now: Timestamp) -> ClockState {
        self.state_given(self.breach_as_of(b, now).is_some())
    }

    /// Breached once breached, else what the phase says.
    fn state_given(&self, breached: bool) -> ClockState {
        match self.phase {
            _ if breached => ClockState::Breached,
            Phase::Running { .. } => ClockState::Running,
            Phase::Paused { .. } => ClockState::Paused,
            Phase::Stopped { .. } => ClockState::Met,
        }
    }

    fn view(&self, b: &PolicyBinding, now: Timestamp) -> ClockView {
        let elapsed = self.elapsed_at(b, now);
        let breached_at = self.breach_as_of(b, now);
        let (stopped_at, paused_since) = match self.phase {
            Phase::Running { .. } => (None, None),
            Phase::Paused { since } => (None, Some(since)),
            Phase::Stopped { at } => (Some(at), None),
        };
        let state = self.state_given(breached_at.is_some());
        let due_at = match (self.phase, self.target) {
            (Phase::Running { .. }, Some(target)) => self.due_instant(b, target),
            _ => None,
        };
        ClockView {
            clock: self.kind,
            state,
            target: self.target,
            elapsed,
            remaining: self.target.map(|t| t.saturating_sub(elapsed)),
            due_at,
            breached_at,
            stopped_at,
            paused_since,
            paused: self.paused().to_vec(),
            calendar: self.calendar.to_string(),
            cycle: self.cycle,
            started_at: self.cycle_started_at,
            previous_cycles: self.previous().to_vec(),
        }
    }
}

/// `fraction x target`, rounded to the nearest whole second (deterministic IEEE arithmetic).
fn scale(target: SignedDuration, fraction: f64) -> SignedDuration {
    if fraction == 1.0 {
        return target;
    }
    let secs = (target.as_secs_f64() * fraction).round();
    if secs >= i64::MAX as f64 {
        SignedDuration::MAX
    } else {
        SignedDuration::from_secs(secs as i64)
    }
}

/// The SLA clocks of one incident. Serialisable (a snapshot includes the binding and the
/// applied inputs, so it replays on its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentClocks {
    binding: PolicyBinding,
    /// Shared names: a service holding many incidents keeps one copy of each (see
    /// [`IncidentClocks::start_shared`]).
    #[serde(with = "shared_str")]
    service: Arc<str>,
    #[serde(with = "shared_str")]
    group: Arc<str>,
    opened_at: Timestamp,
    initial_priority: Priority,
    priority: Priority,
    status: Status,
    acknowledged_at: Option<Timestamp>,
    resolved_at: Option<Timestamp>,
    last_at: Timestamp,
    response: Clock,
    resolution: Clock,
    fired: Vec<DueKey>,
    inputs: Vec<ClockInput>,
}

impl IncidentClocks {
    /// Selects the policy for the incident from `policies` and starts both clocks at
    /// `opened_at` (status `open`).
    pub fn start(
        policies: &PolicySet,
        opened_at: Timestamp,
        priority: Priority,
        service: &str,
        group: &str,
    ) -> Result<IncidentClocks, ClockError> {
        let binding = policies.bind(service, group, priority)?;
        Ok(IncidentClocks::start_bound(
            binding, opened_at, priority, service, group,
        ))
    }

    /// [`IncidentClocks::start`] with the service and group names handed in shared, so that a
    /// caller holding many incidents keeps one copy of each name rather than one per incident.
    pub fn start_shared(
        policies: &PolicySet,
        opened_at: Timestamp,
        priority: Priority,
        service: Arc<str>,
        group: Arc<str>,
    ) -> Result<IncidentClocks, ClockError> {
        let binding = policies.bind(&service, &group, priority)?;
        Ok(IncidentClocks::start_with(
            binding, opened_at, priority, service, group,
        ))
    }

    /// Starts both clocks on an already selected policy (e.g. the recorded version in force).
    pub fn start_bound(
        binding: PolicyBinding,
        opened_at: Timestamp,
        priority: Priority,
        service: &str,
        group: &str,
    ) -> IncidentClocks {
        IncidentClocks::start_with(
            binding,
            opened_at,
            priority,
            Arc::from(service),
            Arc::from(group),
        )
    }

    fn start_with(
        binding: PolicyBinding,
        opened_at: Timestamp,
        priority: Priority,
        service: Arc<str>,
        group: Arc<str>,
    ) -> IncidentClocks {
        let calendar = binding.policy().calendar_name_shared(priority).clone();
        let response = Clock::new(
            ClockKind::Response,
            opened_at,
            binding.target(ClockKind::Response, priority),
            calendar.clone(),
        );
        let resolution = Clock::new(
            ClockKind::Resolution,
            opened_at,
            binding.target(ClockKind::Resolution, priority),
            calendar,
        );
        let mut clocks = IncidentClocks {
            binding,
            service,
            group,
            opened_at,
            initial_priority: priority,
            priority,
            status: Status::Open,
            acknowledged_at: None,
            resolved_at: None,
            last_at: opened_at,
            response,
            resolution,
            fired: Vec::new(),
            inputs: Vec::new(),
        };
        clocks.update_pause(opened_at);
        clocks
    }

    /// Starts and applies every input; the replay primitive.
    pub fn replay(
        binding: PolicyBinding,
        opened_at: Timestamp,
        priority: Priority,
        service: &str,
        group: &str,
        inputs: impl IntoIterator<Item = ClockInput>,
    ) -> Result<IncidentClocks, ClockError> {
        let mut clocks = IncidentClocks::start_bound(binding, opened_at, priority, service, group);
        for input in inputs {
            clocks.apply(input)?;
        }
        Ok(clocks)
    }

    /// Applies one input. Inputs must come in non-decreasing time order and not before the
    /// opening; anything else is [`ClockError::OutOfOrder`] and leaves the clocks unchanged.
    pub fn apply(&mut self, input: ClockInput) -> Result<(), ClockError> {
        let at = input.at();
        if at < self.last_at {
            return Err(ClockError::OutOfOrder {
                at,
                last: self.last_at,
            });
        }
        self.settle(at);
        match &input {
            ClockInput::StatusChanged { status, .. } => self.on_status(at, *status),
            ClockInput::Acknowledged { .. } => self.on_acknowledged(at),
            ClockInput::Resolved { .. } => self.on_resolved(at),
            ClockInput::Reopened { .. } => self.on_reopened(at, None),
            ClockInput::PriorityChanged { priority, .. } => self.on_priority(at, *priority),
            ClockInput::TimerFired { key, .. } => {
                if !self.fired.contains(key) {
                    self.fired.push(key.clone());
                }
            }
        }
        self.settle(at);
        self.last_at = at;
        self.inputs.push(input);
        Ok(())
    }

    /// Marks a due item fired at `at`; shorthand for applying [`ClockInput::TimerFired`].
    pub fn mark_fired(&mut self, due: &Due, at: Timestamp) -> Result<(), ClockError> {
        self.apply(ClockInput::TimerFired {
            at,
            key: due.key.clone(),
        })
    }

    fn settle(&mut self, at: Timestamp) {
        self.response.settle(&self.binding, at);
        self.resolution.settle(&self.binding, at);
    }

    fn on_status(&mut self, at: Timestamp, status: Status) {
        if status.is_terminal() {
            self.on_resolved(at);
            self.status = status;
            return;
        }
        if self.status.is_terminal() {
            self.on_reopened(at, Some(status));
            return;
        }
        if matches!(status, Status::Acknowledged | Status::InProgress) {
            self.on_acknowledged(at);
        }
        self.status = status;
        self.update_pause(at);
    }

    fn on_acknowledged(&mut self, at: Timestamp) {
        if self.acknowledged_at.is_some() || self.status.is_terminal() {
            return;
        }
        self.acknowledged_at = Some(at);
        self.response.stop(&self.binding, at);
        if self.status == Status::Open {
            self.status = Status::Acknowledged;
        }
        self.update_pause(at);
    }

    fn on_resolved(&mut self, at: Timestamp) {
        if self.status.is_terminal() {
            return;
        }
        self.response.stop(&self.binding, at);
        self.resolution.stop(&self.binding, at);
        self.resolved_at = Some(at);
        self.status = Status::Resolved;
    }

    fn on_reopened(&mut self, at: Timestamp, status: Option<Status>) {
        if !self.status.is_terminal() {
            return;
        }
        let target = self.binding.target(ClockKind::Resolution, self.priority);
        let calendar = self.binding.policy().calendar_name_shared(self.priority);
        self.resolution.calendar = calendar.clone();
        match self.binding.policy().reopen() {
            ReopenMode::Restart => self.resolution.restart(&self.binding, at, target),
            ReopenMode::Continue => self.resolution.resume_after_stop(at, target),
        }
        self.resolved_at = None;
        self.status = status.unwrap_or(if self.acknowledged_at.is_some() {
            Status::InProgress
        } else {
            Status::Open
        });
        self.update_pause(at);
    }

    fn on_priority(&mut self, at: Timestamp, priority: Priority) {
        if priority == self.priority {
            return;
        }
        self.priority = priority;
        let calendar = self.binding.policy().calendar_name_shared(priority).clone();
        for kind in [ClockKind::Response, ClockKind::Resolution] {
            let target = self.binding.target(kind, priority);
            let clock = match kind {
                ClockKind::Response => &mut self.response,
                ClockKind::Resolution => &mut self.resolution,
            };
            clock.retarget(&self.binding, at, target, &calendar);
        }
    }

    fn update_pause(&mut self, at: Timestamp) {
        let pausing = self.binding.policy().pauses(self.status);
        let status = self.status;
        for clock in [&mut self.response, &mut self.resolution] {
            if pausing {
                clock.pause(&self.binding, at, status);
            } else {
                clock.resume(at);
            }
        }
    }

    /// The state at `now`. For `now` earlier than the last applied input the recorded inputs
    /// up to `now` are replayed; `now` before the opening is read as the opening.
    pub fn state_at(&self, now: Timestamp) -> IncidentState {
        if now < self.last_at {
            let mut past = IncidentClocks::start_with(
                self.binding.clone(),
                self.opened_at,
                self.initial_priority,
                self.service.clone(),
                self.group.clone(),
            );
            for input in self.inputs.iter().filter(|i| i.at() <= now) {
                if past.apply(input.clone()).is_err() {
                    break;
                }
            }
            return past.project(now.max(self.opened_at));
        }
        self.project(now)
    }

    fn project(&self, now: Timestamp) -> IncidentState {
        IncidentState {
            as_of: now,
            policy: self.binding.policy().name().to_string(),
            policy_hash: self.binding.set_hash().to_string(),
            priority: self.priority,
            status: self.status,
            opened_at: self.opened_at,
            acknowledged_at: self.acknowledged_at,
            resolved_at: self.resolved_at,
            response: self.response.view(&self.binding, now),
            resolution: self.resolution.view(&self.binding, now),
        }
    }

    /// The compliance outcome at `now`, for reports.
    pub fn outcome(&self, now: Timestamp) -> IncidentOutcome {
        IncidentOutcome::from_state(&self.state_at(now), &self.service, &self.group)
    }

    /// Every timer not yet fired, earliest first (ties: warnings, then breaches, then
    /// escalations; response before resolution). Only running clocks with a target contribute.
    /// Recompute after each input.
    pub fn due(&self) -> Vec<Due> {
        let policy = self.binding.policy();
        let mut out = Vec::new();
        for clock in [&self.response, &self.resolution] {
            if !matches!(clock.phase, Phase::Running { .. }) {
                continue;
            }
            let Some(target) = clock.target else {
                continue;
            };
            if clock.breached_at.is_none() {
                for &fraction in policy.warn_at() {
                    let kind = DueKind::Warning {
                        clock: clock.kind,
                        fraction,
                    };
                    self.push_due(&mut out, clock, kind, target, scale(target, fraction));
                }
            }
            let kind = DueKind::Breach { clock: clock.kind };
            self.push_due(&mut out, clock, kind, target, target);
            if clock.kind == ClockKind::Resolution {
                for step in policy.escalation() {
                    let kind = DueKind::Escalation {
                        level: step.level,
                        fraction: step.at,
                    };
                    self.push_due(&mut out, clock, kind, target, scale(target, step.at));
                }
            }
        }
        out.sort_by(|a, b| {
            a.at.cmp(&b.at).then_with(|| {
                let (x, y) = (a.kind.rank(), b.kind.rank());
                x.0.cmp(&y.0)
                    .then(x.1.cmp(&y.1))
                    .then(x.2.partial_cmp(&y.2).unwrap_or(Ordering::Equal))
                    .then(x.3.cmp(&y.3))
            })
        });
        out
    }

    /// The earliest item of [`IncidentClocks::due`].
    pub fn next_due(&self) -> Option<Due> {
        self.due().into_iter().next()
    }

    fn push_due(
        &self,
        out: &mut Vec<Due>,
        clock: &Clock,
        kind: DueKind,
        target: SignedDuration,
        threshold: SignedDuration,
    ) {
        let key = DueKey {
            kind,
            cycle: clock.cycle,
            target,
        };
        if self.fired.iter().any(|f| f.covers(&key)) {
            return;
        }
        let at = match (kind, clock.breached_at) {
            (DueKind::Breach { .. }, Some(breached)) => Some(breached),
            _ => clock.due_instant(&self.binding, threshold),
        };
        let Some(at) = at else {
            return;
        };
        out.push(Due {
            at,
            kind,
            key,
            why: DueWhy {
                policy: self.binding.policy().name().to_string(),
                policy_hash: self.binding.set_hash().to_string(),
                priority: self.priority,
                clock: clock.kind,
                target,
                threshold,
                elapsed: clock.elapsed_at(&self.binding, at),
                calendar: clock.calendar.to_string(),
                paused: clock
                    .paused()
                    .iter()
                    .filter(|p| p.from < at)
                    .cloned()
                    .collect(),
            },
        });
    }

    /// The binding (policy version) the clocks run on.
    pub fn binding(&self) -> &PolicyBinding {
        &self.binding
    }

    /// Inputs applied so far, in order.
    pub fn inputs(&self) -> &[ClockInput] {
        &self.inputs
    }

    /// Keys marked fired so far.
    pub fn fired(&self) -> &[DueKey] {
        &self.fired
    }

    /// Current priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Current status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Opening instant.
    pub fn opened_at(&self) -> Timestamp {
        self.opened_at
    }

    /// The incident's service (used for policy selection).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The incident's group (used for policy selection).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Instant of the last applied input (the opening if none).
    pub fn last_input_at(&self) -> Timestamp {
        self.last_at
    }

    /// The state of the response and the resolution clock as of the last applied input (`None`
    /// for a clock without a target): what [`IncidentClocks::state_at`] reports at that instant,
    /// computed without building the views, for counting clocks by state.
    pub fn clock_states(&self) -> [Option<ClockState>; 2] {
        [&self.response, &self.resolution]
            .map(|c| c.target.map(|_| c.state_at(&self.binding, self.last_at)))
    }
}

/// Serde for the shared names: written as plain strings.
mod shared_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::Arc;

    pub(super) fn serialize<S: Serializer>(s: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

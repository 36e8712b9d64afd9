//! The SLA engine: every incident's clocks, the policy versions seen, and the breaches, kept in
//! memory and rebuilt from the SLA log. It turns an incident event into clock inputs and the SLA
//! events they cause, and fires due timers into warnings, breaches and escalations. No I/O: the
//! service persists what it returns before acting on it.
//!
//! Memory is per open incident, so it is kept small: the incident id is allocated once and
//! shared by the map and the timer set (`IdKey`), each incident's state is boxed (the map's
//! empty slots then cost a pointer, not a whole [`Tracked`]), its next due instant lives in it,
//! and service and group names are interned (one copy per distinct name).

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use incident_domain::{Envelope, EventKind, IncidentEvent, stored};
use incident_sla::incident_events::inputs_of;
use incident_sla::{
    ClockInput, ClockKind, ClockState, ClockView, Due, DueKind, IncidentClocks, PolicySet,
};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::events::{self, *};

/// One incident's clocks and what the SLA timer did about them.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub clocks: IncidentClocks,
    pub escalations: Vec<u32>,
    /// The instant this incident is in the timer set under, if it is.
    scheduled: Option<Timestamp>,
    /// The states its clocks are counted under in [`Engine::clock_counts`].
    counted: [Option<ClockState>; 2],
}

/// An incident id, allocated once and shared by the incident map and the timer set. Compares,
/// orders and hashes as the id string, so the timer set keeps its (instant, id) order and the
/// map is looked up by `&str`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct IdKey(Arc<String>);

impl Borrow<str> for IdKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct BreachRecord {
    pub incident_id: String,
    pub clock: ClockKind,
    pub priority: String,
    pub service: String,
    pub group: String,
    pub due_at: Timestamp,
    pub fired_at: Timestamp,
    pub late_ms: i64,
    pub target_secs: i64,
    pub elapsed_secs: i64,
    pub policy: String,
    pub policy_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("not an incident event: {0}")]
    NotAnIncidentEvent(String),
    #[error("log record {seq}: {reason}")]
    Replay { seq: u64, reason: String },
}

#[derive(Debug, Default)]
pub struct Engine {
    policies: HashMap<String, PolicySet>,
    active: Option<String>,
    incidents: HashMap<IdKey, Box<Tracked>>,
    breaches: Vec<BreachRecord>,
    /// (next due instant, incident id) for every incident with a running timer; the instant is
    /// also in the incident's [`Tracked`], to find its entry again.
    timers: BTreeSet<(Timestamp, IdKey)>,
    /// Service and group names, one copy each, shared by the incidents' clocks.
    names: HashSet<Arc<str>>,
    /// Clocks with a target by state, in the order of [`CLOCK_STATES`].
    clock_counts: [u64; 4],
}

/// The states [`Engine::clock_counts`] counts, in its order.
pub const CLOCK_STATES: [ClockState; 4] = [
    ClockState::Running,
    ClockState::Paused,
    ClockState::Met,
    ClockState::Breached,
];

fn state_index(s: ClockState) -> usize {
    match s {
        ClockState::Running => 0,
        ClockState::Paused => 1,
        ClockState::Met => 2,
        ClockState::Breached => 3,
    }
}

/// Adds (or takes away) `states` to (or from) `counts`.
fn tally(counts: &mut [u64; 4], states: [Option<ClockState>; 2], add: bool) {
    for s in states.into_iter().flatten() {
        let n = &mut counts[state_index(s)];
        *n = if add { *n + 1 } else { n.saturating_sub(1) };
    }
}

/// What an input led to: the events to record (in order) and the state to restore if recording
/// fails.
pub struct Derived {
    /// Timers of the incident that came due before the input happened: fired (late) and
    /// recorded before the input, so a later acknowledgement does not hide the breach.
    pub fired_before: Vec<Envelope>,
    pub events: Vec<Envelope>,
    pub undo: Undo,
}

pub struct Undo {
    incident_id: String,
    before: Option<Box<Tracked>>,
    breaches_len: usize,
}

fn running(v: &ClockView) -> bool {
    v.stopped_at.is_none() && v.paused_since.is_none()
}

fn paused(v: &ClockView) -> bool {
    v.stopped_at.is_none() && v.paused_since.is_some()
}

impl Engine {
    pub fn active_policy(&self) -> Option<&PolicySet> {
        self.active.as_ref().and_then(|h| self.policies.get(h))
    }

    /// Makes `set` the policy in force; returns the activation event when it is a new version.
    pub fn activate(&mut self, set: PolicySet, at: Timestamp) -> Option<Envelope> {
        let hash = set.hash().to_owned();
        if self.active.as_deref() == Some(hash.as_str()) {
            return None;
        }
        let policy: Value = serde_json::from_str(&set.to_json()).unwrap_or(Value::Null);
        let env = envelope(
            POLICY_ACTIVATED,
            POLICY_SUBJECT,
            at,
            json!({"hash": hash, "policy": policy}),
        );
        self.policies.insert(hash.clone(), set);
        self.active = Some(hash);
        Some(env)
    }

    pub fn get(&self, incident_id: &str) -> Option<&Tracked> {
        self.incidents.get(incident_id).map(|t| &**t)
    }

    pub fn incidents(&self) -> impl Iterator<Item = (&String, &Tracked)> {
        self.incidents.iter().map(|(id, t)| (&*id.0, &**t))
    }

    pub fn breaches(&self) -> &[BreachRecord] {
        &self.breaches
    }

    /// Clocks with a target by state ([`CLOCK_STATES`]), each as of its incident's last change:
    /// a running clock past its due instant counts as breached once its breach has fired. Kept
    /// up to date as incidents change, so reading it costs nothing however many there are.
    pub fn clock_counts(&self) -> [u64; 4] {
        self.clock_counts
    }

    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    /// The earliest instant a timer is due.
    pub fn next_due_at(&self) -> Option<Timestamp> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Counts the incident's clocks under their states now (see [`Engine::clock_counts`]).
    fn recount(&mut self, id: &str) {
        let Some(tracked) = self.incidents.get_mut(id) else {
            return;
        };
        let now = tracked.clocks.clock_states();
        if now == tracked.counted {
            return;
        }
        tally(&mut self.clock_counts, tracked.counted, false);
        tally(&mut self.clock_counts, now, true);
        tracked.counted = now;
    }

    /// Takes the incident's clocks out of the counts.
    fn uncount(&mut self, id: &str) {
        if let Some(tracked) = self.incidents.get_mut(id) {
            tally(&mut self.clock_counts, tracked.counted, false);
            tracked.counted = [None; 2];
        }
    }

    /// Puts the incident's timer at its clocks' next due instant (or takes it out), and counts
    /// its clocks under their states: every change of an incident ends here.
    fn reschedule(&mut self, id: &str) {
        self.recount(id);
        let Some((key, tracked)) = self.incidents.get_key_value(id) else {
            return;
        };
        let next = tracked.clocks.next_due().map(|d| d.at);
        if next == tracked.scheduled {
            return;
        }
        let key = key.clone();
        if let Some(old) = tracked.scheduled {
            self.timers.remove(&(old, key.clone()));
        }
        if let Some(at) = next {
            self.timers.insert((at, key));
        }
        if let Some(tracked) = self.incidents.get_mut(id) {
            tracked.scheduled = next;
        }
    }

    /// Takes the incident's timer out of the set.
    fn unschedule(&mut self, id: &str) {
        if let Some((key, tracked)) = self.incidents.get_key_value(id)
            && let Some(old) = tracked.scheduled
        {
            let entry = (old, key.clone());
            self.timers.remove(&entry);
            if let Some(tracked) = self.incidents.get_mut(id) {
                tracked.scheduled = None;
            }
        }
    }

    fn undo_point(&self, id: &str) -> Undo {
        Undo {
            incident_id: id.to_owned(),
            before: self.incidents.get(id).cloned(),
            breaches_len: self.breaches.len(),
        }
    }

    /// Puts an incident back as it was before the input whose events could not be recorded.
    pub fn undo(&mut self, undo: Undo) {
        let id = undo.incident_id.as_str();
        self.unschedule(id);
        self.uncount(id);
        match undo.before {
            Some(mut t) => {
                // not in the timer set nor in the counts (taken out above); both below
                t.scheduled = None;
                t.counted = [None; 2];
                match self.incidents.get_mut(id) {
                    Some(slot) => *slot = t,
                    None => {
                        self.incidents
                            .insert(IdKey(Arc::new(undo.incident_id.clone())), t);
                    }
                }
            }
            None => {
                self.incidents.remove(id);
            }
        }
        self.breaches.truncate(undo.breaches_len);
        self.reschedule(id);
    }

    /// The one shared copy of a service or group name.
    fn intern(names: &mut HashSet<Arc<str>>, name: &str) -> Arc<str> {
        if let Some(shared) = names.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        names.insert(shared.clone());
        shared
    }

    /// Applies an incident event consumed at `now`; returns the SLA events it causes. A timer
    /// of the incident due before the event happened fires first (an acknowledgement consumed
    /// after the service was down, or a moment after the timer task's turn, comes after the
    /// breach it was too late for).
    pub fn on_incident_event(
        &mut self,
        env: &Envelope,
        now: Timestamp,
    ) -> Result<Derived, EngineError> {
        let event =
            stored::decode(env).map_err(|e| EngineError::NotAnIncidentEvent(e.to_string()))?;
        let id = event.incident_id.to_string();
        let undo = self.undo_point(&id);
        let fired_before = self.fire_incident(&id, event.at, now);
        let events = self.apply_incident_event(&event);
        self.reschedule(&id);
        Ok(Derived {
            fired_before,
            events,
            undo,
        })
    }

    fn apply_incident_event(&mut self, event: &IncidentEvent) -> Vec<Envelope> {
        let id = event.incident_id.to_string();
        if let EventKind::Opened {
            priority,
            service,
            group,
            ..
        } = &event.kind
        {
            if self.incidents.contains_key(id.as_str()) {
                return Vec::new();
            }
            let Some(set) = self.active.as_ref().and_then(|h| self.policies.get(h)) else {
                return Vec::new();
            };
            let service = Self::intern(&mut self.names, service);
            let group = Self::intern(&mut self.names, group);
            let clocks =
                match IncidentClocks::start_shared(set, event.at, *priority, service, group) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(incident = %id, reason = %e, "no SLA policy applies");
                        return Vec::new();
                    }
                };
            let state = clocks.state_at(event.at);
            let started = envelope(
                STARTED,
                &id,
                event.at,
                with_context(
                    &clocks,
                    json!({"clocks": [clock_target(&state.response), clock_target(&state.resolution)]}),
                ),
            );
            self.incidents.insert(
                IdKey(Arc::new(id)),
                Box::new(Tracked {
                    clocks,
                    escalations: Vec::new(),
                    scheduled: None,
                    counted: [None; 2],
                }),
            );
            return vec![started];
        }
        let Some(tracked) = self.incidents.get_mut(id.as_str()) else {
            return Vec::new();
        };
        // inputs must be in time order; an event stamped earlier than the last input (clock
        // skew between machines) counts as happening at the last input's instant
        let at = event.at.max(tracked.clocks.last_input_at());
        let inputs = inputs_of(event, at);
        if inputs.is_empty() {
            return Vec::new();
        }
        let before = tracked.clocks.state_at(at);
        for input in inputs {
            if let Err(e) = tracked.clocks.apply(input) {
                tracing::warn!(incident = %id, error = %e, "clock input refused");
            }
        }
        let after = tracked.clocks.state_at(at);
        let clocks = &tracked.clocks;
        let mut out = Vec::new();
        let pairs = [
            (&before.response, &after.response),
            (&before.resolution, &after.resolution),
        ];
        let has_target = |b: &ClockView, a: &ClockView| b.target.is_some() || a.target.is_some();
        let mut paused_clocks = Vec::new();
        let mut resumed = Vec::new();
        let mut restarted = Vec::new();
        let mut retargeted = Vec::new();
        for (b, a) in pairs {
            if !has_target(b, a) {
                continue;
            }
            if running(b) && paused(a) {
                paused_clocks.push(Value::String(clock_name(a.clock).into()));
            }
            if paused(b) && running(a) {
                resumed.push(clock_target(a));
            }
            if b.stopped_at.is_none() && a.stopped_at.is_some() {
                out.push(envelope(
                    MET,
                    &id,
                    at,
                    with_context(
                        clocks,
                        json!({
                            "clock": clock_name(a.clock),
                            "target_secs": a.target.map(secs),
                            "elapsed_secs": secs(a.elapsed),
                            "breached": a.ever_breached(),
                        }),
                    ),
                ));
            }
            if (b.stopped_at.is_some() && a.stopped_at.is_none()) || a.cycle != b.cycle {
                restarted.push(clock_target(a));
            } else if a.stopped_at.is_none() && a.target != b.target {
                retargeted.push(clock_target(a));
            }
        }
        if !paused_clocks.is_empty() {
            out.push(envelope(
                PAUSED,
                &id,
                at,
                with_context(
                    clocks,
                    json!({"status": after.status.as_str(), "clocks": paused_clocks}),
                ),
            ));
        }
        if !resumed.is_empty() {
            out.push(envelope(
                RESUMED,
                &id,
                at,
                with_context(clocks, json!({"clocks": resumed})),
            ));
        }
        if !restarted.is_empty() {
            out.push(envelope(
                STARTED,
                &id,
                at,
                with_context(clocks, json!({"clocks": restarted})),
            ));
        }
        if !retargeted.is_empty() {
            out.push(envelope(
                RETARGETED,
                &id,
                at,
                with_context(
                    clocks,
                    json!({
                        "from": before.priority.as_str(),
                        "to": after.priority.as_str(),
                        "clocks": retargeted,
                    }),
                ),
            ));
        }
        out
    }

    /// Fires every timer due at or before `now`, one incident at a time. Each returned group of
    /// events belongs to one incident and must be recorded before the next call.
    pub fn fire_due(&mut self, now: Timestamp) -> Vec<(String, Derived)> {
        let due_ids: Vec<IdKey> = self
            .timers
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in due_ids {
            let id: &str = &id.0;
            let undo = self.undo_point(id);
            let events = self.fire_incident(id, now, now);
            self.reschedule(id);
            if !events.is_empty() {
                out.push((
                    id.to_owned(),
                    Derived {
                        fired_before: Vec::new(),
                        events,
                        undo,
                    },
                ));
            }
        }
        out
    }

    /// Fires the incident's timers due at or before `until`, marked at `until`, noticed at
    /// `now` (`late_ms` counts from the due instant to `now`).
    fn fire_incident(&mut self, id: &str, until: Timestamp, now: Timestamp) -> Vec<Envelope> {
        let Some(tracked) = self.incidents.get_mut(id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // fire in order; each firing may change what is due next
        for _ in 0..64 {
            let Some(due) = tracked.clocks.next_due().filter(|d| d.at <= until) else {
                break;
            };
            let marked_at = until.max(tracked.clocks.last_input_at());
            if let Err(e) = tracked.clocks.mark_fired(&due, marked_at) {
                tracing::warn!(incident = %id, error = %e, "could not mark a timer fired");
                break;
            }
            let env = fired_event(id, &tracked.clocks, &due, now, marked_at);
            if let DueKind::Escalation { level, .. } = due.kind {
                tracked.escalations.push(level);
            }
            if let DueKind::Breach { clock } = due.kind {
                self.breaches
                    .push(breach_record(id, &tracked.clocks, &due, clock, now));
            }
            out.push(env);
        }
        out
    }

    /// Folds one record of the SLA log back in (replay on start).
    pub fn replay(&mut self, seq: u64, env: &Envelope) -> Result<(), EngineError> {
        let err = |reason: String| EngineError::Replay { seq, reason };
        if env.source == stored::SOURCE {
            let event = stored::decode(env).map_err(|e| err(e.to_string()))?;
            let id = event.incident_id.to_string();
            self.apply_incident_event(&event);
            self.reschedule(&id);
            return Ok(());
        }
        match env.ty.as_str() {
            POLICY_ACTIVATED => {
                let policy = env
                    .data
                    .get("policy")
                    .ok_or_else(|| err("policy activation without a policy".into()))?;
                let set = PolicySet::from_json(&policy.to_string())
                    .map_err(|e| err(format!("recorded policy: {e}")))?;
                let hash = set.hash().to_owned();
                self.policies.insert(hash.clone(), set);
                self.active = Some(hash);
            }
            WARNING | BREACHED | ESCALATION => {
                let (key, marked_at) = events::fired_of(env)
                    .ok_or_else(|| err("fired timer without its key".into()))?;
                let id = env.subject.clone();
                if let Some(tracked) = self.incidents.get_mut(id.as_str()) {
                    tracked
                        .clocks
                        .apply(ClockInput::TimerFired {
                            at: marked_at,
                            key: key.clone(),
                        })
                        .map_err(|e| err(e.to_string()))?;
                    if let incident_sla::DueKind::Escalation { level, .. } = key.kind {
                        tracked.escalations.push(level);
                    }
                    if env.ty == BREACHED {
                        self.breaches.push(breach_from_event(&id, env));
                    }
                }
                self.reschedule(&id);
            }
            _ => {}
        }
        Ok(())
    }
}

fn fired_event(
    id: &str,
    clocks: &IncidentClocks,
    due: &Due,
    now: Timestamp,
    marked_at: Timestamp,
) -> Envelope {
    let late_ms = now.duration_since(due.at).as_millis().max(0) as i64;
    let why = &due.why;
    let mut data = json!({
        "clock": clock_name(why.clock),
        "target_secs": secs(why.target),
        "elapsed_secs": secs(why.elapsed),
        "threshold_secs": secs(why.threshold),
        "calendar": why.calendar,
        "due_at": due.at.to_string(),
        "fired_at": now.to_string(),
        "marked_at": marked_at.to_string(),
        "late_ms": late_ms,
        "paused": paused_json(&why.paused),
        "key": serde_json::to_value(&due.key).unwrap_or(Value::Null),
    });
    let ty = match due.kind {
        DueKind::Warning { fraction, .. } => {
            data["fraction"] = json!(fraction);
            WARNING
        }
        DueKind::Breach { .. } => BREACHED,
        DueKind::Escalation { level, fraction } => {
            data["level"] = json!(level);
            data["at"] = json!(fraction);
            ESCALATION
        }
    };
    envelope(ty, id, now, with_context(clocks, data))
}

fn breach_record(
    id: &str,
    clocks: &IncidentClocks,
    due: &Due,
    clock: ClockKind,
    now: Timestamp,
) -> BreachRecord {
    BreachRecord {
        incident_id: id.to_owned(),
        clock,
        priority: clocks.priority().as_str().to_owned(),
        service: clocks.service().to_owned(),
        group: clocks.group().to_owned(),
        due_at: due.at,
        fired_at: now,
        late_ms: now.duration_since(due.at).as_millis().max(0) as i64,
        target_secs: secs(due.why.target),
        elapsed_secs: secs(due.why.elapsed),
        policy: due.why.policy.clone(),
        policy_hash: due.why.policy_hash.clone(),
    }
}

fn breach_from_event(id: &str, env: &Envelope) -> BreachRecord {
    let d = &env.data;
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let t = |v: &Value| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(env.time);
    BreachRecord {
        incident_id: id.to_owned(),
        clock: if d["clock"] == "response" {
            ClockKind::Response
        } else {
            ClockKind::Resolution
        },
        priority: s(&d["incident"]["priority"]),
        service: s(&d["incident"]["service"]),
        group: s(&d["incident"]["group"]),
        due_at: t(&d["due_at"]),
        fired_at: t(&d["fired_at"]),
        late_ms: d["late_ms"].as_i64().unwrap_or(0),
        target_secs: d["target_secs"].as_i64().unwrap_or(0),
        elapsed_secs: d["elapsed_secs"].as_i64().unwrap_or(0),
        policy: s(&d["policy"]["name"]),
        policy_hash: s(&d["policy"]["hash"]),
    }
}

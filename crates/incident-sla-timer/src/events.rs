//! The SLA timer's events (`source: incident-sla`), as docs/events.md describes them: builders
//! for each type, and the reading back of what replay needs (fired timers, breaches).

use incident_domain::Envelope;
use incident_sla::{ClockKind, ClockState, ClockView, DueKey, IncidentClocks, PausedInterval};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

pub const SOURCE: &str = "incident-sla";
/// The subject (and log stream) of policy activations.
pub const POLICY_SUBJECT: &str = "_policy";

pub const POLICY_ACTIVATED: &str = "sla.policy_activated.v1";
pub const STARTED: &str = "sla.started.v1";
pub const PAUSED: &str = "sla.paused.v1";
pub const RESUMED: &str = "sla.resumed.v1";
pub const RETARGETED: &str = "sla.retargeted.v1";
pub const WARNING: &str = "sla.warning.v1";
pub const BREACHED: &str = "sla.breached.v1";
pub const MET: &str = "sla.met.v1";
pub const ESCALATION: &str = "escalation.triggered.v1";

/// Every type the SLA timer writes.
pub const TYPES: [&str; 9] = [
    POLICY_ACTIVATED,
    STARTED,
    PAUSED,
    RESUMED,
    RETARGETED,
    WARNING,
    BREACHED,
    MET,
    ESCALATION,
];

pub fn clock_name(c: ClockKind) -> &'static str {
    match c {
        ClockKind::Response => "response",
        ClockKind::Resolution => "resolution",
    }
}

pub fn state_name(s: ClockState) -> &'static str {
    match s {
        ClockState::Running => "running",
        ClockState::Paused => "paused",
        ClockState::Met => "met",
        ClockState::Breached => "breached",
    }
}

pub fn secs(d: SignedDuration) -> i64 {
    d.as_secs()
}

pub fn envelope(ty: &str, subject: &str, at: Timestamp, data: Value) -> Envelope {
    Envelope::new(
        uuid::Uuid::now_v7().to_string(),
        SOURCE,
        ty,
        subject,
        at,
        data,
    )
}

/// The routing context every SLA event carries.
pub fn context(clocks: &IncidentClocks) -> Value {
    let b = clocks.binding();
    json!({
        "incident": {
            "priority": clocks.priority().as_str(),
            "service": clocks.service(),
            "group": clocks.group(),
        },
        "policy": {"name": b.policy().name(), "hash": b.set_hash()},
    })
}

pub fn with_context(clocks: &IncidentClocks, extra: Value) -> Value {
    let mut v = context(clocks);
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

pub fn clock_target(view: &ClockView) -> Value {
    json!({
        "clock": clock_name(view.clock),
        "target_secs": view.target.map(secs),
        "due_at": view.due_at.map(|t| t.to_string()),
    })
}

pub fn paused_json(paused: &[PausedInterval]) -> Value {
    Value::Array(
        paused
            .iter()
            .map(|p| {
                json!({
                    "from": p.from.to_string(),
                    "to": p.to.map(|t| t.to_string()),
                    "status": p.status.as_str(),
                })
            })
            .collect(),
    )
}

/// A fired timer recorded in an event: the key and the instant it was marked at.
pub fn fired_of(env: &Envelope) -> Option<(DueKey, Timestamp)> {
    if !matches!(env.ty.as_str(), WARNING | BREACHED | ESCALATION) {
        return None;
    }
    let key: DueKey = serde_json::from_value(env.data.get("key")?.clone()).ok()?;
    let at: Timestamp = env.data.get("marked_at")?.as_str()?.parse().ok()?;
    Some((key, at))
}

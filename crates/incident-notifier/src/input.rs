//! What the notifier consumes, decoded: incident events from `INCIDENT_EVENTS` (through
//! `incident_domain::stored::decode`) and SLA events from `SLA_EVENTS` (JSON by the contract in
//! docs/events.md: `type`, `subject`, `data.incident.{priority,service,group}`, `data.clock`,
//! `data.level`). Pure.
//!
//! A payload that is not an envelope, or a known type whose data does not fit, can never be
//! processed: the caller dead-letters it. An envelope of a type the notifier does not know is
//! ignored (acked), so a newer publisher does not fill the dead-letter stream.

use incident_domain::{Envelope, IncidentEvent, IncidentId, Priority, stored};
use jiff::Timestamp;
use serde_json::Value;

/// SLA event types the notifier routes (base names of `*.v1`).
pub const SLA_TYPES: [&str; 8] = [
    "sla.started.v1",
    "sla.paused.v1",
    "sla.resumed.v1",
    "sla.retargeted.v1",
    "sla.warning.v1",
    "sla.breached.v1",
    "sla.met.v1",
    "escalation.triggered.v1",
];

/// One consumed event the notifier acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub event_id: String,
    /// Full type, e.g. `sla.breached.v1`.
    pub ty: String,
    /// Without the version: `sla.breached`.
    pub base: String,
    pub incident_id: String,
    pub at: Timestamp,
    /// The envelope as JSON, sent along in webhook bodies.
    pub envelope: Value,
    pub kind: InputKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    Incident(IncidentEvent),
    Sla(SlaInfo),
}

/// The routing context an SLA event carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlaInfo {
    pub priority: Option<Priority>,
    pub service: String,
    pub group: String,
    pub clock: Option<String>,
    pub level: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Input(Box<Input>),
    /// A valid envelope the notifier has nothing to do with.
    Ignored(String),
}

/// `sla.breached.v1` -> `sla.breached`.
pub fn base_name(ty: &str) -> &str {
    match ty.rsplit_once('.') {
        Some((base, v))
            if v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => ty,
    }
}

fn envelope(payload: &[u8]) -> Result<(Envelope, Value), String> {
    let env = Envelope::from_slice(payload).map_err(|e| e.to_string())?;
    let value = serde_json::to_value(&env).map_err(|e| e.to_string())?;
    Ok((env, value))
}

/// Decodes a message of `INCIDENT_EVENTS`. `Err` is the reason to dead-letter it.
pub fn decode_incident(payload: &[u8]) -> Result<Decoded, String> {
    let (env, value) = envelope(payload)?;
    if !stored::TYPES.contains(&env.ty.as_str()) {
        return Ok(Decoded::Ignored(format!(
            "incident event type {} is not known here",
            env.ty
        )));
    }
    let event = stored::decode(&env).map_err(|e| e.to_string())?;
    Ok(Decoded::Input(Box::new(Input {
        event_id: env.id.clone(),
        base: base_name(&env.ty).to_owned(),
        ty: env.ty.clone(),
        incident_id: event.incident_id.to_string(),
        at: env.time,
        envelope: value,
        kind: InputKind::Incident(event),
    })))
}

/// Decodes a message of `SLA_EVENTS`. `Err` is the reason to dead-letter it.
pub fn decode_sla(payload: &[u8]) -> Result<Decoded, String> {
    let (env, value) = envelope(payload)?;
    if !SLA_TYPES.contains(&env.ty.as_str()) {
        return Ok(Decoded::Ignored(format!(
            "SLA event type {} is not routed",
            env.ty
        )));
    }
    let id = IncidentId::parse(&env.subject)
        .map_err(|e| format!("{}: subject is not an incident id: {e}", env.ty))?;
    let data = env
        .data
        .as_object()
        .ok_or_else(|| format!("{}: data is not an object", env.ty))?;
    let incident = data
        .get("incident")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{}: data.incident is missing", env.ty))?;
    let text = |key: &str| {
        incident
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let priority = match incident.get("priority") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(
            Priority::parse(p).map_err(|e| format!("{}: data.incident.priority: {e}", env.ty))?,
        ),
        Some(_) => {
            return Err(format!(
                "{}: data.incident.priority is not a string",
                env.ty
            ));
        }
    };
    let clock = match data.get("clock") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => return Err(format!("{}: data.clock is not a string", env.ty)),
    };
    let level = match data.get("level") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|l| u32::try_from(l).ok())
                .ok_or_else(|| format!("{}: data.level is not a small whole number", env.ty))?,
        ),
    };
    if env.ty == "escalation.triggered.v1" && level.is_none() {
        return Err(format!("{}: data.level is missing", env.ty));
    }
    Ok(Decoded::Input(Box::new(Input {
        event_id: env.id.clone(),
        base: base_name(&env.ty).to_owned(),
        ty: env.ty.clone(),
        incident_id: id.to_string(),
        at: env.time,
        envelope: value,
        kind: InputKind::Sla(SlaInfo {
            priority,
            service: text("service"),
            group: text("group"),
            clock,
            level,
        }),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sla(ty: &str, data: Value) -> Vec<u8> {
        Envelope::new(
            "0190f4c2-0000-7000-8000-000000000001",
            "incident-sla",
            ty,
            "INC-1",
            "2026-12-02T10:00:00Z".parse().unwrap(),
            data,
        )
        .to_canonical_bytes()
    }

    #[test]
    fn base_names() {
        assert_eq!(base_name("sla.breached.v1"), "sla.breached");
        assert_eq!(base_name("incident.opened.v12"), "incident.opened");
        assert_eq!(base_name("odd.value"), "odd.value");
        assert_eq!(base_name("odd.v"), "odd.v");
    }

    #[test]
    fn sla_events_decode_by_the_contract() {
        let bytes = sla(
            "sla.breached.v1",
            json!({"incident": {"priority": "P1", "service": "payments", "group": "g"},
                   "policy": {"name": "standard", "hash": "h"}, "clock": "response"}),
        );
        let Decoded::Input(input) = decode_sla(&bytes).unwrap() else {
            panic!("not an input")
        };
        assert_eq!(input.base, "sla.breached");
        assert_eq!(input.incident_id, "INC-1");
        let InputKind::Sla(info) = &input.kind else {
            panic!("not sla")
        };
        assert_eq!(info.priority, Some(Priority::P1));
        assert_eq!(info.service, "payments");
        assert_eq!(info.clock.as_deref(), Some("response"));
        let bytes = sla(
            "escalation.triggered.v1",
            json!({"incident": {"priority": "P2", "service": "s", "group": "g"}, "level": 2}),
        );
        let Decoded::Input(input) = decode_sla(&bytes).unwrap() else {
            panic!("not an input")
        };
        let InputKind::Sla(info) = &input.kind else {
            panic!("not sla")
        };
        assert_eq!(info.level, Some(2));
    }

    #[test]
    fn bad_sla_events_are_rejected_and_unknown_ones_ignored() {
        assert!(decode_sla(b"not json").is_err());
        assert!(decode_sla(&sla("sla.breached.v1", json!({"clock": "response"}))).is_err());
        assert!(
            decode_sla(&sla(
                "sla.breached.v1",
                json!({"incident": {"priority": "P9"}})
            ))
            .is_err()
        );
        assert!(
            decode_sla(&sla(
                "escalation.triggered.v1",
                json!({"incident": {"priority": "P1"}})
            ))
            .is_err()
        );
        assert!(matches!(
            decode_sla(&sla("sla.policy_activated.v1", json!({}))).unwrap(),
            Decoded::Ignored(_)
        ));
    }

    #[test]
    fn incident_events_decode_and_bad_ones_are_rejected() {
        assert!(decode_incident(b"{}").is_err());
        let bad = Envelope::new(
            "1",
            "incident-intake",
            "incident.opened.v1",
            "INC-1",
            Timestamp::UNIX_EPOCH,
            json!({"title": 5}),
        )
        .to_canonical_bytes();
        assert!(decode_incident(&bad).is_err());
        let other = Envelope::new(
            "1",
            "incident-intake",
            "incident.merged.v1",
            "INC-1",
            Timestamp::UNIX_EPOCH,
            json!({}),
        )
        .to_canonical_bytes();
        assert!(matches!(
            decode_incident(&other).unwrap(),
            Decoded::Ignored(_)
        ));
    }
}

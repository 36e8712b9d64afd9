//! Reading the SLA timer's log back, as its engine does on start: the policy versions it
//! recorded (`sla.policy_activated.v1`), which version each incident's clocks bound to (the one
//! active when the opening reached the SLA log), and an incident's clocks as they stood at any
//! instant, rebuilt from the inputs recorded under `input.<id>` and the timers it fired. Pure.

use std::collections::BTreeMap;

use incident_domain::{EventKind, stored};
use incident_sla::{ClockInput, DueKey, IncidentClocks, PolicySet};
use jiff::Timestamp;

use crate::record::{AuditRecord, SLA};
use incident_sla::incident_events::inputs_of;

/// `sla.policy_activated.v1`.
pub const POLICY_ACTIVATED: &str = "sla.policy_activated.v1";
const FIRED: [&str; 3] = [
    "sla.warning.v1",
    "sla.breached.v1",
    "escalation.triggered.v1",
];

/// A policy version recorded in the SLA log.
#[derive(Debug, Clone)]
pub struct PolicyVersion {
    /// The record that activated it.
    pub seq: u64,
    pub time: Timestamp,
    pub set: PolicySet,
}

fn sla_records(records: &[AuditRecord]) -> Vec<&AuditRecord> {
    let mut out: Vec<&AuditRecord> = records.iter().filter(|r| r.service == SLA).collect();
    out.sort_by_key(|r| r.record.seq);
    out
}

fn policy_of(r: &AuditRecord) -> Option<Result<PolicySet, String>> {
    let env = r.envelope.as_ref()?;
    if env.ty != POLICY_ACTIVATED {
        return None;
    }
    let Some(policy) = env.data.get("policy") else {
        return Some(Err(format!(
            "SLA record {}: policy activation without a policy",
            r.record.seq
        )));
    };
    Some(
        PolicySet::from_json(&policy.to_string())
            .map_err(|e| format!("SLA record {}: recorded policy: {e}", r.record.seq)),
    )
}

/// Every policy version the SLA log recorded, in log order.
pub fn policy_versions(records: &[AuditRecord]) -> Result<Vec<PolicyVersion>, String> {
    let mut out = Vec::new();
    for r in sla_records(records) {
        if let Some(set) = policy_of(r) {
            out.push(PolicyVersion {
                seq: r.record.seq,
                time: r.time().unwrap_or(Timestamp::UNIX_EPOCH),
                set: set?,
            });
        }
    }
    Ok(out)
}

/// For each incident whose opening the SLA log recorded, the hash of the policy version active
/// at that point of the log (the version its clocks bound to).
pub fn bound_policies(records: &[AuditRecord]) -> Result<BTreeMap<String, String>, String> {
    let mut active: Option<String> = None;
    let mut out = BTreeMap::new();
    for r in sla_records(records) {
        if let Some(set) = policy_of(r) {
            active = Some(set?.hash().to_owned());
            continue;
        }
        let (Some(id), Some(env)) = (r.record.stream.strip_prefix("input."), &r.envelope) else {
            continue;
        };
        if env.ty == stored::TYPES[0]
            && let Some(hash) = &active
        {
            out.entry(id.to_owned()).or_insert_with(|| hash.clone());
        }
    }
    Ok(out)
}

/// The clocks of `incident_id` as the SLA log had them at `at`: the records are replayed in seq
/// order, inputs and fired timers whose instant is after `at` left out, the clocks bound to the
/// policy version active when the opening was recorded. `Ok(None)` when the SLA log has no
/// clocks for the incident at that instant (not opened yet, or no policy applied).
pub fn clocks_at(
    incident_id: &str,
    records: &[AuditRecord],
    at: Timestamp,
) -> Result<Option<IncidentClocks>, String> {
    let input_stream = format!("input.{incident_id}");
    let mut active: Option<PolicySet> = None;
    let mut clocks: Option<IncidentClocks> = None;
    for r in sla_records(records) {
        let seq = r.record.seq;
        if let Some(set) = policy_of(r) {
            active = Some(set?);
            continue;
        }
        let Some(env) = &r.envelope else {
            continue;
        };
        if r.record.stream == input_stream {
            let event = stored::decode(env).map_err(|e| format!("SLA record {seq}: {e}"))?;
            if let EventKind::Opened {
                priority,
                service,
                group,
                ..
            } = &event.kind
            {
                if clocks.is_some() || event.at > at {
                    continue;
                }
                let Some(set) = &active else {
                    continue;
                };
                clocks = IncidentClocks::start(set, event.at, *priority, service, group).ok();
                continue;
            }
            let Some(c) = clocks.as_mut() else {
                continue;
            };
            let when = event.at.max(c.last_input_at());
            if when > at {
                continue;
            }
            for input in inputs_of(&event, when) {
                // as the engine does: an input the clocks refuse changes nothing
                let _ = c.apply(input);
            }
        } else if r.record.stream == incident_id && FIRED.contains(&env.ty.as_str()) {
            let Some(c) = clocks.as_mut() else {
                continue;
            };
            if env.time > at {
                continue;
            }
            let key: DueKey = env
                .data
                .get("key")
                .cloned()
                .and_then(|k| serde_json::from_value(k).ok())
                .ok_or_else(|| format!("SLA record {seq}: fired timer without its key"))?;
            let marked: Timestamp = env
                .data
                .get("marked_at")
                .and_then(|m| m.as_str())
                .and_then(|m| m.parse().ok())
                .unwrap_or(env.time);
            c.apply(ClockInput::TimerFired {
                at: marked.max(c.last_input_at()),
                key,
            })
            .map_err(|e| format!("SLA record {seq}: {e}"))?;
        }
    }
    Ok(clocks)
}

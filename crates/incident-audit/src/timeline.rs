//! One incident across the services: every event about it in time order, each with its time,
//! its source (service and log seq), what happened and why; and the incident as it stood at any
//! instant: intake's events folded with `incident_domain`, its SLA clocks replayed from the SLA
//! log under the recorded policy version, its pages and notifications from the notifier's log.
//! Pure: the records come from `ReadLog` or an export.

use std::collections::BTreeMap;

use incident_domain::{Incident, stored};
use incident_sla::{IncidentState, format_duration};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

use crate::record::{AuditRecord, INTAKE, NOTIFIER, SLA, sort_merged};
use crate::slalog;

/// One line of a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub time: Timestamp,
    /// The service whose log holds the event.
    pub service: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub ty: String,
    /// What happened.
    pub what: String,
    /// Why: the target, elapsed time and policy of an SLA event, a reason, a response.
    pub why: String,
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn secs(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_i64) {
        Some(n) => format_duration(SignedDuration::from_secs(n)),
        None => "none".into(),
    }
}

fn policy(d: &Value) -> String {
    let p = d.get("policy").cloned().unwrap_or(Value::Null);
    let hash = s(&p, "hash");
    format!(
        "policy {} ({})",
        s(&p, "name"),
        hash.get(..12).unwrap_or(hash)
    )
}

fn clocks_list(d: &Value) -> String {
    d.get("clocks")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| match c {
                    Value::String(name) => name.clone(),
                    c => {
                        let due = s(c, "due_at");
                        let mut out = format!("{} {}", s(c, "clock"), secs(c, "target_secs"));
                        if !due.is_empty() {
                            out.push_str(&format!(" due {due}"));
                        }
                        out
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn paused(d: &Value) -> String {
    let list: Vec<String> = d
        .get("paused")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let to = s(p, "to");
                    format!(
                        "{}..{}",
                        s(p, "from"),
                        if to.is_empty() { "now" } else { to }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        String::new()
    } else {
        format!(", paused {}", list.join(" "))
    }
}

/// What and why of one event, by type.
pub fn describe(ty: &str, d: &Value) -> (String, String) {
    let actor = s(d, "actor");
    let by = if actor.is_empty() {
        String::new()
    } else {
        format!(" by {actor}")
    };
    match ty {
        "incident.opened.v1" => (
            format!(
                "opened {} {:?} (service {}, group {}){by} via {}",
                s(d, "priority"),
                s(d, "title"),
                s(d, "service"),
                s(d, "group"),
                d.get("source")
                    .map(|src| s(src, "kind"))
                    .unwrap_or_default(),
            ),
            format!(
                "impact {} x urgency {} -> {}",
                s(d, "impact"),
                s(d, "urgency"),
                s(d, "priority")
            ),
        ),
        "incident.acknowledged.v1" => (format!("acknowledged{by}"), String::new()),
        "incident.assigned.v1" => {
            let who = s(d, "assignee");
            (
                format!(
                    "assigned to {}{}{by}",
                    s(d, "group"),
                    if who.is_empty() {
                        String::new()
                    } else {
                        format!(" / {who}")
                    }
                ),
                String::new(),
            )
        }
        "incident.work_started.v1" => (format!("work started{by}"), String::new()),
        "incident.put_on_hold.v1" => (format!("put on hold{by}"), s(d, "reason").to_owned()),
        "incident.resumed.v1" => (format!("resumed{by}"), String::new()),
        "incident.resolved.v1" => (format!("resolved{by}"), s(d, "note").to_owned()),
        "incident.closed.v1" => (format!("closed{by}"), String::new()),
        "incident.reopened.v1" => (
            format!("reopened to {}{by}", s(d, "status")),
            s(d, "reason").to_owned(),
        ),
        "incident.commented.v1" => (format!("comment{by}"), s(d, "text").to_owned()),
        "incident.priority_changed.v1" => (
            format!("priority {} -> {}{by}", s(d, "from"), s(d, "to")),
            format!(
                "{} (impact {} x urgency {})",
                s(d, "reason"),
                s(d, "impact"),
                s(d, "urgency")
            ),
        ),
        "incident.duplicate_received.v1" => (
            format!(
                "duplicate report from {}",
                d.get("source")
                    .map(|src| s(src, "kind"))
                    .unwrap_or_default()
            ),
            String::new(),
        ),
        "sla.policy_activated.v1" => {
            let hash = s(d, "hash");
            let names: Vec<&str> = d
                .get("policy")
                .and_then(|p| p.get("policies"))
                .and_then(Value::as_array)
                .map(|ps| ps.iter().map(|p| s(p, "name")).collect())
                .unwrap_or_default();
            (
                format!(
                    "SLA policy version {} activated",
                    hash.get(..12).unwrap_or(hash)
                ),
                format!("policies: {}", names.join(", ")),
            )
        }
        "sla.started.v1" => (format!("SLA clocks started: {}", clocks_list(d)), policy(d)),
        "sla.paused.v1" => (
            format!("SLA paused: {}", clocks_list(d)),
            format!("status {}", s(d, "status")),
        ),
        "sla.resumed.v1" => (format!("SLA resumed: {}", clocks_list(d)), policy(d)),
        "sla.retargeted.v1" => (
            format!(
                "SLA re-targeted {} -> {}: {}",
                s(d, "from"),
                s(d, "to"),
                clocks_list(d)
            ),
            policy(d),
        ),
        "sla.warning.v1" => (
            format!(
                "SLA warning: {} at {}%",
                s(d, "clock"),
                d.get("fraction")
                    .and_then(Value::as_f64)
                    .map(|f| (f * 100.0).round())
                    .unwrap_or(0.0)
            ),
            format!(
                "target {}, elapsed {}, due {}, {}",
                secs(d, "target_secs"),
                secs(d, "elapsed_secs"),
                s(d, "due_at"),
                policy(d)
            ),
        ),
        "sla.breached.v1" => (
            format!("SLA breached: {}", s(d, "clock")),
            format!(
                "target {}, elapsed {}, due {}, fired {} (late {} ms), calendar {}, {}{}",
                secs(d, "target_secs"),
                secs(d, "elapsed_secs"),
                s(d, "due_at"),
                s(d, "fired_at"),
                d.get("late_ms").and_then(Value::as_i64).unwrap_or(0),
                s(d, "calendar"),
                policy(d),
                paused(d)
            ),
        ),
        "sla.met.v1" => (
            format!(
                "SLA clock stopped: {} {}",
                s(d, "clock"),
                if d.get("breached").and_then(Value::as_bool) == Some(true) {
                    "(had breached)"
                } else {
                    "(met)"
                }
            ),
            format!(
                "target {}, elapsed {}, {}",
                secs(d, "target_secs"),
                secs(d, "elapsed_secs"),
                policy(d)
            ),
        ),
        "escalation.triggered.v1" => (
            format!(
                "escalated to level {}",
                d.get("level").and_then(Value::as_u64).unwrap_or(0)
            ),
            format!(
                "{}% of resolution target {}, elapsed {}, {}",
                d.get("at")
                    .and_then(Value::as_f64)
                    .map(|f| (f * 100.0).round())
                    .unwrap_or(0.0),
                secs(d, "target_secs"),
                secs(d, "elapsed_secs"),
                policy(d)
            ),
        ),
        "notification.queued.v1" => (
            format!(
                "notification {} queued for {} (route {})",
                s(d, "notification_id"),
                s(d, "channel"),
                s(d, "route")
            ),
            format!(
                "{} (on {})",
                s(d, "reason"),
                d.get("trigger").map(|t| s(t, "type")).unwrap_or_default()
            ),
        ),
        "notification.delivered.v1" => (
            format!(
                "notification {} delivered via {} after {} attempt(s)",
                s(d, "notification_id"),
                s(d, "channel"),
                d.get("attempts").and_then(Value::as_u64).unwrap_or(0)
            ),
            format!("response {}", s(d, "response")),
        ),
        "notification.failed.v1" => (
            format!(
                "notification {} failed via {} (attempt {})",
                s(d, "notification_id"),
                s(d, "channel"),
                d.get("attempts").and_then(Value::as_u64).unwrap_or(0)
            ),
            format!(
                "{}{}",
                s(d, "error"),
                if d.get("permanent").and_then(Value::as_bool) == Some(true) {
                    ", permanent".to_owned()
                } else {
                    format!(", next attempt {}", s(d, "next_attempt_at"))
                }
            ),
        ),
        "notification.suppressed.v1" => (
            format!(
                "notification {} for {} suppressed by silence {}",
                s(d, "notification_id"),
                s(d, "channel"),
                s(d, "silence")
            ),
            format!("{} (until {})", s(d, "reason"), s(d, "until")),
        ),
        "page.started.v1" => (
            format!(
                "paging {} (page {}) tier {} round {}",
                s(d, "oncall"),
                s(d, "page_id"),
                d.get("tier").and_then(Value::as_u64).unwrap_or(0),
                d.get("round").and_then(Value::as_u64).unwrap_or(0)
            ),
            format!(
                "on {}, acknowledge by {}",
                d.get("trigger").map(|t| s(t, "type")).unwrap_or_default(),
                s(d, "ack_deadline")
            ),
        ),
        "page.escalated.v1" => (
            format!(
                "page {} escalated to tier {} round {}",
                s(d, "page_id"),
                d.get("tier").and_then(Value::as_u64).unwrap_or(0),
                d.get("round").and_then(Value::as_u64).unwrap_or(0)
            ),
            format!(
                "{}, acknowledge by {}",
                s(d, "reason"),
                s(d, "ack_deadline")
            ),
        ),
        "page.stopped.v1" => (
            format!("page {} stopped", s(d, "page_id")),
            s(d, "reason").to_owned(),
        ),
        other => (other.to_owned(), String::new()),
    }
}

/// Whether a record belongs on the incident's timeline: an event of the incident itself, not a
/// recorded input (the SLA timer's copy of intake's events), not a service-wide record, not
/// the notifier's internal bookkeeping.
fn on_timeline(r: &AuditRecord, incident_id: &str) -> bool {
    r.envelope.is_some()
        && !r.is_input()
        && !r.record.stream.starts_with('_')
        && (r.record.stream == incident_id || r.subject() == incident_id)
        && r.event_type() != "notification.incident_observed.v1"
}

/// The timeline of `incident_id` from the records of any services, in time order (ties: intake,
/// SLA, notifier, then seq). With `until`, only events at or before it.
pub fn timeline(
    incident_id: &str,
    records: &[AuditRecord],
    until: Option<Timestamp>,
) -> Vec<Entry> {
    let mut recs: Vec<AuditRecord> = records
        .iter()
        .filter(|r| on_timeline(r, incident_id))
        .filter(|r| until.is_none_or(|u| r.time().is_some_and(|t| t <= u)))
        .cloned()
        .collect();
    sort_merged(&mut recs);
    recs.iter()
        .filter_map(|r| {
            let env = r.envelope.as_ref()?;
            let (what, why) = describe(&env.ty, &env.data);
            Some(Entry {
                time: env.time,
                service: r.service.clone(),
                seq: r.record.seq,
                ty: env.ty.clone(),
                what,
                why,
            })
        })
        .collect()
}

/// A page as it stood.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageView {
    pub page_id: String,
    pub oncall: String,
    pub tier: u64,
    pub round: u64,
    /// `paging` or `stopped`.
    pub state: String,
    pub ack_deadline: String,
    pub reason: String,
}

/// A notification as it stood.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationView {
    pub notification_id: String,
    pub channel: String,
    /// `queued`, `delivered`, `failed` (permanently), `retrying` or `suppressed`.
    pub state: String,
    pub attempts: u64,
}

/// The incident at an instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub at: Timestamp,
    /// The incident folded from intake's events up to `at` (`None`: not opened yet, or no
    /// intake records).
    pub incident: Option<Value>,
    /// Its clocks replayed from the SLA log up to `at`.
    pub sla: Option<IncidentState>,
    /// Why there are no clocks, or what went wrong replaying them.
    pub sla_note: Option<String>,
    pub pages: Vec<PageView>,
    pub notifications: Vec<NotificationView>,
}

fn incident_json(i: &Incident) -> Value {
    json!({
        "id": i.id.as_str(),
        "title": i.title,
        "service": i.service,
        "group": i.group,
        "assignee": i.assignee,
        "impact": i.impact.as_str(),
        "urgency": i.urgency.as_str(),
        "priority": i.priority.as_str(),
        "status": i.status.as_str(),
        "opened_at": i.opened_at.to_string(),
        "acknowledged_at": i.acknowledged_at.map(|t| t.to_string()),
        "resolved_at": i.resolved_at.map(|t| t.to_string()),
        "closed_at": i.closed_at.map(|t| t.to_string()),
        "hold_reason": i.hold_reason,
        "resolution_note": i.resolution_note,
        "reopen_count": i.reopen_count,
        "duplicate_count": i.duplicate_count,
        "version": i.version,
    })
}

/// The incident as it stood at `at`. An intake record that does not decode is an error naming
/// it.
pub fn snapshot_at(
    incident_id: &str,
    records: &[AuditRecord],
    at: Timestamp,
) -> Result<Snapshot, String> {
    let mut intake: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| r.service == INTAKE && r.record.stream == incident_id)
        .filter(|r| r.time().is_some_and(|t| t <= at))
        .collect();
    intake.sort_by_key(|r| r.record.seq);
    let mut events = Vec::new();
    for r in intake {
        let Some(env) = &r.envelope else { continue };
        events.push(
            stored::decode(env).map_err(|e| format!("{INTAKE} record {}: {e}", r.record.seq))?,
        );
    }
    let incident = incident_domain::fold(&events)
        .map_err(|e| format!("{INTAKE} history of {incident_id}: {e}"))?
        .map(|i| incident_json(&i));

    let has_sla = records.iter().any(|r| r.service == SLA);
    let (sla, sla_note) = match slalog::clocks_at(incident_id, records, at) {
        Ok(Some(c)) => (Some(c.state_at(at)), None),
        Ok(None) if has_sla => (
            None,
            Some("the SLA log has no clocks for it at that instant".to_owned()),
        ),
        Ok(None) => (None, Some("no SLA log was read".to_owned())),
        Err(e) => (None, Some(e)),
    };

    let mut notifier: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| r.service == NOTIFIER && r.record.stream == incident_id)
        .filter(|r| r.time().is_some_and(|t| t <= at))
        .collect();
    notifier.sort_by_key(|r| r.record.seq);
    let mut pages: BTreeMap<String, PageView> = BTreeMap::new();
    let mut notes: BTreeMap<String, NotificationView> = BTreeMap::new();
    for r in notifier {
        let Some(env) = &r.envelope else { continue };
        let d = &env.data;
        let n = |k: &str| d.get(k).and_then(Value::as_u64).unwrap_or(0);
        match env.ty.as_str() {
            "page.started.v1" | "page.escalated.v1" => {
                let p = pages
                    .entry(s(d, "page_id").to_owned())
                    .or_insert_with(|| PageView {
                        page_id: s(d, "page_id").to_owned(),
                        oncall: s(d, "oncall").to_owned(),
                        tier: 0,
                        round: 0,
                        state: String::new(),
                        ack_deadline: String::new(),
                        reason: String::new(),
                    });
                p.tier = n("tier");
                p.round = n("round");
                p.state = "paging".into();
                p.ack_deadline = s(d, "ack_deadline").to_owned();
                p.reason = s(d, "reason").to_owned();
            }
            "page.stopped.v1" => {
                if let Some(p) = pages.get_mut(s(d, "page_id")) {
                    p.state = "stopped".into();
                    p.reason = s(d, "reason").to_owned();
                }
            }
            ty @ ("notification.queued.v1"
            | "notification.delivered.v1"
            | "notification.failed.v1"
            | "notification.suppressed.v1") => {
                let id = s(d, "notification_id").to_owned();
                let v = notes.entry(id.clone()).or_insert_with(|| NotificationView {
                    notification_id: id,
                    channel: s(d, "channel").to_owned(),
                    state: String::new(),
                    attempts: 0,
                });
                v.state = match ty {
                    "notification.queued.v1" => "queued",
                    "notification.delivered.v1" => "delivered",
                    "notification.suppressed.v1" => "suppressed",
                    _ if d.get("permanent").and_then(Value::as_bool) == Some(true) => "failed",
                    _ => "retrying",
                }
                .into();
                v.attempts = v.attempts.max(n("attempts"));
            }
            _ => {}
        }
    }
    Ok(Snapshot {
        at,
        incident,
        sla,
        sla_note,
        pages: pages.into_values().collect(),
        notifications: notes.into_values().collect(),
    })
}

//! How incidentctl prints: tables for people, JSON for scripts. JSON incidents always carry
//! `id`, `priority` (`P1`..`P5`), `status` (`open`, `acknowledged`, `in_progress`, `on_hold`,
//! `resolved`, `closed`), `title`, `service` and `group`.

use incident_proto::v1 as pb;
use serde_json::{Value, json};

pub struct Output {
    json: bool,
}

fn time(t: &Option<prost_types::Timestamp>) -> Value {
    match t {
        Some(t) => jiff::Timestamp::new(t.seconds, t.nanos)
            .map(|ts| Value::String(ts.to_string()))
            .unwrap_or(Value::Null),
        None => Value::Null,
    }
}

fn enum_name(s: &str, prefix: &str) -> String {
    s.trim_start_matches(prefix).to_ascii_lowercase()
}

pub fn priority(p: i32) -> String {
    pb::Priority::try_from(p)
        .map(|p| match p {
            pb::Priority::Unspecified => String::new(),
            other => enum_name(other.as_str_name(), "PRIORITY_").to_uppercase(),
        })
        .unwrap_or_default()
}

pub fn status(s: i32) -> String {
    pb::Status::try_from(s)
        .map(|s| enum_name(s.as_str_name(), "STATUS_"))
        .unwrap_or_default()
}

fn impact(i: i32) -> String {
    pb::Impact::try_from(i)
        .map(|i| enum_name(i.as_str_name(), "IMPACT_"))
        .unwrap_or_default()
}

fn urgency(u: i32) -> String {
    pb::Urgency::try_from(u)
        .map(|u| enum_name(u.as_str_name(), "URGENCY_"))
        .unwrap_or_default()
}

pub fn incident_json(i: &pb::Incident) -> Value {
    json!({
        "id": i.id,
        "title": i.title,
        "description": i.description,
        "service": i.service,
        "group": i.group,
        "assignee": i.assignee,
        "impact": impact(i.impact),
        "urgency": urgency(i.urgency),
        "priority": priority(i.priority),
        "status": status(i.status),
        "dedup_key": i.dedup_key,
        "opened_at": time(&i.opened_at),
        "acknowledged_at": time(&i.acknowledged_at),
        "resolved_at": time(&i.resolved_at),
        "closed_at": time(&i.closed_at),
        "updated_at": time(&i.updated_at),
        "version": i.version,
        "hold_reason": i.hold_reason,
        "resolution_note": i.resolution_note,
        "reopen_count": i.reopen_count,
        "duplicate_count": i.duplicate_count,
        "sources": i.sources.iter().map(|s| json!({"kind": s.kind, "key": s.key, "at": time(&s.at)})).collect::<Vec<_>>(),
        "comments": i.comments.iter().map(|c| json!({"author": c.author, "text": c.text, "at": time(&c.at)})).collect::<Vec<_>>(),
    })
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn opened(&self, inc: &pb::Incident, deduplicated: bool) {
        if self.json {
            let mut v = incident_json(inc);
            v["deduplicated"] = Value::Bool(deduplicated);
            println!("{v}");
        } else {
            if deduplicated {
                println!("(added to the existing incident {})", inc.id);
            }
            self.incident(inc);
        }
    }

    pub fn incident(&self, inc: &pb::Incident) {
        if self.json {
            println!("{}", incident_json(inc));
            return;
        }
        let v = incident_json(inc);
        let rows = [
            "id",
            "title",
            "priority",
            "status",
            "service",
            "group",
            "assignee",
            "impact",
            "urgency",
            "dedup_key",
            "opened_at",
            "acknowledged_at",
            "resolved_at",
            "closed_at",
            "hold_reason",
            "resolution_note",
            "reopen_count",
            "duplicate_count",
            "description",
        ];
        for key in rows {
            let text = match &v[key] {
                Value::String(s) if s.is_empty() => continue,
                Value::Null => continue,
                Value::Number(n) if n.as_u64() == Some(0) => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{key:<16} {text}");
        }
        for s in &inc.sources {
            println!(
                "{:<16} {} {} {}",
                "source",
                s.kind,
                s.key,
                time(&s.at).as_str().unwrap_or("")
            );
        }
        for c in &inc.comments {
            println!(
                "{:<16} [{}] {}: {}",
                "comment",
                time(&c.at).as_str().unwrap_or(""),
                c.author,
                c.text
            );
        }
    }

    pub fn list(&self, incidents: &[pb::Incident], next_page_token: &str) {
        if self.json {
            let all: Vec<Value> = incidents.iter().map(incident_json).collect();
            println!("{}", Value::Array(all));
            return;
        }
        println!(
            "{:<30} {:<4} {:<12} {:<16} {:<16} TITLE",
            "ID", "PRIO", "STATUS", "SERVICE", "GROUP"
        );
        for i in incidents {
            println!(
                "{:<30} {:<4} {:<12} {:<16} {:<16} {}",
                i.id,
                priority(i.priority),
                status(i.status),
                i.service,
                i.group,
                i.title
            );
        }
        if !next_page_token.is_empty() {
            println!("(more: --page-token {next_page_token})");
        }
    }

    pub fn change(&self, change: &pb::IncidentChange) {
        let Some(inc) = &change.incident else { return };
        if self.json {
            println!(
                "{}",
                json!({"event_type": change.event_type, "event_id": change.event_id, "incident": incident_json(inc)})
            );
        } else {
            println!(
                "{} {:<30} {:<4} {:<12} {}",
                change.event_type,
                inc.id,
                priority(inc.priority),
                status(inc.status),
                inc.title
            );
        }
    }
}

//! `incidentctl notifications [ID]`: what the notifier sent (or is still trying to send, or
//! suppressed) for one incident or for all, from `incident.v1.NotificationService`. A table for
//! people, a JSON array for scripts. Connects through `crate::channel`, so `--token` is sent.

use anyhow::Result;
use incident_proto::v1 as pb;
use incident_proto::v1::notification_service_client::NotificationServiceClient;
use serde_json::{Value, json};

/// Prints the notifications of `incident` (all when `None`) from the notifier at
/// `notifier_url`: a table, or a JSON array with `json`.
pub async fn run(notifier_url: &str, incident: Option<String>, json: bool) -> Result<()> {
    let list = fetch(notifier_url, incident.as_deref()).await?;
    print!("{}", render(&list, json));
    Ok(())
}

/// The notifications, oldest first.
pub async fn fetch(notifier_url: &str, incident: Option<&str>) -> Result<Vec<pb::Notification>> {
    let channel = crate::channel(notifier_url).await?;
    let response = NotificationServiceClient::new(channel)
        .list_notifications(pb::ListNotificationsRequest {
            incident_id: incident.unwrap_or_default().to_owned(),
            ..Default::default()
        })
        .await?;
    Ok(response.into_inner().notifications)
}

pub fn status_name(s: i32) -> String {
    pb::NotificationStatus::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("NOTIFICATION_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn time(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref()
        .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
        .map(|t| Value::String(t.to_string()))
        .unwrap_or(Value::Null)
}

pub fn notification_json(n: &pb::Notification) -> Value {
    let trigger = n.trigger.clone().unwrap_or_default();
    json!({
        "id": n.id,
        "incident_id": n.incident_id,
        "trigger": {"event_id": trigger.event_id, "type": trigger.r#type},
        "route": n.route,
        "channel": n.channel,
        "channel_kind": n.channel_kind,
        "reason": n.reason,
        "attempts": n.attempts,
        "status": status_name(n.status),
        "last_error": n.last_error,
        "response": n.response,
        "queued_at": time(&n.queued_at),
        "next_attempt_at": time(&n.next_attempt_at),
        "finished_at": time(&n.finished_at),
        "page": n.page.as_ref().map(|p| json!({
            "page_id": p.page_id, "oncall": p.oncall, "tier": p.tier, "round": p.round,
        })),
        "silence": n.silence,
    })
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A table (one line per notification) or a JSON array, ending with a newline.
pub fn render(list: &[pb::Notification], json: bool) -> String {
    if json {
        let arr: Vec<Value> = list.iter().map(notification_json).collect();
        return format!(
            "{}\n",
            serde_json::to_string_pretty(&Value::Array(arr)).unwrap_or_default()
        );
    }
    if list.is_empty() {
        return "no notifications\n".into();
    }
    let header = [
        "ID",
        "INCIDENT",
        "TRIGGER",
        "ROUTE",
        "CHANNEL",
        "ATTEMPTS",
        "STATUS",
        "LAST ERROR",
    ];
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|n| {
            let trigger = n.trigger.clone().unwrap_or_default().r#type;
            let channel = match &n.page {
                Some(p) => format!("{} ({} t{}r{})", n.channel, p.oncall, p.tier, p.round),
                None => n.channel.clone(),
            };
            [
                cut(&n.id, 8),
                n.incident_id.clone(),
                trigger,
                n.route.clone(),
                channel,
                n.attempts.to_string(),
                status_name(n.status),
                cut(&n.last_error, 60),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = *w));
            }
        }
        format!("{}\n", out.trim_end())
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

//! What a notification says, per channel kind: the webhook body (canonical JSON, so every
//! attempt sends the same bytes and the same signature), the Slack-compatible payload, the email
//! subject and text, and the log line. Pure.

use hmac::{Hmac, Mac};
use incident_domain::envelope::write_canonical;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::state::Notification;

/// `[P1] INC-… Checkout down: incident opened` (`[PAGE infra tier 2] …` for pages).
pub fn headline(n: &Notification) -> String {
    let prio = n
        .incident
        .priority
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "P?".into());
    let what = crate::input::base_name(&n.trigger.ty).replace(['.', '_'], " ");
    let tag = match &n.page {
        Some(p) => format!("[PAGE {} tier {}] [{prio}]", p.oncall, p.tier),
        None => format!("[{prio}]"),
    };
    let title = if n.incident.title.is_empty() {
        String::new()
    } else {
        format!(" {}", n.incident.title)
    };
    format!("{tag} {}{title}: {what}", n.incident_id)
}

/// The JSON a webhook receives: the notification, why it was sent, the incident as the
/// notifier knew it, and the triggering event.
pub fn webhook_body(n: &Notification) -> Vec<u8> {
    let mut incident = serde_json::to_value(&n.incident).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut incident {
        map.insert("id".into(), Value::String(n.incident_id.clone()));
    }
    let mut body = json!({
        "notification_id": n.id,
        "route": n.route,
        "channel": n.channel,
        "reason": n.reason,
        "headline": headline(n),
        "trigger": {"event_id": n.trigger.event_id, "type": n.trigger.ty},
        "incident": incident,
        "event": n.event,
    });
    if let (Some(p), Value::Object(map)) = (&n.page, &mut body) {
        map.insert(
            "page".into(),
            json!({"page_id": p.page_id, "oncall": p.oncall, "tier": p.tier, "round": p.round}),
        );
    }
    let mut out = Vec::with_capacity(512);
    write_canonical(&body, &mut out);
    out
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; the error case cannot happen.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Slack incoming-webhook payload: `text` for notifications and fallbacks, plus blocks.
pub fn slack_body(n: &Notification) -> Vec<u8> {
    let head = headline(n);
    let detail = format!(
        "*{head}*\n{}\nservice: {} · group: {} · status: {}\nnotification {}",
        n.reason,
        n.incident.service,
        n.incident.group,
        n.incident
            .status
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        n.id
    );
    let body = json!({
        "text": format!("{head} — {}", n.reason),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": detail}}
        ]
    });
    let mut out = Vec::new();
    write_canonical(&body, &mut out);
    out
}

/// Email subject and plain-text body.
pub fn email(n: &Notification) -> (String, String) {
    let subject = headline(n);
    let mut text = format!(
        "{}\n\nIncident: {}\nTitle: {}\nPriority: {}\nService: {}\nGroup: {}\nStatus: {}\nEvent: {} ({})\n",
        n.reason,
        n.incident_id,
        n.incident.title,
        n.incident
            .priority
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        n.incident.service,
        n.incident.group,
        n.incident
            .status
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        n.trigger.ty,
        n.trigger.event_id,
    );
    if let Some(p) = &n.page {
        text.push_str(&format!(
            "Page: {} tier {} round {} — acknowledge the incident to stop it\n",
            p.oncall, p.tier, p.round
        ));
    }
    text.push_str(&format!("Notification: {}\n", n.id));
    (subject, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Summary, Trigger};
    use crate::state::NotificationStatus;
    use incident_domain::Priority;

    fn n() -> Notification {
        Notification {
            id: "n-1".into(),
            incident_id: "INC-1".into(),
            trigger: Trigger {
                event_id: "e".into(),
                ty: "incident.opened.v1".into(),
            },
            route: "p1".into(),
            channel: "ops".into(),
            kind: "webhook".into(),
            reason: "because".into(),
            incident: Summary {
                title: "Checkout down".into(),
                priority: Some(Priority::P1),
                ..Summary::default()
            },
            event: json!({"id": "e", "z": 1, "a": 2}),
            page: None,
            attempts: 0,
            status: NotificationStatus::Queued,
            last_error: None,
            response: None,
            silence: None,
            queued_at: jiff::Timestamp::UNIX_EPOCH,
            next_attempt_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn headline_and_body() {
        assert_eq!(headline(&n()), "[P1] INC-1 Checkout down: incident opened");
        let body: Value = serde_json::from_slice(&webhook_body(&n())).unwrap();
        assert_eq!(body["notification_id"], "n-1");
        assert_eq!(body["incident"]["id"], "INC-1");
        assert_eq!(body["event"]["z"], 1);
        // the same notification always gives the same bytes
        assert_eq!(webhook_body(&n()), webhook_body(&n()));
    }

    #[test]
    fn signature_is_the_rfc_4231_hmac() {
        // RFC 4231 test case 2
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

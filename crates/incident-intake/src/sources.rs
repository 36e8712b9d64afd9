//! What other systems send, turned into intake requests (pure, no I/O): PagerDuty Events API v2,
//! Alertmanager webhook payloads (version 4) and JSON messages on `incident.v1.intake`; and the
//! configuration that maps them (routing keys to services, severities to impact and urgency).
//!
//! ```toml
//! # INTAKE_SOURCES_FILE
//! [auth]
//! tokens = ["s3cret"]                 # when set, HTTP intake needs "Authorization: Bearer <token>"
//!
//! [pagerduty]
//! require_known_routing_key = false   # true: unknown routing keys get 400
//! [[pagerduty.routing_keys]]
//! key = "R0123456789abcdef0123456789abcdef"
//! service = "payments"
//! group = "payments-oncall"
//!
//! [severity]                          # PagerDuty severities (and Alertmanager's severity label)
//! critical = { impact = "high", urgency = "high" }
//! error = { impact = "high", urgency = "medium" }
//! warning = { impact = "medium", urgency = "medium" }
//! info = { impact = "low", urgency = "low" }
//!
//! [alertmanager]
//! service_label = "service"           # falls back to "job", then "alertmanager"
//! group_label = "team"
//! severity_label = "severity"         # unknown or missing: "warning"
//! ```

use std::collections::{BTreeMap, HashMap};

use incident_domain::{Impact, OpenIncident, Source, Urgency};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What an outside system asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Open, or add to the active incident with the same dedup key.
    Trigger(OpenIncident),
    Acknowledge {
        dedup_key: String,
        source: Source,
    },
    Resolve {
        dedup_key: String,
        source: Source,
        note: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub message: String,
    pub errors: Vec<String>,
}

impl Invalid {
    fn one(e: impl Into<String>) -> Self {
        let e = e.into();
        Self {
            message: "Event object is invalid".into(),
            errors: vec![e],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Levels {
    pub impact: Impact,
    pub urgency: Urgency,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    pub tokens: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingKey {
    pub key: String,
    pub service: String,
    #[serde(default)]
    pub group: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PagerDuty {
    #[serde(default)]
    pub require_known_routing_key: bool,
    #[serde(default)]
    pub routing_keys: Vec<RoutingKey>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alertmanager {
    #[serde(default = "default_service_label")]
    pub service_label: String,
    #[serde(default = "default_group_label")]
    pub group_label: String,
    #[serde(default = "default_severity_label")]
    pub severity_label: String,
}

fn default_service_label() -> String {
    "service".into()
}
fn default_group_label() -> String {
    "team".into()
}
fn default_severity_label() -> String {
    "severity".into()
}

impl Default for Alertmanager {
    fn default() -> Self {
        Self {
            service_label: default_service_label(),
            group_label: default_group_label(),
            severity_label: default_severity_label(),
        }
    }
}

/// The sources configuration (`INTAKE_SOURCES_FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub pagerduty: PagerDuty,
    #[serde(default = "default_severities")]
    pub severity: BTreeMap<String, Levels>,
    #[serde(default)]
    pub alertmanager: Alertmanager,
}

fn default_severities() -> BTreeMap<String, Levels> {
    let l = |impact, urgency| Levels { impact, urgency };
    BTreeMap::from([
        ("critical".into(), l(Impact::High, Urgency::High)),
        ("error".into(), l(Impact::High, Urgency::Medium)),
        ("warning".into(), l(Impact::Medium, Urgency::Medium)),
        ("info".into(), l(Impact::Low, Urgency::Low)),
    ])
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            auth: Auth::default(),
            pagerduty: PagerDuty::default(),
            severity: default_severities(),
            alertmanager: Alertmanager::default(),
        }
    }
}

pub const PD_SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
pub const MAX_BODY: usize = 512 * 1024;

impl Sources {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let mut s: Sources = toml::from_str(text).map_err(|e| e.to_string())?;
        let defaults = default_severities();
        for sev in PD_SEVERITIES {
            s.severity
                .entry(sev.to_owned())
                .or_insert_with(|| defaults[sev]);
        }
        Ok(s)
    }

    fn routing(&self) -> HashMap<&str, &RoutingKey> {
        self.pagerduty
            .routing_keys
            .iter()
            .map(|r| (r.key.as_str(), r))
            .collect()
    }

    fn levels(&self, severity: &str) -> Levels {
        self.severity
            .get(severity)
            .or_else(|| self.severity.get("warning"))
            .copied()
            .unwrap_or(Levels {
                impact: Impact::Medium,
                urgency: Urgency::Medium,
            })
    }
}

fn str_field<'a>(v: &'a Value, name: &str, errors: &mut Vec<String>) -> Option<&'a str> {
    match v.get(name) {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Null) | None => None,
        Some(_) => {
            errors.push(format!("'{name}' must be a string"));
            None
        }
    }
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..12])
}

/// The dedup key intake keeps for a PagerDuty key: scoped by the service its routing key maps to.
pub fn pagerduty_key(service: &str, dedup_key: &str) -> String {
    format!("pagerduty/{service}/{dedup_key}")
}

/// Parses a PagerDuty Events API v2 event. `generated_key` is used when a trigger has no
/// `dedup_key`; the answer's dedup key is the one the sender sent or the generated one.
pub fn pagerduty(
    sources: &Sources,
    body: &[u8],
    generated_key: &str,
) -> Result<(Request, String), Invalid> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Invalid {
        message: "Event object is invalid".into(),
        errors: vec![format!("body is not JSON: {e}")],
    })?;
    if !v.is_object() {
        return Err(Invalid::one("body must be a JSON object"));
    }
    let mut errors = Vec::new();
    let routing_key = str_field(&v, "routing_key", &mut errors).unwrap_or_default();
    if routing_key.is_empty() {
        errors.push("'routing_key' is missing or blank".into());
    }
    let routes = sources.routing();
    let route = routes.get(routing_key);
    if route.is_none() && sources.pagerduty.require_known_routing_key && !routing_key.is_empty() {
        errors.push("'routing_key' is not a known routing key".into());
    }
    let action = str_field(&v, "event_action", &mut errors).unwrap_or_default();
    if !matches!(action, "trigger" | "acknowledge" | "resolve") {
        errors.push(format!(
            "'event_action' must be trigger, acknowledge or resolve, not {action:?}"
        ));
    }
    let dedup = str_field(&v, "dedup_key", &mut errors).map(str::to_owned);
    if dedup.as_ref().is_some_and(|d| d.chars().count() > 255) {
        errors.push("'dedup_key' is longer than 255 characters".into());
    }
    if action != "trigger" && dedup.as_deref().unwrap_or_default().is_empty() {
        errors.push(format!("'dedup_key' is required to {action}"));
    }
    let service = route.map_or("unrouted", |r| r.service.as_str()).to_owned();
    let group = route.map_or("", |r| r.group.as_str()).to_owned();
    let mut trigger = None;
    if action == "trigger" {
        let payload = v.get("payload").filter(|p| p.is_object());
        match payload {
            None => errors.push("'payload' is missing or not an object".into()),
            Some(p) => {
                let summary = str_field(p, "summary", &mut errors).unwrap_or_default();
                if summary.trim().is_empty() {
                    errors.push("'payload.summary' is missing or blank".into());
                } else if summary.chars().count() > 1024 {
                    errors.push("'payload.summary' is longer than 1024 characters".into());
                }
                let source = str_field(p, "source", &mut errors).unwrap_or_default();
                if source.trim().is_empty() {
                    errors.push("'payload.source' is missing or blank".into());
                }
                let severity = str_field(p, "severity", &mut errors).unwrap_or_default();
                if !PD_SEVERITIES.contains(&severity) {
                    errors.push(format!(
                        "'payload.severity' must be critical, error, warning or info, not {severity:?}"
                    ));
                }
                if let Some(ts) = str_field(p, "timestamp", &mut errors)
                    && ts.parse::<jiff::Timestamp>().is_err()
                {
                    errors.push(format!(
                        "'payload.timestamp' {ts:?} is not an ISO 8601 instant"
                    ));
                }
                let mut description = format!("source: {source}\nseverity: {severity}");
                for f in ["timestamp", "component", "group", "class"] {
                    if let Some(x) = str_field(p, f, &mut errors) {
                        description.push_str(&format!("\n{f}: {x}"));
                    }
                }
                if let Some(d) = p.get("custom_details").filter(|d| !d.is_null()) {
                    description.push_str(&format!("\ncustom_details: {d}"));
                }
                for f in ["links", "images"] {
                    if let Some(x) = v.get(f).filter(|x| !x.is_null()) {
                        description.push_str(&format!("\n{f}: {x}"));
                    }
                }
                let levels = sources.levels(severity);
                trigger = Some((summary.to_owned(), description, levels));
            }
        }
    }
    if !errors.is_empty() {
        return Err(Invalid {
            message: "Event object is invalid".into(),
            errors,
        });
    }
    let sent_key = dedup.filter(|d| !d.is_empty());
    let answer_key = sent_key.clone().unwrap_or_else(|| generated_key.to_owned());
    let key = pagerduty_key(&service, &answer_key);
    let source = Source {
        kind: "pagerduty".into(),
        key: answer_key.clone(),
    };
    let req = match (action, trigger) {
        ("trigger", Some((summary, description, levels))) => Request::Trigger(OpenIncident {
            title: summary,
            description,
            service,
            group,
            impact: levels.impact,
            urgency: levels.urgency,
            dedup_key: Some(key),
            request_id: None,
            source,
        }),
        ("acknowledge", _) => Request::Acknowledge {
            dedup_key: key,
            source,
        },
        _ => Request::Resolve {
            dedup_key: key,
            source,
            note: Some("resolved by PagerDuty event".into()),
        },
    };
    Ok((req, answer_key))
}

/// Parses an Alertmanager webhook payload (version 4): one incident per `groupKey`. A firing
/// notification opens it (or adds to it); `resolved` resolves it. A copy of the same
/// notification (clustered Alertmanagers send one each) carries the same request id and changes
/// nothing.
pub fn alertmanager(sources: &Sources, body: &[u8]) -> Result<Request, Invalid> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| Invalid::one(format!("body is not JSON: {e}")))?;
    let mut errors = Vec::new();
    let version = str_field(&v, "version", &mut errors).unwrap_or_default();
    if version != "4" {
        errors.push(format!("'version' must be \"4\", not {version:?}"));
    }
    let group_key = str_field(&v, "groupKey", &mut errors).unwrap_or_default();
    if group_key.is_empty() {
        errors.push("'groupKey' is missing or blank".into());
    }
    let status = str_field(&v, "status", &mut errors).unwrap_or_default();
    if !matches!(status, "firing" | "resolved") {
        errors.push(format!(
            "'status' must be firing or resolved, not {status:?}"
        ));
    }
    let Some(alerts) = v.get("alerts").and_then(Value::as_array) else {
        errors.push("'alerts' is missing or not an array".into());
        return Err(Invalid {
            message: "Alertmanager payload is invalid".into(),
            errors,
        });
    };
    if !errors.is_empty() {
        return Err(Invalid {
            message: "Alertmanager payload is invalid".into(),
            errors,
        });
    }
    let labels = |name: &str| -> Option<String> {
        for scope in ["commonLabels", "groupLabels"] {
            if let Some(s) = v
                .get(scope)
                .and_then(|l| l.get(name))
                .and_then(Value::as_str)
            {
                return Some(s.to_owned());
            }
        }
        alerts
            .iter()
            .find_map(|a| a.get("labels")?.get(name)?.as_str().map(str::to_owned))
    };
    let am = &sources.alertmanager;
    let service = labels(&am.service_label)
        .or_else(|| labels("job"))
        .unwrap_or_else(|| "alertmanager".into());
    let group = labels(&am.group_label).unwrap_or_default();
    let severity = labels(&am.severity_label).unwrap_or_else(|| "warning".into());
    let dedup_key = format!("alertmanager/{}", short_hash(&[group_key]));
    let source = Source {
        kind: "alertmanager".into(),
        key: group_key.chars().take(255).collect(),
    };
    if status == "resolved" {
        return Ok(Request::Resolve {
            dedup_key,
            source,
            note: Some("all alerts resolved in Alertmanager".into()),
        });
    }
    // the content of this notification: the same alerts in the same state give the same id
    let mut fingerprints: Vec<String> = alerts
        .iter()
        .map(|a| {
            let fp = a
                .get("fingerprint")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| a.get("labels").map(|l| l.to_string()).unwrap_or_default());
            let st = a.get("status").and_then(Value::as_str).unwrap_or_default();
            let since = a
                .get("startsAt")
                .and_then(Value::as_str)
                .unwrap_or_default();
            format!("{fp}/{st}/{since}")
        })
        .collect();
    fingerprints.sort();
    let mut parts = vec![group_key, status];
    parts.extend(fingerprints.iter().map(String::as_str));
    let request_id = format!("alertmanager/{}", short_hash(&parts));

    let annotation = |name: &str| -> Option<String> {
        v.get("commonAnnotations")
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                alerts
                    .iter()
                    .find_map(|a| a.get("annotations")?.get(name)?.as_str().map(str::to_owned))
            })
    };
    let alertname = labels("alertname").unwrap_or_else(|| "alert".into());
    let mut title = annotation("summary").unwrap_or_else(|| format!("{alertname} firing"));
    title = title.chars().take(1024).collect();
    let firing = alerts
        .iter()
        .filter(|a| a.get("status").and_then(Value::as_str) == Some("firing"))
        .count();
    let mut description = format!("{firing} of {} alerts firing", alerts.len());
    if let Some(d) = annotation("description") {
        description.push_str(&format!("\n{d}"));
    }
    if let Some(url) = v.get("externalURL").and_then(Value::as_str) {
        description.push_str(&format!("\n{url}"));
    }
    let levels = sources.levels(&severity);
    Ok(Request::Trigger(OpenIncident {
        title,
        description: description.chars().take(64 * 1024).collect(),
        service: service.chars().take(128).collect(),
        group: group.chars().take(128).collect(),
        impact: levels.impact,
        urgency: levels.urgency,
        dedup_key: Some(dedup_key),
        request_id: Some(request_id),
        source,
    }))
}

/// A message on `incident.v1.intake`:
/// `{"title", "service", "impact", "urgency", "group"?, "description"?, "dedup_key"?, "action"?}`,
/// `action` one of `open` (default), `acknowledge`, `resolve` (these two need `dedup_key`).
/// `message_id` makes a redelivered open return the incident the first delivery opened.
pub fn nats_message(body: &[u8], message_id: &str) -> Result<Request, Invalid> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Msg {
        #[serde(default)]
        title: String,
        #[serde(default)]
        service: String,
        impact: Option<String>,
        urgency: Option<String>,
        #[serde(default)]
        group: String,
        #[serde(default)]
        description: String,
        dedup_key: Option<String>,
        #[serde(default)]
        action: Option<String>,
    }
    let m: Msg = serde_json::from_slice(body)
        .map_err(|e| Invalid::one(format!("not a valid intake message: {e}")))?;
    let dedup = m.dedup_key.filter(|k| !k.trim().is_empty());
    let source = Source {
        kind: "nats".into(),
        key: dedup.clone().unwrap_or_default(),
    };
    let key = dedup.map(|k| format!("nats/{k}"));
    match m.action.as_deref().unwrap_or("open") {
        "open" | "trigger" => {
            let level = |v: Option<String>, field: &str| -> Result<String, Invalid> {
                v.ok_or_else(|| Invalid::one(format!("'{field}' is required")))
            };
            let impact = Impact::parse(&level(m.impact, "impact")?)
                .map_err(|e| Invalid::one(e.to_string()))?;
            let urgency = Urgency::parse(&level(m.urgency, "urgency")?)
                .map_err(|e| Invalid::one(e.to_string()))?;
            Ok(Request::Trigger(OpenIncident {
                title: m.title,
                description: m.description,
                service: m.service,
                group: m.group,
                impact,
                urgency,
                dedup_key: key,
                request_id: Some(format!("nats/{message_id}")),
                source,
            }))
        }
        "acknowledge" => Ok(Request::Acknowledge {
            dedup_key: key.ok_or_else(|| Invalid::one("'dedup_key' is required to acknowledge"))?,
            source,
        }),
        "resolve" => Ok(Request::Resolve {
            dedup_key: key.ok_or_else(|| Invalid::one("'dedup_key' is required to resolve"))?,
            source,
            note: None,
        }),
        other => Err(Invalid::one(format!(
            "'action' must be open, acknowledge or resolve, not {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pd(v: Value) -> Result<(Request, String), Invalid> {
        pagerduty(&Sources::default(), v.to_string().as_bytes(), "generated")
    }

    #[test]
    fn severities_map_to_impact_and_urgency_and_can_be_reconfigured() {
        let ev = |sev: &str| {
            json!({"routing_key": "k", "event_action": "trigger",
                   "payload": {"summary": "s", "source": "h", "severity": sev}})
        };
        let levels = |r: Request| match r {
            Request::Trigger(o) => (o.impact, o.urgency),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            levels(pd(ev("critical")).unwrap().0),
            (Impact::High, Urgency::High)
        );
        assert_eq!(
            levels(pd(ev("info")).unwrap().0),
            (Impact::Low, Urgency::Low)
        );
        let custom =
            Sources::from_toml("[severity]\ninfo = { impact = \"medium\", urgency = \"low\" }\n")
                .unwrap();
        let (r, _) = pagerduty(&custom, ev("info").to_string().as_bytes(), "g").unwrap();
        assert_eq!(levels(r), (Impact::Medium, Urgency::Low));
        // the other severities keep their defaults
        let (r, _) = pagerduty(&custom, ev("critical").to_string().as_bytes(), "g").unwrap();
        assert_eq!(levels(r), (Impact::High, Urgency::High));
        assert!(
            Sources::from_toml("[severity]\ninfo = { impact = \"huge\", urgency = \"low\" }\n")
                .is_err()
        );
    }

    #[test]
    fn routing_keys_choose_the_service_and_unknown_ones_can_be_refused() {
        let cfg = Sources::from_toml(
            "[pagerduty]\nrequire_known_routing_key = true\n[[pagerduty.routing_keys]]\nkey = \"abc\"\nservice = \"payments\"\ngroup = \"pay\"\n",
        )
        .unwrap();
        let ev = |key: &str| {
            json!({"routing_key": key, "event_action": "trigger", "dedup_key": "d",
                   "payload": {"summary": "s", "source": "h", "severity": "error"}})
            .to_string()
        };
        match pagerduty(&cfg, ev("abc").as_bytes(), "g").unwrap().0 {
            Request::Trigger(o) => {
                assert_eq!(o.service, "payments");
                assert_eq!(o.group, "pay");
                assert_eq!(o.dedup_key.as_deref(), Some("pagerduty/payments/d"));
            }
            other => panic!("{other:?}"),
        }
        let err = pagerduty(&cfg, ev("nope").as_bytes(), "g").unwrap_err();
        assert!(err.errors[0].contains("routing_key"), "{err:?}");
    }

    #[test]
    fn a_trigger_without_a_dedup_key_gets_one_and_ack_needs_one() {
        let (_, key) = pd(json!({"routing_key": "k", "event_action": "trigger",
            "payload": {"summary": "s", "source": "h", "severity": "error"}}))
        .unwrap();
        assert_eq!(key, "generated");
        let err = pd(json!({"routing_key": "k", "event_action": "acknowledge"})).unwrap_err();
        assert!(err.errors[0].contains("dedup_key"));
        let err = pd(
            json!({"routing_key": "k", "event_action": "trigger", "dedup_key": "x".repeat(256),
            "payload": {"summary": "s", "source": "h", "severity": "error"}}),
        )
        .unwrap_err();
        assert!(err.errors[0].contains("255"));
        assert!(pd(json!([1, 2])).is_err());
        assert!(pd(json!({"routing_key": 5})).is_err());
    }

    #[test]
    fn alertmanager_request_ids_follow_the_content_not_the_copy() {
        let payload = |fp: &str| {
            json!({"version": "4", "groupKey": "g", "status": "firing",
                   "alerts": [{"status": "firing", "fingerprint": fp, "startsAt": "2026-12-02T10:00:00Z", "labels": {"job": "api"}}]})
            .to_string()
        };
        let id = |body: String| match alertmanager(&Sources::default(), body.as_bytes()).unwrap() {
            Request::Trigger(o) => (o.request_id.unwrap(), o.dedup_key.unwrap(), o.service),
            other => panic!("{other:?}"),
        };
        let a = id(payload("f1"));
        assert_eq!(a, id(payload("f1")));
        let b = id(payload("f2"));
        assert_ne!(a.0, b.0, "new alerts are a new notification");
        assert_eq!(a.1, b.1, "the same group is the same incident");
        assert_eq!(a.2, "api", "service falls back to the job label");
    }

    #[test]
    fn nats_messages_open_ack_resolve_or_are_invalid() {
        let open = br#"{"title":"t","service":"s","impact":"high","urgency":"low"}"#;
        match nats_message(open, "m1").unwrap() {
            Request::Trigger(o) => assert_eq!(o.request_id.as_deref(), Some("nats/m1")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            nats_message(br#"{"action":"resolve","dedup_key":"k"}"#, "m").unwrap(),
            Request::Resolve { .. }
        ));
        for bad in [
            &b"\xff\xfe"[..],
            br#"{"action":"resolve"}"#,
            br#"{"title":"t","service":"s","impact":"high"}"#,
            br#"{"title":"t","service":"s","impact":"high","urgency":"low","extra":1}"#,
            br#"{"action":"explode","dedup_key":"k"}"#,
        ] {
            assert!(
                nats_message(bad, "m").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever arrives on an HTTP route or the NATS subject, the parsers answer, never panic.
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
            let s = Sources::default();
            let _ = pagerduty(&s, &bytes, "g");
            let _ = alertmanager(&s, &bytes);
            let _ = nats_message(&bytes, "m");
        }

        #[test]
        fn parsers_never_panic_on_json_shaped_input(
            action in prop::sample::select(vec!["trigger", "acknowledge", "resolve", "x", ""]),
            key in ".{0,300}",
            summary in ".{0,1100}",
            severity in prop::sample::select(vec!["critical", "error", "warning", "info", "loud"]),
            status in prop::sample::select(vec!["firing", "resolved", "?"]),
        ) {
            let s = Sources::default();
            let pd = serde_json::json!({"routing_key": key, "event_action": action, "dedup_key": key,
                "payload": {"summary": summary, "source": key, "severity": severity}});
            let _ = pagerduty(&s, pd.to_string().as_bytes(), "g");
            let am = serde_json::json!({"version": "4", "groupKey": key, "status": status,
                "commonLabels": {"service": summary}, "alerts": [{"status": status, "labels": {"a": key}}]});
            if let Ok(Request::Trigger(o)) = alertmanager(&s, am.to_string().as_bytes()) {
                prop_assert!(o.title.chars().count() <= 1024);
                prop_assert!(o.service.chars().count() <= 128);
            }
            let nm = serde_json::json!({"title": summary, "service": key, "impact": severity, "urgency": "high", "action": action});
            let _ = nats_message(nm.to_string().as_bytes(), "m");
        }
    }
}

//! The routes file (`ROUTES_FILE`, TOML): channels, routes, on-call escalation chains, silences
//! (maintenance windows), the SMTP server and the delivery policy. Parsed and validated once at
//! start; every error names the place in the file (`routes[1] (p1).channels: unknown channel
//! "opz"`). Pure: no I/O, the caller reads the file.
//!
//! ```toml
//! [[channels]]
//! name = "ops"
//! kind = "webhook"                 # webhook | slack | email | log
//! url = "https://hooks.example/ops"
//! secret = "s3cret"                # optional: X-Signature: sha256=<hex HMAC-SHA256 of the body>
//!
//! [[routes]]
//! name = "p1"
//! priorities = ["P1"]              # optional filters: priorities, services, groups, levels, clocks
//! events = ["incident.opened", "sla.breached"]   # base names without version; "sla.*" works
//! channels = ["ops"]
//! oncall = "infra"                 # optional: also page this on-call chain
//!
//! [[oncall]]
//! name = "infra"
//! tiers = [ { channels = ["ops"], ack_timeout = "5m" } ]
//! repeat = 1                       # run the whole chain again this many times (default 0)
//!
//! [[silences]]
//! name = "db-maintenance"
//! services = ["db"]                # and/or groups
//! until = "2026-12-02T12:00:00Z"   # optional starts = "..."
//! ```

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use incident_domain::Priority;
use jiff::Timestamp;
use serde::Deserialize;

/// Base names (without the version suffix) of the events a route may name.
pub const KNOWN_EVENTS: [&str; 20] = [
    "incident.opened",
    "incident.acknowledged",
    "incident.assigned",
    "incident.work_started",
    "incident.put_on_hold",
    "incident.resumed",
    "incident.resolved",
    "incident.closed",
    "incident.reopened",
    "incident.commented",
    "incident.priority_changed",
    "incident.duplicate_received",
    "sla.started",
    "sla.paused",
    "sla.resumed",
    "sla.retargeted",
    "sla.warning",
    "sla.breached",
    "sla.met",
    "escalation.triggered",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("routes file: {place}: {reason}")]
pub struct RoutesError {
    pub place: String,
    pub reason: String,
}

fn err(place: impl Into<String>, reason: impl Into<String>) -> RoutesError {
    RoutesError {
        place: place.into(),
        reason: reason.into(),
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Routes {
    pub channels: Vec<Channel>,
    pub routes: Vec<Route>,
    pub oncall: Vec<OnCall>,
    pub silences: Vec<Silence>,
    pub smtp: Option<Smtp>,
    pub delivery: DeliveryPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    Webhook { url: String, secret: Option<String> },
    Slack { url: String },
    Email { to: Vec<String> },
    Log,
}

impl ChannelKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::Email { .. } => "email",
            ChannelKind::Log => "log",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    pub name: String,
    pub priorities: Vec<Priority>,
    pub services: Vec<String>,
    pub groups: Vec<String>,
    /// Escalation levels (`escalation.triggered.v1` `level`); a route with levels matches only
    /// events that carry one of them.
    pub levels: Vec<u32>,
    /// SLA clocks (`response`, `resolution`); a route with clocks matches only events that carry
    /// one of them.
    pub clocks: Vec<String>,
    /// Base event names or `prefix.*` patterns; empty: every event.
    pub events: Vec<String>,
    pub channels: Vec<String>,
    pub oncall: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCall {
    pub name: String,
    pub tiers: Vec<Tier>,
    /// How many more times the whole chain runs after the first round.
    pub repeat: u32,
}

impl OnCall {
    pub fn rounds(&self) -> u32 {
        self.repeat.saturating_add(1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub channels: Vec<String>,
    pub ack_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub name: String,
    pub services: Vec<String>,
    pub groups: Vec<String>,
    pub starts: Option<Timestamp>,
    pub until: Timestamp,
    pub reason: String,
}

impl Silence {
    /// Whether it silences an incident of `service` and `group` at `now`.
    pub fn covers(&self, service: &str, group: &str, now: Timestamp) -> bool {
        let in_window = self.starts.is_none_or(|s| s <= now) && now < self.until;
        let service_ok = self.services.is_empty() || self.services.iter().any(|s| s == service);
        let group_ok = self.groups.is_empty() || self.groups.iter().any(|g| g == group);
        in_window && service_ok && group_ok
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (a local relay).
    None,
    /// STARTTLS on the submission port.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: SmtpTls,
    pub from: String,
}

/// Retries: capped, jittered exponential backoff, then a permanent failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts before a notification is given up (permanently failed).
    pub max_attempts: u32,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_attempts: 20,
            timeout: Duration::from_secs(10),
        }
    }
}

impl DeliveryPolicy {
    /// The delay before attempt `failures + 1`: `initial * 2^(failures-1)` capped at
    /// `max_backoff`, times `jitter` (the caller draws it in 0.75..1.25).
    pub fn backoff(&self, failures: u32, jitter: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        base.mul_f64(jitter.clamp(0.5, 1.5))
    }
}

// ----- the file as written -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    channels: Vec<ChannelFile>,
    #[serde(default)]
    routes: Vec<RouteFile>,
    #[serde(default)]
    oncall: Vec<OnCallFile>,
    #[serde(default)]
    silences: Vec<SilenceFile>,
    smtp: Option<SmtpFile>,
    delivery: Option<DeliveryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelFile {
    name: String,
    kind: String,
    url: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    to: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    name: String,
    #[serde(default)]
    priorities: Vec<String>,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    levels: Vec<u32>,
    #[serde(default)]
    clocks: Vec<String>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
    oncall: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnCallFile {
    name: String,
    tiers: Vec<TierFile>,
    #[serde(default)]
    repeat: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierFile {
    channels: Vec<String>,
    ack_timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceFile {
    name: String,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    starts: Option<String>,
    until: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpFile {
    host: String,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    tls: Option<String>,
    from: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryFile {
    initial_backoff: Option<String>,
    max_backoff: Option<String>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
}

/// Parses `30s`, `5m`, `1h30m`, `500ms`, `2d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {text:?} (use e.g. 500ms, 30s, 5m, 1h30m)");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

fn check_url(place: &str, url: Option<String>) -> Result<String, RoutesError> {
    let url = url.ok_or_else(|| err(place, "url is required for this kind"))?;
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| err(place, format!("bad url {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(err(
            place,
            format!("bad url {url:?}: must be http(s)://host/..."),
        ));
    }
    Ok(url)
}

fn check_event(place: &str, name: &str) -> Result<(), RoutesError> {
    let ok = match name.strip_suffix(".*") {
        Some(prefix) => KNOWN_EVENTS
            .iter()
            .any(|k| k.starts_with(&format!("{prefix}."))),
        None => KNOWN_EVENTS.contains(&name),
    };
    if ok {
        Ok(())
    } else {
        Err(err(
            place,
            format!(
                "unknown event {name:?} (names have no version suffix, e.g. \"incident.opened\", \"sla.breached\", \"sla.*\")"
            ),
        ))
    }
}

fn timestamp(place: &str, field: &str, text: &str) -> Result<Timestamp, RoutesError> {
    text.parse().map_err(|e| {
        err(
            format!("{place}.{field}"),
            format!("bad instant {text:?} (RFC 3339, e.g. 2026-12-02T12:00:00Z): {e}"),
        )
    })
}

impl Routes {
    /// Every event to the `log` channel: what runs without a routes file.
    pub fn log_everything() -> Self {
        Self {
            channels: vec![Channel {
                name: "log".into(),
                kind: ChannelKind::Log,
            }],
            routes: vec![Route {
                name: "all".into(),
                channels: vec!["log".into()],
                ..Route::default()
            }],
            oncall: Vec::new(),
            silences: Vec::new(),
            smtp: None,
            delivery: DeliveryPolicy::default(),
        }
    }

    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    pub fn oncall(&self, name: &str) -> Option<&OnCall> {
        self.oncall.iter().find(|o| o.name == name)
    }

    /// The first silence that covers an incident of `service`/`group` at `now`.
    pub fn silence_for(&self, service: &str, group: &str, now: Timestamp) -> Option<&Silence> {
        self.silences.iter().find(|s| s.covers(service, group, now))
    }

    /// Parses and validates a routes file.
    pub fn from_toml(text: &str) -> Result<Self, RoutesError> {
        let file: File = toml::from_str(text).map_err(|e| err("syntax", e.to_string()))?;

        let mut names = HashSet::new();
        let mut channels = Vec::new();
        let mut needs_smtp = None;
        for (i, c) in file.channels.into_iter().enumerate() {
            let place = format!("channels[{i}] ({})", c.name);
            if c.name.trim().is_empty() {
                return Err(err(format!("channels[{i}]"), "name is empty"));
            }
            if !names.insert(c.name.clone()) {
                return Err(err(place, "a channel of this name already exists"));
            }
            let kind = match c.kind.as_str() {
                "webhook" => ChannelKind::Webhook {
                    url: check_url(&place, c.url)?,
                    secret: c.secret.filter(|s| !s.is_empty()),
                },
                "slack" => ChannelKind::Slack {
                    url: check_url(&place, c.url)?,
                },
                "email" => {
                    if c.to.is_empty() {
                        return Err(err(place, "an email channel needs `to` addresses"));
                    }
                    for addr in &c.to {
                        addr.parse::<lettre::Address>()
                            .map_err(|e| err(&place, format!("bad email address {addr:?}: {e}")))?;
                    }
                    needs_smtp.get_or_insert(place.clone());
                    ChannelKind::Email { to: c.to }
                }
                "log" => ChannelKind::Log,
                other => {
                    return Err(err(
                        place,
                        format!("unknown kind {other:?} (webhook, slack, email or log)"),
                    ));
                }
            };
            channels.push(Channel { name: c.name, kind });
        }

        let smtp = match file.smtp {
            None => {
                if let Some(place) = needs_smtp {
                    return Err(err(place, "email channels need an [smtp] table"));
                }
                None
            }
            Some(s) => {
                let tls = match s.tls.as_deref().unwrap_or("starttls") {
                    "none" => SmtpTls::None,
                    "starttls" => SmtpTls::StartTls,
                    "tls" => SmtpTls::Tls,
                    other => {
                        return Err(err(
                            "smtp.tls",
                            format!("unknown {other:?} (none, starttls or tls)"),
                        ));
                    }
                };
                if s.host.trim().is_empty() {
                    return Err(err("smtp.host", "is empty"));
                }
                s.from
                    .parse::<lettre::message::Mailbox>()
                    .map_err(|e| err("smtp.from", format!("bad address {:?}: {e}", s.from)))?;
                let port = s.port.unwrap_or(match tls {
                    SmtpTls::None => 25,
                    SmtpTls::StartTls => 587,
                    SmtpTls::Tls => 465,
                });
                Some(Smtp {
                    host: s.host,
                    port,
                    user: s.user,
                    password: s.password,
                    tls,
                    from: s.from,
                })
            }
        };

        let check_channels = |place: &str, list: &[String]| -> Result<(), RoutesError> {
            for c in list {
                if !names.contains(c) {
                    return Err(err(
                        format!("{place}.channels"),
                        format!("unknown channel {c:?}"),
                    ));
                }
            }
            Ok(())
        };

        let mut oncall = Vec::new();
        let mut oncall_names = HashSet::new();
        for (i, o) in file.oncall.into_iter().enumerate() {
            let place = format!("oncall[{i}] ({})", o.name);
            if !oncall_names.insert(o.name.clone()) {
                return Err(err(place, "an on-call chain of this name already exists"));
            }
            if o.tiers.is_empty() {
                return Err(err(place, "needs at least one tier"));
            }
            let mut tiers = Vec::new();
            for (t, tier) in o.tiers.into_iter().enumerate() {
                let tplace = format!("{place}.tiers[{t}]");
                if tier.channels.is_empty() {
                    return Err(err(tplace, "needs at least one channel"));
                }
                check_channels(&tplace, &tier.channels)?;
                let ack_timeout = parse_duration(&tier.ack_timeout)
                    .map_err(|e| err(format!("{tplace}.ack_timeout"), e))?;
                if ack_timeout.is_zero() {
                    return Err(err(format!("{tplace}.ack_timeout"), "must be above zero"));
                }
                tiers.push(Tier {
                    channels: tier.channels,
                    ack_timeout,
                });
            }
            oncall.push(OnCall {
                name: o.name,
                tiers,
                repeat: o.repeat,
            });
        }

        let mut routes = Vec::new();
        let mut route_names = HashSet::new();
        for (i, r) in file.routes.into_iter().enumerate() {
            let place = format!("routes[{i}] ({})", r.name);
            if r.name.trim().is_empty() {
                return Err(err(format!("routes[{i}]"), "name is empty"));
            }
            if !route_names.insert(r.name.clone()) {
                return Err(err(place, "a route of this name already exists"));
            }
            if r.channels.is_empty() && r.oncall.is_none() {
                return Err(err(place, "needs channels or an oncall chain"));
            }
            check_channels(&place, &r.channels)?;
            let priorities = r
                .priorities
                .iter()
                .map(|p| {
                    Priority::parse(p).map_err(|_| {
                        err(
                            format!("{place}.priorities"),
                            format!("unknown priority {p:?} (P1..P5)"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            for e in &r.events {
                check_event(&format!("{place}.events"), e)?;
            }
            for c in &r.clocks {
                if c != "response" && c != "resolution" {
                    return Err(err(
                        format!("{place}.clocks"),
                        format!("unknown clock {c:?} (response or resolution)"),
                    ));
                }
            }
            if let Some(o) = &r.oncall
                && !oncall_names.contains(o)
            {
                return Err(err(
                    format!("{place}.oncall"),
                    format!("unknown on-call chain {o:?}"),
                ));
            }
            routes.push(Route {
                name: r.name,
                priorities,
                services: r.services,
                groups: r.groups,
                levels: r.levels,
                clocks: r.clocks,
                events: r.events,
                channels: r.channels,
                oncall: r.oncall,
            });
        }

        let mut silences = Vec::new();
        for (i, s) in file.silences.into_iter().enumerate() {
            let place = format!("silences[{i}] ({})", s.name);
            if s.services.is_empty() && s.groups.is_empty() {
                return Err(err(place, "needs services or groups"));
            }
            let until = timestamp(&place, "until", &s.until)?;
            let starts = s
                .starts
                .as_deref()
                .map(|t| timestamp(&place, "starts", t))
                .transpose()?;
            if starts.is_some_and(|st| st >= until) {
                return Err(err(place, "starts is not before until"));
            }
            silences.push(Silence {
                name: s.name,
                services: s.services,
                groups: s.groups,
                starts,
                until,
                reason: s.reason,
            });
        }

        let mut delivery = DeliveryPolicy::default();
        if let Some(d) = file.delivery {
            let dur = |field: &str, v: Option<String>, default: Duration| match v {
                None => Ok(default),
                Some(t) => parse_duration(&t).map_err(|e| err(format!("delivery.{field}"), e)),
            };
            delivery.initial_backoff = dur(
                "initial_backoff",
                d.initial_backoff,
                delivery.initial_backoff,
            )?;
            delivery.max_backoff = dur("max_backoff", d.max_backoff, delivery.max_backoff)?;
            delivery.timeout = dur("timeout", d.timeout, delivery.timeout)?;
            if let Some(n) = d.max_attempts {
                if n == 0 {
                    return Err(err("delivery.max_attempts", "must be at least 1"));
                }
                delivery.max_attempts = n;
            }
            if delivery.initial_backoff.is_zero() || delivery.timeout.is_zero() {
                return Err(err("delivery", "durations must be above zero"));
            }
            if delivery.max_backoff < delivery.initial_backoff {
                return Err(err("delivery.max_backoff", "is below initial_backoff"));
            }
        }

        if routes.is_empty() {
            return Err(err(
                "routes",
                "the file has no [[routes]]: nothing would be sent",
            ));
        }
        Ok(Self {
            channels,
            routes,
            oncall,
            silences,
            smtp,
            delivery,
        })
    }

    /// Names of the channels no route or tier uses (worth a warning at start).
    pub fn unused_channels(&self) -> Vec<String> {
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for r in &self.routes {
            used.extend(r.channels.iter().map(String::as_str));
        }
        for o in &self.oncall {
            for t in &o.tiers {
                used.extend(t.channels.iter().map(String::as_str));
            }
        }
        self.channels
            .iter()
            .filter(|c| !used.contains(c.name.as_str()))
            .map(|c| c.name.clone())
            .collect()
    }
}

/// What a route is matched against.
#[derive(Debug, Clone, Copy)]
pub struct MatchContext<'a> {
    /// Base event name, e.g. `sla.breached`.
    pub event: &'a str,
    pub priority: Option<Priority>,
    pub service: &'a str,
    pub group: &'a str,
    pub level: Option<u32>,
    pub clock: Option<&'a str>,
}

impl Route {
    pub fn matches(&self, cx: &MatchContext<'_>) -> bool {
        let event_ok = self.events.is_empty()
            || self.events.iter().any(|e| match e.strip_suffix(".*") {
                Some(prefix) => cx
                    .event
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.')),
                None => e == cx.event,
            });
        let priority_ok =
            self.priorities.is_empty() || cx.priority.is_some_and(|p| self.priorities.contains(&p));
        let service_ok = self.services.is_empty() || self.services.iter().any(|s| s == cx.service);
        let group_ok = self.groups.is_empty() || self.groups.iter().any(|g| g == cx.group);
        let level_ok = self.levels.is_empty() || cx.level.is_some_and(|l| self.levels.contains(&l));
        let clock_ok =
            self.clocks.is_empty() || cx.clock.is_some_and(|c| self.clocks.iter().any(|k| k == c));
        event_ok && priority_ok && service_ok && group_ok && level_ok && clock_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[channels]]
name = "ops"
kind = "webhook"
url = "https://hooks.example/ops"
secret = "s"

[[channels]]
name = "duty-manager"
kind = "email"
to = ["duty@example.org"]

[[channels]]
name = "chat"
kind = "slack"
url = "http://127.0.0.1:9/slack"

[smtp]
host = "127.0.0.1"
port = 2525
tls = "none"
from = "incidents@example.org"

[[routes]]
name = "p1"
priorities = ["P1"]
events = ["incident.opened", "sla.warning", "sla.breached", "escalation.triggered"]
channels = ["ops"]
oncall = "infra"

[[routes]]
name = "chat-all-sla"
events = ["sla.*"]
channels = ["chat"]

[[oncall]]
name = "infra"
tiers = [ { channels = ["ops"], ack_timeout = "5m" }, { channels = ["duty-manager"], ack_timeout = "10m" } ]
repeat = 2

[[silences]]
name = "db"
services = ["db"]
until = "2030-01-01T00:00:00Z"

[delivery]
initial_backoff = "200ms"
max_backoff = "5s"
max_attempts = 5
"#;

    #[test]
    fn a_good_file_parses() {
        let r = Routes::from_toml(GOOD).unwrap();
        assert_eq!(r.channels.len(), 3);
        assert_eq!(r.routes[0].priorities, vec![Priority::P1]);
        assert_eq!(r.oncall[0].tiers[1].ack_timeout, Duration::from_secs(600));
        assert_eq!(r.oncall[0].rounds(), 3);
        assert_eq!(r.smtp.as_ref().unwrap().port, 2525);
        assert_eq!(r.delivery.max_attempts, 5);
        assert_eq!(r.delivery.initial_backoff, Duration::from_millis(200));
        assert!(r.unused_channels().is_empty());
    }

    fn error_of(text: &str) -> String {
        Routes::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_place() {
        let e = error_of(&GOOD.replace(
            "channels = [\"ops\"]\noncall",
            "channels = [\"opz\"]\noncall",
        ));
        assert!(
            e.contains("routes[0] (p1).channels") && e.contains("\"opz\""),
            "{e}"
        );
        let e = error_of(&GOOD.replace("https://hooks.example/ops", "hooks example"));
        assert!(
            e.contains("channels[0] (ops)") && e.contains("bad url"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("\"5m\"", "\"5 minutes\""));
        assert!(e.contains("oncall[0] (infra).tiers[0].ack_timeout"), "{e}");
        assert!(e.contains("bad duration"), "{e}");
        let e = error_of(&GOOD.replace("\"sla.breached\"", "\"sla.breach\""));
        assert!(
            e.contains("routes[0] (p1).events") && e.contains("sla.breach"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("oncall = \"infra\"", "oncall = \"db\""));
        assert!(e.contains("routes[0] (p1).oncall"), "{e}");
        let e = error_of(&GOOD.replace("[\"P1\"]", "[\"P9\"]"));
        assert!(e.contains("priorities") && e.contains("P9"), "{e}");
        let e = error_of(&GOOD.replace("kind = \"slack\"", "kind = \"pager\""));
        assert!(
            e.contains("channels[2] (chat)") && e.contains("pager"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("duty@example.org", "not-an-address"));
        assert!(e.contains("channels[1] (duty-manager)"), "{e}");
        let e = error_of(&GOOD.replace("2030-01-01T00:00:00Z", "tomorrow"));
        assert!(e.contains("silences[0] (db).until"), "{e}");
        let e = error_of(&GOOD.replace("[smtp]", "[smtpx]"));
        assert!(e.contains("syntax"), "{e}");
        let e = error_of("[[channels]]\nname = \"l\"\nkind = \"log\"\n");
        assert!(e.contains("no [[routes]]"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5w").is_err());
    }

    #[test]
    fn route_matching() {
        let r = Routes::from_toml(GOOD).unwrap();
        let cx = MatchContext {
            event: "sla.breached",
            priority: Some(Priority::P1),
            service: "payments",
            group: "g",
            level: None,
            clock: Some("response"),
        };
        assert!(r.routes[0].matches(&cx));
        assert!(r.routes[1].matches(&cx));
        let p2 = MatchContext {
            priority: Some(Priority::P2),
            ..cx
        };
        assert!(!r.routes[0].matches(&p2));
        let opened = MatchContext {
            event: "incident.opened",
            ..cx
        };
        assert!(!r.routes[1].matches(&opened));
        let levels = Route {
            levels: vec![2],
            ..Route::default()
        };
        assert!(!levels.matches(&cx));
        assert!(levels.matches(&MatchContext {
            level: Some(2),
            ..cx
        }));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = DeliveryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..DeliveryPolicy::default()
        };
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff(4, 1.0), Duration::from_secs(8));
        assert_eq!(p.backoff(5, 1.0), Duration::from_secs(10));
        assert_eq!(p.backoff(60, 1.0), Duration::from_secs(10));
        assert_eq!(p.backoff(1, 1.25), Duration::from_millis(1250));
    }

    #[test]
    fn silences_cover_their_window_and_scope() {
        let s = Silence {
            name: "m".into(),
            services: vec!["db".into()],
            groups: vec![],
            starts: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            until: "2026-01-02T00:00:00Z".parse().unwrap(),
            reason: String::new(),
        };
        let inside: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        assert!(s.covers("db", "any", inside));
        assert!(!s.covers("web", "any", inside));
        assert!(!s.covers("db", "any", "2026-01-02T00:00:00Z".parse().unwrap()));
        assert!(!s.covers("db", "any", "2025-12-31T00:00:00Z".parse().unwrap()));
    }
}

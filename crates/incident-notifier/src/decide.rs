//! Every decision the notifier makes, pure and synchronous: what an input event leads to
//! (summary updates, notifications, pages started or stopped, suppressions), what a page whose
//! acknowledgement deadline passed leads to (the next tier, the next round, or the end), and
//! what an attempt's outcome leads to (delivered, a retry at a backed-off instant, or a
//! permanent failure). Time (`now`) and randomness (`jitter`) come in as values; ids are derived
//! deterministically from what caused them, so the same trigger always yields the same ids.
//!
//! How a route pages: a route with `oncall = "<chain>"` starts a page of that chain for the
//! incident when it matches an event and the incident is not acknowledged yet (status `open`,
//! or unknown), unless a page of that chain is already running for the incident. The page sends
//! tier 1 at once; at each tier's `ack_timeout` without an acknowledgement it moves to the next
//! tier, then to round 2 from tier 1 (`repeat` more rounds), then stops ("exhausted").
//! `incident.acknowledged`, `work_started`, `resolved` and `closed` stop every page of the
//! incident. A channel paged for an event does not also get the route's plain notification for
//! the same event; two routes naming the same channel for one event notify it once (the first
//! route in the file wins).
//!
//! Silences: while a `[[silences]]` window covers the incident's service or group, every
//! notification it would get is recorded as `notification.suppressed.v1` (same id) and no page
//! starts; a page reaching a new tier inside a window is stopped ("silenced").

use std::collections::HashSet;
use std::time::Duration;

use incident_domain::{EventKind, IncidentEvent, Priority, Status};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::events::{
    Delivered, Failed, NotifierEvent, Observed, PageEscalated, PageRef, PageStarted, PageStopped,
    Queued, Summary, Suppressed, Trigger,
};
use crate::input::{Input, InputKind};
use crate::routes::{DeliveryPolicy, MatchContext, Route, Routes, Silence};
use crate::state::{NotificationStatus, State};

/// Events that mean a person took the incident: they stop its pages.
pub const ACKNOWLEDGING: [&str; 4] = [
    "incident.acknowledged",
    "incident.work_started",
    "incident.resolved",
    "incident.closed",
];

/// A deterministic id (a UUIDv8 from sha256 of the parts): the same parts, the same id.
pub fn derive_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// The id of the notification of `trigger_event_id` through `route` to `channel`.
pub fn notification_id(trigger_event_id: &str, route: &str, channel: &str) -> String {
    derive_id(&["notification", trigger_event_id, route, channel])
}

pub fn page_id(trigger_event_id: &str, route: &str, oncall: &str) -> String {
    derive_id(&["page", trigger_event_id, route, oncall])
}

pub fn page_notification_id(page_id: &str, round: u32, tier: u32, channel: &str) -> String {
    derive_id(&[
        "page-notification",
        page_id,
        &round.to_string(),
        &tier.to_string(),
        channel,
    ])
}

fn after(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// `5m`, `1h30m`, `45s`, `500ms`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The summary after an incident event.
pub fn summarize(prev: Option<&Summary>, ev: &IncidentEvent) -> Summary {
    let mut s = prev.cloned().unwrap_or_default();
    match &ev.kind {
        EventKind::Opened {
            title,
            service,
            group,
            priority,
            ..
        } => {
            s.title = title.clone();
            s.service = service.clone();
            s.group = group.clone();
            s.priority = Some(*priority);
            s.status = Some(Status::Open);
        }
        EventKind::Acknowledged => s.status = Some(Status::Acknowledged),
        EventKind::WorkStarted | EventKind::Resumed => s.status = Some(Status::InProgress),
        EventKind::PutOnHold { .. } => s.status = Some(Status::OnHold),
        EventKind::Resolved { .. } => s.status = Some(Status::Resolved),
        EventKind::Closed => s.status = Some(Status::Closed),
        EventKind::Reopened { status, .. } => s.status = Some(*status),
        EventKind::Assigned { group, .. } => s.group = group.clone(),
        EventKind::PriorityChanged { to, .. } => s.priority = Some(*to),
        EventKind::Commented { .. } | EventKind::DuplicateReceived { .. } => {}
    }
    s
}

/// The routing context of an input: what routes are matched against.
struct Context {
    priority: Option<Priority>,
    service: String,
    group: String,
    level: Option<u32>,
    clock: Option<String>,
}

fn describe(input: &Input, cx: &Context) -> String {
    let prio = cx
        .priority
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "an".into());
    let mut what = format!("{} of {prio} incident", input.base);
    if prio == "an" {
        what = format!("{} of an incident", input.base);
    }
    if !cx.service.is_empty() {
        what.push_str(&format!(" on {}", cx.service));
    }
    if let Some(c) = &cx.clock {
        what.push_str(&format!(" ({c} clock)"));
    }
    if let Some(l) = cx.level {
        what.push_str(&format!(" (level {l})"));
    }
    what
}

struct Builder<'a> {
    input: &'a Input,
    trigger: Trigger,
    summary: Summary,
    silence: Option<&'a Silence>,
    out: Vec<NotifierEvent>,
    /// Channels already notified for this input.
    notified: HashSet<String>,
}

impl Builder<'_> {
    fn notify(
        &mut self,
        routes: &Routes,
        route: &str,
        channel: &str,
        id: String,
        reason: String,
        page: Option<PageRef>,
    ) {
        self.notified.insert(channel.to_owned());
        if let Some(s) = self.silence {
            self.out.push(NotifierEvent::Suppressed(Suppressed {
                notification_id: id,
                trigger: self.trigger.clone(),
                route: route.to_owned(),
                channel: channel.to_owned(),
                silence: s.name.clone(),
                until: s.until,
                reason: format!("{reason}; suppressed by silence {}", s.name),
                page,
            }));
            return;
        }
        let kind = routes
            .channel(channel)
            .map(|c| c.kind.as_str())
            .unwrap_or("log");
        self.out.push(NotifierEvent::Queued(Box::new(Queued {
            notification_id: id,
            trigger: self.trigger.clone(),
            route: route.to_owned(),
            channel: channel.to_owned(),
            kind: kind.to_owned(),
            reason,
            incident: self.summary.clone(),
            event: self.input.envelope.clone(),
            page,
        })));
    }
}

/// What one consumed event leads to.
pub fn on_input(
    state: &State,
    routes: &Routes,
    input: &Input,
    now: Timestamp,
) -> Vec<NotifierEvent> {
    let trigger = Trigger {
        event_id: input.event_id.clone(),
        ty: input.ty.clone(),
    };
    let prev = state.incident(&input.incident_id);
    let mut out = Vec::new();
    let (summary, cx) = match &input.kind {
        InputKind::Incident(ev) => {
            let s = summarize(prev, ev);
            if prev != Some(&s) {
                out.push(NotifierEvent::Observed(Observed {
                    trigger: trigger.clone(),
                    incident: s.clone(),
                }));
            }
            let cx = Context {
                priority: s.priority,
                service: s.service.clone(),
                group: s.group.clone(),
                level: None,
                clock: None,
            };
            (s, cx)
        }
        InputKind::Sla(info) => {
            let s = match prev {
                Some(p) => p.clone(),
                None => {
                    let s = Summary {
                        title: String::new(),
                        service: info.service.clone(),
                        group: info.group.clone(),
                        priority: info.priority,
                        status: None,
                    };
                    out.push(NotifierEvent::Observed(Observed {
                        trigger: trigger.clone(),
                        incident: s.clone(),
                    }));
                    s
                }
            };
            let pick = |a: &str, b: &str| if a.is_empty() { b } else { a }.to_owned();
            let cx = Context {
                priority: info.priority.or(s.priority),
                service: pick(&info.service, &s.service),
                group: pick(&info.group, &s.group),
                level: info.level,
                clock: info.clock.clone(),
            };
            (s, cx)
        }
    };

    if ACKNOWLEDGING.contains(&input.base.as_str()) {
        let actor = match &input.kind {
            InputKind::Incident(ev) => ev.actor.clone(),
            InputKind::Sla(_) => String::new(),
        };
        for page in state.active_pages_of(&input.incident_id) {
            out.push(NotifierEvent::PageStopped(PageStopped {
                page_id: page.id.clone(),
                oncall: page.oncall.clone(),
                reason: format!("{} by {actor}", input.base),
                by: Some(trigger.clone()),
            }));
        }
    }

    let mcx = MatchContext {
        event: &input.base,
        priority: cx.priority,
        service: &cx.service,
        group: &cx.group,
        level: cx.level,
        clock: cx.clock.as_deref(),
    };
    let matched: Vec<&Route> = routes.routes.iter().filter(|r| r.matches(&mcx)).collect();
    if matched.is_empty() {
        return out;
    }
    let what = describe(input, &cx);
    let mut b = Builder {
        input,
        trigger,
        summary,
        silence: routes.silence_for(&cx.service, &cx.group, now),
        out,
        notified: HashSet::new(),
    };
    let pageable = matches!(b.summary.status, None | Some(Status::Open))
        && !ACKNOWLEDGING.contains(&input.base.as_str());

    // Pages first, so a channel paged for this event does not also get the plain message.
    let mut paging: HashSet<&str> = state
        .active_pages_of(&input.incident_id)
        .map(|p| p.oncall.as_str())
        .collect();
    for route in &matched {
        let Some(chain) = route.oncall.as_deref().and_then(|o| routes.oncall(o)) else {
            continue;
        };
        let Some(first) = chain.tiers.first() else {
            continue;
        };
        let pid = page_id(&b.input.event_id, &route.name, &chain.name);
        if state.page(&pid).is_some() {
            // Decided before (this very event started it): its first tier was notified.
            b.notified.extend(first.channels.iter().cloned());
            continue;
        }
        if !pageable || !paging.insert(chain.name.as_str()) {
            continue;
        }
        let pref = PageRef {
            page_id: pid.clone(),
            oncall: chain.name.clone(),
            tier: 1,
            round: 1,
        };
        let reason = format!(
            "page {}: {what} matched route {}; tier 1 of {}, round 1 of {}; acknowledge within {}",
            chain.name,
            route.name,
            chain.tiers.len(),
            chain.rounds(),
            human(first.ack_timeout)
        );
        if b.silence.is_none() {
            b.out.push(NotifierEvent::PageStarted(PageStarted {
                page_id: pid.clone(),
                oncall: chain.name.clone(),
                trigger: b.trigger.clone(),
                route: route.name.clone(),
                tier: 1,
                round: 1,
                ack_deadline: after(now, first.ack_timeout),
                event: b.input.envelope.clone(),
            }));
        }
        for ch in &first.channels {
            let id = page_notification_id(&pid, 1, 1, ch);
            b.notify(
                routes,
                &route.name,
                ch,
                id,
                reason.clone(),
                Some(pref.clone()),
            );
        }
    }
    for route in &matched {
        for ch in &route.channels {
            if b.notified.contains(ch) {
                continue;
            }
            let id = notification_id(&b.input.event_id, &route.name, ch);
            if state.notification(&id).is_some() {
                b.notified.insert(ch.clone());
                continue;
            }
            let reason = format!("{what} matched route {}", route.name);
            b.notify(routes, &route.name, ch, id, reason, None);
        }
    }
    b.out
}

/// What a page whose acknowledgement deadline came leads to. Nothing when the page is stopped
/// or the deadline moved (a stale timer).
pub fn on_page_deadline(
    state: &State,
    routes: &Routes,
    page_id: &str,
    now: Timestamp,
) -> Vec<NotifierEvent> {
    let Some(page) = state.page(page_id) else {
        return Vec::new();
    };
    if !page.active || page.ack_deadline > now {
        return Vec::new();
    }
    let stop = |reason: String| {
        NotifierEvent::PageStopped(PageStopped {
            page_id: page.id.clone(),
            oncall: page.oncall.clone(),
            reason,
            by: None,
        })
    };
    let Some(chain) = routes.oncall(&page.oncall) else {
        return vec![stop(format!(
            "on-call chain {} is no longer configured",
            page.oncall
        ))];
    };
    let tiers = chain.tiers.len() as u32;
    let (mut tier, mut round) = (page.tier + 1, page.round);
    if tier > tiers {
        tier = 1;
        round += 1;
    }
    if round > chain.rounds() {
        return vec![stop(format!(
            "exhausted: not acknowledged after {} round(s) of {} tier(s)",
            chain.rounds(),
            tiers
        ))];
    }
    let Some(next) = chain.tiers.get((tier - 1) as usize) else {
        return vec![stop("tier out of range".into())];
    };
    let waited = chain
        .tiers
        .get(page.tier.saturating_sub(1) as usize)
        .map(|t| human(t.ack_timeout))
        .unwrap_or_default();
    let summary = state
        .incident(&page.incident_id)
        .cloned()
        .unwrap_or_default();
    let reason = format!(
        "page {}: not acknowledged within {waited} at tier {} of round {}; now tier {tier} of {tiers}, round {round} of {}; acknowledge within {}",
        chain.name,
        page.tier,
        page.round,
        chain.rounds(),
        human(next.ack_timeout)
    );
    let pref = PageRef {
        page_id: page.id.clone(),
        oncall: chain.name.clone(),
        tier,
        round,
    };
    let mut out = Vec::new();
    let silence = routes.silence_for(&summary.service, &summary.group, now);
    if silence.is_none() {
        out.push(NotifierEvent::PageEscalated(PageEscalated {
            page_id: page.id.clone(),
            oncall: chain.name.clone(),
            tier,
            round,
            reason: reason.clone(),
            ack_deadline: after(now, next.ack_timeout),
        }));
    }
    for ch in &next.channels {
        let id = page_notification_id(&page.id, round, tier, ch);
        if state.notification(&id).is_some() {
            continue;
        }
        match silence {
            Some(s) => out.push(NotifierEvent::Suppressed(Suppressed {
                notification_id: id,
                trigger: page.trigger.clone(),
                route: page.route.clone(),
                channel: ch.clone(),
                silence: s.name.clone(),
                until: s.until,
                reason: format!("{reason}; suppressed by silence {}", s.name),
                page: Some(pref.clone()),
            })),
            None => {
                let kind = routes.channel(ch).map(|c| c.kind.as_str()).unwrap_or("log");
                out.push(NotifierEvent::Queued(Box::new(Queued {
                    notification_id: id,
                    trigger: page.trigger.clone(),
                    route: page.route.clone(),
                    channel: ch.clone(),
                    kind: kind.to_owned(),
                    reason: reason.clone(),
                    incident: summary.clone(),
                    event: page.event.clone(),
                    page: Some(pref.clone()),
                })))
            }
        }
    }
    if let Some(s) = silence {
        out.push(stop(format!("silenced by {}", s.name)));
    }
    out
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        response: String,
    },
    /// Network error, timeout, 5xx, 429, SMTP 4xx: worth another try.
    Transient {
        error: String,
    },
    /// Any other 4xx, SMTP 5xx, a misconfigured channel: never going to work.
    Permanent {
        error: String,
    },
}

/// What an attempt's outcome leads to. `jitter` is drawn by the caller in 0.75..1.25.
pub fn on_attempt(
    state: &State,
    policy: &DeliveryPolicy,
    notification_id: &str,
    outcome: &AttemptOutcome,
    now: Timestamp,
    jitter: f64,
) -> Vec<NotifierEvent> {
    let Some(n) = state.notification(notification_id) else {
        return Vec::new();
    };
    if n.status != NotificationStatus::Queued {
        return Vec::new();
    }
    let attempts = n.attempts + 1;
    let failed = |error: String, permanent: bool, next: Option<Timestamp>| {
        NotifierEvent::Failed(Failed {
            notification_id: n.id.clone(),
            channel: n.channel.clone(),
            attempts,
            error,
            permanent,
            next_attempt_at: next,
        })
    };
    vec![match outcome {
        AttemptOutcome::Delivered { response } => NotifierEvent::Delivered(Delivered {
            notification_id: n.id.clone(),
            channel: n.channel.clone(),
            attempts,
            response: response.clone(),
        }),
        AttemptOutcome::Permanent { error } => failed(error.clone(), true, None),
        AttemptOutcome::Transient { error } if attempts >= policy.max_attempts => failed(
            format!("gave up after {attempts} attempts: {error}"),
            true,
            None,
        ),
        AttemptOutcome::Transient { error } => failed(
            error.clone(),
            false,
            Some(after(now, policy.backoff(attempts, jitter))),
        ),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use incident_domain::{Impact, IncidentId, Source, Urgency, stored};
    use serde_json::json;

    const ROUTES: &str = r#"
[[channels]]
name = "ops"
kind = "webhook"
url = "http://127.0.0.1:1/ops"
[[channels]]
name = "duty"
kind = "webhook"
url = "http://127.0.0.1:1/duty"
[[channels]]
name = "log"
kind = "log"

[[routes]]
name = "p1"
priorities = ["P1"]
events = ["incident.opened", "sla.breached"]
channels = ["ops", "log"]
oncall = "infra"

[[routes]]
name = "everything"
channels = ["log"]

[[oncall]]
name = "infra"
tiers = [ { channels = ["ops"], ack_timeout = "5m" }, { channels = ["duty"], ack_timeout = "10m" } ]
repeat = 1

[[silences]]
name = "db-maintenance"
services = ["db"]
until = "2026-12-02T11:00:00Z"

[delivery]
initial_backoff = "1s"
max_backoff = "30s"
max_attempts = 3
"#;

    fn routes() -> Routes {
        Routes::from_toml(ROUTES).unwrap()
    }

    fn t0() -> Timestamp {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    fn secs(n: i64) -> Timestamp {
        t0().checked_add(jiff::SignedDuration::from_secs(n))
            .unwrap()
    }

    fn incident_input(id: &str, event_id: &str, kind: EventKind) -> Input {
        let ev = IncidentEvent {
            incident_id: IncidentId::parse(id).unwrap(),
            at: t0(),
            actor: "alice".into(),
            kind,
        };
        let env = stored::encode(&ev, event_id);
        match crate::input::decode_incident(&env.to_canonical_bytes()).unwrap() {
            crate::input::Decoded::Input(i) => *i,
            other => panic!("{other:?}"),
        }
    }

    fn opened(id: &str, event_id: &str, service: &str, impact: Impact) -> Input {
        incident_input(
            id,
            event_id,
            EventKind::Opened {
                title: "Checkout down".into(),
                description: String::new(),
                service: service.into(),
                group: "payments-oncall".into(),
                impact,
                urgency: Urgency::High,
                priority: if impact == Impact::High {
                    Priority::P1
                } else {
                    Priority::P3
                },
                dedup_key: None,
                request_id: None,
                source: Source::person(),
            },
        )
    }

    /// Decides and folds, like the engine does.
    fn step(
        state: &mut State,
        decide: impl FnOnce(&State) -> Vec<NotifierEvent>,
        incident: &str,
        at: Timestamp,
    ) -> Vec<NotifierEvent> {
        let events = decide(state);
        for e in &events {
            state.apply(incident, at, e);
        }
        events
    }

    fn types(events: &[NotifierEvent]) -> Vec<&'static str> {
        events.iter().map(NotifierEvent::type_name).collect()
    }

    /// (route, channel, (tier, round) of a page).
    type Sent = (String, String, Option<(u32, u32)>);

    fn queued(events: &[NotifierEvent]) -> Vec<Sent> {
        events
            .iter()
            .filter_map(|e| match e {
                NotifierEvent::Queued(q) => Some((
                    q.route.clone(),
                    q.channel.clone(),
                    q.page.as_ref().map(|p| (p.tier, p.round)),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        assert_eq!(
            notification_id("e", "r", "c"),
            notification_id("e", "r", "c")
        );
        assert_ne!(
            notification_id("e", "r", "c"),
            notification_id("e", "r", "d")
        );
        assert_ne!(
            notification_id("e", "rc", ""),
            notification_id("e", "r", "c")
        );
        assert_eq!(notification_id("e", "r", "c").len(), 36);
    }

    #[test]
    fn a_p1_open_pages_tier_one_and_notifies_the_other_channels_once() {
        let r = routes();
        let mut s = State::default();
        let input = opened("INC-1", "e1", "payments", Impact::High);
        let out = step(&mut s, |s| on_input(s, &r, &input, t0()), "INC-1", t0());
        assert_eq!(
            types(&out),
            vec![
                "notification.incident_observed.v1",
                "page.started.v1",
                "notification.queued.v1",
                "notification.queued.v1"
            ]
        );
        // ops is paged (tier 1), log gets the plain message once though two routes name it
        assert_eq!(
            queued(&out),
            vec![
                ("p1".into(), "ops".into(), Some((1, 1))),
                ("p1".into(), "log".into(), None)
            ]
        );
        // the same input again derives the same ids (and no new page)
        let again = on_input(&s, &r, &input, t0());
        assert!(queued(&again).is_empty(), "{again:?}");
    }

    #[test]
    fn a_p3_open_goes_to_the_catch_all_route_only() {
        let r = routes();
        let s = State::default();
        let out = on_input(
            &s,
            &r,
            &opened("INC-1", "e1", "payments", Impact::Medium),
            t0(),
        );
        assert_eq!(
            queued(&out),
            vec![("everything".into(), "log".into(), None)]
        );
        assert!(!types(&out).contains(&"page.started.v1"));
    }

    #[test]
    fn an_unacknowledged_page_walks_the_tiers_and_rounds_then_stops() {
        let r = routes();
        let mut s = State::default();
        let out = step(
            &mut s,
            |s| {
                on_input(
                    s,
                    &r,
                    &opened("INC-1", "e1", "payments", Impact::High),
                    t0(),
                )
            },
            "INC-1",
            t0(),
        );
        let NotifierEvent::PageStarted(started) = &out[1] else {
            panic!("{out:?}")
        };
        let page = started.page_id.clone();
        assert_eq!(started.ack_deadline, secs(300));
        // not yet due: nothing
        assert!(on_page_deadline(&s, &r, &page, secs(299)).is_empty());
        // tier 2 of round 1
        let out = step(
            &mut s,
            |s| on_page_deadline(s, &r, &page, secs(300)),
            "INC-1",
            secs(300),
        );
        assert_eq!(
            types(&out),
            vec!["page.escalated.v1", "notification.queued.v1"]
        );
        assert_eq!(
            queued(&out),
            vec![("p1".into(), "duty".into(), Some((2, 1)))]
        );
        assert_eq!(s.page(&page).unwrap().ack_deadline, secs(900));
        // round 2, tier 1
        let out = step(
            &mut s,
            |s| on_page_deadline(s, &r, &page, secs(900)),
            "INC-1",
            secs(900),
        );
        assert_eq!(
            queued(&out),
            vec![("p1".into(), "ops".into(), Some((1, 2)))]
        );
        // round 2, tier 2
        let out = step(
            &mut s,
            |s| on_page_deadline(s, &r, &page, secs(1200)),
            "INC-1",
            secs(1200),
        );
        assert_eq!(
            queued(&out),
            vec![("p1".into(), "duty".into(), Some((2, 2)))]
        );
        // exhausted
        let out = step(
            &mut s,
            |s| on_page_deadline(s, &r, &page, secs(1800)),
            "INC-1",
            secs(1800),
        );
        assert_eq!(types(&out), vec!["page.stopped.v1"]);
        assert!(!s.page(&page).unwrap().active);
        assert!(on_page_deadline(&s, &r, &page, secs(9999)).is_empty());
    }

    #[test]
    fn an_acknowledgement_stops_the_page() {
        let r = routes();
        let mut s = State::default();
        let out = step(
            &mut s,
            |s| {
                on_input(
                    s,
                    &r,
                    &opened("INC-1", "e1", "payments", Impact::High),
                    t0(),
                )
            },
            "INC-1",
            t0(),
        );
        let NotifierEvent::PageStarted(started) = &out[1] else {
            panic!("{out:?}")
        };
        let page = started.page_id.clone();
        let ack = incident_input("INC-1", "e2", EventKind::Acknowledged);
        let out = step(
            &mut s,
            |s| on_input(s, &r, &ack, secs(60)),
            "INC-1",
            secs(60),
        );
        assert!(types(&out).contains(&"page.stopped.v1"), "{out:?}");
        assert!(on_page_deadline(&s, &r, &page, secs(300)).is_empty());
        // a breach of the acknowledged incident notifies but does not page again
        let breach = sla_input("INC-1", "e3", "sla.breached.v1", "P1", "payments");
        let out = on_input(&s, &r, &breach, secs(400));
        assert!(!types(&out).contains(&"page.started.v1"), "{out:?}");
        assert_eq!(
            queued(&out),
            vec![
                ("p1".into(), "ops".into(), None),
                ("p1".into(), "log".into(), None)
            ]
        );
    }

    fn sla_input(id: &str, event_id: &str, ty: &str, prio: &str, service: &str) -> Input {
        let env = incident_domain::Envelope::new(
            event_id,
            "incident-sla",
            ty,
            id,
            t0(),
            json!({"incident": {"priority": prio, "service": service, "group": "g"}, "clock": "response"}),
        );
        match crate::input::decode_sla(&env.to_canonical_bytes()).unwrap() {
            crate::input::Decoded::Input(i) => *i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_breach_of_an_unknown_incident_routes_by_its_own_context() {
        let r = routes();
        let s = State::default();
        let out = on_input(
            &s,
            &r,
            &sla_input("INC-9", "e1", "sla.breached.v1", "P1", "web"),
            t0(),
        );
        assert_eq!(types(&out)[0], "notification.incident_observed.v1");
        assert!(types(&out).contains(&"page.started.v1"));
        let NotifierEvent::Queued(q) = out
            .iter()
            .find(|e| e.type_name() == "notification.queued.v1")
            .unwrap()
        else {
            unreachable!()
        };
        assert!(
            q.reason
                .contains("sla.breached of P1 incident on web (response clock)"),
            "{}",
            q.reason
        );
    }

    #[test]
    fn silences_suppress_and_record_it() {
        let r = routes();
        let s = State::default();
        let during = on_input(&s, &r, &opened("INC-1", "e1", "db", Impact::High), t0());
        assert!(!types(&during).contains(&"page.started.v1"));
        assert!(!types(&during).contains(&"notification.queued.v1"));
        let suppressed: Vec<_> = during
            .iter()
            .filter_map(|e| match e {
                NotifierEvent::Suppressed(s) => Some((s.channel.as_str(), s.silence.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            suppressed,
            vec![("ops", "db-maintenance"), ("log", "db-maintenance")]
        );
        // after the window it is sent
        let later = on_input(
            &s,
            &r,
            &opened("INC-1", "e1", "db", Impact::High),
            secs(3600),
        );
        assert!(types(&later).contains(&"page.started.v1"));
    }

    #[test]
    fn attempts_retry_with_backoff_then_give_up() {
        let r = routes();
        let mut s = State::default();
        step(
            &mut s,
            |s| {
                on_input(
                    s,
                    &r,
                    &opened("INC-1", "e1", "payments", Impact::Medium),
                    t0(),
                )
            },
            "INC-1",
            t0(),
        );
        let id = notification_id("e1", "everything", "log");
        let fail = AttemptOutcome::Transient {
            error: "HTTP 500".into(),
        };
        let out = step(
            &mut s,
            |s| on_attempt(s, &r.delivery, &id, &fail, t0(), 1.0),
            "INC-1",
            t0(),
        );
        let NotifierEvent::Failed(f) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (f.attempts, f.permanent, f.next_attempt_at),
            (1, false, Some(secs(1)))
        );
        let out = step(
            &mut s,
            |s| on_attempt(s, &r.delivery, &id, &fail, secs(1), 1.0),
            "INC-1",
            secs(1),
        );
        let NotifierEvent::Failed(f) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!((f.attempts, f.next_attempt_at), (2, Some(secs(3))));
        let out = step(
            &mut s,
            |s| on_attempt(s, &r.delivery, &id, &fail, secs(3), 1.0),
            "INC-1",
            secs(3),
        );
        let NotifierEvent::Failed(f) = &out[0] else {
            panic!("{out:?}")
        };
        assert!(
            f.permanent && f.error.contains("gave up after 3 attempts"),
            "{f:?}"
        );
        assert_eq!(
            s.notification(&id).unwrap().status,
            NotificationStatus::Failed
        );
        // a final notification takes no more outcomes
        assert!(on_attempt(&s, &r.delivery, &id, &fail, secs(4), 1.0).is_empty());
    }

    #[test]
    fn a_4xx_is_permanent_and_a_success_is_final() {
        let r = routes();
        let mut s = State::default();
        step(
            &mut s,
            |s| {
                on_input(
                    s,
                    &r,
                    &opened("INC-1", "e1", "payments", Impact::High),
                    t0(),
                )
            },
            "INC-1",
            t0(),
        );
        let log = notification_id("e1", "p1", "log");
        let out = on_attempt(
            &s,
            &r.delivery,
            &log,
            &AttemptOutcome::Permanent {
                error: "HTTP 404".into(),
            },
            t0(),
            1.0,
        );
        assert!(matches!(&out[0], NotifierEvent::Failed(f) if f.permanent && f.attempts == 1));
        let out = step(
            &mut s,
            |s| {
                on_attempt(
                    s,
                    &r.delivery,
                    &log,
                    &AttemptOutcome::Delivered {
                        response: "logged".into(),
                    },
                    t0(),
                    1.0,
                )
            },
            "INC-1",
            t0(),
        );
        assert!(matches!(&out[0], NotifierEvent::Delivered(d) if d.attempts == 1));
        assert_eq!(
            s.notification(&log).unwrap().status,
            NotificationStatus::Delivered
        );
    }

    #[test]
    fn summaries_follow_the_lifecycle() {
        let open = opened("INC-1", "e1", "payments", Impact::High);
        let InputKind::Incident(ev) = &open.kind else {
            unreachable!()
        };
        let s = summarize(None, ev);
        assert_eq!(s.status, Some(Status::Open));
        let ack = IncidentEvent {
            kind: EventKind::Assigned {
                group: "dba".into(),
                assignee: None,
            },
            ..ev.clone()
        };
        let s2 = summarize(Some(&s), &ack);
        assert_eq!(s2.group, "dba");
        assert_eq!(s2.title, "Checkout down");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_secs(5430)), "1h30m30s");
        assert_eq!(human(Duration::from_millis(200)), "200ms");
    }
}

//! A small world for the audit tests: real event logs in a temp dir for intake, the SLA timer
//! and the notifier; intake's events encoded by incident-domain; the SLA log written by the
//! SLA timer's own engine (inputs under `input.<id>`, policy activations, fired timers at their
//! due instants); the notifier's events as docs/events.md describes them. Also the in-process
//! AuditService of each log on 127.0.0.1:0.

#![allow(dead_code)]

use incident_audit::client::Target;
use incident_audit::{AuditRecord, INTAKE, NOTIFIER, SLA};
use incident_domain::{
    Envelope, EventKind, Impact, IncidentEvent, IncidentId, PriorityMatrix, Source, Urgency, stored,
};
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent};
use incident_sla::PolicySet;
use incident_sla_timer::engine::Engine;
use jiff::Timestamp;
use serde_json::{Value, json};

pub const POLICY: &str = r#"
[[policies]]
name = "standard"
calendar = "24x7"
warn_at = [0.5]
pause_on = ["on_hold"]
[policies.response]
P1 = "15m"
P2 = "30m"
[policies.resolution]
P1 = "1h"
P2 = "4h"
[[policies.escalation]]
at = 1.0
level = 1
"#;

pub const STRICT: &str = r#"
[[policies]]
name = "strict"
calendar = "24x7"
warn_at = [0.5]
pause_on = ["on_hold"]
[policies.response]
P1 = "5m"
P2 = "5m"
[policies.resolution]
P1 = "20m"
P2 = "20m"
"#;

pub fn t(s: &str) -> Timestamp {
    format!("2026-03-02T{s}Z").parse().unwrap()
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub intake: EventLog,
    pub sla: EventLog,
    pub notifier: EventLog,
    engine: Engine,
    n: u64,
}

fn append(log: &EventLog, stream: &str, envs: &[Envelope]) {
    if envs.is_empty() {
        return;
    }
    log.append(AppendRequest::new(
        stream,
        ExpectedVersion::Any,
        envs.iter()
            .map(|e| NewEvent::new(e.id.clone(), e.to_canonical_bytes()))
            .collect(),
    ))
    .unwrap();
}

pub fn opened(title: &str, service: &str, impact: Impact, urgency: Urgency) -> EventKind {
    EventKind::Opened {
        title: title.into(),
        description: String::new(),
        service: service.into(),
        group: format!("{service}-oncall"),
        impact,
        urgency,
        priority: PriorityMatrix::default().priority(impact, urgency),
        dedup_key: None,
        request_id: None,
        source: Source::person(),
    }
}

impl World {
    pub fn new(policy: &str, start: Timestamp) -> World {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| EventLog::open(&dir.path().join(name)).unwrap();
        let (intake, sla, notifier) = (open("intake"), open("sla"), open("notifier"));
        let mut engine = Engine::default();
        let activation = engine
            .activate(PolicySet::from_toml(policy).unwrap(), start)
            .unwrap();
        append(&sla, "_policy", &[activation]);
        World {
            dir,
            intake,
            sla,
            notifier,
            engine,
            n: 0,
        }
    }

    fn id(&mut self) -> String {
        self.n += 1;
        format!("00000000-0000-7000-8000-{:012}", self.n)
    }

    /// Fires every SLA timer due at or before `until`, each at its due instant.
    pub fn run_timers(&mut self, until: Timestamp) {
        while let Some(next) = self.engine.next_due_at().filter(|n| *n <= until) {
            for (id, derived) in self.engine.fire_due(next) {
                append(&self.sla, &id, &derived.events);
            }
        }
    }

    /// An intake event: recorded in intake's log, then consumed by the SLA engine.
    pub fn event(&mut self, incident: &str, at: Timestamp, kind: EventKind) {
        self.run_timers(at);
        let event = IncidentEvent {
            incident_id: IncidentId::parse(incident).unwrap(),
            at,
            actor: "alice".into(),
            kind,
        };
        let id = self.id();
        let env = stored::encode(&event, &id);
        append(&self.intake, incident, std::slice::from_ref(&env));
        let derived = self.engine.on_incident_event(&env, env.time).unwrap();
        // as the service does: timers due before the input are recorded before it
        let mut reqs: Vec<AppendRequest> = (!derived.fired_before.is_empty())
            .then(|| {
                AppendRequest::new(
                    incident,
                    ExpectedVersion::Any,
                    derived
                        .fired_before
                        .iter()
                        .map(|e| NewEvent::new(e.id.clone(), e.to_canonical_bytes()))
                        .collect(),
                )
            })
            .into_iter()
            .collect();
        reqs.push(AppendRequest::new(
            format!("input.{incident}"),
            ExpectedVersion::Any,
            vec![NewEvent::new(env.id.clone(), env.to_canonical_bytes())],
        ));
        if !derived.events.is_empty() {
            reqs.push(AppendRequest::new(
                incident,
                ExpectedVersion::Any,
                derived
                    .events
                    .iter()
                    .map(|e| NewEvent::new(e.id.clone(), e.to_canonical_bytes()))
                    .collect(),
            ));
        }
        for r in self.sla.append_batch(reqs) {
            r.unwrap();
        }
    }

    /// A notifier event.
    pub fn notify(&mut self, incident: &str, at: Timestamp, ty: &str, data: Value) {
        let id = self.id();
        let env = Envelope::new(id, NOTIFIER, ty, incident, at, data);
        append(&self.notifier, incident, &[env]);
    }

    pub fn records(&self) -> Vec<AuditRecord> {
        let mut out = Vec::new();
        for (name, log) in [
            (INTAKE, &self.intake),
            (SLA, &self.sla),
            (NOTIFIER, &self.notifier),
        ] {
            for r in log.read_from(1) {
                out.push(AuditRecord::new(name, r.unwrap()));
            }
        }
        out
    }

    /// Serves each log's AuditService in process; returns the targets.
    pub async fn serve(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for (name, log) in [
            (INTAKE, &self.intake),
            (SLA, &self.sla),
            (NOTIFIER, &self.notifier),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let svc = incident_audit::service(log.clone(), name);
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
            );
            out.push(Target {
                service: name,
                url: format!("http://{addr}"),
            });
        }
        out
    }
}

/// Three incidents on 2026-03-02 under [`POLICY`]:
/// * INC-A, P1: opened 10:00, acknowledged 10:10, resolved 10:50 (both clocks met);
/// * INC-C, P2: opened 10:30, acknowledged 10:35, resolved 11:00 (met);
/// * INC-B, P1: opened 11:00, response breached 11:15, acknowledged 11:20, on hold
///   11:25-11:40, resolution breached and escalated at 12:15, resolved 12:30. The notifier paged
///   for it at 11:00:01 (delivered 11:00:02) and stopped paging at 11:20:01.
pub fn standard_world() -> World {
    let mut w = World::new(POLICY, t("09:00:00"));
    let p1 = || opened("Checkout down", "payments", Impact::High, Urgency::High);
    w.event("INC-A", t("10:00:00"), p1());
    w.event("INC-A", t("10:10:00"), EventKind::Acknowledged);
    w.event(
        "INC-C",
        t("10:30:00"),
        opened("Slow search", "search", Impact::High, Urgency::Medium),
    );
    w.event("INC-C", t("10:35:00"), EventKind::Acknowledged);
    w.event("INC-A", t("10:50:00"), EventKind::Resolved { note: None });
    w.event("INC-C", t("11:00:00"), EventKind::Resolved { note: None });
    w.event("INC-B", t("11:00:00"), p1());
    w.notify(
        "INC-B",
        t("11:00:01"),
        "page.started.v1",
        json!({"page_id": "pg-1", "oncall": "payments-primary", "trigger": {"event_id": "x", "type": "incident.opened.v1"},
               "route": "p1", "tier": 1, "round": 1, "ack_deadline": "2026-03-02T11:05:01Z"}),
    );
    w.notify(
        "INC-B",
        t("11:00:01"),
        "notification.queued.v1",
        json!({"notification_id": "n-1", "trigger": {"event_id": "x", "type": "incident.opened.v1"},
               "route": "p1", "channel": "ops-webhook", "kind": "webhook", "reason": "P1 opened",
               "incident": {}, "event": {}}),
    );
    w.notify(
        "INC-B",
        t("11:00:02"),
        "notification.delivered.v1",
        json!({"notification_id": "n-1", "channel": "ops-webhook", "attempts": 1, "response": "200"}),
    );
    w.event("INC-B", t("11:20:00"), EventKind::Acknowledged);
    w.notify(
        "INC-B",
        t("11:20:01"),
        "page.stopped.v1",
        json!({"page_id": "pg-1", "oncall": "payments-primary", "reason": "acknowledged"}),
    );
    w.event(
        "INC-B",
        t("11:25:00"),
        EventKind::PutOnHold {
            reason: "vendor".into(),
        },
    );
    w.event("INC-B", t("11:40:00"), EventKind::Resumed);
    w.event("INC-B", t("12:30:00"), EventKind::Resolved { note: None });
    w.run_timers(t("13:00:00"));
    w
}

//! Helpers for the notifier's acceptance tests, real parts only: a webhook receiver (axum on a
//! free port) that records every request and can fail the first attempts, publishing incident
//! and SLA envelopes to JetStream, reading streams, starting the notifier binary, and its gRPC
//! client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap as HttpHeaders, StatusCode, Uri};
use hmac::{Hmac, Mac};
use incident_domain::{
    Envelope, EventKind, Impact, IncidentEvent, IncidentId, Priority, Source, Urgency, stored,
};
use incident_proto::v1 as pb;
use incident_proto::v1::notification_service_client::NotificationServiceClient;
use incident_testkit::{NatsServer, ServiceProcess};
use serde_json::{Value, json};
use sha2::Sha256;

pub const SECRET: &str = "s3cret";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn key(&self) -> String {
        self.headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Whether `X-Signature` is the HMAC-SHA256 of the body under `secret`.
    pub fn signed_with(&self, secret: &str) -> bool {
        let Some(sig) = self.headers.get("x-signature") else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        *sig == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Vec<Received>,
    seen: HashMap<String, usize>,
}

/// A real HTTP receiver on 127.0.0.1:0. It answers 500 to the first `fail_first` requests of
/// each Idempotency-Key, then 200.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    state: Arc<Mutex<ReceiverState>>,
    fail_first: usize,
}

async fn receive(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HttpHeaders,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let key = headers.get("idempotency-key").cloned().unwrap_or_default();
    let mut s = r.state.lock().unwrap();
    let n = s.seen.entry(key).or_insert(0);
    *n += 1;
    let status = if *n <= r.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    s.requests.push(Received {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
        status: status.as_u16(),
    });
    (status, if status.is_success() { "ok" } else { "boom" })
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let r = Receiver {
            base,
            state: Arc::new(Mutex::new(ReceiverState::default())),
            fail_first,
        };
        let app = Router::new().fallback(receive).with_state(r.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests answered 200, on `path`.
    pub fn delivered(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path && r.status == 200)
            .collect()
    }

    /// Polls until `pred` holds for the requests so far, up to `within`.
    pub async fn wait_until(&self, within: Duration, pred: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if pred(&self.requests()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn jetstream(nats: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(nats.url())
        .await
        .expect("connect to NATS");
    let js = jetstream::new(client);
    for spec in [
        incident_bus::streams::INCIDENT_EVENTS,
        incident_bus::streams::SLA_EVENTS,
        incident_bus::streams::NOTIFY_EVENTS,
        incident_bus::streams::INCIDENT_DEADLETTER,
    ] {
        incident_bus::ensure_stream(&js, &spec, Duration::from_secs(120))
            .await
            .expect("create stream");
    }
    js
}

pub fn new_incident_id() -> IncidentId {
    IncidentId::from_uuid_bytes(*uuid::Uuid::now_v7().as_bytes())
}

/// An `incident.opened.v1` envelope as intake writes it.
pub fn opened(id: &IncidentId, title: &str, service: &str, impact: Impact) -> Envelope {
    let priority = match impact {
        Impact::High => Priority::P1,
        Impact::Medium => Priority::P2,
        Impact::Low => Priority::P3,
    };
    let ev = IncidentEvent {
        incident_id: id.clone(),
        at: jiff::Timestamp::now(),
        actor: "tests".into(),
        kind: EventKind::Opened {
            title: title.into(),
            description: String::new(),
            service: service.into(),
            group: "payments-oncall".into(),
            impact,
            urgency: Urgency::High,
            priority,
            dedup_key: None,
            request_id: None,
            source: Source::person(),
        },
    };
    stored::encode(&ev, &uuid::Uuid::now_v7().to_string())
}

/// Another lifecycle event of `id` (acknowledged, resolved, ...).
pub fn incident_event(id: &IncidentId, kind: EventKind) -> Envelope {
    let ev = IncidentEvent {
        incident_id: id.clone(),
        at: jiff::Timestamp::now(),
        actor: "tests".into(),
        kind,
    };
    stored::encode(&ev, &uuid::Uuid::now_v7().to_string())
}

/// An SLA event by the contract in docs/events.md.
pub fn sla_event(
    ty: &str,
    id: &IncidentId,
    priority: &str,
    service: &str,
    extra: Value,
) -> Envelope {
    let mut data = json!({
        "incident": {"priority": priority, "service": service, "group": "payments-oncall"},
        "policy": {"name": "standard", "hash": "0".repeat(64)},
    });
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    Envelope::new(
        uuid::Uuid::now_v7().to_string(),
        "incident-sla",
        ty,
        id.as_str(),
        jiff::Timestamp::now(),
        data,
    )
}

/// Publishes with `Nats-Msg-Id` = the event id, and waits for the stream's ack.
pub async fn publish(js: &jetstream::Context, subject: String, env: &Envelope) {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", env.id.as_str());
    js.publish_with_headers(subject, headers, env.to_canonical_bytes().into())
        .await
        .expect("publish")
        .await
        .expect("publish ack");
}

pub async fn publish_incident(js: &jetstream::Context, env: &Envelope) {
    publish(js, format!("incident.v1.events.{}", env.subject), env).await;
}

pub async fn publish_sla(js: &jetstream::Context, env: &Envelope) {
    publish(js, format!("sla.v1.events.{}", env.subject), env).await;
}

/// Every message on `stream` matching `subject` (payload and headers).
pub async fn read_stream(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Vec<(Vec<u8>, Option<HeaderMap>)> {
    incident_testkit::stream::read_subject(js, stream, subject).await
}

/// The notifier's events relayed to NOTIFY_EVENTS for one incident.
pub async fn notify_events(js: &jetstream::Context, incident: &str) -> Vec<Envelope> {
    read_stream(js, "NOTIFY_EVENTS", &format!("notify.v1.events.{incident}"))
        .await
        .into_iter()
        .map(|(p, _)| Envelope::from_slice(&p).expect("an envelope on NOTIFY_EVENTS"))
        .collect()
}

/// Writes a routes file into `dir`.
pub fn routes_file(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("routes.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the notifier binary with its data in `dir/notifier`.
pub fn spawn_notifier(
    nats: &NatsServer,
    dir: &Path,
    routes: &Path,
    log_name: &str,
) -> ServiceProcess {
    ServiceProcess::spawn(
        "incident-notifier",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", dir.join("notifier").display().to_string()),
            ("ROUTES_FILE", routes.display().to_string()),
        ],
        &dir.join(log_name),
    )
}

pub async fn client(url: &str) -> NotificationServiceClient<tonic::transport::Channel> {
    NotificationServiceClient::connect(url.to_owned())
        .await
        .expect("connect to the notifier")
}

pub async fn notifications(url: &str, incident: &str) -> Vec<pb::Notification> {
    client(url)
        .await
        .list_notifications(pb::ListNotificationsRequest {
            incident_id: incident.to_owned(),
            ..Default::default()
        })
        .await
        .expect("list notifications")
        .into_inner()
        .notifications
}

/// Polls the notifier's list until `pred` holds, up to `within`.
pub async fn wait_notifications(
    url: &str,
    incident: &str,
    within: Duration,
    pred: impl Fn(&[pb::Notification]) -> bool,
) -> Vec<pb::Notification> {
    let deadline = Instant::now() + within;
    loop {
        let list = notifications(url, incident).await;
        if pred(&list) || Instant::now() >= deadline {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! Intake's HTTP surface: `/healthz` (alive), `/readyz` (state rebuilt, NATS connected, stream
//! there) and `/metrics` (Prometheus text).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use incident_bus::RelayStatus;
use incident_eventlog::EventLog;

use incident_runtime::metric_family as family;

use crate::metrics::{Metrics, counter};
use crate::projection::Projection;

#[derive(Clone)]
pub struct Shared {
    pub log: EventLog,
    pub state: Arc<RwLock<Projection>>,
    pub metrics: Arc<Metrics>,
    pub relay: Arc<RelayStatus>,
    pub nats_up: Arc<AtomicBool>,
    pub stream_ready: Arc<AtomicBool>,
}

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    let nats = s.nats_up.load(Ordering::SeqCst);
    let stream = s.stream_ready.load(Ordering::SeqCst);
    let head = s.log.head().seq;
    let relayed = s.relay.cursor.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "state_rebuilt": true,
        "nats_connected": nats,
        "stream_ready": stream,
        "log_head": head,
        "relayed_up_to": relayed,
    });
    let code = if nats && stream {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    let mut out = String::new();
    let commands: Vec<(String, u64)> = s
        .metrics
        .commands_snapshot()
        .into_iter()
        .map(|((c, r), v)| (format!("command=\"{c}\",result=\"{r}\""), v))
        .collect();
    family(
        &mut out,
        "incident_intake_commands_total",
        "counter",
        "Commands answered, by command and result.",
        &commands,
    );
    family(
        &mut out,
        "incident_intake_events_appended_total",
        "counter",
        "Events appended to intake's log.",
        &[(String::new(), counter(&s.metrics.events_appended))],
    );
    family(
        &mut out,
        "incident_intake_append_batches_total",
        "counter",
        "Group commits (one fsync each).",
        &[(String::new(), counter(&s.metrics.append_batches))],
    );
    family(
        &mut out,
        "incident_intake_events_relayed_total",
        "counter",
        "Events published to INCIDENT_EVENTS.",
        &[(String::new(), counter(&s.relay.relayed))],
    );
    family(
        &mut out,
        "incident_intake_relay_errors_total",
        "counter",
        "Relay steps that failed and were retried.",
        &[(String::new(), counter(&s.relay.errors))],
    );
    let head = s.log.head().seq;
    let cursor = s.relay.cursor.load(Ordering::Relaxed);
    family(
        &mut out,
        "incident_intake_relay_lag_events",
        "gauge",
        "Events in the log not yet on INCIDENT_EVENTS.",
        &[(String::new(), head.saturating_sub(cursor))],
    );
    let by_status: Vec<(String, u64)> = s
        .state
        .read()
        .map(|st| {
            st.count_by_status()
                .into_iter()
                .map(|(k, v)| (format!("status=\"{k}\""), v))
                .collect()
        })
        .unwrap_or_default();
    family(
        &mut out,
        "incident_intake_incidents",
        "gauge",
        "Incidents by status.",
        &by_status,
    );
    family(
        &mut out,
        "incident_intake_nats_connected",
        "gauge",
        "1 while connected to NATS.",
        &[(String::new(), u64::from(s.nats_up.load(Ordering::SeqCst)))],
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}

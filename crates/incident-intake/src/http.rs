//! Intake's HTTP surface: `/healthz` (alive), `/readyz` (state rebuilt, NATS connected, stream
//! there), `/metrics` (Prometheus text), and the intake of other systems: `POST /v2/enqueue`
//! (PagerDuty Events API v2) and `POST /v1/alertmanager` (Alertmanager webhook, version 4).
//!
//! Answers: 202 (PagerDuty) or 200 (Alertmanager) once the event is durable; 400 with the
//! reasons for input that is truly invalid; 401 for a missing or wrong token; 413 over 512 KB;
//! 503 when the event cannot be made durable now, so senders retry (Alertmanager drops a
//! notification for good on any 4xx).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use incident_bus::RelayStatus;
use incident_eventlog::EventLog;
use serde_json::json;

use incident_runtime::metric_family as family;

use crate::error::ServiceError;
use crate::ingest::{Ingested, ingest};
use crate::metrics::{Metrics, counter};
use crate::processor::Handle;
use crate::projection::Projection;
use crate::sources::{self, Sources};

#[derive(Clone)]
pub struct Shared {
    pub log: EventLog,
    pub state: Arc<RwLock<Projection>>,
    pub metrics: Arc<Metrics>,
    pub relay: Arc<RelayStatus>,
    pub nats_up: Arc<AtomicBool>,
    pub stream_ready: Arc<AtomicBool>,
    pub handle: Handle,
    pub sources: Arc<Sources>,
    pub grpc_metrics: Arc<incident_runtime::grpc_metrics::GrpcMetrics>,
}

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v2/enqueue", post(pagerduty))
        .route("/v1/alertmanager", post(alertmanager))
        .layer(DefaultBodyLimit::max(sources::MAX_BODY))
        .with_state(shared)
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    incident_runtime::readiness(
        s.nats_up.load(Ordering::SeqCst),
        s.stream_ready.load(Ordering::SeqCst),
        s.log.head().seq,
        s.relay.cursor.load(Ordering::Relaxed),
    )
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
    family(
        &mut out,
        "incident_intake_relay_rechecked_chunks_total",
        "counter",
        "Chunks the stream did not take as sent (a refused record, another publisher), checked record by record.",
        &[(String::new(), counter(&s.relay.rechecked_chunks))],
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
    s.grpc_metrics.render(&mut out);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}

fn unavailable(e: &ServiceError) -> Response {
    let code = match e {
        ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        code,
        axum::Json(json!({"status": "unavailable", "message": e.to_string()})),
    )
        .into_response()
}

fn invalid(message: &str, errors: Vec<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "invalid event", "message": message, "errors": errors})),
    )
        .into_response()
}

async fn pagerduty(State(s): State<Shared>, body: Bytes) -> Response {
    let generated = uuid::Uuid::now_v7().simple().to_string();
    let (req, dedup_key) = match sources::pagerduty(&s.sources, &body, &generated) {
        Ok(r) => r,
        Err(e) => return invalid(&e.message, e.errors),
    };
    match ingest(&s.handle, &s.state, req, "pagerduty").await {
        Ok(_) => (
            StatusCode::ACCEPTED,
            axum::Json(
                json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
            ),
        )
            .into_response(),
        Err(ServiceError::Rejected(e)) => invalid("Event object is invalid", vec![e.to_string()]),
        Err(e) => unavailable(&e),
    }
}

fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    let tokens = &s.sources.auth.tokens;
    if tokens.is_empty() {
        return true;
    }
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    tokens.iter().any(|t| !t.is_empty() && t == given)
}

async fn alertmanager(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&s, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                json!({"status": "unauthorized", "message": "missing or wrong bearer token"}),
            ),
        )
            .into_response();
    }
    let req = match sources::alertmanager(&s.sources, &body) {
        Ok(r) => r,
        Err(e) => return invalid(&e.message, e.errors),
    };
    match ingest(&s.handle, &s.state, req, "alertmanager").await {
        Ok(outcome) => {
            let result = match &outcome {
                Ingested::Opened(_) => "opened",
                Ingested::Added(_) => "added",
                Ingested::Acted(_) => "resolved",
                Ingested::AlreadyDone(_) => "already resolved",
                Ingested::NoIncident => "no open incident",
            };
            (
                StatusCode::OK,
                axum::Json(json!({
                    "status": "success",
                    "result": result,
                    "incident_id": outcome.incident_id().map(|i| i.to_string()),
                })),
            )
                .into_response()
        }
        Err(ServiceError::Rejected(e)) => {
            invalid("Alertmanager payload is invalid", vec![e.to_string()])
        }
        Err(e) => unavailable(&e),
    }
}

//! The notifier's HTTP surface: `/healthz` (alive), `/readyz` (state rebuilt, NATS connected,
//! streams there) and `/metrics` (Prometheus text).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State as AxumState;
use axum::response::IntoResponse;
use axum::routing::get;
use incident_bus::RelayStatus;
use incident_eventlog::EventLog;
use incident_runtime::metric_family as family;

use crate::metrics::{Metrics, counter};
use crate::state::{NotificationStatus, State};

#[derive(Clone)]
pub struct Shared {
    pub log: EventLog,
    pub state: Arc<RwLock<State>>,
    pub metrics: Arc<Metrics>,
    pub relay: Arc<RelayStatus>,
    pub nats_up: Arc<AtomicBool>,
    pub streams_ready: Arc<AtomicBool>,
    pub grpc_metrics: Arc<incident_runtime::grpc_metrics::GrpcMetrics>,
}

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn readyz(AxumState(s): AxumState<Shared>) -> impl IntoResponse {
    incident_runtime::readiness(
        s.nats_up.load(Ordering::SeqCst),
        s.streams_ready.load(Ordering::SeqCst),
        s.log.head().seq,
        s.relay.cursor.load(Ordering::Relaxed),
    )
}

async fn metrics(AxumState(s): AxumState<Shared>) -> impl IntoResponse {
    let mut out = String::new();
    let one = |v: u64| vec![(String::new(), v)];
    family(
        &mut out,
        "incident_notifier_inputs_processed_total",
        "counter",
        "Input events recorded with what they led to.",
        &one(counter(&s.metrics.inputs_processed)),
    );
    family(
        &mut out,
        "incident_notifier_inputs_duplicate_total",
        "counter",
        "Redelivered input events skipped (already processed).",
        &one(counter(&s.metrics.inputs_duplicate)),
    );
    family(
        &mut out,
        "incident_notifier_inputs_rejected_total",
        "counter",
        "Input events dead-lettered.",
        &one(counter(&s.metrics.inputs_rejected)),
    );
    family(
        &mut out,
        "incident_notifier_inputs_ignored_total",
        "counter",
        "Valid input events of types the notifier does not act on.",
        &one(counter(&s.metrics.inputs_ignored)),
    );
    let attempts: Vec<(String, u64)> = s
        .metrics
        .attempts_snapshot()
        .into_iter()
        .map(|((kind, result), v)| (format!("kind=\"{kind}\",result=\"{result}\""), v))
        .collect();
    family(
        &mut out,
        "incident_notifier_delivery_attempts_total",
        "counter",
        "Delivery attempts by channel kind and result.",
        &attempts,
    );
    family(
        &mut out,
        "incident_notifier_events_appended_total",
        "counter",
        "Events appended to the notifier's log.",
        &one(counter(&s.metrics.events_appended)),
    );
    family(
        &mut out,
        "incident_notifier_append_batches_total",
        "counter",
        "Group commits (one fsync each).",
        &one(counter(&s.metrics.append_batches)),
    );
    family(
        &mut out,
        "incident_notifier_append_failures_total",
        "counter",
        "Group commits that failed (their inputs are redelivered).",
        &one(counter(&s.metrics.append_failures)),
    );
    family(
        &mut out,
        "incident_notifier_events_relayed_total",
        "counter",
        "Events published to NOTIFY_EVENTS.",
        &one(counter(&s.relay.relayed)),
    );
    family(
        &mut out,
        "incident_notifier_relay_rechecked_chunks_total",
        "counter",
        "Chunks NOTIFY_EVENTS did not take as sent, checked record by record.",
        &one(counter(&s.relay.rechecked_chunks)),
    );
    let head = s.log.head().seq;
    family(
        &mut out,
        "incident_notifier_relay_lag_events",
        "gauge",
        "Events in the log not yet on NOTIFY_EVENTS.",
        &one(head.saturating_sub(s.relay.cursor.load(Ordering::Relaxed))),
    );
    let (by_status, pages) = s
        .state
        .read()
        .map(|st| {
            let counts = st.count_by_status();
            let by: Vec<(String, u64)> = NotificationStatus::ALL
                .iter()
                .map(|k| {
                    (
                        format!("status=\"{}\"", k.as_str()),
                        counts.get(k).copied().unwrap_or(0),
                    )
                })
                .collect();
            (by, st.active_pages().count() as u64)
        })
        .unwrap_or_default();
    family(
        &mut out,
        "incident_notifier_notifications",
        "gauge",
        "Notifications by status.",
        &by_status,
    );
    family(
        &mut out,
        "incident_notifier_pages_active",
        "gauge",
        "On-call pages waiting for an acknowledgement.",
        &one(pages),
    );
    family(
        &mut out,
        "incident_notifier_nats_connected",
        "gauge",
        "1 while connected to NATS.",
        &one(u64::from(s.nats_up.load(Ordering::SeqCst))),
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

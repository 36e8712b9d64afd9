//! The SLA timer's HTTP surface: `/healthz`, `/readyz` (state rebuilt, NATS connected, streams
//! there) and `/metrics` (Prometheus text: inputs, derived events, warnings, breaches,
//! escalations, group commits, clocks by state, timers pending, relay progress).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use incident_bus::RelayStatus;
use incident_runtime::{metric_family as family, sample};

use crate::engine::{CLOCK_STATES, Engine};
use crate::events::state_name;
use crate::timesource::TimeSource;
use crate::writer::Counters;

#[derive(Clone)]
pub struct Shared {
    pub engine: Arc<Mutex<Engine>>,
    pub counters: Arc<Counters>,
    pub relay: Arc<RelayStatus>,
    pub nats_up: Arc<AtomicBool>,
    pub streams_ready: Arc<AtomicBool>,
    pub time: TimeSource,
    pub log: incident_eventlog::EventLog,
    pub grpc_metrics: Arc<incident_runtime::grpc_metrics::GrpcMetrics>,
}

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    incident_runtime::readiness(
        s.nats_up.load(Ordering::SeqCst),
        s.streams_ready.load(Ordering::SeqCst),
        s.log.head().seq,
        s.relay.cursor.load(Ordering::Relaxed),
    )
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    let c = &s.counters;
    let get = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let mut out = String::new();
    family(
        &mut out,
        "incident_sla_inputs_total",
        "counter",
        "Incident events recorded.",
        &sample(get(&c.inputs)),
    );
    family(
        &mut out,
        "incident_sla_redelivered_skipped_total",
        "counter",
        "Redelivered incident events skipped as already recorded.",
        &sample(get(&c.duplicates_skipped)),
    );
    family(
        &mut out,
        "incident_sla_dead_lettered_total",
        "counter",
        "Incident events rejected to the dead-letter subject.",
        &sample(get(&c.rejected)),
    );
    family(
        &mut out,
        "incident_sla_events_total",
        "counter",
        "SLA events recorded.",
        &sample(get(&c.events_derived)),
    );
    family(
        &mut out,
        "incident_sla_warnings_total",
        "counter",
        "Warnings fired.",
        &sample(get(&c.warnings)),
    );
    family(
        &mut out,
        "incident_sla_breaches_total",
        "counter",
        "Breaches fired.",
        &sample(get(&c.breaches)),
    );
    family(
        &mut out,
        "incident_sla_escalations_total",
        "counter",
        "Escalations fired.",
        &sample(get(&c.escalations)),
    );
    family(
        &mut out,
        "incident_sla_append_batches_total",
        "counter",
        "Group commits to the SLA log (one flushed append each).",
        &sample(get(&c.append_batches)),
    );
    family(
        &mut out,
        "incident_sla_events_relayed_total",
        "counter",
        "SLA events published to SLA_EVENTS.",
        &sample(get(&s.relay.relayed)),
    );
    family(
        &mut out,
        "incident_sla_relay_rechecked_chunks_total",
        "counter",
        "Chunks SLA_EVENTS did not take as sent, checked record by record.",
        &sample(get(&s.relay.rechecked_chunks)),
    );
    // kept by the engine as incidents change: a scrape does not walk a million clocks while
    // the timer and the writer wait for the lock
    let (by_state, timers) = match s.engine.lock() {
        Ok(engine) => (engine.clock_counts(), engine.timers_pending() as u64),
        Err(_) => ([0; 4], 0),
    };
    let samples: Vec<(String, u64)> = CLOCK_STATES
        .iter()
        .zip(by_state)
        .map(|(st, n)| (format!("state=\"{}\"", state_name(*st)), n))
        .collect();
    family(
        &mut out,
        "incident_sla_clocks",
        "gauge",
        "Clocks with a target, by state as of their incident's last change (a running clock past its due instant counts as breached once its breach has fired).",
        &samples,
    );
    family(
        &mut out,
        "incident_sla_timers_pending",
        "gauge",
        "Incidents with a timer due.",
        &sample(timers),
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

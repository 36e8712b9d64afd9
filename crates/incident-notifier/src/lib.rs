//! The notification service: consumes `INCIDENT_EVENTS` and `SLA_EVENTS` with idempotent
//! durable consumers, routes each event by priority, service, group, clock and escalation level
//! to webhooks, Slack-compatible webhooks, email and the log, retries what fails with capped,
//! jittered backoff, pages on-call tiers until someone acknowledges, and records all of it in its
//! own hash-chained log, relayed to `NOTIFY_EVENTS`. On start it folds that log back into its
//! state and resumes every pending retry and page.
//!
//! Modules: [`routes`] (the routes file), [`input`] (decoding what is consumed), [`decide`]
//! (every decision, pure), [`events`] and [`state`] (the log's events and their fold),
//! [`engine`] (the single writer and its timers), [`channels`] and [`message`] (delivery),
//! [`grpc`], [`http`], [`error`], [`config`]; [`rebuild`] writes a new log from the streams when
//! the one on disk is damaged (`--rebuild-log-from-jetstream`).

pub mod channels;
pub mod clock;
pub mod config;
pub mod decide;
pub mod engine;
pub mod error;
pub mod events;
pub mod grpc;
pub mod http;
pub mod input;
pub mod message;
pub mod metrics;
pub mod rebuild;
pub mod routes;
pub mod state;
pub mod timers;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use incident_bus::{ConsumerSpec, Delivery, Handled, NatsOptions, Relay, streams};
use incident_eventlog::EventLog;
use incident_proto::v1::notification_service_server::NotificationServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
use engine::{Engine, Handle};
use input::Decoded;
use metrics::{Metrics, inc};
use routes::Routes;

/// The relay's cursor name in the notifier's log.
pub const RELAY_CURSOR: &str = "relay.NOTIFY_EVENTS";
/// The durable consumer name on `INCIDENT_EVENTS` and on `SLA_EVENTS`.
pub const DURABLE: &str = "incident-notifier";
/// The streams the notifier consumes (each with the durable [`DURABLE`]).
pub const INPUT_STREAMS: [&str; 2] = [streams::INCIDENT_EVENTS.name, streams::SLA_EVENTS.name];

/// The durable consumer the notifier reads `stream` with; the rebuild repositions the same one.
pub fn consumer_spec(stream: &str) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(stream, DURABLE);
    // inputs are submitted to the engine in stream order before any wait, and the engine
    // records what queued up in one batch: one fsync for a group of messages
    spec.concurrency = 256;
    spec
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Incidents,
    Sla,
}

async fn on_delivery(source: Source, handle: &Handle, metrics: &Metrics, d: Delivery) -> Handled {
    let decoded = match source {
        Source::Incidents => input::decode_incident(&d.payload),
        Source::Sla => input::decode_sla(&d.payload),
    };
    match decoded {
        Err(reason) => {
            inc(&metrics.inputs_rejected, 1);
            Handled::Reject(reason)
        }
        Ok(Decoded::Ignored(why)) => {
            inc(&metrics.inputs_ignored, 1);
            tracing::debug!(id = %d.id, %why, "ignored");
            Handled::Done
        }
        Ok(Decoded::Input(input)) => handle.submit(input).await,
    }
}

fn consume(
    js: async_nats::jetstream::Context,
    stream: &str,
    source: Source,
    handle: Handle,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(incident_bus::consumer::run(
        js,
        consumer_spec(stream),
        move |d: Delivery| {
            let handle = handle.clone();
            let metrics = metrics.clone();
            async move { on_delivery(source, &handle, &metrics, d).await }
        },
        stop,
    ))
}

/// Runs the notifier with a validated `routes` on the given listeners until `shutdown`
/// completes; then stops consuming, lets attempts in flight report, flushes the log and closes
/// the NATS connection.
pub async fn run(
    config: Config,
    routes: Routes,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    for unused in routes.unused_channels() {
        tracing::warn!(channel = %unused, "channel is used by no route or on-call tier");
    }
    let routes = Arc::new(routes);
    let log_dir = config.data_dir.join("log");
    incident_bus::rebuild::refuse_if_rebuilding(&log_dir)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let (log, state) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let log = EventLog::open(&log_dir)?;
        let state = engine::fold_log(&log)?;
        Ok((log, state))
    })
    .await??;
    tracing::info!(
        notifications = state.notifications(None).len(),
        pending = state.pending().count(),
        pages_active = state.active_pages().count(),
        events = log.head().seq,
        "state rebuilt from the log"
    );
    let state = Arc::new(RwLock::new(state));

    let (stop_tx, stop_rx) = watch::channel(false);
    let (client, nats_up) = incident_bus::connect(
        &NatsOptions::new(&config.nats_url, "incident-notifier").with_auth(&config.nats_auth),
    )
    .await
    .map_err(|e| anyhow::anyhow!("connecting to NATS: {e}"))?;
    let js = async_nats::jetstream::new(client.clone());

    let relay = Relay::new(
        log.clone(),
        js.clone(),
        streams::NOTIFY_EVENTS,
        RELAY_CURSOR,
    );
    let relay_status = relay.status();
    let relay_wake = relay.waker();
    let streams_ready = Arc::new(AtomicBool::new(false));
    let relay_task = {
        let js = js.clone();
        let ready = streams_ready.clone();
        let mut stop = stop_rx.clone();
        let window = config.duplicate_window();
        tokio::spawn(async move {
            let mut failures = 0;
            for spec in [
                streams::INCIDENT_EVENTS,
                streams::SLA_EVENTS,
                streams::NOTIFY_EVENTS,
                streams::INCIDENT_DEADLETTER,
            ] {
                loop {
                    if *stop.borrow() {
                        return;
                    }
                    match incident_bus::ensure_stream(&js, &spec, window).await {
                        Ok(_) => break,
                        Err(e) => {
                            failures += 1;
                            tracing::warn!(stream = spec.name, error = %e, "stream not ready; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(incident_bus::relay::backoff(failures)) => {}
                                _ = stop.changed() => {}
                            }
                        }
                    }
                }
            }
            ready.store(true, Ordering::SeqCst);
            relay.run(stop).await;
        })
    };

    let metrics = Arc::new(Metrics::default());
    let deliverer = Arc::new(channels::Deliverer::new(routes.clone())?);
    let engine = Engine::new(
        log.clone(),
        state.clone(),
        routes.clone(),
        clock::Clock::start(),
        deliverer,
        relay_wake,
        metrics.clone(),
    );
    let (handle, engine_task) = engine.spawn(1024, stop_rx.clone());

    let incidents_task = consume(
        js.clone(),
        streams::INCIDENT_EVENTS.name,
        Source::Incidents,
        handle.clone(),
        metrics.clone(),
        stop_rx.clone(),
    );
    let sla_task = consume(
        js.clone(),
        streams::SLA_EVENTS.name,
        Source::Sla,
        handle,
        metrics.clone(),
        stop_rx.clone(),
    );

    let grpc_base = incident_runtime::grpc_base(&config.tls, config.tokens_file.as_deref())?;
    grpc_base
        .health
        .set_serving::<NotificationServiceServer<grpc::NotifierApi>>()
        .await;
    let api = grpc::NotifierApi::new(state.clone());

    let shared = http::Shared {
        log: log.clone(),
        state,
        metrics,
        relay: relay_status,
        nats_up,
        streams_ready,
        grpc_metrics: grpc_base.metrics.clone(),
    };
    let http_task = incident_runtime::tls::spawn_http(
        http,
        http::router(shared),
        &config.tls,
        stop_rx.clone(),
    )?;

    let mut grpc_stop = stop_rx.clone();
    let grpc_task = tokio::spawn(
        grpc_base
            .router
            .add_service(incident_audit::service(log.clone(), "incident-notifier"))
            .add_service(NotificationServiceServer::new(api))
            .serve_with_incoming_shutdown(incident_runtime::grpc_incoming(grpc), async move {
                let _ = grpc_stop.changed().await;
            }),
    );

    shutdown.await;
    tracing::info!("stopping: no new input; letting attempts in flight report");
    let _ = stop_tx.send(true);
    let _ = incidents_task.await;
    let _ = sla_task.await;
    let _ = engine_task.await;
    if let Ok(Err(e)) = grpc_task.await {
        tracing::warn!(error = %e, "gRPC server ended with an error");
    }
    let _ = http_task.await;
    let _ = relay_task.await;
    let flush = tokio::task::spawn_blocking(move || log.flush()).await?;
    flush.context("flushing the log")?;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.drain()).await;
    tracing::info!("stopped cleanly");
    Ok(())
}

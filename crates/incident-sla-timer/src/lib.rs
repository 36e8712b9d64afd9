//! The SLA timer service: consumes `INCIDENT_EVENTS`, runs every incident's response and
//! resolution clocks under the policy version in force when they started, fires warnings,
//! breaches and escalations at their due instants (late, once, after an outage), records all of
//! it in its own log and relays its events to `SLA_EVENTS`.

pub mod config;
pub mod engine;
pub mod events;
pub mod grpc;
pub mod http;
pub mod rebuild;
pub mod timesource;
pub mod writer;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use incident_bus::consumer::{self, ConsumerSpec};
use incident_bus::{NatsOptions, Relay, streams};
use incident_domain::Envelope;
use incident_eventlog::EventLog;
use incident_proto::v1::sla_service_server::SlaServiceServer;
use incident_sla::PolicySet;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

pub use config::Config;
use engine::Engine;
use timesource::TimeSource;
use writer::Writer;

pub const RELAY_CURSOR: &str = "relay.SLA_EVENTS";
pub const DURABLE: &str = "incident-sla";

/// Reads and validates the policy file (or the built-in default).
pub fn load_policy(config: &Config) -> anyhow::Result<PolicySet> {
    match &config.policy_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading SLA_POLICY_FILE {}", path.display()))?;
            PolicySet::from_toml(&text).with_context(|| format!("in {}", path.display()))
        }
        None => Ok(PolicySet::from_toml(config::DEFAULT_POLICY)?),
    }
}

/// How many incident events the SLA timer handles at once: those in flight together are
/// recorded in one group commit (see [`Writer::on_delivery`]).
pub const IN_FLIGHT: usize = 256;

/// The durable consumer of INCIDENT_EVENTS (the rebuild restarts the same one).
pub fn consumer_spec() -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(streams::INCIDENT_EVENTS.name, DURABLE);
    spec.concurrency = IN_FLIGHT;
    spec
}

/// Folds the SLA log into a fresh engine; also answers the id of the last incident event in it.
pub fn rebuild(log: &EventLog) -> anyhow::Result<(Engine, Option<String>)> {
    let mut engine = Engine::default();
    let mut last_input = None;
    for rec in log.read_from(1) {
        let rec = rec.context("reading the SLA log")?;
        let env = Envelope::from_slice(&rec.event)
            .with_context(|| format!("log record {}: not an event envelope", rec.seq))?;
        engine.replay(rec.seq, &env)?;
        if !writer::is_own_event(&rec) {
            last_input = Some(env.id);
        }
    }
    Ok((engine, last_input))
}

/// Where INCIDENT_EVENTS' durable consumer stands at start: `Some(last sequence)` when
/// messages wait for it, `None` when it has nothing pending.
async fn backlog_end(js: &async_nats::jetstream::Context) -> Result<Option<u64>, String> {
    let mut stream = js
        .get_stream(streams::INCIDENT_EVENTS.name)
        .await
        .map_err(|e| e.to_string())?;
    let last = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    if last == 0 {
        return Ok(None);
    }
    match stream.consumer_info(DURABLE).await {
        Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => Ok(None),
        _ => Ok(Some(last)),
    }
}

/// Sleeps until the next due instant (or a wake-up), then fires what is due.
pub async fn timer_loop(
    writer: Arc<Writer>,
    time: TimeSource,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let next = writer.engine.lock().ok().and_then(|e| e.next_due_at());
        let deadline = match next {
            Some(t) => time.instant_at(t),
            None => tokio::time::Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => writer.fire(time.now()).await,
            _ = wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let policy = load_policy(&config)?;
    let time = TimeSource::new(jiff::Timestamp::now());
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let log_dir = config.data_dir.join("log");
    incident_bus::rebuild::refuse_if_rebuilding(&log_dir)?;
    let (log, (mut engine, last_input)) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let log = EventLog::open(&log_dir).with_context(|| {
                "the SLA log cannot be opened; if it is damaged, \
                 `incident-sla --rebuild-log-from-jetstream` writes a new one from the streams"
            })?;
            let state = rebuild(&log).with_context(|| {
                "the SLA log cannot be read; if it is damaged, \
                 `incident-sla --rebuild-log-from-jetstream` writes a new one from the streams"
            })?;
            Ok((log, state))
        })
        .await??;
    let activation = engine.activate(policy, time.now());
    tracing::info!(
        incidents = engine.incidents().count(),
        events = log.head().seq,
        policy = engine.active_policy().map(|p| p.hash()).unwrap_or_default(),
        "state rebuilt from the log"
    );
    let engine = Arc::new(Mutex::new(engine));

    let (stop_tx, stop_rx) = watch::channel(false);
    let (client, nats_up) = incident_bus::connect(
        &NatsOptions::new(&config.nats_url, "incident-sla").with_auth(&config.nats_auth),
    )
    .await
    .map_err(|e| anyhow::anyhow!("connecting to NATS: {e}"))?;
    let js = async_nats::jetstream::new(client.clone());
    let relay = Relay::new(log.clone(), js.clone(), streams::SLA_EVENTS, RELAY_CURSOR)
        .with_filter(writer::is_own_event);
    let relay_status = relay.status();
    let timer_wake = Arc::new(Notify::new());
    let writer = Arc::new(Writer::new(
        log.clone(),
        engine.clone(),
        relay.waker(),
        timer_wake.clone(),
    ));
    writer.set_last_input(last_input);
    // deadlines passed while the service was down wait for what arrived meanwhile
    writer.hold_timers();
    if let Some(env) = activation {
        writer
            .activate(env)
            .await
            .map_err(|e| anyhow::anyhow!("recording the policy version: {e}"))?;
    }

    let streams_ready = Arc::new(AtomicBool::new(false));
    let bus_task = {
        let streams_ready = streams_ready.clone();
        let stop = stop_rx.clone();
        let writer = writer.clone();
        let window = config.duplicate_window();
        let replicas = config.stream_replicas;
        tokio::spawn(async move {
            let mut failures = 0;
            loop {
                if *stop.borrow() {
                    return;
                }
                let mut ok = true;
                for spec in [
                    &streams::INCIDENT_EVENTS,
                    &streams::SLA_EVENTS,
                    &streams::INCIDENT_DEADLETTER,
                ] {
                    if let Err(e) =
                        incident_bus::ensure_stream_replicated(&js, spec, window, replicas).await
                    {
                        tracing::warn!(stream = spec.name, error = %e, "stream not ready; retrying");
                        ok = false;
                        break;
                    }
                }
                if ok {
                    break;
                }
                failures += 1;
                tokio::time::sleep(incident_bus::relay::backoff(failures)).await;
            }
            streams_ready.store(true, Ordering::SeqCst);
            match backlog_end(&js).await {
                Ok(end) => writer.catch_up_to(end),
                Err(e) => tracing::warn!(error = %e, "cannot tell the consumer's backlog"),
            }
            let relay_task = tokio::spawn(relay.run(stop.clone()));
            let spec = consumer_spec();
            consumer::run(
                js,
                spec,
                move |d| {
                    let writer = writer.clone();
                    async move { writer.on_delivery(d).await }
                },
                stop,
            )
            .await;
            let _ = relay_task.await;
        })
    };
    let timer_task = {
        let writer = writer.clone();
        let mut stop = stop_rx.clone();
        let wait = Duration::from_secs(config.catch_up_wait_secs);
        tokio::spawn(async move {
            tokio::select! {
                _ = writer.caught_up() => {}
                _ = tokio::time::sleep(wait) => {
                    tracing::warn!(waited_secs = wait.as_secs(), "incident events that arrived while stopped are not all in yet; firing due timers anyway");
                }
                _ = stop.changed() => return,
            }
            timer_loop(writer, time, timer_wake, stop).await
        })
    };

    let grpc_base = incident_runtime::grpc_base(&config.tls, config.tokens_file.as_deref())?;
    grpc_base
        .health
        .set_serving::<SlaServiceServer<grpc::SlaApi>>()
        .await;
    let shared = http::Shared {
        engine: engine.clone(),
        counters: writer.counters.clone(),
        relay: relay_status,
        nats_up,
        streams_ready,
        time,
        log: log.clone(),
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
            .add_service(incident_audit::service(log.clone(), "incident-sla"))
            .add_service(SlaServiceServer::new(grpc::SlaApi::new(engine, time)))
            .serve_with_incoming_shutdown(incident_runtime::grpc_incoming(grpc), async move {
                let _ = grpc_stop.changed().await;
            }),
    );

    shutdown.await;
    tracing::info!("stopping: no new input; finishing the one in flight");
    let _ = stop_tx.send(true);
    let _ = grpc_task.await;
    let _ = http_task.await;
    let _ = bus_task.await;
    let _ = timer_task.await;
    let flush = tokio::task::spawn_blocking(move || log.flush()).await?;
    flush.context("flushing the log")?;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
    tracing::info!("stopped cleanly");
    Ok(())
}

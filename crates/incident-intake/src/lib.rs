//! The intake service: takes incidents in over gRPC, decides every command against the state
//! rebuilt from its own event log (from its snapshot, see [`snapshot`], when it has one), writes
//! the events durably before answering, and relays the log to the `INCIDENT_EVENTS` stream. It
//! keeps taking commands while NATS is down.

pub mod config;
pub mod convert;
pub mod error;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod processor;
pub mod projection;
pub mod rebuild;
pub mod snapshot;
pub mod sources;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use incident_bus::consumer::{self, ConsumerSpec};
use incident_bus::{NatsOptions, Relay, streams};
use incident_domain::{PriorityMatrix, stored};
use incident_eventlog::{EventLog, Head};
use incident_proto::v1::intake_service_server::IntakeServiceServer;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

pub use config::Config;
use processor::Processor;
use projection::Projection;

/// The relay's cursor name in intake's log.
pub const RELAY_CURSOR: &str = "relay.INCIDENT_EVENTS";
/// The durable consumer of `incident.v1.intake`.
pub const NATS_INTAKE_DURABLE: &str = "incident-intake";

/// Handles one message from `incident.v1.intake`: invalid ones are dead-lettered with the
/// reason; ones that cannot be made durable now are redelivered.
async fn nats_intake(
    handle: &processor::Handle,
    state: &Arc<RwLock<Projection>>,
    d: incident_bus::Delivery,
) -> incident_bus::Handled {
    use incident_bus::Handled;
    let req = match sources::nats_message(&d.payload, &d.id) {
        Ok(r) => r,
        Err(e) => return Handled::Reject(e.errors.join("; ")),
    };
    match ingest::ingest(handle, state, req, "nats").await {
        Ok(_) => Handled::Done,
        Err(error::ServiceError::Rejected(e)) => Handled::Reject(e.to_string()),
        Err(e) => Handled::Retry(e.to_string()),
    }
}

/// Folds the whole log into the projection; a record that cannot be read stops the start.
pub fn rebuild(log: &EventLog) -> anyhow::Result<Projection> {
    let mut state = Projection::default();
    fold_after(&mut state, log, Head::GENESIS).map_err(FoldError::into_anyhow)?;
    Ok(state)
}

/// Why a fold stopped.
#[derive(Debug)]
pub(crate) enum FoldError {
    /// A record could not be read, or is not an event intake knows.
    Read(anyhow::Error),
    /// A record is an event, but does not fit the state it was folded into.
    History(anyhow::Error),
}

impl FoldError {
    pub(crate) fn into_anyhow(self) -> anyhow::Error {
        match self {
            FoldError::Read(e) | FoldError::History(e) => e,
        }
    }
}

impl From<incident_eventlog::LogError> for FoldError {
    fn from(e: incident_eventlog::LogError) -> Self {
        FoldError::Read(anyhow::Error::new(e).context("reading intake's log"))
    }
}

/// Folds the records after `after` (the state's last record, or [`Head::GENESIS`]) up to the
/// head into `state`, checking that they continue from it; returns how many it folded. Each
/// record is read from the record file and decoded straight into its event.
pub(crate) fn fold_after(
    state: &mut Projection,
    log: &EventLog,
    after: Head,
) -> Result<u64, FoldError> {
    log.visit_after(after, |rec| {
        let event = stored::decode_slice(rec.event).map_err(|e| {
            let what = match e {
                stored::ReadError::Envelope(_) => "not an event envelope",
                stored::ReadError::Decode(_) => "cannot be read",
            };
            FoldError::Read(
                anyhow::Error::new(e).context(format!("log record {}: {what}", rec.seq)),
            )
        })?;
        state
            .fold_in(&event)
            .with_context(|| format!("log record {}: does not fit the history", rec.seq))
            .map_err(FoldError::History)?;
        Ok(())
    })
}

/// Loads the state as configured: from the snapshot and the records after it (or the whole log)
/// when snapshots are on; the whole log, leaving any snapshot alone, when they are off.
fn load_state(
    log: &EventLog,
    snapshot_after: u64,
) -> anyhow::Result<(Projection, snapshot::Loaded)> {
    if snapshot_after > 0 {
        return snapshot::load(log);
    }
    let started = std::time::Instant::now();
    let state = rebuild(log)?;
    let folded = log.head().seq;
    Ok((
        state,
        snapshot::Loaded {
            snapshot_seq: None,
            folded,
            discarded: None,
            millis: started.elapsed().as_millis() as u64,
        },
    ))
}

/// Writes the snapshot at shutdown, when the state is the fold of the whole log; a failure is
/// logged, not fatal (the next start folds more). `current` is the seq of the snapshot the log
/// already holds, when known: one taken at the head is not written again.
fn shutdown_snapshot(log: &EventLog, state: &RwLock<Projection>, current: Option<u64>) {
    let started = std::time::Instant::now();
    let head = log.head();
    if current == Some(head.seq) {
        tracing::info!(seq = head.seq, "the snapshot is current; not written again");
        return;
    }
    let state = match state.read() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    // a durable event that failed to fold (logged when it happened) would make the state differ
    // from the log; such a state is not saved
    let events = state.events_folded();
    if events != head.seq {
        tracing::warn!(
            log_head = head.seq,
            events_in_state = events,
            "the state does not match the log; no snapshot written"
        );
        return;
    }
    match snapshot::save(log, &state, head) {
        Ok(bytes) => tracing::info!(
            seq = head.seq,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        ),
        Err(e) => tracing::warn!(error = %e, "no snapshot written at shutdown"),
    }
}

/// Runs intake on the given listeners until `shutdown` completes; then stops taking commands,
/// finishes the ones in flight, flushes the log, writes the snapshot of the state (unless
/// `SNAPSHOT_AFTER_EVENTS` is 0) and closes the NATS connection.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let matrix = match &config.priority_matrix_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            PriorityMatrix::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => PriorityMatrix::default(),
    };

    let sources = match &config.sources_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            sources::Sources::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("in {}: {e}", path.display()))?
        }
        None => sources::Sources::default(),
    };
    let sources = Arc::new(sources);
    if sources.auth.tokens.is_empty() {
        tracing::warn!("HTTP intake takes events without a token (no [auth] tokens configured)");
    }

    let log_dir = config.data_dir.join("log");
    incident_bus::rebuild::refuse_if_rebuilding(&log_dir)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let snapshot_after = config.snapshot_after_events;
    let (log, state, start_snapshot, loaded_snapshot) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let log = EventLog::open(&log_dir)?;
            let (state, loaded) = load_state(&log, snapshot_after)?;
            let head = log.head();
            tracing::info!(
                incidents = state.len(),
                log_head = head.seq,
                snapshot_seq = loaded.snapshot_seq,
                folded = loaded.folded,
                ms = loaded.millis,
                "state loaded {}",
                match loaded.snapshot_seq {
                    Some(_) => "from the snapshot and the records after it",
                    None => "by folding the whole log",
                }
            );
            // A start that had to fold many records leaves a snapshot for the next one. It is
            // encoded here, before the state is shared: nothing else reads or writes it yet, so it
            // is exactly the fold up to `head` and no command waits on a lock while it is encoded
            // (a fraction of the fold it saves). Writing it (checksum, sled, fsync) needs no state,
            // so that runs in the background while intake serves; shutdown waits for it, so it
            // never lands over the newer snapshot shutdown writes.
            let start_snapshot = if snapshot_after > 0 && loaded.folded >= snapshot_after {
                let started = std::time::Instant::now();
                let bytes = snapshot::encode(&state, head);
                tracing::info!(
                    seq = head.seq,
                    bytes = bytes.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "snapshot encoded; writing it in the background"
                );
                let log = log.clone();
                Some(tokio::task::spawn_blocking(move || {
                    let started = std::time::Instant::now();
                    match snapshot::write(&log, head, &bytes) {
                        Ok(()) => {
                            tracing::info!(
                                seq = head.seq,
                                ms = started.elapsed().as_millis() as u64,
                                "snapshot written"
                            );
                            Some(head.seq)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the start's snapshot was not written");
                            None
                        }
                    }
                }))
            } else {
                None
            };
            Ok((log, state, start_snapshot, loaded.snapshot_seq))
        })
        .await??;
    let state = Arc::new(RwLock::new(state));

    let (stop_tx, stop_rx) = watch::channel(false);
    let nats_opts =
        NatsOptions::new(&config.nats_url, "incident-intake").with_auth(&config.nats_auth);
    let (client, nats_up) = incident_bus::connect(&nats_opts)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to NATS: {e}"))?;
    let js = async_nats::jetstream::new(client.clone());
    let relay = Relay::new(
        log.clone(),
        js.clone(),
        streams::INCIDENT_EVENTS,
        RELAY_CURSOR,
    );
    let relay_status = relay.status();
    let metrics = Arc::new(metrics::Metrics::default());
    let (changes, _) = broadcast::channel(4096);
    let (handle, ordered, processor_task) = Processor::new(
        log.clone(),
        state.clone(),
        matrix,
        changes.clone(),
        relay.waker(),
        metrics.clone(),
    )
    .spawn(4096);

    let stream_ready = Arc::new(AtomicBool::new(false));
    let relay_task = {
        let stream_ready = stream_ready.clone();
        let stop = stop_rx.clone();
        let window = config.duplicate_window();
        let replicas = config.stream_replicas;
        // the subject's messages go through the ordered queue: they keep the stream's order
        let handle = ordered;
        let state = state.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            'ensure: loop {
                if *stop.borrow() {
                    return;
                }
                for spec in [
                    &streams::INCIDENT_EVENTS,
                    &streams::INCIDENT_INTAKE,
                    &streams::INCIDENT_DEADLETTER,
                ] {
                    if let Err(e) =
                        incident_bus::ensure_stream_replicated(&js, spec, window, replicas).await
                    {
                        failures += 1;
                        tracing::warn!(stream = spec.name, error = %e, "stream not ready; retrying");
                        tokio::time::sleep(incident_bus::relay::backoff(failures)).await;
                        continue 'ensure;
                    }
                }
                break;
            }
            stream_ready.store(true, Ordering::SeqCst);
            let relay = tokio::spawn(relay.run(stop.clone()));
            let mut spec = ConsumerSpec::new(streams::INCIDENT_INTAKE.name, NATS_INTAKE_DURABLE);
            // each handler submits to the processor on its first poll, in stream order, so the
            // order holds while up to a batch of messages waits for one group commit
            spec.concurrency = processor::MAX_BATCH;
            // one ack per run of recorded messages, not one each: the intake stream's
            // sequences reach this unfiltered consumer without holes (no deletes, no limits)
            spec.cumulative_ack = true;
            consumer::run(
                js,
                spec,
                move |d| {
                    let handle = handle.clone();
                    let state = state.clone();
                    async move { nats_intake(&handle, &state, d).await }
                },
                stop,
            )
            .await;
            let _ = relay.await;
        })
    };

    let grpc_base = incident_runtime::grpc_base(&config.tls, config.tokens_file.as_deref())?;
    grpc_base
        .health
        .set_serving::<IntakeServiceServer<grpc::IntakeApi>>()
        .await;
    let api = grpc::IntakeApi::new(handle.clone(), state.clone(), changes, stop_rx.clone());

    let shared = http::Shared {
        log: log.clone(),
        state: state.clone(),
        metrics,
        relay: relay_status,
        nats_up,
        stream_ready,
        handle,
        sources,
        grpc_metrics: grpc_base.metrics.clone(),
    };
    let http_task = incident_runtime::tls::spawn_http(
        http,
        http::router(shared),
        &config.tls,
        stop_rx.clone(),
    )?;

    let mut grpc_stop = stop_rx.clone();
    let grpc_server = grpc_base
        .router
        .add_service(incident_audit::service(log.clone(), "incident-intake"))
        .add_service(IntakeServiceServer::new(api).max_decoding_message_size(1024 * 1024))
        .serve_with_incoming_shutdown(incident_runtime::grpc_incoming(grpc), async move {
            let _ = grpc_stop.changed().await;
        });
    let grpc_task = tokio::spawn(grpc_server);

    shutdown.await;
    tracing::info!("stopping: no new commands; finishing those in flight");
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = grpc_task.await {
        tracing::warn!(error = %e, "gRPC server ended with an error");
    }
    // The gRPC server held the last handles to the processor: it now drains and flushes.
    let _ = processor_task.await;
    let _ = http_task.await;
    let _ = relay_task.await;
    let flush = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || log.flush()).await?
    };
    flush.context("flushing the log")?;
    // the snapshot the log holds now: the one the start wrote, or the one it loaded
    let current_snapshot = match start_snapshot {
        Some(task) => task.await.ok().flatten(),
        None => loaded_snapshot,
    };
    if snapshot_after > 0 {
        // The processor, the only writer, has drained and applies only what is durable: the
        // state is the fold of the log up to its head.
        tokio::task::spawn_blocking(move || shutdown_snapshot(&log, &state, current_snapshot))
            .await?;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.drain()).await;
    tracing::info!("stopped cleanly");
    Ok(())
}

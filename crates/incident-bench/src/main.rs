//! `incident-bench`: measures the stack against its raw building blocks in the same run, on the
//! same machine, and prints one JSON object on its last line. Figures are ratios because the
//! machines are shared and noisy; the absolute numbers are there to read the ratios by.
//!
//! - `nats_intake_per_s` (incidents published on `incident.v1.intake` until their events are on
//!   `INCIDENT_EVENTS`) against `jetstream_publish_per_s` (pipelined JetStream publishes of
//!   messages of the same size) -> `nats_intake_ratio`;
//! - `sla_catch_up_per_s` (a fresh `incident-sla` recording the INCIDENT_EVENTS the intake
//!   subject's part left) against `jetstream_consume_per_s` (a plain pull consumer acking the
//!   same messages) -> `sla_catch_up_ratio`;
//! - `grpc_open_per_s` (OpenIncident, 32 concurrent clients, durable on answer) against
//!   `grpc_unary_baseline_per_s` (grpc.health.v1 Check, the same clients) -> `grpc_open_ratio`;
//!   each of these two pairs is measured in four alternating slices (raw, then ours, four
//!   times), so a change in the host's load during the run weighs on both sides of the ratio;
//! - `rebuild_per_s` (intake's start-up fold of an N-event log: incidents of five events each,
//!   opened to closed, a thousand in flight at a time) against `raw_read_per_s` (record file read,
//!   record decode and envelope parse of the same records) -> `rebuild_ratio`; both are measured
//!   in three alternating slices (raw, then the fold, three times), as the gRPC pairs are;
//! - on that same log, the real `incident-intake` binary's time to ready (start -> `/readyz`
//!   200): `ready_full_fold_ms` (no snapshot, the whole log folded), then SIGTERM, which writes
//!   the snapshot (`stop_with_snapshot_ms` SIGTERM to exit, `snapshot_save_ms` the service's own
//!   encode and write of it, `snapshot_bytes`), then `ready_from_snapshot_ms` (start again)
//!   -> `snapshot_ready_speedup` = full / from snapshot; `full_fold_load_ms` and
//!   `snapshot_load_ms` are the service's own time to load its state in each start (from its
//!   log), the rest of the time to ready is the process start, opening the log and NATS;
//!   `snapshot_encode_ms` and `snapshot_decode_ms` are the codec alone on the folded state, in
//!   this process; `ready_full_fold_and_snapshot_ms` is a start with default settings and no
//!   snapshot (after an upgrade): the whole log folded (`full_fold_and_snapshot_load_ms`) and a
//!   snapshot encoded before serving (`start_snapshot_encode_ms`);
//! - with the intake and gRPC figures, the CPU each process used per item while they ran
//!   (`jetstream_publish_cpu_us`, `nats_intake_cpu_us`, `grpc_unary_baseline_cpu_us`,
//!   `grpc_open_cpu_us`: microseconds of user and system time per message, incident or call,
//!   for `nats_server`, `intake` and the `bench` client), from /proc: what bounds a rate on a
//!   machine whose cores are all busy;
//! - `e2e_p99_ms`: open (gRPC) -> webhook received at a local receiver, through intake,
//!   JetStream and the notifier, at `e2e_rate` incidents per second;
//! - `timer_late_p99_ms`: how late breaches fire while `clocks` clocks run, against
//!   `timer_raw_late_p99_ms`: how late plain tokio timers due at the same instants wake, in
//!   the same process and run (what the host and the runtime alone cost a deadline);
//! - `clocks_rss_mib`: memory of the SLA engine holding `clocks` running clocks (`clocks_1m_rss_mib`
//!   scaled to one million when fewer were measured, and says so).

/// The services' allocator: the folds and the SLA engine measured in this process allocate as
/// they do in the services.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use incident_domain::{
    Envelope, EventKind, Impact, IncidentEvent, IncidentId, Priority, Source, Urgency, stored,
};
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent};
use incident_proto::v1 as pb;
use incident_testkit::{NatsServer, ServiceProcess};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "incident-bench",
    about = "Measures the stack against its raw building blocks"
)]
struct Args {
    /// Smaller sizes: finishes in a few minutes on two cores.
    #[arg(long)]
    quick: bool,
    /// Tiny sizes, to check that every measurement runs (the figures mean nothing).
    #[arg(long, hide = true)]
    smoke: bool,
    /// Overrides how many messages the intake measurement publishes.
    #[arg(long, hide = true)]
    publishes: Option<usize>,
    /// Only the JSON object (still on the last line).
    #[arg(long)]
    json: bool,
    /// Runs one part only (intake, grpc, e2e, rebuild or timers), to iterate on it; the other
    /// figures are left out.
    #[arg(long, hide = true)]
    only: Option<String>,
}

struct Sizes {
    e2e_secs: u64,
    publishes: usize,
    grpc_secs: u64,
    log_events: usize,
    clocks: usize,
    breaches: usize,
}

fn log(args: &Args, msg: impl AsRef<str>) {
    if !args.json {
        eprintln!("{}", msg.as_ref());
    }
}

fn opened(i: usize, at: jiff::Timestamp) -> IncidentEvent {
    IncidentEvent {
        incident_id: IncidentId::from_uuid_bytes(*uuid::Uuid::now_v7().as_bytes()),
        at,
        actor: "bench".into(),
        kind: EventKind::Opened {
            title: format!("Synthetic incident {i}: checkout latency above target"),
            description: "Customers see slow pages; generated by incident-bench".into(),
            service: format!("service-{}", i % 50),
            group: format!("group-{}", i % 10),
            impact: Impact::High,
            urgency: Urgency::High,
            priority: Priority::P1,
            dedup_key: None,
            request_id: None,
            source: Source::person(),
        },
    }
}

fn intake_message(i: usize) -> Vec<u8> {
    json!({
        "title": format!("Synthetic incident {i}: checkout latency above target"),
        "service": format!("service-{}", i % 50),
        "impact": "high",
        "urgency": "medium",
        "description": "Customers see slow pages; generated by incident-bench",
    })
    .to_string()
    .into_bytes()
}

/// Publishes waiting for their acks at most this far behind (the client limits acks in flight).
const PIPELINE: usize = 1024;

/// CPU seconds (user and system) process `pid` has used so far; `None` where /proc cannot say.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the fields after the command name, which is in parentheses and may hold spaces
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, in clock ticks (USER_HZ, 100 on Linux)
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU used by named processes while a part runs, in microseconds per item.
struct CpuMeter {
    procs: Vec<(&'static str, u32, Option<f64>)>,
}

impl CpuMeter {
    fn start(procs: &[(&'static str, Option<u32>)]) -> Self {
        CpuMeter {
            procs: procs
                .iter()
                .filter_map(|(name, pid)| pid.map(|p| (*name, p, cpu_seconds(p))))
                .collect(),
        }
    }

    /// CPU seconds each process spent since `start`.
    fn spent(&self) -> Vec<(&'static str, f64)> {
        self.procs
            .iter()
            .filter_map(|(name, pid, before)| {
                let (b, a) = ((*before)?, cpu_seconds(*pid)?);
                Some((*name, a - b))
            })
            .collect()
    }
}

/// CPU seconds by process, summed over several [`CpuMeter`]s.
#[derive(Default)]
struct CpuTotals(std::collections::BTreeMap<&'static str, f64>);

impl CpuTotals {
    fn add(&mut self, meter: &CpuMeter) {
        for (name, secs) in meter.spent() {
            *self.0.entry(name).or_default() += secs;
        }
    }

    fn per_item_us(&self, items: usize) -> Value {
        let out: serde_json::Map<String, Value> = self
            .0
            .iter()
            .map(|(name, secs)| {
                (
                    (*name).to_owned(),
                    json!((secs * 1e6 / items.max(1) as f64).round()),
                )
            })
            .collect();
        Value::Object(out)
    }
}

async fn jetstream_publish(nats: &NatsServer, n: usize, size: usize) -> anyhow::Result<f64> {
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    let mut acks = std::collections::VecDeque::with_capacity(PIPELINE);
    for i in 0..n {
        if acks.len() == PIPELINE
            && let Some(a) = acks.pop_front()
        {
            a.await?;
        }
        acks.push_back(
            js.publish(format!("bench.{}", i % 1000), payload.clone())
                .await?,
        );
    }
    for a in acks {
        a.await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn nats_intake(nats: &NatsServer, intake: &ServiceProcess, n: usize) -> anyhow::Result<f64> {
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    for _ in 0..100 {
        if js.get_stream("INCIDENT_INTAKE").await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut events = js.get_stream("INCIDENT_EVENTS").await?;
    let before = events.info().await?.state.messages;
    let _ = intake;
    let started = Instant::now();
    let mut acks = std::collections::VecDeque::with_capacity(PIPELINE);
    for i in 0..n {
        if acks.len() == PIPELINE
            && let Some(a) = acks.pop_front()
        {
            a.await?;
        }
        acks.push_back(
            js.publish("incident.v1.intake", intake_message(i).into())
                .await?,
        );
    }
    for a in acks {
        a.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let now = events.info().await?.state.messages;
        if now >= before + n as u64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "intake did not keep up: {} of {n}",
            now - before
        );
        // fine-grained: each of the slices ends here, and the wait must not weigh on its rate
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Calls made by 32 concurrent clients in `run_for`, and the seconds they took.
async fn grpc_calls<F, Fut>(url: &str, run_for: Duration, call: F) -> anyhow::Result<(u64, f64)>
where
    F: Fn(tonic::transport::Channel, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect()
        .await?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..32u64 {
        let (call, ch, done, stop) = (call.clone(), channel.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                call(ch.clone(), c * 1_000_000 + i).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await??;
    }
    Ok((done.load(Ordering::Relaxed), elapsed))
}

/// What the rebuild part measures in this process.
struct Rebuild {
    raw_per_s: f64,
    fold_per_s: f64,
    encode_ms: f64,
    decode_ms: f64,
    snapshot_bytes: usize,
}

/// How many times the rebuild part reads and folds the log, alternating.
const REBUILD_SLICES: usize = 3;

/// How many events each incident of the rebuild log has: opened, acknowledged, commented,
/// resolved, closed.
const LIFECYCLE: usize = 5;

/// Event `step` of incident `i`'s lifecycle (see [`LIFECYCLE`]), `step` minutes after it opened.
fn lifecycle_event(i: usize, id: &IncidentId, step: usize, at: jiff::Timestamp) -> IncidentEvent {
    let mut e = opened(i, at);
    e.incident_id = id.clone();
    e.at = at + jiff::SignedDuration::from_mins(step as i64);
    e.kind = match step {
        0 => e.kind,
        1 => EventKind::Acknowledged,
        2 => EventKind::Commented {
            text: "Rolled back the last deploy; watching the error rate".into(),
        },
        3 => EventKind::Resolved {
            note: Some("Error rate back to normal after the rollback".into()),
        },
        _ => EventKind::Closed,
    };
    e
}

/// Writes a log of `n` events at `path`: incidents of [`LIFECYCLE`] events each, a thousand
/// incidents in flight at a time, so one incident's events are spread over the log as they are
/// in a real one. The relay cursor is set to its end, as if all of it were on the stream already.
/// Then measures the raw read, the fold, and the snapshot codec.
fn rebuild(n: usize, path: &std::path::Path) -> anyhow::Result<Rebuild> {
    let incidents = n / LIFECYCLE;
    anyhow::ensure!(
        incidents * LIFECYCLE == n,
        "the log size must be a multiple of {LIFECYCLE}"
    );
    {
        let log = EventLog::open(path)?;
        let at = jiff::Timestamp::now();
        let mut first = 0;
        while first < incidents {
            let window: Vec<(usize, IncidentId)> = (first..incidents.min(first + 1000))
                .map(|i| {
                    (
                        i,
                        IncidentId::from_uuid_bytes(*uuid::Uuid::now_v7().as_bytes()),
                    )
                })
                .collect();
            for step in 0..LIFECYCLE {
                let batch = window
                    .iter()
                    .map(|(i, incident)| {
                        let e = lifecycle_event(*i, incident, step, at);
                        let id = uuid::Uuid::now_v7().to_string();
                        AppendRequest {
                            stream: incident.to_string(),
                            expected: ExpectedVersion::Exact(step as u64),
                            events: vec![NewEvent {
                                bytes: stored::encode(&e, &id).to_canonical_bytes(),
                                id,
                            }],
                            processed: vec![],
                        }
                    })
                    .collect();
                for r in log.append_batch(batch) {
                    r?;
                }
            }
            first += window.len();
        }
        // the service measured below would otherwise publish the whole log while starting
        log.set_cursor(incident_intake::RELAY_CURSOR, log.head().seq)?;
        log.flush()?;
    }
    // the raw building block: read the record file front to back, decode each record, parse
    // its envelope
    let raw_read = || -> anyhow::Result<Duration> {
        use std::io::Read;
        let started = Instant::now();
        let file = std::fs::File::open(path.join(incident_eventlog::layout::RECORD_FILE))?;
        let mut file = std::io::BufReader::with_capacity(1 << 20, file);
        let mut value = Vec::new();
        let mut count = 0usize;
        let mut len = [0u8; incident_eventlog::layout::FRAME_HEADER_LEN];
        while count < n {
            file.read_exact(&mut len)?;
            value.resize(u32::from_be_bytes(len) as usize, 0);
            file.read_exact(&mut value)?;
            let rec = incident_eventlog::layout::decode_record_ref(count as u64 + 1, &value)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let env = Envelope::from_slice(rec.event)?;
            std::hint::black_box(env);
            count += 1;
        }
        anyhow::ensure!(count == n, "raw read saw {count} of {n}");
        Ok(started.elapsed())
    };
    let log = EventLog::open(path)?;
    let fold = || -> anyhow::Result<(Duration, incident_intake::projection::Projection)> {
        let started = Instant::now();
        let state = incident_intake::rebuild(&log)?;
        let took = started.elapsed();
        anyhow::ensure!(
            state.len() == incidents,
            "fold saw {} of {incidents} incidents",
            state.len()
        );
        Ok((took, state))
    };
    // alternating slices (raw, then the fold, three times): a change in the host's load during
    // the run weighs on both sides of the ratio
    let (mut raw_took, mut fold_took, mut state) = (Duration::ZERO, Duration::ZERO, None);
    for _ in 0..REBUILD_SLICES {
        raw_took += raw_read()?;
        // the state of the slice before is dropped first: each fold starts from nothing
        drop(state.take());
        let (took, folded) = fold()?;
        fold_took += took;
        state = Some(folded);
    }
    let state = state.context("no fold ran")?;
    let slices = (n * REBUILD_SLICES) as f64;
    let (raw, fold) = (
        slices / raw_took.as_secs_f64(),
        slices / fold_took.as_secs_f64(),
    );
    let started = Instant::now();
    let bytes = incident_intake::snapshot::encode(&state, log.head());
    let encode_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let decoded = incident_intake::snapshot::decode(&bytes)?;
    let decode_ms = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(decoded.state == state, "the snapshot did not round-trip");
    Ok(Rebuild {
        raw_per_s: raw,
        fold_per_s: fold,
        encode_ms,
        decode_ms,
        snapshot_bytes: bytes.len(),
    })
}

/// Starts intake on `data` and returns it with the time from spawning it to `/readyz` 200.
async fn start_until_ready(
    nats: &NatsServer,
    data: &std::path::Path,
    env: &[(&str, String)],
    log_file: &std::path::Path,
) -> anyhow::Result<(ServiceProcess, f64)> {
    let mut vars = vec![
        ("NATS_URL", nats.url()),
        ("DATA_DIR", data.display().to_string()),
        ("LOG_FORMAT", "json".into()),
    ];
    vars.extend(env.iter().cloned());
    let started = Instant::now();
    let intake = ServiceProcess::spawn("incident-intake", &vars, log_file);
    let addr = intake.listening.http;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if readyz_ok(addr).await {
            return Ok((intake, started.elapsed().as_secs_f64() * 1000.0));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "intake not ready after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether `GET /readyz` at `addr` answers 200 within two seconds (one HTTP/1.0 request: the
/// bench needs no HTTP client for it).
async fn readyz_ok(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(b"GET /readyz HTTP/1.0\r\nHost: bench\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await?;
        std::io::Result::Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ask).await,
        Ok(Ok(true))
    )
}

/// The fields of the first JSON log line of `intake` whose message is `message`.
fn logged(intake: &ServiceProcess, message: &str) -> Option<Value> {
    intake
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == message)
        .map(|v| v["fields"].clone())
}

/// The time to ready of the `incident-intake` binary on the log in `data` (`n` events): with no
/// snapshot, then from the snapshot its clean stop wrote.
async fn ready_figures(
    args: &Args,
    data: &std::path::Path,
    n: usize,
    out: &mut Value,
) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let logs = data.parent().context("data dir has a parent")?;
    // Warm-up, not measured: the first open of the log the bench just wrote is much slower
    // than later ones (about 7 s against 3 s at 1M: sled settles the freshly written log), and
    // that would inflate the full fold against the snapshot. Snapshots off: it writes none.
    log(args, "time to ready: a first start to settle the log");
    let (mut intake, _) = start_until_ready(
        &nats,
        data,
        &[("SNAPSHOT_AFTER_EVENTS", "0".into())],
        &logs.join("intake.0.log"),
    )
    .await?;
    let status = intake.terminate(Duration::from_secs(600));
    anyhow::ensure!(
        status.is_some_and(|s| s.success()),
        "the warm-up start did not stop cleanly: {status:?}"
    );
    log(args, "time to ready: incident-intake, whole log");
    // above N, so this start writes no snapshot of its own and only the stop's is measured
    let no_start_snapshot = [("SNAPSHOT_AFTER_EVENTS", (n + 1).to_string())];
    let (mut intake, full_ms) =
        start_until_ready(&nats, data, &no_start_snapshot, &logs.join("intake.1.log")).await?;
    let loaded = logged(&intake, "state loaded by folding the whole log")
        .context("the first start did not fold the whole log")?;
    anyhow::ensure!(loaded["folded"] == n, "the first start folded {loaded}");
    let full_load_ms = loaded["ms"].clone();
    let started = Instant::now();
    let status = intake.terminate(Duration::from_secs(600));
    let stop_ms = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        status.is_some_and(|s| s.success()),
        "intake did not stop cleanly: {status:?}"
    );
    let saved = logged(&intake, "snapshot written").context("no snapshot written at stop")?;

    log(args, "time to ready: incident-intake, from the snapshot");
    let (mut intake, snap_ms) =
        start_until_ready(&nats, data, &[], &logs.join("intake.2.log")).await?;
    let loaded = logged(
        &intake,
        "state loaded from the snapshot and the records after it",
    )
    .context("the second start did not use the snapshot")?;
    anyhow::ensure!(
        loaded["snapshot_seq"] == n && loaded["folded"] == 0,
        "the second start: {loaded}"
    );
    let snap_load_ms = loaded["ms"].clone();
    let _ = intake.terminate(Duration::from_secs(600));

    // the start after an upgrade: the whole log folded, and a snapshot encoded before serving
    // (written in the background); the threshold is the default's, or the log's size when that
    // is smaller (the smoke test's tiny log)
    log(
        args,
        "time to ready: incident-intake, whole log, snapshot at start",
    );
    incident_intake::snapshot::discard(&EventLog::open(&data.join("log"))?)?;
    let threshold = [("SNAPSHOT_AFTER_EVENTS", n.min(100_000).to_string())];
    let (mut intake, with_start_snapshot_ms) =
        start_until_ready(&nats, data, &threshold, &logs.join("intake.3.log")).await?;
    let encoded = logged(&intake, "snapshot encoded; writing it in the background")
        .context("the third start encoded no snapshot")?;
    let third_load_ms = logged(&intake, "state loaded by folding the whole log")
        .context("the third start did not fold the whole log")?["ms"]
        .clone();
    let _ = intake.terminate(Duration::from_secs(600));
    out["ready_full_fold_and_snapshot_ms"] = json!(with_start_snapshot_ms.round());
    out["full_fold_and_snapshot_load_ms"] = third_load_ms;
    out["start_snapshot_encode_ms"] = encoded["ms"].clone();

    out["full_fold_load_ms"] = full_load_ms;
    out["snapshot_load_ms"] = snap_load_ms;
    out["ready_full_fold_ms"] = json!(full_ms.round());
    out["stop_with_snapshot_ms"] = json!(stop_ms.round());
    out["snapshot_save_ms"] = saved["ms"].clone();
    out["ready_from_snapshot_ms"] = json!(snap_ms.round());
    out["snapshot_ready_speedup"] = json!(full_ms / snap_ms);
    Ok(())
}

/// Opens `rate` incidents a second for `secs` through intake and measures until the notifier's
/// webhook for each reaches a local receiver; returns (p50, p99, delivered, sent).
struct E2e {
    p50: f64,
    p99: f64,
    delivered: usize,
    sent: usize,
    /// p50/p99 of each stage, from the events' own instants.
    stages: Value,
    /// The first incident's round trip, right after the services started.
    warmup_ms: f64,
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        v.get(((v.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    (pct(0.5), pct(0.99))
}

/// Every message of `stream` with the instant the server stored it (ms since the epoch).
async fn stored_with_times(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> anyhow::Result<Vec<(f64, Envelope)>> {
    let mut out = Vec::new();
    let mut handle = js.get_stream(stream).await?;
    let last = handle.info().await?.state.last_sequence;
    if last == 0 {
        return Ok(out);
    }
    let consumer = handle
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(msg) = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut messages),
    )
    .await?
    {
        let msg = msg?;
        let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let at = info.published.unix_timestamp_nanos() as f64 / 1e6;
        let seq = info.stream_sequence;
        if let Ok(env) = Envelope::from_slice(&msg.payload) {
            out.push((at, env));
        }
        if seq >= last {
            break;
        }
    }
    Ok(out)
}

fn ms(t: jiff::Timestamp) -> f64 {
    t.as_nanosecond() as f64 / 1e6
}

async fn e2e(rate: u64, secs: u64) -> anyhow::Result<E2e> {
    use std::collections::HashMap;
    // a fresh stack, so no backlog from the other measurements is in the way
    let nats = NatsServer::start();
    let stack = tempfile::tempdir()?;
    let intake = ServiceProcess::spawn(
        "incident-intake",
        &[
            ("NATS_URL", nats.url()),
            (
                "DATA_DIR",
                stack.path().join("intake").display().to_string(),
            ),
            ("RUST_LOG", "warn".into()),
        ],
        &stack.path().join("intake.log"),
    );
    let intake_url = intake.grpc_url();
    use std::sync::Mutex;
    let received: Arc<Mutex<HashMap<String, (Instant, jiff::Timestamp)>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    let now = (Instant::now(), jiff::Timestamp::now());
                    if let Ok(v) = serde_json::from_slice::<Value>(&body)
                        && let Some(title) = v["incident"]["title"].as_str()
                        && let Ok(mut r) = received.lock()
                    {
                        r.entry(title.to_owned()).or_insert(now);
                    }
                    "ok"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir()?;
    let routes = dir.path().join("routes.toml");
    std::fs::write(
        &routes,
        format!(
            "[[channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{hook}\"\n\n\
             [[routes]]\nname = \"p1\"\npriorities = [\"P1\"]\nevents = [\"incident.opened\"]\nchannels = [\"hook\"]\n"
        ),
    )?;
    let data = dir.path().join("notifier");
    let _notifier = ServiceProcess::spawn(
        "incident-notifier",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", data.display().to_string()),
            ("ROUTES_FILE", routes.display().to_string()),
            ("RUST_LOG", "warn".into()),
        ],
        &dir.path().join("notifier.log"),
    );
    let channel = tonic::transport::Endpoint::from_shared(intake_url)?
        .connect()
        .await?;
    // one round trip first: the measurement starts once the whole path is up (consumers
    // created, connections open), not while the services are still starting
    let warm_started = Instant::now();
    incident_proto::v1::intake_service_client::IntakeServiceClient::new(channel.clone())
        .open_incident(pb::OpenIncidentRequest {
            title: "e2e warm-up".into(),
            service: "bench".into(),
            impact: pb::Impact::High as i32,
            urgency: pb::Urgency::High as i32,
            ..Default::default()
        })
        .await?;
    let warm = Instant::now() + Duration::from_secs(60);
    while !received
        .lock()
        .map(|r| r.contains_key("e2e warm-up"))
        .unwrap_or(false)
    {
        anyhow::ensure!(
            Instant::now() < warm,
            "the warm-up incident never reached the webhook"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let warmup_ms = warm_started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(mut r) = received.lock() {
        r.clear();
    }
    let mut sent: HashMap<String, (Instant, jiff::Timestamp)> = HashMap::new();
    let total = (rate * secs) as usize;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let title = format!("e2e {i}");
        sent.insert(title.clone(), (Instant::now(), jiff::Timestamp::now()));
        let mut client =
            incident_proto::v1::intake_service_client::IntakeServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            client
                .open_incident(pb::OpenIncidentRequest {
                    title,
                    service: "bench".into(),
                    impact: pb::Impact::High as i32,
                    urgency: pb::Urgency::High as i32,
                    ..Default::default()
                })
                .await
                .map(|_| ())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.lock().map(|r| r.len()).unwrap_or(0) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = received.lock().map(|r| r.clone()).unwrap_or_default();
    let lat: Vec<f64> = received
        .iter()
        .filter_map(|(t, (at, _))| {
            sent.get(t)
                .map(|(s, _)| at.duration_since(*s).as_secs_f64() * 1000.0)
        })
        .collect();
    let (p50, p99) = percentiles(lat);

    // where the time goes: the instants the events carry and the server stored them at
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let mut titles: HashMap<String, String> = HashMap::new();
    let mut decided = HashMap::new();
    let mut on_stream = HashMap::new();
    for (at, env) in stored_with_times(&js, "INCIDENT_EVENTS").await? {
        if env.ty == "incident.opened.v1"
            && let Some(title) = env.data["title"].as_str()
        {
            titles.insert(env.subject.clone(), title.to_owned());
            decided.insert(env.subject.clone(), ms(env.time));
            on_stream.insert(env.subject.clone(), at);
        }
    }
    let mut queued = HashMap::new();
    for (_, env) in stored_with_times(&js, "NOTIFY_EVENTS").await? {
        if env.ty == "notification.queued.v1" {
            queued.entry(env.subject.clone()).or_insert(ms(env.time));
        }
    }
    let mut stages: [Vec<f64>; 4] = Default::default();
    for (id, title) in &titles {
        let (Some((_, sent_at)), Some((_, got_at)), Some(d), Some(p), Some(q)) = (
            sent.get(title),
            received.get(title),
            decided.get(id),
            on_stream.get(id),
            queued.get(id),
        ) else {
            continue;
        };
        stages[0].push(d - ms(*sent_at));
        stages[1].push(p - d);
        stages[2].push(q - p);
        stages[3].push(ms(*got_at) - q);
    }
    let names = [
        "sent_to_decided",
        "decided_to_stream",
        "stream_to_queued",
        "queued_to_webhook",
    ];
    let mut by_stage = serde_json::Map::new();
    for (name, v) in names.iter().zip(stages) {
        let (a, b) = percentiles(v);
        by_stage.insert(
            (*name).to_owned(),
            json!({"p50": (a * 10.0).round() / 10.0, "p99": (b * 10.0).round() / 10.0}),
        );
    }
    Ok(E2e {
        p50,
        p99,
        delivered: received.len(),
        sent: total,
        stages: Value::Object(by_stage),
        warmup_ms,
    })
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

const TIMER_POLICY: &str = r#"
[[policies]]
name = "bench"
calendar = "24x7"
warn_at = []
pause_on = ["on_hold"]
[policies.response]
P1 = "1h"
P2 = "3s"
[policies.resolution]
P1 = "8h"
P2 = "8h"
"#;

/// What the timer part measures.
struct Timers {
    /// Lateness of the breaches, p99 and max, in ms.
    late_p99_ms: f64,
    late_max_ms: f64,
    /// Lateness of plain tokio timers due at the same instants, in the same process and run.
    raw_late_p99_ms: f64,
    /// Memory of the clocks.
    rss_mib: f64,
}

/// Runs `clocks` clocks in the SLA engine with `breaches` of them breaching within a few
/// seconds, and beside each breaching clock a plain tokio timer due at the same instant (the
/// raw building block: what the host and the runtime alone make of a deadline).
async fn timers(clocks: usize, breaches: usize) -> anyhow::Result<Timers> {
    use incident_sla_timer::{engine::Engine, timesource::TimeSource, writer::Writer};
    let dir = tempfile::tempdir()?;
    let log = EventLog::open(dir.path())?;
    let mut engine = Engine::default();
    let now = jiff::Timestamp::now();
    let time = TimeSource::new(now);
    let _ = engine.activate(incident_sla::PolicySet::from_toml(TIMER_POLICY)?, now);
    let rss_before = rss_mib();
    for i in 0..clocks {
        let mut e = opened(i, now);
        if let EventKind::Opened { priority, .. } = &mut e.kind {
            *priority = Priority::P1;
        }
        let env = stored::encode(&e, &uuid::Uuid::now_v7().to_string());
        engine.on_incident_event(&env, now)?;
    }
    let rss = rss_mib() - rss_before;
    // the breaching ones: P2 (3 s response), opened over the next two seconds
    let engine = Arc::new(std::sync::Mutex::new(engine));
    let timer_wake = Arc::new(tokio::sync::Notify::new());
    let writer = Arc::new(Writer::new(
        log.clone(),
        engine.clone(),
        Arc::new(tokio::sync::Notify::new()),
        timer_wake.clone(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(incident_sla_timer::timer_loop(
        writer.clone(),
        time,
        timer_wake,
        stop_rx,
    ));
    let mut raw = Vec::with_capacity(breaches);
    for i in 0..breaches {
        let at = time.now();
        let due = tokio::time::Instant::now() + BREACH_AFTER;
        raw.push(tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            due.elapsed().as_secs_f64() * 1000.0
        }));
        let mut e = opened(clocks + i, at);
        if let EventKind::Opened {
            priority, urgency, ..
        } = &mut e.kind
        {
            *priority = Priority::P2;
            *urgency = Urgency::Medium;
        }
        let env = stored::encode(&e, &uuid::Uuid::now_v7().to_string());
        let d = incident_bus_delivery(&env);
        writer.on_delivery(d).await;
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let late: Vec<f64> = loop {
        let late: Vec<f64> = log
            .read_from(1)
            .filter_map(Result::ok)
            .filter_map(|r| Envelope::from_slice(&r.event).ok())
            .filter(|e| e.ty == "sla.breached.v1")
            .filter_map(|e| e.data["late_ms"].as_f64())
            .collect();
        if late.len() >= breaches || Instant::now() > deadline {
            break late;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = stop_tx.send(true);
    let _ = task.await;
    anyhow::ensure!(
        late.len() == breaches,
        "{} of {breaches} breaches fired",
        late.len()
    );
    let mut raw_late = Vec::with_capacity(raw.len());
    for r in raw {
        raw_late.push(r.await?);
    }
    let late_max_ms = late.iter().copied().fold(0.0, f64::max);
    Ok(Timers {
        late_p99_ms: percentiles(late).1,
        late_max_ms,
        raw_late_p99_ms: percentiles(raw_late).1,
        rss_mib: rss,
    })
}

/// How long after its open a breaching clock of [`TIMER_POLICY`] is due (its P2 response).
const BREACH_AFTER: Duration = Duration::from_secs(3);

fn incident_bus_delivery(env: &Envelope) -> incident_bus::Delivery {
    incident_bus::Delivery {
        id: env.id.clone(),
        subject: format!("incident.v1.events.{}", env.subject),
        payload: env.to_canonical_bytes().into(),
        headers: None,
        stream_sequence: 0,
        delivered: 1,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes = if args.smoke {
        Sizes {
            e2e_secs: 1,
            publishes: 200,
            grpc_secs: 1,
            log_events: 2_000,
            clocks: 2_000,
            breaches: 20,
        }
    } else if args.quick {
        Sizes {
            e2e_secs: 5,
            publishes: 20_000,
            grpc_secs: 5,
            log_events: 200_000,
            clocks: 100_000,
            breaches: 500,
        }
    } else {
        Sizes {
            e2e_secs: 20,
            publishes: 100_000,
            grpc_secs: 15,
            log_events: 1_000_000,
            clocks: 1_000_000,
            breaches: 2_000,
        }
    };
    let sizes = Sizes {
        publishes: args.publishes.unwrap_or(sizes.publishes),
        ..sizes
    };
    let machine = json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "quick": args.quick,
    });
    let mut out = json!({"machine": machine});
    let only = args.only.as_deref();
    let known = ["intake", "grpc", "e2e", "rebuild", "timers"];
    if let Some(part) = only {
        anyhow::ensure!(
            known.contains(&part),
            "--only {part}: the parts are {}",
            known.join(", ")
        );
    }
    let runs = |part: &str| only.is_none_or(|o| o == part);

    if runs("intake") || runs("grpc") {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("intake");
        let intake = ServiceProcess::spawn(
            "incident-intake",
            &[
                ("NATS_URL", nats.url()),
                ("DATA_DIR", data.display().to_string()),
                ("RUST_LOG", "warn".into()),
            ],
            &dir.path().join("intake.log"),
        );
        if runs("intake") {
            intake_figures(&args, &sizes, &nats, &intake, &mut out).await?;
            // before the gRPC part, which the SLA timer would otherwise share the cores with
            sla_figures(&args, &nats, &mut out).await?;
        }
        if runs("grpc") {
            grpc_figures(&args, &sizes, &nats, &intake, &mut out).await?;
        }
    }
    if runs("e2e") {
        settle_disk();
        log(
            &args,
            format!("e2e: open -> webhook at 500/s for {} s", sizes.e2e_secs),
        );
        let e2e = e2e(500, sizes.e2e_secs).await?;
        out["e2e_rate"] = json!(500);
        out["e2e_p50_ms"] = json!((e2e.p50 * 10.0).round() / 10.0);
        out["e2e_p99_ms"] = json!((e2e.p99 * 10.0).round() / 10.0);
        out["e2e_delivered"] = json!(e2e.delivered);
        out["e2e_sent"] = json!(e2e.sent);
        out["e2e_stages_ms"] = e2e.stages;
        out["e2e_warmup_ms"] = json!(e2e.warmup_ms.round());
    }
    if runs("rebuild") {
        settle_disk();
        log(
            &args,
            format!("rebuild: a log of {} events", sizes.log_events),
        );
        let n = sizes.log_events;
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("intake");
        let log_path = data.join("log");
        let r = tokio::task::spawn_blocking(move || rebuild(n, &log_path)).await??;
        out["rebuild_events"] = json!(n);
        out["rebuild_incidents"] = json!(n / LIFECYCLE);
        out["raw_read_per_s"] = json!(r.raw_per_s.round());
        out["rebuild_per_s"] = json!(r.fold_per_s.round());
        out["rebuild_ratio"] = json!(r.fold_per_s / r.raw_per_s);
        out["snapshot_encode_ms"] = json!(r.encode_ms.round());
        out["snapshot_decode_ms"] = json!(r.decode_ms.round());
        out["snapshot_bytes"] = json!(r.snapshot_bytes);
        ready_figures(&args, &data, n, &mut out).await?;
    }
    if only == Some("timers") {
        timer_figures(&args, &sizes, &mut out).await?;
    } else if runs("timers") {
        settle_disk();
        // in a fresh process: memory the other parts freed stays resident here and would hide
        // what the clocks take
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.args(["--only", "timers", "--json"]);
        if args.quick {
            cmd.arg("--quick");
        }
        if args.smoke {
            cmd.arg("--smoke");
        }
        log(&args, "timers: in a separate process");
        let child = cmd.output()?;
        anyhow::ensure!(
            child.status.success(),
            "the timers measurement failed: {}",
            String::from_utf8_lossy(&child.stderr)
        );
        let text = String::from_utf8_lossy(&child.stdout);
        let line = text.lines().last().unwrap_or_default();
        let Value::Object(figures) = serde_json::from_str::<Value>(line)? else {
            anyhow::bail!("the timers measurement printed no JSON object");
        };
        for (k, v) in figures {
            if k != "machine" {
                out[k] = v;
            }
        }
    }

    println!("{out}");
    Ok(())
}

/// `nats_intake_*` and its baseline into `out`.
async fn intake_figures(
    args: &Args,
    sizes: &Sizes,
    nats: &NatsServer,
    intake: &ServiceProcess,
    out: &mut Value,
) -> anyhow::Result<()> {
    let size = intake_message(0).len();
    // The raw publish and the intake subject take turns, in slices: a host that gets busier or
    // quieter during the run weighs on both sides of the ratio alike.
    let slice = sizes.publishes.div_ceil(INTAKE_SLICES).max(1);
    let me = std::process::id();
    let (mut js_secs, mut intake_secs) = (0.0, 0.0);
    let (mut js_cpu, mut intake_cpu) = (CpuTotals::default(), CpuTotals::default());
    for round in 1..=INTAKE_SLICES {
        log(
            args,
            format!(
                "slice {round}/{INTAKE_SLICES}: {slice} pipelined publishes of {size} bytes, then {slice} incidents on the intake subject"
            ),
        );
        let cpu = CpuMeter::start(&[("nats_server", nats.pid()), ("bench", Some(me))]);
        js_secs += slice as f64 / jetstream_publish(nats, slice, size).await?;
        js_cpu.add(&cpu);
        let cpu = CpuMeter::start(&[
            ("nats_server", nats.pid()),
            ("intake", Some(intake.pid())),
            ("bench", Some(me)),
        ]);
        intake_secs += slice as f64 / nats_intake(nats, intake, slice).await?;
        intake_cpu.add(&cpu);
    }
    let n = slice * INTAKE_SLICES;
    let (js_rate, intake_rate) = (n as f64 / js_secs, n as f64 / intake_secs);
    out["jetstream_publish_cpu_us"] = js_cpu.per_item_us(n);
    out["nats_intake_cpu_us"] = intake_cpu.per_item_us(n);
    out["jetstream_publish_per_s"] = json!(js_rate.round());
    out["nats_intake_per_s"] = json!(intake_rate.round());
    out["nats_intake_ratio"] = json!(intake_rate / js_rate);
    Ok(())
}

/// Waits until what the parts before wrote is on disk (`sync`), so that a part does not share
/// the disk with the write-back of an earlier one's files (the rebuild part's log and snapshot
/// are hundreds of MB): the timer and e2e figures wait on fsyncs.
fn settle_disk() {
    if let Err(e) = std::process::Command::new("sync").status() {
        eprintln!("sync: {e}");
    }
}

/// `sla_catch_up_per_s`: how fast a fresh `incident-sla` records the backlog of
/// INCIDENT_EVENTS the intake part left (each event with the SLA events it causes, in its own
/// log, acked after), against `jetstream_consume_per_s`: a plain pull consumer reading and
/// acking the same messages -> `sla_catch_up_ratio`. Both are read from the consumer's ack
/// floor (see [`ack_floor_rate`]).
async fn sla_figures(args: &Args, nats: &NatsServer, out: &mut Value) -> anyhow::Result<()> {
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    let mut events = js.get_stream("INCIDENT_EVENTS").await?;
    let last = events.info().await?.state.last_sequence;
    log(
        args,
        format!("SLA timer: catching up {last} incident events, against a plain consumer"),
    );
    let raw = events
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("bench-raw".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let consume = async {
        use futures::StreamExt as _;
        let mut messages = raw.messages().await?;
        let mut n = 0;
        while n < last {
            let m = messages
                .next()
                .await
                .context("the plain consumer ended")?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            n += 1;
        }
        anyhow::Ok(())
    };
    let (raw_rate, ()) = tokio::try_join!(ack_floor_rate(&mut events, "bench-raw", last), consume)?;
    let dir = tempfile::tempdir()?;
    let sla = ServiceProcess::spawn(
        "incident-sla",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", dir.path().join("sla").display().to_string()),
            ("RUST_LOG", "warn".into()),
        ],
        &dir.path().join("sla.log"),
    );
    let sla_rate = ack_floor_rate(&mut events, incident_sla_timer::DURABLE, last).await?;
    drop(sla);
    out["jetstream_consume_per_s"] = json!(raw_rate.round());
    out["sla_catch_up_per_s"] = json!(sla_rate.round());
    out["sla_catch_up_ratio"] = json!(sla_rate / raw_rate);
    Ok(())
}

/// Messages acked a second by the consumer `durable` of `stream` (a fresh stream: `last`
/// messages from sequence 1), from the last time it was seen with none acked (or not there
/// yet) until its ack floor reaches `last`, polled every 5 ms: a consumer that acks everything
/// between two polls still gets a rate.
async fn ack_floor_rate(
    stream: &mut async_nats::jetstream::stream::Stream,
    durable: &str,
    last: u64,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut none_acked_at = Instant::now();
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{durable} did not ack {last} messages in 10 minutes"
        );
        let floor = match stream.consumer_info(durable).await {
            Ok(info) => info.ack_floor.stream_sequence,
            Err(_) => 0,
        };
        let now = Instant::now();
        if floor == 0 {
            none_acked_at = now;
        } else if floor >= last {
            return Ok(last as f64 / now.duration_since(none_acked_at).as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many turns the raw publish and the intake subject take in [`intake_figures`].
const INTAKE_SLICES: usize = 4;

/// `grpc_open_*` and its baseline into `out`.
async fn grpc_figures(
    args: &Args,
    sizes: &Sizes,
    nats: &NatsServer,
    intake: &ServiceProcess,
    out: &mut Value,
) -> anyhow::Result<()> {
    let procs = [
        ("nats_server", nats.pid()),
        ("intake", Some(intake.pid())),
        ("bench", Some(std::process::id())),
    ];
    // the trivial call and the open take turns, in slices, like the intake subject's figures
    let slice = Duration::from_millis(sizes.grpc_secs * 1000 / GRPC_SLICES);
    log(
        args,
        format!(
            "gRPC: 32 clients, {} s each for the trivial call and the open, in {GRPC_SLICES} turns",
            sizes.grpc_secs
        ),
    );
    let url = intake.grpc_url();
    let (mut baseline, mut open) = ((0u64, 0.0), (0u64, 0.0));
    let (mut baseline_cpu, mut open_cpu) = (CpuTotals::default(), CpuTotals::default());
    for _ in 0..GRPC_SLICES {
        let cpu = CpuMeter::start(&procs);
        let (n, secs) = grpc_calls(&url, slice, |ch, _| async move {
            tonic_health::pb::health_client::HealthClient::new(ch)
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok(())
        })
        .await?;
        baseline_cpu.add(&cpu);
        baseline = (baseline.0 + n, baseline.1 + secs);
        let cpu = CpuMeter::start(&procs);
        let (n, secs) = grpc_calls(&url, slice, |ch, i| async move {
            incident_proto::v1::intake_service_client::IntakeServiceClient::new(ch)
                .open_incident(pb::OpenIncidentRequest {
                    title: format!("bench {i}"),
                    service: "bench".into(),
                    impact: pb::Impact::High as i32,
                    urgency: pb::Urgency::Low as i32,
                    ..Default::default()
                })
                .await?;
            Ok(())
        })
        .await?;
        open_cpu.add(&cpu);
        open = (open.0 + n, open.1 + secs);
    }
    let (baseline_rate, open_rate) = (baseline.0 as f64 / baseline.1, open.0 as f64 / open.1);
    out["grpc_unary_baseline_cpu_us"] = baseline_cpu.per_item_us(baseline.0 as usize);
    out["grpc_open_cpu_us"] = open_cpu.per_item_us(open.0 as usize);
    out["grpc_unary_baseline_per_s"] = json!(baseline_rate.round());
    out["grpc_open_per_s"] = json!(open_rate.round());
    out["grpc_open_ratio"] = json!(open_rate / baseline_rate);
    Ok(())
}

/// How many turns the trivial call and the open take in [`grpc_figures`].
const GRPC_SLICES: u64 = 4;

/// The timer figures (`timer_late_*`, `clocks_*`) into `out`.
async fn timer_figures(args: &Args, sizes: &Sizes, out: &mut Value) -> anyhow::Result<()> {
    log(
        args,
        format!(
            "timers: {} running clocks, {} breaches",
            sizes.clocks, sizes.breaches
        ),
    );
    let t = timers(sizes.clocks, sizes.breaches).await?;
    let rss = t.rss_mib;
    out["clocks"] = json!(sizes.clocks);
    out["timer_late_p99_ms"] = json!(t.late_p99_ms);
    out["timer_late_max_ms"] = json!(t.late_max_ms);
    out["timer_raw_late_p99_ms"] = json!((t.raw_late_p99_ms * 10.0).round() / 10.0);
    out["clocks_rss_mib"] = json!((rss * 10.0).round() / 10.0);
    out["clocks_1m_rss_mib"] = json!((rss * 1_000_000.0 / sizes.clocks as f64).round());
    out["clocks_1m_rss_scaled"] = json!(sizes.clocks != 1_000_000);
    Ok(())
}

//! Helpers for the end-to-end tests in `tests/`: start the stack's processes, run
//! `incidentctl`, read what reached JetStream.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use incident_testkit::{NatsServer, ServiceProcess, bin_path};

/// Starts intake on `nats` with its data in `data_dir`.
pub fn start_intake(nats: &NatsServer, data_dir: &Path) -> ServiceProcess {
    let log = data_dir.with_extension("log");
    ServiceProcess::spawn(
        "incident-intake",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", data_dir.display().to_string()),
        ],
        &log,
    )
}

/// Waits (up to 10 s) until intake has created the streams it consumes and dead-letters to.
pub async fn wait_for_intake_streams(js: &jetstream::Context) {
    for _ in 0..100 {
        if js.get_stream("INCIDENT_INTAKE").await.is_ok()
            && js.get_stream("INCIDENT_DEADLETTER").await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("intake did not create INCIDENT_INTAKE and INCIDENT_DEADLETTER within 10 s");
}

/// What `incidentctl` did.
pub struct CtlOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "incidentctl printed no JSON ({e}): {}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `incidentctl -o json --intake-url <url> <args>`.
pub fn ctl(intake_url: &str, args: &[&str]) -> CtlOutput {
    let out = Command::new(bin_path("incidentctl"))
        .args(["-o", "json", "--intake-url", intake_url, "--actor", "e2e"])
        .args(args)
        .output()
        .expect("run incidentctl");
    CtlOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs incidentctl and returns its JSON, failing the test if the command failed.
pub fn ctl_ok(intake_url: &str, args: &[&str]) -> serde_json::Value {
    let out = ctl(intake_url, args);
    assert!(out.ok, "incidentctl {args:?} failed: {}", out.stderr);
    out.json()
}

/// Opens an incident of the `payments` service with high impact and `urgency` through
/// incidentctl; returns its id.
pub fn open_incident(intake_url: &str, title: &str, urgency: &str) -> String {
    let opened = ctl_ok(
        intake_url,
        &[
            "open",
            "--title",
            title,
            "--service",
            "payments",
            "--impact",
            "high",
            "--urgency",
            urgency,
        ],
    );
    opened["id"].as_str().expect("an incident id").to_owned()
}

/// The CloudEvents on `subject` in `stream`, waiting up to `within` for at least `want` of them.
pub async fn stream_events(
    nats_url: &str,
    stream: &str,
    subject: &str,
    want: usize,
    within: Duration,
) -> Vec<serde_json::Value> {
    let client = connect(nats_url).await;
    let js = jetstream::new(client);
    let deadline = Instant::now() + within;
    loop {
        let events = read_subject(&js, stream, subject).await;
        if events.len() >= want || Instant::now() >= deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_subject(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Vec<serde_json::Value> {
    incident_testkit::stream::read_subject(js, stream, subject)
        .await
        .into_iter()
        .map(|(payload, _)| serde_json::from_slice(&payload).expect("a JSON event on the stream"))
        .collect()
}

/// The event types of a list of CloudEvents.
pub fn types(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Starts the SLA timer on `nats` with its data in `data_dir` and the given policy file.
pub fn start_sla(nats: &NatsServer, data_dir: &Path, policy_file: &Path) -> ServiceProcess {
    let log = data_dir.with_extension("log");
    ServiceProcess::spawn(
        "incident-sla",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", data_dir.display().to_string()),
            ("SLA_POLICY_FILE", policy_file.display().to_string()),
        ],
        &log,
    )
}

/// Runs `incidentctl -o json --sla-url <url> <args>` and returns its JSON.
pub fn sla_ctl(sla_url: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin_path("incidentctl"))
        .args(["-o", "json", "--sla-url", sla_url])
        .args(args)
        .output()
        .expect("run incidentctl");
    assert!(
        out.status.success(),
        "incidentctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from incidentctl")
}

/// Connects to NATS; `nats://user:password@host:port` logs in with the user and password.
pub async fn connect(url: &str) -> async_nats::Client {
    let rest = url.trim_start_matches("nats://");
    match rest.split_once('@') {
        Some((creds, host)) => {
            let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
            async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into())
                .connect(format!("nats://{host}"))
                .await
                .expect("connect to NATS")
        }
        None => async_nats::connect(url).await.expect("connect to NATS"),
    }
}

/// Flips a bit of the event bytes of record `seq` (the last record when `None`) in the record
/// file of the closed log in `log_dir`, `from_end` bytes before the end of its value, behind the
/// log's back; answers the record's sequence number.
pub fn damage_record(log_dir: &Path, seq: Option<u64>, from_end: u64) -> u64 {
    let frames = incident_eventlog::layout::record_frames(log_dir).expect("read the record file");
    let frame = match seq {
        Some(seq) => frames.iter().find(|f| f.seq == Some(seq)),
        None => frames.last(),
    }
    .copied()
    .expect("a record");
    let path = log_dir.join(incident_eventlog::layout::RECORD_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = frame.value_offset() + u64::from(frame.len) - from_end;
    bytes[at as usize] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    frame.seq.expect("a seq")
}

//! Intake's configuration: every setting from a flag or an environment variable, read once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "incident-intake",
    version,
    about = "Takes incidents in and owns their lifecycle"
)]
pub struct Config {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Folder of intake's event log.
    #[arg(long, env = "DATA_DIR", default_value = "data/intake")]
    pub data_dir: PathBuf,
    /// gRPC listen address.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (/healthz, /readyz, /metrics).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// TOML file overriding cells of the impact x urgency priority matrix.
    #[arg(long, env = "PRIORITY_MATRIX_FILE")]
    pub priority_matrix_file: Option<PathBuf>,
    /// Other systems' intake: routing keys, severity mapping, Alertmanager labels, tokens.
    #[arg(long, env = "INTAKE_SOURCES_FILE")]
    pub sources_file: Option<PathBuf>,
    /// How long JetStream drops re-published event ids, in seconds (for streams it creates).
    #[arg(long, env = "NATS_DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub duplicate_window_secs: u64,
    /// Instead of serving: move the (damaged) log aside, write a new one from INCIDENT_EVENTS,
    /// print a report and exit.
    #[arg(long)]
    pub rebuild_log_from_jetstream: bool,
    /// Copies of each stream this service creates (3 on a three-node JetStream cluster).
    #[arg(long, env = "NATS_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// gRPC bearer tokens with roles (TOML). Without it every call is allowed.
    #[arg(long, env = "TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    #[command(flatten)]
    pub nats_auth: incident_bus::NatsAuth,
    #[command(flatten)]
    pub tls: incident_runtime::tls::TlsArgs,
    /// Snapshots of the state: a start that folds at least this many records writes one (in the
    /// background), and a clean shutdown writes one; a start then folds only the records after
    /// it. 0 turns snapshots off (none read, none written).
    #[arg(long, env = "SNAPSHOT_AFTER_EVENTS", default_value_t = 100_000)]
    pub snapshot_after_events: u64,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl Config {
    /// The defaults, with the data under `data_dir` (for tests and embedding).
    pub fn for_data_dir(data_dir: impl Into<PathBuf>, nats_url: &str) -> Self {
        Self {
            nats_url: nats_url.to_owned(),
            data_dir: data_dir.into(),
            grpc_addr: ([127, 0, 0, 1], 0).into(),
            http_addr: ([127, 0, 0, 1], 0).into(),
            priority_matrix_file: None,
            sources_file: None,
            rebuild_log_from_jetstream: false,
            stream_replicas: 1,
            tokens_file: None,
            nats_auth: incident_bus::NatsAuth::default(),
            tls: incident_runtime::tls::TlsArgs::default(),
            duplicate_window_secs: 120,
            snapshot_after_events: 100_000,
            log_format: "text".into(),
        }
    }

    pub fn duplicate_window(&self) -> Duration {
        Duration::from_secs(self.duplicate_window_secs.max(1))
    }
}

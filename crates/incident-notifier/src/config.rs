//! The notifier's configuration: every setting from a flag or an environment variable, read once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "incident-notifier",
    version,
    about = "Routes incident and SLA events to webhooks, chat, email and on-call tiers"
)]
pub struct Config {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Folder of the notifier's event log.
    #[arg(long, env = "DATA_DIR", default_value = "data/notifier")]
    pub data_dir: PathBuf,
    /// gRPC listen address.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50053")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (/healthz, /readyz, /metrics).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: SocketAddr,
    /// TOML file of channels, routes, on-call chains and silences. Without one every event
    /// goes to the `log` channel.
    #[arg(long, env = "ROUTES_FILE")]
    pub routes_file: Option<PathBuf>,
    /// How long JetStream drops re-published event ids, in seconds (for streams it creates).
    #[arg(long, env = "NATS_DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub duplicate_window_secs: u64,
    /// Instead of serving: write a new log from NOTIFY_EVENTS (the damaged one is kept aside),
    /// mark the inputs it names processed, restart the durable consumers just after them, print
    /// a report and exit. Stop the notifier first.
    #[arg(long)]
    pub rebuild_log_from_jetstream: bool,
    /// gRPC bearer tokens with roles (TOML). Without it every call is allowed.
    #[arg(long, env = "TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    #[command(flatten)]
    pub nats_auth: incident_bus::NatsAuth,
    #[command(flatten)]
    pub tls: incident_runtime::tls::TlsArgs,
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
            routes_file: None,
            duplicate_window_secs: 120,
            rebuild_log_from_jetstream: false,
            tokens_file: None,
            nats_auth: incident_bus::NatsAuth::default(),
            tls: incident_runtime::tls::TlsArgs::default(),
            log_format: "text".into(),
        }
    }

    pub fn duplicate_window(&self) -> Duration {
        Duration::from_secs(self.duplicate_window_secs.max(1))
    }

    /// Reads and validates the routes file (or the log-everything default).
    pub fn load_routes(&self) -> anyhow::Result<crate::routes::Routes> {
        match &self.routes_file {
            None => Ok(crate::routes::Routes::log_everything()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                crate::routes::Routes::from_toml(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
        }
    }
}

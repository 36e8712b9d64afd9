//! The SLA timer's configuration: every setting from a flag or an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "incident-sla",
    version,
    about = "Runs the SLA clocks of every incident"
)]
pub struct Config {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Folder of the SLA timer's event log.
    #[arg(long, env = "DATA_DIR", default_value = "data/sla")]
    pub data_dir: PathBuf,
    /// gRPC listen address.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50052")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (/healthz, /readyz, /metrics).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: SocketAddr,
    /// SLA policies and calendars (TOML). Without it, the built-in default policy applies.
    #[arg(long, env = "SLA_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// How long JetStream drops re-published event ids, in seconds (for streams it creates).
    #[arg(long, env = "NATS_DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub duplicate_window_secs: u64,
    /// Instead of serving: move the (damaged) log aside, write a new one from SLA_EVENTS and
    /// INCIDENT_EVENTS, print a report and exit.
    #[arg(long)]
    pub rebuild_log_from_jetstream: bool,
    /// At start, how long timers that came due while the service was down wait for the incident
    /// events that arrived meanwhile (an acknowledgement before the deadline means no breach).
    #[arg(long, env = "SLA_CATCH_UP_WAIT_SECS", default_value_t = 30)]
    pub catch_up_wait_secs: u64,
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
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl Config {
    pub fn duplicate_window(&self) -> Duration {
        Duration::from_secs(self.duplicate_window_secs.max(1))
    }
}

/// The policy used when no `SLA_POLICY_FILE` is given: round-the-clock targets per priority.
pub const DEFAULT_POLICY: &str = r#"
[[policies]]
name = "default"
calendar = "24x7"
warn_at = [0.5, 0.75, 0.9]
pause_on = ["on_hold"]
[policies.response]
P1 = "15m"
P2 = "30m"
P3 = "2h"
P4 = "8h"
P5 = "1d"
[policies.resolution]
P1 = "4h"
P2 = "8h"
P3 = "1d"
P4 = "3d"
P5 = "5d"
[[policies.escalation]]
at = 0.75
level = 1
[[policies.escalation]]
at = 1.0
level = 2
[[policies.escalation]]
at = 1.5
level = 3
"#;

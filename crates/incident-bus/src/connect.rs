//! Connecting to NATS the way every service does: retry on the initial connect (a service starts
//! even when NATS is not up yet), bounded request waits, and a shared flag saying whether the
//! connection is up right now (for `/readyz`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};

#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub url: String,
    /// The connection name shown by the server's monitoring.
    pub name: String,
    /// How long a request (stream info, publish ack, ...) may wait.
    pub request_timeout: Duration,
    pub auth: NatsAuth,
}

impl NatsOptions {
    pub fn new(url: &str, name: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: name.to_owned(),
            request_timeout: Duration::from_secs(5),
            auth: NatsAuth::default(),
        }
    }

    pub fn with_auth(mut self, auth: &NatsAuth) -> Self {
        self.auth = auth.clone();
        self
    }
}

/// How a service proves itself to NATS, and whether it insists on TLS. Flags or environment;
/// secrets may come from files (`NATS_PASSWORD_FILE`, `NATS_TOKEN_FILE`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NatsAuth {
    /// NATS user (with a password).
    #[arg(long = "nats-user", env = "NATS_USER")]
    pub user: Option<String>,
    #[arg(long = "nats-password", env = "NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    #[arg(long = "nats-password-file", env = "NATS_PASSWORD_FILE")]
    pub password_file: Option<std::path::PathBuf>,
    /// NATS authentication token.
    #[arg(long = "nats-token", env = "NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long = "nats-token-file", env = "NATS_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// NATS credentials file (JWT and seed).
    #[arg(long = "nats-creds-file", env = "NATS_CREDS_FILE")]
    pub creds_file: Option<std::path::PathBuf>,
    /// CA certificate (PEM) to trust for the server's TLS certificate.
    #[arg(long = "nats-tls-ca", env = "NATS_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Refuse to talk to NATS without TLS.
    #[arg(long = "nats-tls-required", env = "NATS_TLS_REQUIRED")]
    pub tls_required: bool,
}

fn secret(
    value: &Option<String>,
    file: &Option<std::path::PathBuf>,
    what: &str,
) -> Result<Option<String>, async_nats::Error> {
    match (value, file) {
        (Some(v), _) => Ok(Some(v.clone())),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|e| format!("reading {what} from {}: {e}", f.display()).into()),
        (None, None) => Ok(None),
    }
}

impl NatsAuth {
    /// Applies the credentials and TLS settings to connect options.
    pub async fn apply(
        &self,
        mut opts: ConnectOptions,
    ) -> Result<ConnectOptions, async_nats::Error> {
        if let Some(user) = &self.user {
            let pass = secret(&self.password, &self.password_file, "the NATS password")?
                .unwrap_or_default();
            opts = opts.user_and_password(user.clone(), pass);
        }
        if let Some(token) = secret(&self.token, &self.token_file, "the NATS token")? {
            opts = opts.token(token);
        }
        if let Some(creds) = &self.creds_file {
            opts = opts
                .credentials_file(creds)
                .await
                .map_err(|e| format!("reading NATS credentials {}: {e}", creds.display()))?;
        }
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if self.tls_required {
            opts = opts.require_tls(true);
        }
        Ok(opts)
    }
}

/// Connects in the background (retrying forever) and returns at once, with a flag that is true
/// while the connection is up.
pub async fn connect(opts: &NatsOptions) -> Result<(Client, Arc<AtomicBool>), async_nats::Error> {
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let base = opts.auth.apply(ConnectOptions::new()).await?;
    let client = base
        .name(&opts.name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(opts.request_timeout))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).min(2_000))
        })
        .event_callback(move |event| {
            let flag = flag.clone();
            async move {
                match event {
                    Event::Connected => {
                        flag.store(true, Ordering::SeqCst);
                        tracing::info!("connected to NATS");
                    }
                    Event::Disconnected => {
                        flag.store(false, Ordering::SeqCst);
                        tracing::warn!("disconnected from NATS");
                    }
                    other => tracing::info!(event = %other, "NATS event"),
                }
            }
        })
        .connect(server_addrs(&opts.url)?)
        .await?;
    if client.connection_state() == async_nats::connection::State::Connected {
        up.store(true, Ordering::SeqCst);
    }
    Ok((client, up))
}

/// `nats://a:4222,nats://b:4222` (a cluster) as the list of servers to try.
pub fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, async_nats::Error> {
    url.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("bad NATS_URL {s:?}: {e}").into())
        })
        .collect()
}

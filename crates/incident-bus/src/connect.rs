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
}

impl NatsOptions {
    pub fn new(url: &str, name: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: name.to_owned(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Connects in the background (retrying forever) and returns at once, with a flag that is true
/// while the connection is up.
pub async fn connect(opts: &NatsOptions) -> Result<(Client, Arc<AtomicBool>), async_nats::Error> {
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let client = ConnectOptions::new()
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

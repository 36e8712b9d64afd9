//! What every service binary shares: structured logging from `RUST_LOG`/`LOG_FORMAT`, the
//! shutdown signal (SIGTERM or Ctrl-C), binding and announcing listeners, the reflection
//! services, and writing Prometheus text.

pub mod auth;
pub mod grpc_metrics;
pub mod tls;

use std::fmt::Write as _;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Logs to standard error, JSON when `format` is `json`, levels from `RUST_LOG` (default info).
pub fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Binds the gRPC and HTTP listeners and prints `{"listening":{"grpc":..,"http":..}}` on
/// standard output (tests and scripts read it; port 0 picks a free port).
pub async fn bind_and_announce(
    grpc: SocketAddr,
    http: SocketAddr,
) -> anyhow::Result<(TcpListener, TcpListener)> {
    let grpc = TcpListener::bind(grpc).await?;
    let http = TcpListener::bind(http).await?;
    println!(
        "{}",
        serde_json::json!({"listening": {
            "grpc": grpc.local_addr()?.to_string(),
            "http": http.local_addr()?.to_string(),
        }})
    );
    Ok((grpc, http))
}

/// The accepted connections of a service's gRPC listener, with TCP_NODELAY: tonic leaves
/// Nagle's algorithm on, which held small answers back (BENCHMARKS.md).
pub fn grpc_incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Ends a `--rebuild-log-from-jetstream` run: the report as one JSON line
/// `{"rebuilt": ...}` on standard output and exit 0, or the error on standard error and exit 1.
pub fn finish_rebuild(service: &str, result: anyhow::Result<serde_json::Value>) -> ! {
    match result {
        Ok(report) => {
            println!("{}", serde_json::json!({ "rebuilt": report }));
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("{service}: rebuilding the log from JetStream failed: {e:#}");
            std::process::exit(1)
        }
    }
}

/// Server reflection v1 and v1alpha for `incident.v1` and `grpc.health.v1`.
pub fn reflection() -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(incident_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(incident_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}

/// Appends one metric family to a Prometheus text exposition. `samples` are (labels, value),
/// labels written as `a="x",b="y"` or empty.
pub fn metric_family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(String, u64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// One unlabelled sample.
pub fn sample(value: u64) -> Vec<(String, u64)> {
    vec![(String::new(), value)]
}

/// Loads the tokens file when one is configured; without one, says in the log that gRPC is open.
pub fn load_tokens(path: Option<&std::path::Path>) -> anyhow::Result<auth::AuthLayer> {
    match path {
        Some(p) => Ok(auth::AuthLayer::new(Some(auth::Tokens::load(p)?))),
        None => {
            tracing::warn!("no TOKENS_FILE: gRPC calls are not authenticated");
            Ok(auth::AuthLayer::new(None))
        }
    }
}

/// The `/readyz` answer every service gives: 200 once NATS is connected and its streams exist
/// (the state is rebuilt before the listener serves), 503 otherwise, with the details in JSON.
pub fn readiness(
    nats_connected: bool,
    streams_ready: bool,
    log_head: u64,
    relayed_up_to: u64,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let body = serde_json::json!({
        "state_rebuilt": true,
        "nats_connected": nats_connected,
        "streams_ready": streams_ready,
        "log_head": log_head,
        "relayed_up_to": relayed_up_to,
    });
    let code = if nats_connected && streams_ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

/// The layers every service puts in front of its gRPC routes: latency metrics, then tokens.
pub type GrpcLayers = tower_layer::Stack<
    auth::AuthLayer,
    tower_layer::Stack<grpc_metrics::MetricsLayer, tower_layer::Identity>,
>;

/// What every service's gRPC server starts from: TLS when configured, latency metrics, the
/// token check, `grpc.health.v1` and reflection. The service adds its own API (and the audit
/// API) to `router`, and sets its health to SERVING through `health`.
pub struct GrpcBase {
    pub router: tonic::transport::server::Router<GrpcLayers>,
    pub health: tonic_health::server::HealthReporter,
    pub metrics: std::sync::Arc<grpc_metrics::GrpcMetrics>,
}

pub fn grpc_base(
    tls: &tls::TlsArgs,
    tokens_file: Option<&std::path::Path>,
) -> anyhow::Result<GrpcBase> {
    let auth = load_tokens(tokens_file)?;
    let metrics = std::sync::Arc::new(grpc_metrics::GrpcMetrics::default());
    let (health, health_service) = tonic_health::server::health_reporter();
    let (reflection_v1, reflection_v1alpha) = reflection()?;
    let router = tls
        .grpc_server()?
        .layer(grpc_metrics::MetricsLayer::new(metrics.clone()))
        .layer(auth)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok(GrpcBase {
        router,
        health,
        metrics,
    })
}

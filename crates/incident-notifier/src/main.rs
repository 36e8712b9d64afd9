//! `incident-notifier`: parses its configuration and routes file (refusing to start on a bad
//! one), binds its listeners, announces them on standard output as one JSON line, and runs until
//! SIGTERM or Ctrl-C. With `--rebuild-log-from-jetstream` it writes a new log from JetStream
//! instead, prints a one-line JSON report and exits.

/// A faster allocator than the system's for the many short-lived allocations of decoding,
/// encoding and the log's writes (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use incident_notifier::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    incident_runtime::init_tracing(&config.log_format);
    if config.rebuild_log_from_jetstream {
        let result = incident_notifier::rebuild::rebuild_from_jetstream(&config)
            .await
            .map(|r| r.to_json());
        incident_runtime::finish_rebuild("incident-notifier", result);
    }
    let routes = match config.load_routes() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("incident-notifier: {e:#}");
            std::process::exit(2);
        }
    };
    let (grpc, http) =
        incident_runtime::bind_and_announce(config.grpc_addr, config.http_addr).await?;
    tracing::info!(grpc = %grpc.local_addr()?, http = %http.local_addr()?, data_dir = %config.data_dir.display(), "incident-notifier starting");
    if let Err(e) = incident_notifier::run(
        config,
        routes,
        grpc,
        http,
        incident_runtime::shutdown_signal(),
    )
    .await
    {
        tracing::error!("{e:#}");
        eprintln!("incident-notifier: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

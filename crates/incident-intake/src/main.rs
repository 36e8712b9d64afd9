//! `incident-intake`: parses its configuration, binds its listeners, announces them on standard
//! output as one JSON line, and runs until SIGTERM or Ctrl-C.

/// A faster allocator than the system's for the many short-lived allocations of decoding,
/// encoding and the log's writes (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use incident_intake::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    incident_runtime::init_tracing(&config.log_format);
    if config.rebuild_log_from_jetstream {
        let result = incident_intake::rebuild::rebuild_from_jetstream(&config)
            .await
            .and_then(|r| Ok(serde_json::to_value(r)?));
        incident_runtime::finish_rebuild("incident-intake", result);
    }
    let (grpc, http) =
        incident_runtime::bind_and_announce(config.grpc_addr, config.http_addr).await?;
    tracing::info!(grpc = %grpc.local_addr()?, http = %http.local_addr()?, data_dir = %config.data_dir.display(), "incident-intake starting");
    if let Err(e) =
        incident_intake::run(config, grpc, http, incident_runtime::shutdown_signal()).await
    {
        tracing::error!("{e:#}");
        eprintln!("incident-intake: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

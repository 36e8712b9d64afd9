//! `incident-sla`: the SLA timer. Parses its configuration, binds and announces its listeners,
//! and runs until SIGTERM or Ctrl-C.

/// A faster allocator than the system's for the many short-lived allocations of decoding,
/// encoding and the log's writes (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use incident_sla_timer::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    incident_runtime::init_tracing(&config.log_format);
    if config.rebuild_log_from_jetstream {
        match incident_sla_timer::rebuild::rebuild_from_jetstream(&config).await {
            Ok(r) => {
                println!(
                    "{}",
                    serde_json::json!({"rebuilt": {
                        "inputs": r.inputs,
                        "sla_events": r.sla_events,
                        "unplaced": r.unplaced,
                        "incidents": r.incidents,
                        "breaches": r.breaches,
                        "consumer_resumes_after": r.consumer_resumes_after,
                        "damaged_log_kept_at": r.damaged_log_kept_at.map(|p| p.display().to_string()),
                        "damaged_log_records": r.damaged_log_records,
                    }})
                );
                return Ok(());
            }
            Err(e) => {
                eprintln!("incident-sla: rebuilding the log from JetStream failed: {e:#}");
                std::process::exit(1);
            }
        }
    }
    let (grpc, http) =
        incident_runtime::bind_and_announce(config.grpc_addr, config.http_addr).await?;
    tracing::info!(grpc = %grpc.local_addr()?, http = %http.local_addr()?, data_dir = %config.data_dir.display(), "incident-sla starting");
    if let Err(e) =
        incident_sla_timer::run(config, grpc, http, incident_runtime::shutdown_signal()).await
    {
        tracing::error!("{e:#}");
        eprintln!("incident-sla: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

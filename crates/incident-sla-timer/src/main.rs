//! `incident-sla`: the SLA timer. Parses its configuration, binds and announces its listeners,
//! and runs until SIGTERM or Ctrl-C.

use clap::Parser;
use incident_sla_timer::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    incident_runtime::init_tracing(&config.log_format);
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

//! `incidentctl simulate`: what would the service levels have been under another policy? Either
//! the recorded incidents of an export (`--events`), next to what the recorded policy gave, or
//! a synthetic load from a seeded scenario (`--scenario`). Deterministic: the same input prints
//! the same bytes. Only parsing and printing live here; the simulation is
//! `incident_audit::sim`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use incident_audit::export;
use incident_audit::sim::{self, Scenario};
use incident_sla::PolicySet;

#[derive(Args)]
pub struct SimulateArgs {
    /// An export (`incidentctl audit export`) whose recorded incidents are replayed.
    #[arg(
        long,
        required_unless_present = "scenario",
        conflicts_with = "scenario"
    )]
    pub events: Option<PathBuf>,
    /// A scenario (TOML: seed, start, duration, arrivals and time distributions per priority)
    /// that generates a synthetic load.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// The policy to simulate (the SLA_POLICY_FILE format).
    #[arg(long)]
    pub policy: PathBuf,
    /// Outcomes as of this instant (RFC 3339); default: the last event time of the input.
    #[arg(long)]
    pub as_of: Option<String>,
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

pub async fn simulate(args: SimulateArgs, json: bool) -> Result<()> {
    let policy = PolicySet::from_toml(&read(&args.policy, "policy")?)
        .with_context(|| format!("in {}", args.policy.display()))?;
    let as_of = args
        .as_of
        .as_deref()
        .map(|s| {
            s.parse::<jiff::Timestamp>().with_context(|| {
                format!("--as-of {s:?}: expected an RFC 3339 instant like 2026-12-01T00:00:00Z")
            })
        })
        .transpose()?;
    let report = match (&args.events, &args.scenario) {
        (Some(path), _) => {
            let exported = export::parse(&read(path, "export")?)
                .with_context(|| format!("in {}", path.display()))?;
            sim::simulate_records(&export::records(&exported), &policy, as_of)
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("simulating {}", path.display()))?
        }
        (None, Some(path)) => {
            let scenario = Scenario::from_toml(&read(path, "scenario")?)
                .map_err(|e| anyhow!("in {}: {e}", path.display()))?;
            sim::simulate_scenario(&scenario, &policy, as_of)
                .map_err(|e| anyhow!("in {}: {e}", path.display()))?
        }
        (None, None) => return Err(anyhow!("give --events EXPORT or --scenario FILE")),
    };
    let text = if json {
        sim::render_json(&report)
    } else {
        sim::render_table(&report)
    };
    print!("{text}");
    Ok(())
}

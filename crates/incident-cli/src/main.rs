//! `incidentctl`: the command line for responders, managers and auditors. Talks gRPC to the
//! services; prints tables for people and JSON (`-o json`) for scripts. A refused or failed
//! command exits non-zero with the server's message.

mod audit;
mod notifications;
mod output;
mod simulate;
mod sla;

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use incident_proto::v1 as pb;
use incident_proto::v1::intake_service_client::IntakeServiceClient;
use tonic::transport::{Channel, Endpoint};

use output::Output;

#[derive(Parser)]
#[command(
    name = "incidentctl",
    version,
    about = "Open, work and inspect incidents"
)]
struct Cli {
    /// Intake's gRPC address.
    #[arg(
        long,
        global = true,
        env = "INCIDENT_INTAKE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    intake_url: String,
    /// The SLA timer's gRPC address.
    #[arg(
        long,
        global = true,
        env = "INCIDENT_SLA_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    sla_url: String,
    /// The notifier's gRPC address.
    #[arg(
        long,
        global = true,
        env = "INCIDENT_NOTIFIER_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    notifier_url: String,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// CA certificate (PEM) to trust for https:// service addresses (default: public roots).
    #[arg(long, global = true, env = "INCIDENT_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// Bearer token for services that require one (see TOKENS_FILE).
    #[arg(long, global = true, env = "INCIDENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Who is acting (recorded on every event).
    #[arg(long, global = true, env = "INCIDENT_ACTOR", default_value = "")]
    actor: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Level {
    High,
    Medium,
    Low,
}

#[derive(Clone, Copy, ValueEnum)]
enum Prio {
    P1,
    P2,
    P3,
    P4,
    P5,
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusArg {
    Open,
    Acknowledged,
    InProgress,
    OnHold,
    Resolved,
    Closed,
}

#[derive(Args, Default)]
struct Filters {
    /// Only these statuses (repeatable).
    #[arg(long = "status", value_enum)]
    statuses: Vec<StatusArg>,
    /// Only these priorities (repeatable).
    #[arg(long = "priority", value_enum)]
    priorities: Vec<Prio>,
    #[arg(long, default_value = "")]
    service: String,
    #[arg(long, default_value = "")]
    group: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open an incident; its priority follows from impact x urgency.
    Open {
        #[arg(long)]
        title: String,
        #[arg(long)]
        service: String,
        #[arg(long, value_enum)]
        impact: Level,
        #[arg(long, value_enum)]
        urgency: Level,
        #[arg(long, default_value = "")]
        group: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Repeats with this key are added to the active incident holding it.
        #[arg(long, default_value = "")]
        dedup_key: String,
        /// Idempotency key: retrying with the same id returns the same incident.
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Acknowledge an incident.
    Ack { id: String },
    /// Assign an incident to a support group (and a person).
    Assign {
        id: String,
        #[arg(long)]
        group: String,
        #[arg(long, default_value = "")]
        assignee: String,
    },
    /// Start work on an incident.
    Start { id: String },
    /// Put an incident on hold.
    Hold {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Resume work on an incident on hold.
    Resume { id: String },
    /// Resolve an incident.
    Resolve {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Close a resolved incident.
    Close { id: String },
    /// Reopen a resolved incident.
    Reopen {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Add a comment.
    Comment {
        id: String,
        #[arg(long)]
        text: String,
    },
    /// Change impact, urgency or the priority itself.
    Priority {
        id: String,
        #[arg(long, value_enum)]
        impact: Option<Level>,
        #[arg(long, value_enum)]
        urgency: Option<Level>,
        #[arg(long, value_enum)]
        priority: Option<Prio>,
        #[arg(long)]
        reason: String,
    },
    /// Show one incident.
    Get { id: String },
    /// List incidents, newest first.
    List {
        #[command(flatten)]
        filters: Filters,
        /// Page size (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value = "")]
        page_token: String,
        /// Follow page tokens to the end.
        #[arg(long)]
        all: bool,
    },
    /// Print every change to matching incidents as it happens.
    Watch {
        #[command(flatten)]
        filters: Filters,
    },
    /// Notifications (of one incident, or all): trigger, route, channel, attempts, status, last error.
    Notifications { id: Option<String> },
    /// Auditors: replay, verify, export the services' logs; one incident's timeline.
    Audit {
        #[command(subcommand)]
        cmd: audit::AuditCmd,
    },
    /// What would the service levels have been under another policy?
    Simulate(simulate::SimulateArgs),
    /// SLA clocks: `sla show ID`, `sla at-risk`, `sla breaches`.
    Sla {
        #[command(subcommand)]
        cmd: sla::SlaCmd,
    },
    /// Agreed service levels against the actual ones, per priority, service or group.
    Report {
        /// Incidents opened at or after this instant (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Incidents opened before this instant (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "priority", value_parser = ["priority", "service", "group"])]
        by: String,
    },
}

fn level_i32(l: Level) -> (i32, i32) {
    match l {
        Level::High => (pb::Impact::High as i32, pb::Urgency::High as i32),
        Level::Medium => (pb::Impact::Medium as i32, pb::Urgency::Medium as i32),
        Level::Low => (pb::Impact::Low as i32, pb::Urgency::Low as i32),
    }
}

fn prio_i32(p: Prio) -> i32 {
    (match p {
        Prio::P1 => pb::Priority::P1,
        Prio::P2 => pb::Priority::P2,
        Prio::P3 => pb::Priority::P3,
        Prio::P4 => pb::Priority::P4,
        Prio::P5 => pb::Priority::P5,
    }) as i32
}

fn status_i32(s: StatusArg) -> i32 {
    (match s {
        StatusArg::Open => pb::Status::Open,
        StatusArg::Acknowledged => pb::Status::Acknowledged,
        StatusArg::InProgress => pb::Status::InProgress,
        StatusArg::OnHold => pb::Status::OnHold,
        StatusArg::Resolved => pb::Status::Resolved,
        StatusArg::Closed => pb::Status::Closed,
    }) as i32
}

/// The bearer token given with `--token` / `INCIDENT_TOKEN`, set once at start.
static TOKEN: std::sync::OnceLock<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>> =
    std::sync::OnceLock::new();

/// The CA certificate given with `--ca-cert`, set once at start.
static CA_CERT: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();

/// Adds the bearer token (when there is one) to every call.
#[derive(Clone)]
pub(crate) struct Bearer;

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(Some(v)) = TOKEN.get() {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub(crate) type Conn = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

/// A connection to a service, carrying the token.
pub(crate) async fn channel(url: &str) -> Result<Conn> {
    let mut endpoint =
        Endpoint::from_shared(url.to_owned()).with_context(|| format!("bad address {url}"))?;
    if url.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
        if let Some(Some(pem)) = CA_CERT.get() {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel, Bearer,
    ))
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        match e.downcast_ref::<tonic::Status>() {
            Some(status) => eprintln!("error: {}: {}", code_name(status.code()), status.message()),
            None => eprintln!("error: {e:#}"),
        }
        std::process::exit(1);
    }
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
        .chars()
        .flat_map(|c| {
            if c.is_uppercase() {
                vec!['_', c]
            } else {
                vec![c.to_ascii_uppercase()]
            }
        })
        .collect::<String>()
        .trim_start_matches('_')
        .to_owned()
}

async fn run(cli: Cli) -> Result<()> {
    let out = Output::new(matches!(cli.output, Format::Json));
    let actor = if cli.actor.is_empty() {
        std::env::var("USER").unwrap_or_default()
    } else {
        cli.actor.clone()
    };
    let token = match cli
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .context("the token must be printable ASCII")?,
        ),
        None => None,
    };
    let _ = TOKEN.set(token);
    let ca = match &cli.ca_cert {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let _ = CA_CERT.set(ca);
    let json_out = matches!(cli.output, Format::Json);
    let command = match cli.command {
        Cmd::Sla { cmd } => return sla::run(&cli.sla_url, cmd, json_out).await,
        Cmd::Audit { cmd } => {
            let urls = audit::AuditUrls {
                intake: cli.intake_url.clone(),
                sla: cli.sla_url.clone(),
                notifier: cli.notifier_url.clone(),
            };
            return audit::run(&urls, cmd, json_out).await;
        }
        Cmd::Simulate(args) => return simulate::simulate(args, json_out).await,
        Cmd::Notifications { id } => {
            return notifications::run(&cli.notifier_url, id, json_out).await;
        }
        Cmd::Report { from, to, by } => {
            return sla::report(&cli.sla_url, from, to, by, json_out).await;
        }
        other => other,
    };
    let mut intake = IntakeServiceClient::new(channel(&cli.intake_url).await?);
    match command {
        Cmd::Open {
            title,
            service,
            impact,
            urgency,
            group,
            description,
            dedup_key,
            request_id,
        } => {
            let r = intake
                .open_incident(pb::OpenIncidentRequest {
                    title,
                    description,
                    service,
                    group,
                    impact: level_i32(impact).0,
                    urgency: level_i32(urgency).1,
                    dedup_key,
                    request_id,
                    actor,
                })
                .await?
                .into_inner();
            let inc = r
                .incident
                .context("the server answered without the incident")?;
            out.opened(&inc, r.deduplicated);
        }
        Cmd::Ack { id } => {
            let inc = intake
                .acknowledge_incident(pb::AcknowledgeIncidentRequest { id, actor })
                .await?;
            out.incident(&inc.into_inner());
        }
        Cmd::Assign {
            id,
            group,
            assignee,
        } => {
            let inc = intake
                .assign_incident(pb::AssignIncidentRequest {
                    id,
                    group,
                    assignee,
                    actor,
                })
                .await?;
            out.incident(&inc.into_inner());
        }
        Cmd::Start { id } => {
            let inc = intake
                .start_work(pb::StartWorkRequest { id, actor })
                .await?;
            out.incident(&inc.into_inner());
        }
        Cmd::Hold { id, reason } => {
            let inc = intake
                .put_on_hold(pb::PutOnHoldRequest { id, reason, actor })
                .await?;
            out.incident(&inc.into_inner());
        }
        Cmd::Resume { id } => {
            let inc = intake
                .resume_incident(pb::ResumeIncidentRequest { id, actor })
                .await?;
            out.incident(&inc.into_inner());
        }
        Cmd::Resolve { id, note } => {
            let inc = intake
                .resolve_incident(pb::ResolveIncidentRequest { id, note, actor })
                .await?;
            out.incident(&inc.into_inner());
        }
        Cmd::Close { id } => {
            let inc = intake
                .close_incident(pb::CloseIncidentRequest { id, actor })
                .await?;
            out.incident(&inc.into_inner());
        }
        Cmd::Reopen { id, reason } => {
            let inc = intake
                .reopen_incident(pb::ReopenIncidentRequest { id, reason, actor })
                .await?;
            out.incident(&inc.into_inner());
        }
        Cmd::Comment { id, text } => {
            let inc = intake
                .comment_incident(pb::CommentIncidentRequest { id, text, actor })
                .await?;
            out.incident(&inc.into_inner());
        }
        Cmd::Priority {
            id,
            impact,
            urgency,
            priority,
            reason,
        } => {
            let inc = intake
                .change_priority(pb::ChangePriorityRequest {
                    id,
                    impact: impact.map_or(0, |l| level_i32(l).0),
                    urgency: urgency.map_or(0, |l| level_i32(l).1),
                    priority: priority.map_or(0, prio_i32),
                    reason,
                    actor,
                })
                .await?;
            out.incident(&inc.into_inner());
        }
        Cmd::Get { id } => {
            let inc = intake.get_incident(pb::GetIncidentRequest { id }).await?;
            out.incident(&inc.into_inner());
        }
        Cmd::List {
            filters,
            limit,
            mut page_token,
            all,
        } => {
            let mut incidents = Vec::new();
            loop {
                let page = intake
                    .list_incidents(pb::ListIncidentsRequest {
                        statuses: filters.statuses.iter().copied().map(status_i32).collect(),
                        priorities: filters.priorities.iter().copied().map(prio_i32).collect(),
                        service: filters.service.clone(),
                        group: filters.group.clone(),
                        page_size: limit,
                        page_token: page_token.clone(),
                    })
                    .await?
                    .into_inner();
                incidents.extend(page.incidents);
                page_token = page.next_page_token;
                if !all || page_token.is_empty() {
                    break;
                }
            }
            out.list(&incidents, &page_token);
        }
        Cmd::Sla { .. }
        | Cmd::Report { .. }
        | Cmd::Notifications { .. }
        | Cmd::Audit { .. }
        | Cmd::Simulate(_) => unreachable!("answered above"),
        Cmd::Watch { filters } => {
            let mut stream = intake
                .watch_incidents(pb::WatchIncidentsRequest {
                    statuses: filters.statuses.iter().copied().map(status_i32).collect(),
                    priorities: filters.priorities.iter().copied().map(prio_i32).collect(),
                    service: filters.service,
                    group: filters.group,
                })
                .await?
                .into_inner();
            while let Some(change) = stream.next().await {
                out.change(&change?);
            }
        }
    }
    Ok(())
}

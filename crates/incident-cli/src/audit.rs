//! `incidentctl audit ...`: the auditor's verbs over the services' `AuditService`s and export
//! files: `replay` (the merged history of every service in time order), `verify` (every hash
//! chain recomputed here, live or from an export), `export` (JSON lines, docs/audit.md) and
//! `timeline` (one incident across the services, or as it stood `--at` an instant). Only
//! parsing and printing live here; the logic is in `incident-audit`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use incident_audit::client::{self, Read, Target};
use incident_audit::record::sort_merged;
use incident_audit::timeline::{self, Entry, Snapshot};
use incident_audit::verify::{ChainReport, verify_export};
use incident_audit::{AuditRecord, INTAKE, NOTIFIER, SLA, export};
use incident_proto::v1 as pb;
use serde_json::{Value, json};

/// The gRPC addresses of the services whose logs are read.
#[derive(Debug, Clone)]
pub struct AuditUrls {
    pub intake: String,
    pub sla: String,
    pub notifier: String,
}

impl AuditUrls {
    fn targets(&self) -> Vec<Target> {
        vec![
            Target {
                service: INTAKE,
                url: self.intake.clone(),
            },
            Target {
                service: SLA,
                url: self.sla.clone(),
            },
            Target {
                service: NOTIFIER,
                url: self.notifier.clone(),
            },
        ]
    }
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// The merged history of every service, in time order (JSON lines in the export format
    /// with `-o json`).
    Replay {
        /// Only events at or after this instant (RFC 3339).
        #[arg(long, conflicts_with = "from_seq")]
        from: Option<String>,
        /// Only records from this sequence number on, in each service's log.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Only the records about this incident.
        #[arg(long)]
        incident: Option<String>,
    },
    /// Recompute every hash chain: of the live services (read whole and recomputed here), or
    /// of an export file, offline. Exits non-zero naming the first record that does not match.
    Verify {
        /// An export file to verify offline instead of the live services.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Write every service's whole log as JSON lines, enough to verify and replay offline.
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// One incident across the services, each event with its time, source and why.
    Timeline {
        id: String,
        /// Show the incident, its SLA clocks and its pages as they stood at this instant (RFC
        /// 3339), and the timeline up to it.
        #[arg(long)]
        at: Option<String>,
        /// Read the history from an export file instead of the live services.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

fn parse_time(s: &str, flag: &str) -> Result<jiff::Timestamp> {
    s.parse().with_context(|| {
        format!("{flag} {s:?}: expected an RFC 3339 instant like 2026-12-01T00:00:00Z")
    })
}

/// Reads every service; unreachable ones are reported on stderr and skipped; an error when
/// none answers. Reads that stopped on a damaged record are kept and returned as problems.
async fn read_all(urls: &AuditUrls, req: pb::ReadLogRequest) -> Result<(Vec<Read>, Vec<String>)> {
    let targets = urls.targets();
    let reads =
        futures::future::join_all(targets.iter().map(|t| client::read_log(t, req.clone()))).await;
    let mut ok = Vec::new();
    let mut problems = Vec::new();
    let mut skipped = Vec::new();
    for (t, r) in targets.iter().zip(reads) {
        match r {
            Ok(read) => {
                if let Some(e) = &read.error {
                    problems.push(format!(
                        "{}: reading stopped after {} records: {e}",
                        read.service,
                        read.records.len()
                    ));
                }
                ok.push(read);
            }
            Err(e) => {
                eprintln!("warning: {} skipped: {e}", t.service);
                skipped.push(t.service);
            }
        }
    }
    if ok.is_empty() {
        bail!(
            "no service answered ({} skipped); check --intake-url, --sla-url, --notifier-url",
            skipped.join(", ")
        );
    }
    Ok((ok, problems))
}

fn read_export(path: &Path) -> Result<Vec<export::Exported>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading export {}", path.display()))?;
    export::parse(&text).with_context(|| format!("in {}", path.display()))
}

pub async fn run(urls: &AuditUrls, cmd: AuditCmd, json: bool) -> Result<()> {
    match cmd {
        AuditCmd::Replay {
            from,
            from_seq,
            incident,
        } => {
            let from_time = from
                .as_deref()
                .map(|s| parse_time(s, "--from"))
                .transpose()?
                .map(|t| prost_types::Timestamp {
                    seconds: t.as_second(),
                    nanos: t.subsec_nanosecond(),
                });
            let req = pb::ReadLogRequest {
                from_seq: from_seq.unwrap_or(0),
                from_time,
                incident_id: incident.unwrap_or_default(),
            };
            let (reads, problems) = read_all(urls, req).await?;
            let mut records: Vec<AuditRecord> = reads.into_iter().flat_map(|r| r.records).collect();
            sort_merged(&mut records);
            print_replay(&records, json);
            fail_on(&problems)
        }
        AuditCmd::Verify { file: Some(path) } => {
            let exported = read_export(&path)?;
            let reports = verify_export(&exported);
            print_reports(&reports, json);
            let problems: Vec<String> = reports
                .iter()
                .filter_map(|r| r.problem.as_ref().map(ToString::to_string))
                .collect();
            fail_on(&problems)
        }
        AuditCmd::Verify { file: None } => verify_live(urls, json).await,
        AuditCmd::Export { out } => {
            let (reads, problems) = read_all(urls, pb::ReadLogRequest::default()).await?;
            let records: Vec<&AuditRecord> = reads.iter().flat_map(|r| &r.records).collect();
            let text = export::to_text(records.iter().copied());
            let tmp = out.with_extension("partial");
            std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &out)
                .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
            let heads: Vec<Value> = reads
                .iter()
                .map(|r| {
                    let last = r.records.last();
                    json!({
                        "service": r.service,
                        "records": r.records.len(),
                        "head_seq": last.map_or(0, |l| l.record.seq),
                        "head_hash": last.map(|l| l.record.hash_hex()),
                    })
                })
                .collect();
            if json {
                println!(
                    "{}",
                    json!({"file": out.display().to_string(), "records": records.len(), "heads": heads})
                );
            } else {
                println!("exported {} records to {}", records.len(), out.display());
                println!(
                    "heads (keep them somewhere else to detect a truncated or rewritten log):"
                );
                for h in &heads {
                    println!(
                        "  {:<18} seq {:<8} {}",
                        h["service"].as_str().unwrap_or(""),
                        h["head_seq"],
                        h["head_hash"].as_str().unwrap_or("-")
                    );
                }
            }
            fail_on(&problems)
        }
        AuditCmd::Timeline { id, at, file } => {
            let at = at.as_deref().map(|s| parse_time(s, "--at")).transpose()?;
            let (records, problems) = match file {
                Some(path) => (export::records(&read_export(&path)?), Vec::new()),
                None => {
                    let req = pb::ReadLogRequest {
                        incident_id: id.clone(),
                        ..Default::default()
                    };
                    let (reads, problems) = read_all(urls, req).await?;
                    (
                        reads.into_iter().flat_map(|r| r.records).collect(),
                        problems,
                    )
                }
            };
            let entries = timeline::timeline(&id, &records, at);
            let snapshot = match at {
                Some(at) => Some(timeline::snapshot_at(&id, &records, at).map_err(|e| anyhow!(e))?),
                None => None,
            };
            if entries.is_empty() && snapshot.as_ref().is_none_or(|s| s.incident.is_none()) {
                bail!("no service holds an event about {id}");
            }
            print_timeline(&id, &entries, snapshot.as_ref(), json);
            fail_on(&problems)
        }
    }
}

fn fail_on(problems: &[String]) -> Result<()> {
    match problems {
        [] => Ok(()),
        [one] => Err(anyhow!("{one}")),
        many => Err(anyhow!("{}", many.join("; "))),
    }
}

fn print_replay(records: &[AuditRecord], json: bool) {
    if json {
        for r in records {
            println!("{}", export::to_line(r));
        }
        return;
    }
    println!(
        "{:<30} {:<18} {:>6}  {:<32} {:<30} WHAT",
        "TIME", "SERVICE", "SEQ", "TYPE", "SUBJECT"
    );
    for r in records {
        let what = r
            .envelope
            .as_ref()
            .map(|e| timeline::describe(&e.ty, &e.data).0)
            .unwrap_or_else(|| "(not an event envelope)".into());
        let what = if r.is_input() {
            format!("input recorded: {what}")
        } else {
            what
        };
        println!(
            "{:<30} {:<18} {:>6}  {:<32} {:<30} {what}",
            r.time().map(|t| t.to_string()).unwrap_or_default(),
            r.service,
            r.record.seq,
            r.event_type(),
            r.subject(),
        );
    }
}

fn print_reports(reports: &[ChainReport], json: bool) {
    if json {
        let ok = reports.iter().all(ChainReport::ok);
        println!("{}", json!({"ok": ok, "services": reports}));
        return;
    }
    for r in reports {
        match &r.problem {
            None => println!(
                "{:<18} intact: {} records, head {} {}",
                r.service, r.records, r.head_seq, r.head_hash
            ),
            Some(p) => println!("{:<18} BROKEN at record {}: {}", r.service, p.seq, p.reason),
        }
    }
}

async fn verify_live(urls: &AuditUrls, json: bool) -> Result<()> {
    let targets = urls.targets();
    let verdicts = futures::future::join_all(targets.iter().map(client::verify_live)).await;
    let mut problems = Vec::new();
    let mut answered = 0;
    let mut out = Vec::new();
    for v in &verdicts {
        if let Some(e) = &v.unreachable {
            eprintln!("warning: {} skipped (not verified): {e}", v.service);
            out.push(json!({"service": v.service, "url": v.url, "skipped": e}));
            continue;
        }
        answered += 1;
        problems.extend(v.problems.iter().cloned());
        out.push(json!({
            "service": v.service,
            "url": v.url,
            "ok": v.ok(),
            "chain": v.chain,
            "server_says_ok": v.server.as_ref().map(|s| s.ok),
            "problems": v.problems,
        }));
        if !json {
            match (&v.chain, v.ok()) {
                (Some(c), true) => println!(
                    "{:<18} intact (recomputed here, and the service agrees): {} records, head {} {}",
                    v.service, c.records, c.head_seq, c.head_hash
                ),
                _ => {
                    for p in &v.problems {
                        println!("{:<18} BROKEN: {p}", v.service);
                    }
                }
            }
        }
    }
    if json {
        println!(
            "{}",
            json!({"ok": answered > 0 && problems.is_empty(), "services": out})
        );
    }
    if answered == 0 {
        bail!("no service answered; nothing was verified");
    }
    fail_on(&problems)
}

fn print_timeline(id: &str, entries: &[Entry], snapshot: Option<&Snapshot>, json: bool) {
    if json {
        let mut v = json!({"incident": id, "timeline": entries});
        if let Some(s) = snapshot {
            v["at"] = json!(s.at.to_string());
            v["state"] = serde_json::to_value(s).unwrap_or(Value::Null);
        }
        println!("{v}");
        return;
    }
    if let Some(s) = snapshot {
        println!("{id} as it stood at {}:", s.at);
        match &s.incident {
            Some(i) => println!(
                "  incident: {} {} {:?} (service {}, group {}{}), opened {}{}{}",
                i["priority"].as_str().unwrap_or(""),
                i["status"].as_str().unwrap_or(""),
                i["title"].as_str().unwrap_or(""),
                i["service"].as_str().unwrap_or(""),
                i["group"].as_str().unwrap_or(""),
                i["assignee"]
                    .as_str()
                    .map(|a| format!(" / {a}"))
                    .unwrap_or_default(),
                i["opened_at"].as_str().unwrap_or(""),
                i["acknowledged_at"]
                    .as_str()
                    .map(|a| format!(", acknowledged {a}"))
                    .unwrap_or_default(),
                i["resolved_at"]
                    .as_str()
                    .map(|a| format!(", resolved {a}"))
                    .unwrap_or_default(),
            ),
            None => println!("  incident: not opened yet"),
        }
        match &s.sla {
            Some(st) => {
                println!(
                    "  SLA policy {} ({}), priority {}, status {}",
                    st.policy,
                    st.policy_hash.get(..12).unwrap_or(&st.policy_hash),
                    st.priority,
                    st.status
                );
                for c in [&st.response, &st.resolution] {
                    let fmt = |d: Option<jiff::SignedDuration>| {
                        d.map_or_else(|| "-".to_owned(), incident_sla::format_duration)
                    };
                    println!(
                        "    {:<10} {:<8} target {:<6} elapsed {:<8} remaining {:<8} due {}",
                        c.clock.to_string(),
                        format!("{:?}", c.state).to_lowercase(),
                        fmt(c.target),
                        incident_sla::format_duration(c.elapsed),
                        fmt(c.remaining),
                        c.due_at
                            .map(|d| d.to_string())
                            .unwrap_or_else(|| "-".into())
                    );
                }
            }
            None => println!("  SLA: {}", s.sla_note.as_deref().unwrap_or("no clocks")),
        }
        if s.pages.is_empty() {
            println!("  pages: none");
        }
        for p in &s.pages {
            println!(
                "  page {} {}: {} tier {} round {} ({})",
                p.page_id, p.oncall, p.state, p.tier, p.round, p.reason
            );
        }
        for n in &s.notifications {
            println!(
                "  notification {} via {}: {} ({} attempts)",
                n.notification_id, n.channel, n.state, n.attempts
            );
        }
        println!();
    }
    println!("{:<30} {:<26} {:<56} WHY", "TIME", "SOURCE", "WHAT");
    for e in entries {
        println!(
            "{:<30} {:<26} {:<56} {}",
            e.time.to_string(),
            format!("{}#{}", e.service, e.seq),
            e.what,
            e.why
        );
    }
}

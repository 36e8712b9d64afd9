//! `incidentctl sla ...` and `incidentctl report`: SLA clocks, clocks at risk, breaches, and the
//! agreed service levels against the actual ones.

use anyhow::{Context, Result};
use clap::Subcommand;
use incident_proto::v1 as pb;
use incident_proto::v1::sla_service_client::SlaServiceClient;
use serde_json::{Value, json};

use crate::channel;

#[derive(Subcommand)]
pub enum SlaCmd {
    /// Each clock of an incident: target, due time, elapsed, remaining, state.
    Show { id: String },
    /// Running clocks, the least time remaining first.
    AtRisk {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Breaches whose deadline falls in [--from, --to).
    Breaches {
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
}

fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref()
        .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
        .map_or(Value::Null, |t| Value::String(t.to_string()))
}

fn parse_ts(s: &Option<String>, flag: &str) -> Result<Option<prost_types::Timestamp>> {
    s.as_deref()
        .map(|s| {
            let t: jiff::Timestamp = s.parse().with_context(|| {
                format!("{flag} {s:?}: expected an RFC 3339 instant like 2026-12-01T00:00:00Z")
            })?;
            Ok(prost_types::Timestamp {
                seconds: t.as_second(),
                nanos: t.subsec_nanosecond(),
            })
        })
        .transpose()
}

fn human(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::from(sign);
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.len() == sign.len() {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn clock_json(c: &pb::SlaClock) -> Value {
    json!({
        "clock": c.clock,
        "state": c.state,
        "target_secs": c.target_secs,
        "elapsed_secs": c.elapsed_secs,
        "remaining_secs": c.remaining_secs,
        "due_at": ts(&c.due_at),
        "breached_at": ts(&c.breached_at),
        "stopped_at": ts(&c.stopped_at),
        "calendar": c.calendar,
        "cycle": c.cycle,
        "paused": c.paused.iter().map(|p| json!({"from": ts(&p.from), "to": ts(&p.to), "status": p.status})).collect::<Vec<_>>(),
    })
}

pub async fn run(url: &str, cmd: SlaCmd, json_out: bool) -> Result<()> {
    let mut c = SlaServiceClient::new(channel(url).await?);
    match cmd {
        SlaCmd::Show { id } => {
            let s = c
                .get_incident_sla(pb::GetIncidentSlaRequest { incident_id: id })
                .await?
                .into_inner();
            if json_out {
                println!(
                    "{}",
                    json!({
                        "incident_id": s.incident_id,
                        "policy": s.policy,
                        "policy_hash": s.policy_hash,
                        "priority": s.priority,
                        "status": s.status,
                        "service": s.service,
                        "group": s.group,
                        "opened_at": ts(&s.opened_at),
                        "escalations": s.escalations,
                        "clocks": s.clocks.iter().map(clock_json).collect::<Vec<_>>(),
                    })
                );
            } else {
                println!(
                    "{} {} {} policy {} ({})",
                    s.incident_id,
                    s.priority,
                    s.status,
                    s.policy,
                    &s.policy_hash[..s.policy_hash.len().min(12)]
                );
                println!(
                    "{:<11} {:<9} {:>8} {:>9} {:>10} DUE",
                    "CLOCK", "STATE", "TARGET", "ELAPSED", "REMAINING"
                );
                for k in &s.clocks {
                    println!(
                        "{:<11} {:<9} {:>8} {:>9} {:>10} {}",
                        k.clock,
                        k.state,
                        if k.target_secs > 0 {
                            human(k.target_secs)
                        } else {
                            "-".into()
                        },
                        human(k.elapsed_secs),
                        if k.target_secs > 0 {
                            human(k.remaining_secs)
                        } else {
                            "-".into()
                        },
                        ts(&k.due_at).as_str().unwrap_or("-")
                    );
                }
                if !s.escalations.is_empty() {
                    println!("escalated to levels {:?}", s.escalations);
                }
            }
        }
        SlaCmd::AtRisk { limit } => {
            let r = c
                .list_at_risk(pb::ListAtRiskRequest { limit })
                .await?
                .into_inner();
            if json_out {
                let all: Vec<Value> = r
                    .clocks
                    .iter()
                    .map(|a| {
                        let mut v = a.clock.as_ref().map(clock_json).unwrap_or(Value::Null);
                        v["incident_id"] = json!(a.incident_id);
                        v["priority"] = json!(a.priority);
                        v["service"] = json!(a.service);
                        v["group"] = json!(a.group);
                        v
                    })
                    .collect();
                println!("{}", Value::Array(all));
            } else {
                println!(
                    "{:<30} {:<4} {:<11} {:>10} DUE",
                    "INCIDENT", "PRIO", "CLOCK", "REMAINING"
                );
                for a in &r.clocks {
                    if let Some(k) = &a.clock {
                        println!(
                            "{:<30} {:<4} {:<11} {:>10} {}",
                            a.incident_id,
                            a.priority,
                            k.clock,
                            human(k.remaining_secs),
                            ts(&k.due_at).as_str().unwrap_or("-")
                        );
                    }
                }
            }
        }
        SlaCmd::Breaches { from, to } => {
            let r = c
                .list_breaches(pb::ListBreachesRequest {
                    from: parse_ts(&from, "--from")?,
                    to: parse_ts(&to, "--to")?,
                })
                .await?
                .into_inner();
            if json_out {
                let all: Vec<Value> = r
                    .breaches
                    .iter()
                    .map(|b| {
                        json!({
                            "incident_id": b.incident_id, "clock": b.clock, "priority": b.priority,
                            "service": b.service, "group": b.group, "due_at": ts(&b.due_at),
                            "fired_at": ts(&b.fired_at), "late_ms": b.late_ms,
                            "target_secs": b.target_secs, "elapsed_secs": b.elapsed_secs,
                            "policy": b.policy, "policy_hash": b.policy_hash,
                        })
                    })
                    .collect();
                println!("{}", Value::Array(all));
            } else {
                println!(
                    "{:<30} {:<4} {:<11} {:<26} LATE",
                    "INCIDENT", "PRIO", "CLOCK", "DUE"
                );
                for b in &r.breaches {
                    println!(
                        "{:<30} {:<4} {:<11} {:<26} {}ms",
                        b.incident_id,
                        b.priority,
                        b.clock,
                        ts(&b.due_at).as_str().unwrap_or("-"),
                        b.late_ms
                    );
                }
            }
        }
    }
    Ok(())
}

pub async fn report(
    url: &str,
    from: Option<String>,
    to: Option<String>,
    by: String,
    json_out: bool,
) -> Result<()> {
    let mut c = SlaServiceClient::new(channel(url).await?);
    let r = c
        .report(pb::ReportRequest {
            from: parse_ts(&from, "--from")?,
            to: parse_ts(&to, "--to")?,
            by,
        })
        .await?
        .into_inner();
    let opt = |v: i64| if v < 0 { Value::Null } else { json!(v) };
    let pct = |v: f64| if v < 0.0 { Value::Null } else { json!(v) };
    if json_out {
        let rows: Vec<Value> = r
            .rows
            .iter()
            .map(|x| {
                json!({
                    "key": x.key, "incidents": x.incidents,
                    "response_target_secs": x.response_target_secs, "resolution_target_secs": x.resolution_target_secs,
                    "response_met_pct": pct(x.response_met_pct), "resolution_met_pct": pct(x.resolution_met_pct),
                    "response_breached": x.response_breached, "resolution_breached": x.resolution_breached,
                    "response_tracked": x.response_tracked, "resolution_tracked": x.resolution_tracked,
                    "mtta_secs": opt(x.mtta_secs), "mttr_secs": opt(x.mttr_secs),
                    "resolution_p50_secs": opt(x.resolution_p50_secs), "resolution_p90_secs": opt(x.resolution_p90_secs),
                })
            })
            .collect();
        println!(
            "{}",
            json!({"by": r.by, "policy_hash": r.policy_hash, "rows": rows})
        );
        return Ok(());
    }
    let show_pct = |v: f64| {
        if v < 0.0 {
            "-".to_owned()
        } else {
            format!("{v:.1}%")
        }
    };
    let show_d = |v: i64| if v < 0 { "-".to_owned() } else { human(v) };
    println!(
        "{:<16} {:>5} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        r.by.to_uppercase(),
        "N",
        "RESP.TGT",
        "RESP.MET",
        "RESOL.TGT",
        "RES.MET",
        "BREACHES",
        "MTTA",
        "MTTR",
        "P50",
        "P90"
    );
    for x in &r.rows {
        println!(
            "{:<16} {:>5} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            x.key,
            x.incidents,
            if x.response_target_secs > 0 {
                human(x.response_target_secs)
            } else {
                "-".into()
            },
            show_pct(x.response_met_pct),
            if x.resolution_target_secs > 0 {
                human(x.resolution_target_secs)
            } else {
                "-".into()
            },
            show_pct(x.resolution_met_pct),
            x.response_breached + x.resolution_breached,
            show_d(x.mtta_secs),
            show_d(x.mttr_secs),
            show_d(x.resolution_p50_secs),
            show_d(x.resolution_p90_secs),
        );
    }
    Ok(())
}

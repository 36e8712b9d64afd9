//! The what-if simulation, pure and deterministic: recorded incidents (intake's events from an
//! export) or a synthetic load (a seeded scenario) replayed through the SLA engine under another
//! policy on a virtual clock, reported per priority as met / breached / pending and % met, next
//! to what the recorded policy versions gave (each incident under the version its clocks bound
//! to in the SLA log). No wall clock: "as of" defaults to the last event time in the input.
//! Same input, same report, byte for byte ([`render_json`], [`render_table`]).

use std::collections::{BTreeMap, BTreeSet};

use incident_domain::{EventKind, stored};
use incident_sla::{
    ClockInput, Compliance, IncidentHistory, IncidentOutcome, PolicySet, Priority, SlaResult,
    TimeBasis, parse_duration, report_by_priority, what_if,
};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::record::{AuditRecord, INTAKE, SLA};
use crate::rng::SplitMix64;
use crate::slalog;
use incident_sla::incident_events::inputs_of;

/// Compliance counts of one clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    pub met: usize,
    pub breached: usize,
    pub pending: usize,
    /// `met / (met + breached) x 100`, rounded to 0.01; `None` when nothing is decided.
    pub pct_met: Option<f64>,
}

impl From<&Compliance> for Counts {
    fn from(c: &Compliance) -> Self {
        Counts {
            met: c.met,
            breached: c.breached,
            pending: c.pending,
            pct_met: c.pct_met.map(|p| (p * 100.0).round() / 100.0),
        }
    }
}

/// Both clocks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Clocks {
    pub response: Counts,
    pub resolution: Counts,
}

/// One priority's line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub priority: String,
    pub incidents: usize,
    /// Under the recorded policy versions (export mode with an SLA log).
    pub recorded: Option<Clocks>,
    /// Under the simulated policy.
    pub simulated: Clocks,
    /// Distinct (incident, clock) breaches the SLA log recorded (`sla.breached.v1`), by the
    /// priority the event carried.
    pub recorded_breach_events: Option<usize>,
}

/// An incident whose result differs between the recorded and the simulated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub id: String,
    pub clock: String,
    pub recorded: String,
    pub simulated: String,
}

/// An incident left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub id: String,
    pub reason: String,
}

/// The simulation's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `export` or `scenario`.
    pub mode: String,
    pub as_of: Timestamp,
    pub incidents: usize,
    /// Hash of the simulated policy set.
    pub policy_hash: String,
    /// Hashes of the recorded policy versions used, sorted.
    pub recorded_policies: Vec<String>,
    pub rows: Vec<Row>,
    pub changes: Vec<Change>,
    pub skipped: Vec<Skip>,
}

/// Why a simulation cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SimError(pub String);

fn err(s: impl Into<String>) -> SimError {
    SimError(s.into())
}

/// The recorded incidents as histories: intake's events (or, when the export holds no intake
/// records, the copies the SLA timer recorded under `input.<id>`), per incident in seq order,
/// mapped to clock inputs as the SLA timer maps them. Sorted by opening, then id.
pub fn histories(records: &[AuditRecord]) -> Result<Vec<IncidentHistory>, SimError> {
    let has_intake = records.iter().any(|r| r.service == INTAKE);
    let mut streams: BTreeMap<String, Vec<&AuditRecord>> = BTreeMap::new();
    for r in records {
        let id = if has_intake {
            (r.service == INTAKE).then_some(r.record.stream.as_str())
        } else if r.service == SLA {
            r.record.stream.strip_prefix("input.")
        } else {
            None
        };
        if let Some(id) = id {
            streams.entry(id.to_owned()).or_default().push(r);
        }
    }
    let mut out = Vec::new();
    for (id, mut recs) in streams {
        recs.sort_by_key(|r| r.record.seq);
        let mut history: Option<IncidentHistory> = None;
        let mut last = Timestamp::UNIX_EPOCH;
        for r in recs {
            let where_ = || format!("{} record {}", r.service, r.record.seq);
            let env = r
                .envelope
                .as_ref()
                .ok_or_else(|| err(format!("{}: not an event envelope", where_())))?;
            let event = stored::decode(env).map_err(|e| err(format!("{}: {e}", where_())))?;
            match (&mut history, &event.kind) {
                (
                    None,
                    EventKind::Opened {
                        priority,
                        service,
                        group,
                        ..
                    },
                ) => {
                    last = event.at;
                    history = Some(IncidentHistory {
                        id: id.clone(),
                        opened_at: event.at,
                        priority: *priority,
                        service: service.clone(),
                        group: group.clone(),
                        inputs: Vec::new(),
                    });
                }
                (None, _) => {
                    return Err(err(format!(
                        "{}: incident {id} does not start with its opening",
                        where_()
                    )));
                }
                (Some(_), EventKind::Opened { .. }) => {}
                (Some(h), _) => {
                    let at = event.at.max(last);
                    last = at;
                    h.inputs.extend(inputs_of(&event, at));
                }
            }
        }
        out.extend(history);
    }
    out.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}

/// The last event time among the records.
pub fn last_time(records: &[AuditRecord]) -> Option<Timestamp> {
    records.iter().filter_map(AuditRecord::time).max()
}

fn result_name(r: SlaResult) -> &'static str {
    match r {
        SlaResult::Met => "met",
        SlaResult::Breached => "breached",
        SlaResult::Pending => "pending",
        SlaResult::Untracked => "untracked",
    }
}

fn clocks_of(stats: Option<&incident_sla::Stats>) -> Clocks {
    stats.map_or_else(Clocks::default, |s| Clocks {
        response: (&s.response).into(),
        resolution: (&s.resolution).into(),
    })
}

/// Simulates the recorded incidents of an export under `policy`, as of `as_of` (default: the
/// last event time in the records).
pub fn simulate_records(
    records: &[AuditRecord],
    policy: &PolicySet,
    as_of: Option<Timestamp>,
) -> Result<Report, SimError> {
    let as_of = as_of
        .or_else(|| last_time(records))
        .ok_or_else(|| err("the export holds no events"))?;
    let histories: Vec<IncidentHistory> = histories(records)?
        .into_iter()
        .filter(|h| h.opened_at <= as_of)
        .collect();

    let versions = slalog::policy_versions(records).map_err(err)?;
    let bound = slalog::bound_policies(records).map_err(err)?;
    let mut skipped = Vec::new();
    let recorded: Option<BTreeMap<String, IncidentOutcome>> = if versions.is_empty() {
        None
    } else {
        let by_hash: BTreeMap<&str, &PolicySet> =
            versions.iter().map(|v| (v.set.hash(), &v.set)).collect();
        let mut groups: BTreeMap<String, Vec<IncidentHistory>> = BTreeMap::new();
        for h in &histories {
            let hash = bound.get(&h.id).cloned().or_else(|| {
                versions
                    .iter()
                    .rev()
                    .find(|v| v.time <= h.opened_at)
                    .or(versions.first())
                    .map(|v| v.set.hash().to_owned())
            });
            if let Some(hash) = hash {
                groups.entry(hash).or_default().push(h.clone());
            }
        }
        let mut outcomes = BTreeMap::new();
        for (hash, group) in &groups {
            let Some(set) = by_hash.get(hash.as_str()) else {
                continue;
            };
            let r = what_if(group, set, as_of, TimeBasis::Business);
            outcomes.extend(r.outcomes);
            skipped.extend(r.skipped.into_iter().map(|s| Skip {
                id: s.id,
                reason: format!("under the recorded policy: {}", s.reason),
            }));
        }
        Some(outcomes)
    };
    let recorded_policies: Vec<String> = recorded
        .as_ref()
        .map(|o| {
            o.values()
                .map(|x| x.policy_hash.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .unwrap_or_default();

    let mut breach_events: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let has_sla = records.iter().any(|r| r.service == SLA);
    for r in records.iter().filter(|r| r.service == SLA && !r.is_input()) {
        let Some(env) = &r.envelope else { continue };
        if env.ty == "sla.breached.v1" && env.time <= as_of {
            let d = &env.data;
            let p = d["incident"]["priority"].as_str().unwrap_or("").to_owned();
            let clock = d["clock"].as_str().unwrap_or("").to_owned();
            breach_events
                .entry(p)
                .or_default()
                .insert((env.subject.clone(), clock));
        }
    }

    let simulated = what_if(&histories, policy, as_of, TimeBasis::Business);
    skipped.extend(simulated.skipped.iter().map(|s| Skip {
        id: s.id.clone(),
        reason: format!("under the simulated policy: {}", s.reason),
    }));
    let sim_outcomes: BTreeMap<String, IncidentOutcome> =
        simulated.outcomes.iter().cloned().collect();
    let mut report = build_report(
        "export",
        as_of,
        histories.len(),
        policy,
        &sim_outcomes,
        recorded.as_ref(),
        recorded_policies,
        skipped,
    );
    for row in &mut report.rows {
        row.recorded_breach_events =
            has_sla.then(|| breach_events.get(&row.priority).map_or(0, BTreeSet::len));
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    mode: &str,
    as_of: Timestamp,
    incidents: usize,
    policy: &PolicySet,
    simulated: &BTreeMap<String, IncidentOutcome>,
    recorded: Option<&BTreeMap<String, IncidentOutcome>>,
    recorded_policies: Vec<String>,
    mut skipped: Vec<Skip>,
) -> Report {
    let sim_list: Vec<IncidentOutcome> = simulated.values().cloned().collect();
    let sim_stats = report_by_priority(&sim_list, TimeBasis::Business);
    let rec_stats = recorded.map(|r| {
        let list: Vec<IncidentOutcome> = r.values().cloned().collect();
        report_by_priority(&list, TimeBasis::Business)
    });
    let mut priorities: BTreeSet<Priority> = sim_stats.keys().copied().collect();
    if let Some(r) = &rec_stats {
        priorities.extend(r.keys().copied());
    }
    let rows = priorities
        .into_iter()
        .map(|p| Row {
            priority: p.as_str().to_owned(),
            incidents: sim_stats
                .get(&p)
                .map(|s| s.count)
                .or_else(|| rec_stats.as_ref().and_then(|r| r.get(&p)).map(|s| s.count))
                .unwrap_or(0),
            recorded: rec_stats.as_ref().map(|r| clocks_of(r.get(&p))),
            simulated: clocks_of(sim_stats.get(&p)),
            recorded_breach_events: None,
        })
        .collect();
    let mut changes = Vec::new();
    if let Some(recorded) = recorded {
        for (id, sim) in simulated {
            let Some(rec) = recorded.get(id) else {
                continue;
            };
            for (clock, a, b) in [
                ("response", rec.response.result, sim.response.result),
                ("resolution", rec.resolution.result, sim.resolution.result),
            ] {
                if a != b {
                    changes.push(Change {
                        id: id.clone(),
                        clock: clock.into(),
                        recorded: result_name(a).into(),
                        simulated: result_name(b).into(),
                    });
                }
            }
        }
    }
    skipped.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.reason.cmp(&b.reason)));
    Report {
        mode: mode.into(),
        as_of,
        incidents,
        policy_hash: policy.hash().to_owned(),
        recorded_policies,
        rows,
        changes,
        skipped,
    }
}

/// The report as JSON (pretty, one trailing newline).
pub fn render_json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).unwrap_or_default();
    s.push('\n');
    s
}

fn counts(c: &Counts) -> String {
    let pct = c
        .pct_met
        .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%"));
    format!("{}/{}/{} {pct}", c.met, c.breached, c.pending)
}

/// The report as a table for people.
pub fn render_table(report: &Report) -> String {
    let short = |h: &str| h.get(..12).unwrap_or(h).to_owned();
    let mut out = format!(
        "what-if ({}) as of {}: {} incidents; simulated policy {}",
        report.mode,
        report.as_of,
        report.incidents,
        short(&report.policy_hash)
    );
    if !report.recorded_policies.is_empty() {
        let hashes: Vec<String> = report.recorded_policies.iter().map(|h| short(h)).collect();
        out.push_str(&format!("; recorded policy {}", hashes.join(", ")));
    }
    out.push_str("\nmet/breached/pending % met\n");
    let with_recorded = report.rows.iter().any(|r| r.recorded.is_some());
    let mut header = vec!["PRIORITY".to_owned(), "INCIDENTS".to_owned()];
    if with_recorded {
        header.push("RESPONSE recorded".into());
    }
    header.push("RESPONSE simulated".into());
    if with_recorded {
        header.push("RESOLUTION recorded".into());
    }
    header.push("RESOLUTION simulated".into());
    let mut lines = vec![header];
    for r in &report.rows {
        let mut l = vec![r.priority.clone(), r.incidents.to_string()];
        if let Some(rec) = &r.recorded {
            l.push(counts(&rec.response));
        } else if with_recorded {
            l.push("-".into());
        }
        l.push(counts(&r.simulated.response));
        if let Some(rec) = &r.recorded {
            l.push(counts(&rec.resolution));
        } else if with_recorded {
            l.push("-".into());
        }
        l.push(counts(&r.simulated.resolution));
        lines.push(l);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if !report.changes.is_empty() {
        out.push_str("changed:\n");
        for c in &report.changes {
            out.push_str(&format!(
                "  {} {}: {} -> {}\n",
                c.id, c.clock, c.recorded, c.simulated
            ));
        }
    }
    for s in &report.skipped {
        out.push_str(&format!("skipped {}: {}\n", s.id, s.reason));
    }
    out
}

/// A time distribution of a scenario. Durations are written as in policies (`"10m"`, `"1h30m"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "distribution", rename_all = "lowercase", deny_unknown_fields)]
pub enum Dist {
    Exponential {
        mean: String,
    },
    /// `sigma` is the shape of the underlying normal (0.5 to 1.0 is typical).
    Lognormal {
        mean: String,
        sigma: f64,
    },
    Uniform {
        min: String,
        max: String,
    },
    Fixed {
        value: String,
    },
}

/// The load of one priority.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    pub priority: String,
    pub arrivals_per_hour: f64,
    /// Time to acknowledge.
    pub response: Dist,
    /// Time to resolve, from the opening (at least the response time).
    pub resolution: Dist,
    pub service: Option<String>,
    pub group: Option<String>,
}

/// A synthetic load (TOML; see docs/audit.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub seed: u64,
    /// RFC 3339, quoted.
    pub start: Timestamp,
    pub duration: String,
    #[serde(default = "default_service")]
    pub service: String,
    #[serde(default)]
    pub group: String,
    pub load: Vec<Load>,
}

fn default_service() -> String {
    "simulated".into()
}

/// At most this many incidents per load, so a typo cannot run forever.
pub const MAX_INCIDENTS_PER_LOAD: usize = 1_000_000;

impl Scenario {
    pub fn from_toml(text: &str) -> Result<Scenario, SimError> {
        toml::from_str(text).map_err(|e| err(format!("scenario: {e}")))
    }
}

fn dur_secs(place: &str, s: &str) -> Result<f64, SimError> {
    let d = parse_duration(s).map_err(|e| err(format!("{place}: {e}")))?;
    if d <= SignedDuration::ZERO {
        return Err(err(format!("{place}: must be positive")));
    }
    Ok(d.as_secs_f64())
}

/// A checked distribution, in seconds.
enum Sampler {
    Exp(f64),
    LogN(f64, f64),
    Unif(f64, f64),
    Fixed(f64),
}

impl Sampler {
    fn new(place: &str, d: &Dist) -> Result<Sampler, SimError> {
        Ok(match d {
            Dist::Exponential { mean } => Sampler::Exp(dur_secs(&format!("{place}.mean"), mean)?),
            Dist::Lognormal { mean, sigma } => {
                if !sigma.is_finite() || *sigma < 0.0 {
                    return Err(err(format!("{place}.sigma: must be 0 or more")));
                }
                Sampler::LogN(dur_secs(&format!("{place}.mean"), mean)?, *sigma)
            }
            Dist::Uniform { min, max } => {
                let (a, b) = (
                    dur_secs(&format!("{place}.min"), min)?,
                    dur_secs(&format!("{place}.max"), max)?,
                );
                if b < a {
                    return Err(err(format!("{place}: max is below min")));
                }
                Sampler::Unif(a, b)
            }
            Dist::Fixed { value } => Sampler::Fixed(dur_secs(&format!("{place}.value"), value)?),
        })
    }

    /// Whole seconds, at least 1.
    fn sample(&self, rng: &mut SplitMix64) -> i64 {
        let x = match self {
            Sampler::Exp(m) => rng.exponential(*m),
            Sampler::LogN(m, s) => rng.lognormal(*m, *s),
            Sampler::Unif(a, b) => a + (b - a) * rng.next_f64(),
            Sampler::Fixed(v) => *v,
        };
        // bounded to 10 years so the cast cannot overflow
        x.round().clamp(1.0, 315_360_000.0) as i64
    }
}

/// The incidents a scenario generates: per load, Poisson arrivals over the duration, a response
/// and a resolution time drawn for each. Each load draws from its own stream of the seed, so
/// adding a load does not change the others.
pub fn generate(s: &Scenario) -> Result<Vec<IncidentHistory>, SimError> {
    let total = dur_secs("duration", &s.duration)?;
    let mut out = Vec::new();
    for (i, load) in s.load.iter().enumerate() {
        let place = format!("load[{i}]");
        let priority: Priority = load.priority.parse().map_err(|_| {
            err(format!(
                "{place}.priority: {:?} is not P1..P5",
                load.priority
            ))
        })?;
        if !load.arrivals_per_hour.is_finite() || load.arrivals_per_hour < 0.0 {
            return Err(err(format!("{place}.arrivals_per_hour: must be 0 or more")));
        }
        let response = Sampler::new(&format!("{place}.response"), &load.response)?;
        let resolution = Sampler::new(&format!("{place}.resolution"), &load.resolution)?;
        if load.arrivals_per_hour == 0.0 {
            continue;
        }
        let mean_gap = 3600.0 / load.arrivals_per_hour;
        let stream = (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut rng = SplitMix64::new(s.seed ^ stream);
        let mut t = 0.0;
        for n in 0..MAX_INCIDENTS_PER_LOAD {
            t += rng.exponential(mean_gap);
            if t >= total {
                break;
            }
            let opened_at = s
                .start
                .checked_add(SignedDuration::from_secs(t.floor() as i64))
                .map_err(|e| err(format!("{place}: {e}")))?;
            let ack = response.sample(&mut rng);
            let fix = resolution.sample(&mut rng).max(ack);
            let at = |secs: i64| {
                opened_at
                    .checked_add(SignedDuration::from_secs(secs))
                    .map_err(|e| err(format!("{place}: {e}")))
            };
            let (acked, resolved) = (at(ack)?, at(fix)?);
            out.push(IncidentHistory {
                id: format!("SIM-{}-{:06}", priority.as_str(), n + 1),
                opened_at,
                priority,
                service: load.service.clone().unwrap_or_else(|| s.service.clone()),
                group: load.group.clone().unwrap_or_else(|| s.group.clone()),
                inputs: vec![
                    ClockInput::Acknowledged { at: acked },
                    ClockInput::StatusChanged {
                        at: acked,
                        status: incident_sla::Status::Acknowledged,
                    },
                    ClockInput::Resolved { at: resolved },
                ],
            });
        }
    }
    out.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}

/// Simulates a scenario's load under `policy`, as of `as_of` (default: the last resolution).
pub fn simulate_scenario(
    s: &Scenario,
    policy: &PolicySet,
    as_of: Option<Timestamp>,
) -> Result<Report, SimError> {
    let histories = generate(s)?;
    let as_of = as_of
        .or_else(|| {
            histories
                .iter()
                .flat_map(|h| h.inputs.iter().map(ClockInput::at))
                .max()
        })
        .unwrap_or(s.start);
    let r = what_if(&histories, policy, as_of, TimeBasis::Business);
    let skipped = r
        .skipped
        .iter()
        .map(|s| Skip {
            id: s.id.clone(),
            reason: s.reason.clone(),
        })
        .collect();
    let outcomes: BTreeMap<String, IncidentOutcome> = r.outcomes.into_iter().collect();
    Ok(build_report(
        "scenario",
        as_of,
        histories.len(),
        policy,
        &outcomes,
        None,
        Vec::new(),
        skipped,
    ))
}

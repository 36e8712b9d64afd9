//! The `incident.v1.SlaService` gRPC API: clocks of one incident, clocks at risk, breaches, and
//! the agreed-versus-actual report. Read-only views over the engine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use incident_proto::v1 as pb;
use incident_proto::v1::sla_service_server::SlaService;
use incident_sla::{ClockKind, ClockView, IncidentOutcome, Stats, TimeBasis, report_by};
use jiff::Timestamp;
use tonic::{Request, Response, Status};

use crate::engine::{Engine, Tracked};
use crate::events::{clock_name, secs, state_name};
use crate::timesource::TimeSource;

pub struct SlaApi {
    engine: Arc<Mutex<Engine>>,
    time: TimeSource,
}

impl SlaApi {
    pub fn new(engine: Arc<Mutex<Engine>>, time: TimeSource) -> Self {
        Self { engine, time }
    }

    fn engine(&self) -> Result<std::sync::MutexGuard<'_, Engine>, Status> {
        self.engine
            .lock()
            .map_err(|_| Status::internal("engine lock poisoned"))
    }
}

fn ts(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

fn from_ts(t: &Option<prost_types::Timestamp>, field: &str) -> Result<Option<Timestamp>, Status> {
    match t {
        None => Ok(None),
        Some(t) => Timestamp::new(t.seconds, t.nanos)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("invalid {field}: {e}"))),
    }
}

pub fn clock(v: &ClockView) -> pb::SlaClock {
    pb::SlaClock {
        clock: clock_name(v.clock).into(),
        state: state_name(v.state).into(),
        target_secs: v.target.map_or(0, secs),
        elapsed_secs: secs(v.elapsed),
        remaining_secs: v.remaining.map_or(0, secs),
        due_at: v.due_at.map(ts),
        breached_at: v.breached_at.map(ts),
        stopped_at: v.stopped_at.map(ts),
        paused: v
            .paused
            .iter()
            .map(|p| pb::PausedInterval {
                from: Some(ts(p.from)),
                to: p.to.map(ts),
                status: p.status.as_str().into(),
            })
            .collect(),
        calendar: v.calendar.clone(),
        cycle: v.cycle,
    }
}

pub fn incident_sla(id: &str, t: &Tracked, now: Timestamp) -> pb::IncidentSla {
    let s = t.clocks.state_at(now);
    pb::IncidentSla {
        incident_id: id.to_owned(),
        policy: s.policy.clone(),
        policy_hash: s.policy_hash.clone(),
        priority: s.priority.as_str().into(),
        status: s.status.as_str().into(),
        service: t.clocks.service().into(),
        group: t.clocks.group().into(),
        opened_at: Some(ts(s.opened_at)),
        clocks: vec![clock(&s.response), clock(&s.resolution)],
        escalations: t.escalations.clone(),
    }
}

fn row(key: String, stats: &Stats, targets: (i64, i64)) -> pb::ReportRow {
    let pct = |p: Option<f64>| p.unwrap_or(-1.0);
    let d = |x: Option<jiff::SignedDuration>| x.map_or(-1, secs);
    pb::ReportRow {
        key,
        incidents: stats.count as u32,
        response_target_secs: targets.0,
        resolution_target_secs: targets.1,
        response_tracked: stats.response.tracked as u32,
        response_met: stats.response.met as u32,
        response_breached: stats.response.breached as u32,
        response_met_pct: pct(stats.response.pct_met),
        resolution_tracked: stats.resolution.tracked as u32,
        resolution_met: stats.resolution.met as u32,
        resolution_breached: stats.resolution.breached as u32,
        resolution_met_pct: pct(stats.resolution.pct_met),
        mtta_secs: d(stats.mtta),
        mttr_secs: d(stats.mttr),
        resolution_p50_secs: d(stats.resolution_p50),
        resolution_p90_secs: d(stats.resolution_p90),
    }
}

#[tonic::async_trait]
impl SlaService for SlaApi {
    async fn get_incident_sla(
        &self,
        request: Request<pb::GetIncidentSlaRequest>,
    ) -> Result<Response<pb::IncidentSla>, Status> {
        let id = request.into_inner().incident_id;
        let id = incident_domain::IncidentId::parse(id.trim())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let now = self.time.now();
        let engine = self.engine()?;
        let t = engine.get(id.as_str()).ok_or_else(|| {
            Status::not_found(format!(
                "no SLA clocks for incident {id} (unknown, or no policy applies to it)"
            ))
        })?;
        Ok(Response::new(incident_sla(id.as_str(), t, now)))
    }

    async fn list_at_risk(
        &self,
        request: Request<pb::ListAtRiskRequest>,
    ) -> Result<Response<pb::ListAtRiskResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => 50,
            n => n.min(1000) as usize,
        };
        let now = self.time.now();
        let engine = self.engine()?;
        let mut risky: Vec<(jiff::SignedDuration, pb::AtRisk)> = Vec::new();
        for (id, t) in engine.incidents() {
            let s = t.clocks.state_at(now);
            for v in [&s.response, &s.resolution] {
                let (Some(remaining), true) = (v.remaining, v.due_at.is_some()) else {
                    continue;
                };
                risky.push((
                    remaining,
                    pb::AtRisk {
                        incident_id: id.clone(),
                        priority: s.priority.as_str().into(),
                        service: t.clocks.service().into(),
                        group: t.clocks.group().into(),
                        clock: Some(clock(v)),
                    },
                ));
            }
        }
        risky.sort_by_key(|(r, _)| *r);
        Ok(Response::new(pb::ListAtRiskResponse {
            clocks: risky.into_iter().take(limit).map(|(_, a)| a).collect(),
        }))
    }

    async fn list_breaches(
        &self,
        request: Request<pb::ListBreachesRequest>,
    ) -> Result<Response<pb::ListBreachesResponse>, Status> {
        let r = request.into_inner();
        let from = from_ts(&r.from, "from")?;
        let to = from_ts(&r.to, "to")?;
        let engine = self.engine()?;
        let breaches = engine
            .breaches()
            .iter()
            .filter(|b| from.is_none_or(|f| b.due_at >= f) && to.is_none_or(|t| b.due_at < t))
            .map(|b| pb::Breach {
                incident_id: b.incident_id.clone(),
                clock: clock_name(b.clock).into(),
                priority: b.priority.clone(),
                service: b.service.clone(),
                group: b.group.clone(),
                due_at: Some(ts(b.due_at)),
                fired_at: Some(ts(b.fired_at)),
                late_ms: b.late_ms,
                target_secs: b.target_secs,
                elapsed_secs: b.elapsed_secs,
                policy: b.policy.clone(),
                policy_hash: b.policy_hash.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListBreachesResponse { breaches }))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let r = request.into_inner();
        let from = from_ts(&r.from, "from")?;
        let to = from_ts(&r.to, "to")?;
        let by = match r.by.trim() {
            "" | "priority" => "priority",
            "service" => "service",
            "group" => "group",
            other => {
                return Err(Status::invalid_argument(format!(
                    "invalid by: {other:?} is not one of priority, service, group"
                )));
            }
        };
        let now = self.time.now();
        let engine = self.engine()?;
        let mut outcomes: Vec<IncidentOutcome> = Vec::new();
        let mut targets: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (_, t) in engine.incidents() {
            let opened = t.clocks.opened_at();
            if from.is_some_and(|f| opened < f) || to.is_some_and(|x| opened >= x) {
                continue;
            }
            let o = t.clocks.outcome(now);
            if by == "priority" {
                let p = t.clocks.priority();
                let b = t.clocks.binding();
                let tr = (
                    b.target(ClockKind::Response, p).map_or(0, secs),
                    b.target(ClockKind::Resolution, p).map_or(0, secs),
                );
                targets
                    .entry(p.as_str().to_owned())
                    .and_modify(|e| {
                        if *e != tr {
                            *e = (0, 0);
                        }
                    })
                    .or_insert(tr);
            }
            outcomes.push(o);
        }
        let key = |o: &IncidentOutcome| match by {
            "service" => o.service.clone(),
            "group" => o.group.clone(),
            _ => o.priority.as_str().to_owned(),
        };
        let grouped = report_by(&outcomes, key, TimeBasis::Business);
        let rows = grouped
            .iter()
            .map(|(k, s)| row(k.clone(), s, targets.get(k).copied().unwrap_or((0, 0))))
            .collect();
        Ok(Response::new(pb::ReportResponse {
            by: by.into(),
            policy_hash: engine
                .active_policy()
                .map(|p| p.hash().to_owned())
                .unwrap_or_default(),
            rows,
        }))
    }
}

//! The audit library against real logs: exports verify, a changed or removed record is named,
//! the AuditService streams exactly what the logs hold and live verification recomputes the
//! chains client-side, timelines are in time order with their why, `--at` shows the incident
//! as it stood.

mod common;

use common::{standard_world, t};
use incident_audit::client::{self, read_log};
use incident_audit::export;
use incident_audit::record::sort_merged;
use incident_audit::timeline::{snapshot_at, timeline};
use incident_audit::verify::{verify_export, verify_records};
use incident_audit::{AuditRecord, INTAKE, NOTIFIER, SLA};
use incident_proto::v1 as pb;
use serde_json::Value;

async fn export_via_grpc(world: &common::World) -> String {
    let mut all = Vec::new();
    for target in world.serve().await {
        let read = read_log(&target, pb::ReadLogRequest::default())
            .await
            .unwrap();
        assert!(read.error.is_none(), "{:?}", read.error);
        all.extend(read.records);
    }
    export::to_text(&all)
}

/// Rewrites the export line of (service, seq) with `f` applied to its JSON.
fn edit_line(text: &str, service: &str, seq: u64, f: impl Fn(&mut Value)) -> String {
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["service"] == service && v["seq"] == seq {
                found = true;
                f(&mut v);
                serde_json::to_string(&v).unwrap()
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "no line for {service} {seq}");
    out.join("\n") + "\n"
}

#[tokio::test]
async fn export_over_grpc_then_verify_passes_and_reaches_each_head() {
    let world = standard_world();
    let text = export_via_grpc(&world).await;
    let parsed = export::parse(&text).unwrap();
    assert_eq!(parsed.len(), world.records().len());
    // exact bytes survive the round trip
    assert_eq!(export::records(&parsed), world.records());
    let reports = verify_export(&parsed);
    let services: Vec<&str> = reports.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(services, [INTAKE, SLA, NOTIFIER]);
    for (r, log) in reports
        .iter()
        .zip([&world.intake, &world.sla, &world.notifier])
    {
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.head_seq, log.head().seq);
        assert_eq!(r.head_hash, log.head().hash_hex());
    }
}

#[tokio::test]
async fn a_changed_record_fails_and_is_named() {
    let world = standard_world();
    let text = export_via_grpc(&world).await;

    // the stored bytes changed (a breach turned into something milder)
    let changed = edit_line(&text, SLA, 5, |v| {
        let raw = v["event_raw"].as_str().unwrap().replace("alice", "mallory");
        let raw = if raw == v["event_raw"].as_str().unwrap() {
            raw.replacen("\"P1\"", "\"P3\"", 1)
        } else {
            raw
        };
        assert_ne!(v["event_raw"].as_str().unwrap(), raw);
        v["event_raw"] = Value::String(raw.clone());
        v["event"] = serde_json::from_str(&raw).unwrap();
    });
    let reports = verify_export(&export::parse(&changed).unwrap());
    let bad: Vec<_> = reports.iter().filter_map(|r| r.problem.clone()).collect();
    assert_eq!(bad.len(), 1, "{reports:?}");
    assert_eq!((bad[0].service.as_str(), bad[0].seq), (SLA, 5));
    assert!(bad[0].reason.contains("hash"), "{}", bad[0].reason);

    // and with its hash recomputed, the next record no longer links to it
    let rehashed = edit_line(&changed, SLA, 5, |v| {
        let prev: [u8; 32] = hex::decode(v["prev_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let h = incident_eventlog::chain_hash(&prev, v["event_raw"].as_str().unwrap().as_bytes());
        v["hash"] = Value::String(hex::encode(h));
    });
    let reports = verify_export(&export::parse(&rehashed).unwrap());
    let p = reports[1].problem.clone().unwrap();
    assert_eq!((p.service.as_str(), p.seq), (SLA, 6), "{p}");
    assert!(p.reason.contains("prev_hash"), "{}", p.reason);

    // only the readable copy changed: caught too
    let readable = edit_line(&text, INTAKE, 2, |v| {
        v["event"]["data"]["actor"] = Value::String("mallory".into());
    });
    let reports = verify_export(&export::parse(&readable).unwrap());
    let p = reports[0].problem.clone().unwrap();
    assert_eq!((p.service.as_str(), p.seq), (INTAKE, 2), "{p}");
    assert!(p.reason.contains("event_raw"), "{}", p.reason);

    // metadata the hash does not cover is checked against the bytes it does
    let moved = edit_line(&text, INTAKE, 3, |v| {
        v["stream"] = Value::String("INC-Z".into());
    });
    let p = verify_export(&export::parse(&moved).unwrap())[0]
        .problem
        .clone()
        .unwrap();
    assert_eq!(p.seq, 3, "{p}");
}

#[tokio::test]
async fn a_record_removed_from_the_middle_fails_and_is_named() {
    let world = standard_world();
    let text = export_via_grpc(&world).await;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            !(v["service"] == INTAKE && v["seq"] == 3)
        })
        .collect();
    let reports = verify_export(&export::parse(&kept.join("\n")).unwrap());
    let p = reports[0].problem.clone().unwrap();
    assert_eq!((p.service.as_str(), p.seq), (INTAKE, 3));
    assert!(p.reason.contains("missing"), "{}", p.reason);
    assert!(reports[1].ok() && reports[2].ok());
}

#[test]
fn a_bad_export_line_is_an_error_naming_the_line() {
    let e = export::parse("\n{\"service\":\"x\"}\n").unwrap_err();
    assert_eq!(e.line, 2);
    let e = export::parse("not json").unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.to_string().starts_with("export line 1:"), "{e}");
}

#[tokio::test]
async fn live_verify_recomputes_every_chain_and_matches_the_heads() {
    let world = standard_world();
    for target in world.serve().await {
        let v = client::verify_live(&target).await;
        assert!(v.ok(), "{v:?}");
        let chain = v.chain.unwrap();
        assert!(chain.records > 0);
        assert!(v.server.unwrap().ok);
    }
    let nobody = client::Target {
        service: NOTIFIER,
        url: "http://127.0.0.1:1".into(),
    };
    let v = client::verify_live(&nobody).await;
    assert!(v.unreachable.is_some() && !v.ok());
}

#[tokio::test]
async fn read_log_filters_by_incident_seq_and_time() {
    let world = standard_world();
    let targets = world.serve().await;
    let sla = &targets[1];
    let only_b = read_log(
        sla,
        pb::ReadLogRequest {
            incident_id: "INC-B".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!only_b.records.is_empty());
    for r in &only_b.records {
        assert!(
            ["INC-B", "input.INC-B", "_policy"].contains(&r.record.stream.as_str()),
            "{}",
            r.record.stream
        );
    }
    assert!(only_b.records.iter().any(|r| r.record.stream == "_policy"));

    let from5 = read_log(
        sla,
        pb::ReadLogRequest {
            from_seq: 5,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(from5.records[0].record.seq, 5);
    assert_eq!(
        from5.records.last().unwrap().record.seq,
        world.sla.head().seq
    );

    let noon = t("12:00:00");
    let late = read_log(
        &targets[0],
        pb::ReadLogRequest {
            from_time: Some(prost_types::Timestamp {
                seconds: noon.as_second(),
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        late.records.len(),
        1,
        "only INC-B's resolution is after noon"
    );
}

#[test]
fn timeline_is_in_time_order_with_sources_and_why() {
    let world = standard_world();
    let records = world.records();
    let tl = timeline("INC-B", &records, None);
    assert!(tl.windows(2).all(|w| w[0].time <= w[1].time), "{tl:#?}");
    let types: Vec<&str> = tl.iter().map(|e| e.ty.as_str()).collect();
    assert_eq!(
        types,
        [
            "incident.opened.v1",
            "sla.started.v1",
            "page.started.v1",
            "notification.queued.v1",
            "notification.delivered.v1",
            "sla.warning.v1",
            "sla.breached.v1",
            "incident.acknowledged.v1",
            "sla.met.v1",
            "page.stopped.v1",
            "incident.put_on_hold.v1",
            "sla.paused.v1",
            "incident.resumed.v1",
            "sla.resumed.v1",
            "sla.warning.v1",
            "sla.breached.v1",
            "escalation.triggered.v1",
            "incident.resolved.v1",
            "sla.met.v1",
        ]
    );
    assert_eq!(tl[0].service, INTAKE);
    assert_eq!(tl[1].service, SLA);
    assert_eq!(tl[2].service, NOTIFIER);
    let breach = tl.iter().find(|e| e.ty == "sla.breached.v1").unwrap();
    assert_eq!(breach.time, t("11:15:00"));
    assert!(breach.what.contains("response"), "{}", breach.what);
    assert!(
        breach.why.contains("target 15m") && breach.why.contains("policy standard"),
        "{}",
        breach.why
    );
    let resolution_breach = tl.iter().rfind(|e| e.ty == "sla.breached.v1").unwrap();
    // one hour of running time plus the 15-minute hold
    assert_eq!(resolution_breach.time, t("12:15:00"));
    assert!(
        resolution_breach.why.contains("paused"),
        "{}",
        resolution_breach.why
    );
    // none of the other incidents' events, none of the SLA timer's input copies
    assert!(tl.iter().all(|e| e.seq > 0));
    assert_eq!(
        tl.iter().filter(|e| e.ty == "incident.opened.v1").count(),
        1
    );
    // a cut-off keeps only what had happened
    let early = timeline("INC-B", &records, Some(t("11:15:00")));
    assert_eq!(early.last().unwrap().ty, "sla.breached.v1");
}

#[test]
fn at_an_instant_before_the_resolution_it_is_not_resolved() {
    let world = standard_world();
    let mut records = world.records();
    sort_merged(&mut records); // the order records come in does not matter
    let at = t("12:00:00");
    let snap = snapshot_at("INC-B", &records, at).unwrap();
    let inc = snap.incident.unwrap();
    assert_eq!(inc["status"], "in_progress", "{inc}");
    assert_eq!(inc["resolved_at"], Value::Null);
    let sla = snap.sla.unwrap();
    assert_eq!(sla.policy, "standard");
    assert_eq!(sla.status, incident_sla::Status::InProgress);
    assert_eq!(sla.response.state, incident_sla::ClockState::Breached);
    assert_eq!(sla.resolution.state, incident_sla::ClockState::Running);
    assert_eq!(sla.resolution.elapsed, jiff::SignedDuration::from_mins(45));
    assert_eq!(snap.pages.len(), 1);
    assert_eq!(snap.pages[0].state, "stopped");
    assert_eq!(snap.notifications[0].state, "delivered");

    // while paging, before the acknowledgement
    let snap = snapshot_at("INC-B", &records, t("11:10:00")).unwrap();
    assert_eq!(snap.incident.unwrap()["status"], "open");
    assert_eq!(snap.pages[0].state, "paging");
    assert_eq!(
        snap.sla.unwrap().response.state,
        incident_sla::ClockState::Running
    );

    // after the resolution
    let snap = snapshot_at("INC-B", &records, t("12:45:00")).unwrap();
    assert_eq!(snap.incident.unwrap()["status"], "resolved");
    let sla = snap.sla.unwrap();
    assert_eq!(sla.resolution.state, incident_sla::ClockState::Breached);
    assert!(sla.resolution.stopped_at.is_some());

    // before the opening there is nothing
    let snap = snapshot_at("INC-B", &records, t("10:59:59")).unwrap();
    assert!(snap.incident.is_none() && snap.sla.is_none() && snap.pages.is_empty());
}

#[test]
fn a_record_without_an_envelope_is_reported() {
    let r = AuditRecord::new(
        INTAKE,
        incident_eventlog::Record {
            seq: 1,
            stream: "INC-1".into(),
            version: 1,
            event_id: "e".into(),
            prev_hash: incident_eventlog::GENESIS,
            hash: incident_eventlog::chain_hash(&incident_eventlog::GENESIS, b"junk"),
            event: b"junk".to_vec(),
        },
    );
    let reports = verify_records(&[r]);
    assert_eq!(reports[0].problem.as_ref().unwrap().seq, 1);
}

//! The audit verbs against the real stack (nats-server, incident-intake, incident-sla and
//! incident-notifier): an incident opened, acknowledged and resolved is exported, the export
//! and the live logs verify (chains recomputed by incidentctl), the timeline shows it across
//! intake, the SLA timer and the notifier in time order, `--at` before the resolution does not
//! show it resolved, and a changed record in the export is named. A service that is down is
//! reported and skipped.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use incident_e2e::{ctl_ok, start_intake, start_sla};
use incident_testkit::{NatsServer, ServiceProcess, bin_path};
use serde_json::Value;

const POLICY: &str = r#"
[[policies]]
name = "audit"
calendar = "24x7"
warn_at = [0.5]
[policies.response]
P1 = "1h"
[policies.resolution]
P1 = "4h"
"#;

struct Urls {
    intake: String,
    sla: String,
    notifier: String,
}

fn audit(urls: &Urls, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin_path("incidentctl"))
        .args(["--intake-url", &urls.intake])
        .args(["--sla-url", &urls.sla])
        .args(["--notifier-url", &urls.notifier])
        .args(args)
        .output()
        .expect("run incidentctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn timeline(urls: &Urls, id: &str, at: Option<&str>) -> Value {
    let mut args = vec!["-o", "json", "audit", "timeline", id];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    let (ok, out, err) = audit(urls, &args);
    assert!(ok, "timeline failed: {err}");
    serde_json::from_str(out.trim()).expect("timeline JSON")
}

fn types(tl: &Value) -> Vec<String> {
    tl["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

fn tamper_first_intake_line(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    let mut seq = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if seq == 0 && v["service"] == "incident-intake" && v["type"] == "incident.opened.v1" {
                seq = v["seq"].as_u64().unwrap();
                let raw = v["event_raw"].as_str().unwrap().replace("\"P1\"", "\"P4\"");
                v["event"] = serde_json::from_str(&raw).unwrap();
                v["event_raw"] = Value::String(raw);
            }
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    assert!(seq > 0, "no intake opening in the export");
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    seq
}

#[tokio::test(flavor = "multi_thread")]
async fn export_verify_timeline_and_tampering_against_the_real_stack() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("sla.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let sla = start_sla(&nats, &dir.path().join("sla"), &policy);
    let data = dir.path().join("notifier");
    let mut notifier = ServiceProcess::spawn(
        "incident-notifier",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", data.display().to_string()),
        ],
        &data.with_extension("log"),
    );
    let urls = Urls {
        intake: intake.grpc_url(),
        sla: sla.grpc_url(),
        notifier: notifier.grpc_url(),
    };

    let opened = ctl_ok(
        &urls.intake,
        &[
            "open",
            "--title",
            "Checkout down",
            "--service",
            "payments",
            "--impact",
            "high",
            "--urgency",
            "high",
        ],
    );
    let id = opened["id"].as_str().unwrap().to_owned();
    // acknowledged after a second: met under the recorded 1 h target, breached under a 1 s one
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ctl_ok(&urls.intake, &["ack", &id]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    ctl_ok(&urls.intake, &["resolve", &id, "--note", "rolled back"]);

    // wait until the SLA timer has stopped both clocks
    let deadline = Instant::now() + Duration::from_secs(15);
    let tl = loop {
        let tl = timeline(&urls, &id, None);
        let t = types(&tl);
        if t.iter().filter(|t| *t == "sla.met.v1").count() == 2
            && t.iter()
                .filter(|t| *t == "notification.delivered.v1")
                .count()
                >= 5
        {
            break tl;
        }
        assert!(
            Instant::now() < deadline,
            "the SLA timer never caught up: {tl}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let t = types(&tl);
    let pos = |ty: &str| {
        t.iter()
            .position(|x| x == ty)
            .unwrap_or_else(|| panic!("{ty} in {t:?}"))
    };
    assert!(pos("incident.opened.v1") < pos("sla.started.v1"), "{t:?}");
    assert!(
        pos("sla.started.v1") < pos("incident.acknowledged.v1"),
        "{t:?}"
    );
    assert!(
        pos("incident.acknowledged.v1") < pos("incident.resolved.v1"),
        "{t:?}"
    );
    let entries = tl["timeline"].as_array().unwrap();
    let times: Vec<&str> = entries
        .iter()
        .map(|e| e["time"].as_str().unwrap())
        .collect();
    let parsed: Vec<i128> = times
        .iter()
        .map(|s| s.parse::<jiff_like::Ts>().unwrap().0)
        .collect();
    assert!(parsed.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let services: Vec<&str> = entries
        .iter()
        .map(|e| e["service"].as_str().unwrap())
        .collect();
    assert!(services.contains(&"incident-intake") && services.contains(&"incident-sla"));
    assert!(services.contains(&"incident-notifier"), "{services:?}");
    assert!(
        pos("incident.opened.v1") < pos("notification.delivered.v1"),
        "{t:?}"
    );

    // as it stood at the acknowledgement: acknowledged, not resolved, response clock met
    let ack_at = entries[pos("incident.acknowledged.v1")]["time"]
        .as_str()
        .unwrap()
        .to_owned();
    let then = timeline(&urls, &id, Some(&ack_at));
    assert_eq!(
        then["state"]["incident"]["status"], "acknowledged",
        "{then}"
    );
    assert_eq!(then["state"]["incident"]["resolved_at"], Value::Null);
    assert_eq!(then["state"]["sla"]["response"]["state"], "met", "{then}");
    assert_eq!(
        then["state"]["sla"]["resolution"]["state"], "running",
        "{then}"
    );
    assert!(!types(&then).contains(&"incident.resolved.v1".to_owned()));

    // export all three
    let file = dir.path().join("audit.jsonl");
    let f = file.to_str().unwrap();
    let (ok, out, err) = audit(&urls, &["audit", "export", "--out", f]);
    assert!(ok, "export failed: {err}");
    assert!(
        out.contains("incident-intake")
            && out.contains("incident-sla")
            && out.contains("incident-notifier"),
        "{out}"
    );

    let (ok, out, err) = audit(&urls, &["audit", "verify", "--file", f]);
    assert!(ok, "offline verify failed: {out}{err}");
    let (ok, out, err) = audit(&urls, &["-o", "json", "audit", "verify"]);
    assert!(ok, "live verify failed: {out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true, "{v}");

    // replay gives every exported record, merged in time order
    let (ok, out, err) = audit(&urls, &["-o", "json", "audit", "replay"]);
    assert!(ok, "replay failed: {err}");
    let exported = std::fs::read_to_string(&file).unwrap();
    assert_eq!(out.lines().count(), exported.lines().count());

    // what-if on the same export: a stricter policy breaches what the recorded one met, and
    // the simulation prints the same bytes every time
    let strict = dir.path().join("strict.toml");
    std::fs::write(&strict, POLICY.replace("P1 = \"1h\"", "P1 = \"1s\"")).unwrap();
    let simulate = || {
        let out = Command::new(bin_path("incidentctl"))
            .args(["-o", "json", "simulate", "--events", f, "--policy"])
            .arg(&strict)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let first = simulate();
    assert_eq!(first, simulate(), "the simulation is deterministic");
    let report: Value = serde_json::from_slice(&first).unwrap();
    let p1 = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["priority"] == "P1")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(p1["recorded"]["response"]["breached"], 0, "{report}");
    assert_eq!(p1["simulated"]["response"]["breached"], 1, "{report}");

    // a changed record is named
    let seq = tamper_first_intake_line(&file);
    let (ok, out, err) = audit(&urls, &["audit", "verify", "--file", f]);
    assert!(!ok, "a tampered export verified: {out}");
    assert!(
        err.contains(&format!("incident-intake record {seq}")),
        "{out}{err}"
    );

    // a service that is down is reported and skipped; the others still verify
    notifier.kill9();
    let (ok, out, err) = audit(&urls, &["audit", "verify"]);
    assert!(ok, "verify with the notifier down: {out}{err}");
    assert!(err.contains("incident-notifier skipped"), "{err}");
}

/// RFC 3339 instants compared without another dependency: seconds and nanoseconds since the
/// epoch are not needed, only order, and the services write UTC (`...Z`) with up to 9 decimals.
mod jiff_like {
    pub struct Ts(pub i128);

    impl std::str::FromStr for Ts {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            // YYYY-MM-DDTHH:MM:SS[.fffffffff]Z
            let s = s.strip_suffix('Z').ok_or("not UTC")?;
            let (main, frac) = s.split_once('.').unwrap_or((s, ""));
            let digits: String = main.chars().filter(char::is_ascii_digit).collect();
            let frac = format!("{frac:0<9}");
            format!("{digits}{frac}")
                .parse()
                .map(Ts)
                .map_err(|e| format!("{e}"))
        }
    }
}

//! Other systems open incidents: PagerDuty Events API v2 and Alertmanager webhooks over real
//! HTTP, and JSON messages on the `incident.v1.intake` subject of a real nats-server.

use std::time::Duration;

use incident_e2e::{ctl_ok, start_intake, stream_events, types, wait_for_intake_streams};
use incident_testkit::NatsServer;
use serde_json::{Value, json};

fn pd_trigger(dedup: &str, severity: &str) -> Value {
    json!({
        "routing_key": "R0123456789abcdef0123456789abcdef",
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": "Disk full on db-1",
            "source": "db-1.example.org",
            "severity": severity,
            "component": "postgres",
            "custom_details": {"free": "0%"}
        }
    })
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("HTTP request");
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn incidents(url: &str) -> Vec<Value> {
    ctl_ok(url, &["list"]).as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn pagerduty_events_dedup_resolve_and_bad_input() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let enqueue = format!("{}/v2/enqueue", intake.http_url());
    let grpc = intake.grpc_url();

    let (code, body) = post(&enqueue, pd_trigger("disk-db-1", "critical").to_string()).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "message": "Event processed", "dedup_key": "disk-db-1"})
    );
    let (code, _) = post(&enqueue, pd_trigger("disk-db-1", "critical").to_string()).await;
    assert_eq!(code, 202);
    let all = incidents(&grpc);
    assert_eq!(
        all.len(),
        1,
        "two triggers with one dedup_key make one incident"
    );
    let inc = &all[0];
    assert_eq!(inc["priority"], "P1");
    assert_eq!(inc["duplicate_count"], 1);
    assert_eq!(inc["sources"][0]["kind"], "pagerduty");
    assert_eq!(inc["sources"][0]["key"], "disk-db-1");
    let id = inc["id"].as_str().unwrap().to_owned();

    let ack = json!({"routing_key": "R0123456789abcdef0123456789abcdef", "event_action": "acknowledge", "dedup_key": "disk-db-1"});
    assert_eq!(post(&enqueue, ack.to_string()).await.0, 202);
    assert_eq!(ctl_ok(&grpc, &["get", &id])["status"], "acknowledged");
    let resolve = json!({"routing_key": "R0123456789abcdef0123456789abcdef", "event_action": "resolve", "dedup_key": "disk-db-1"});
    assert_eq!(post(&enqueue, resolve.to_string()).await.0, 202);
    assert_eq!(ctl_ok(&grpc, &["get", &id])["status"], "resolved");
    // resolving again is harmless
    assert_eq!(post(&enqueue, resolve.to_string()).await.0, 202);
    // after resolution, the same key opens a new incident
    assert_eq!(
        post(&enqueue, pd_trigger("disk-db-1", "warning").to_string())
            .await
            .0,
        202
    );
    assert_eq!(incidents(&grpc).len(), 2);

    let (code, body) = post(&enqueue, pd_trigger("x", "loud").to_string()).await;
    assert_eq!(code, 400);
    assert_eq!(body["status"], "invalid event");
    assert!(body["errors"].to_string().contains("severity"), "{body}");
    let (code, body) = post(&enqueue, "{not json").await;
    assert_eq!(code, 400);
    assert!(body["errors"].to_string().contains("JSON"), "{body}");
    let mut missing = pd_trigger("y", "info");
    missing["payload"]["summary"] = json!("");
    missing["payload"]["severity"] = json!("loud");
    let (code, body) = post(&enqueue, missing.to_string()).await;
    assert_eq!(code, 400);
    assert_eq!(
        body["errors"].as_array().unwrap().len(),
        2,
        "every problem is named: {body}"
    );
    let (code, _) = post(&enqueue, vec![b' '; 600 * 1024]).await;
    assert_eq!(code, 413);

    // while NATS is down a trigger is still accepted, and reaches the stream later
    nats.stop();
    let (code, body) = post(&enqueue, pd_trigger("during-outage", "error").to_string()).await;
    assert_eq!(code, 202, "{body}");
    let opened = incidents(&grpc)
        .into_iter()
        .find(|i| i["sources"][0]["key"] == "during-outage")
        .expect("the incident opened during the outage");
    assert_eq!(opened["priority"], "P2");
    nats.restart();
    let subject = format!("incident.v1.events.{}", opened["id"].as_str().unwrap());
    let events = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        &subject,
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(types(&events), ["incident.opened.v1"]);
    assert_eq!(incidents(&grpc).len(), 3);
}

fn am_payload(status: &str, alert_status: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"HighLatency\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "incident",
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency", "service": "checkout", "team": "web", "severity": "critical"},
        "commonAnnotations": {"summary": "Checkout p99 latency above 2 s"},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": alert_status,
            "labels": {"alertname": "HighLatency", "instance": "web-1"},
            "annotations": {},
            "startsAt": "2026-12-02T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph",
            "fingerprint": "a1b2c3d4"
        }]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_opens_resolves_and_ignores_repeats() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let hook = format!("{}/v1/alertmanager", intake.http_url());
    let grpc = intake.grpc_url();

    let (code, body) = post(&hook, am_payload("firing", "firing").to_string()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["result"], "opened");
    let id = body["incident_id"].as_str().unwrap().to_owned();
    let inc = ctl_ok(&grpc, &["get", &id]);
    assert_eq!(inc["title"], "Checkout p99 latency above 2 s");
    assert_eq!(inc["service"], "checkout");
    assert_eq!(inc["group"], "web");
    assert_eq!(inc["priority"], "P1");
    assert_eq!(inc["sources"][0]["kind"], "alertmanager");
    let version = inc["version"].clone();

    // the same notification again (a second Alertmanager of the cluster): nothing changes
    let (code, body) = post(&hook, am_payload("firing", "firing").to_string()).await;
    assert_eq!(code, 200);
    assert_eq!(body["incident_id"], id.as_str());
    let again = ctl_ok(&grpc, &["get", &id]);
    assert_eq!(
        again["version"], version,
        "a repeated payload changes nothing"
    );
    assert_eq!(incidents(&grpc).len(), 1);

    let (code, body) = post(&hook, am_payload("resolved", "resolved").to_string()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(ctl_ok(&grpc, &["get", &id])["status"], "resolved");
    let (code, body) = post(&hook, am_payload("resolved", "resolved").to_string()).await;
    assert_eq!(code, 200, "a repeated resolve is accepted: {body}");

    let (code, body) = post(&hook, json!({"version": "3", "alerts": []}).to_string()).await;
    assert_eq!(code, 400);
    assert!(body["errors"].to_string().contains("version"), "{body}");
    let (code, _) = post(&hook, "[]").await;
    assert_eq!(code, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_intake_subject_opens_and_dead_letters() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let grpc = intake.grpc_url();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    wait_for_intake_streams(&js).await;

    js.publish("incident.v1.intake", "this is not JSON".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let msg = json!({"title": "Queue backlog", "service": "billing", "impact": "medium", "urgency": "high", "dedup_key": "backlog"});
    js.publish("incident.v1.intake", msg.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish("incident.v1.intake", msg.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let bad_level = json!({"title": "x", "service": "y", "impact": "huge", "urgency": "high"});
    js.publish("incident.v1.intake", bad_level.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // bytes that are not UTF-8, and a message near the server's payload limit
    let mut not_utf8 = b"{\"title\": \"".to_vec();
    not_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    not_utf8
        .extend_from_slice(b"\", \"service\": \"s\", \"impact\": \"low\", \"urgency\": \"low\"}");
    js.publish("incident.v1.intake", not_utf8.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let huge =
        json!({"title": "t".repeat(900 * 1024), "service": "s", "impact": "low", "urgency": "low"});
    js.publish("incident.v1.intake", huge.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();

    let mut found = Vec::new();
    for _ in 0..100 {
        found = incidents(&grpc);
        if !found.is_empty() && found[0]["duplicate_count"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["priority"], "P2");
    assert_eq!(found[0]["sources"][0]["kind"], "nats");
    assert_eq!(found[0]["duplicate_count"], 1);

    let dead = js.get_stream("INCIDENT_DEADLETTER").await.unwrap();
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters.clear();
        for seq in 1..=4 {
            if let Ok(m) = dead.get_raw_message(seq).await {
                letters.push(m);
            }
        }
        if letters.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(letters.len(), 4);
    assert_eq!(&letters[0].payload[..], b"this is not JSON");
    let reason = letters[0]
        .headers
        .get("Incident-Deadletter-Reason")
        .unwrap()
        .as_str()
        .to_owned();
    assert!(reason.contains("not a valid intake message"), "{reason}");
    let reason = letters[1]
        .headers
        .get("Incident-Deadletter-Reason")
        .unwrap()
        .as_str()
        .to_owned();
    assert!(reason.contains("huge"), "{reason}");
    assert_eq!(&letters[2].payload[..], &not_utf8[..], "kept byte for byte");
    let reason = letters[2]
        .headers
        .get("Incident-Deadletter-Reason")
        .unwrap()
        .as_str()
        .to_owned();
    assert!(reason.contains("not a valid intake message"), "{reason}");
    assert_eq!(letters[3].payload.len(), huge.to_string().len());
    let reason = letters[3]
        .headers
        .get("Incident-Deadletter-Reason")
        .unwrap()
        .as_str()
        .to_owned();
    assert!(reason.contains("title"), "{reason}");

    // an open and its resolve published back to back are handled in order, in one batch
    for i in 0..50 {
        let key = format!("burst-{i}");
        let open = json!({"title": "burst", "service": "billing", "impact": "low", "urgency": "low", "dedup_key": key});
        let resolve = json!({"action": "resolve", "dedup_key": key});
        js.publish("incident.v1.intake", open.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
        js.publish("incident.v1.intake", resolve.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut resolved = 0;
    for _ in 0..100 {
        resolved = incidents(&grpc)
            .iter()
            .filter(|i| i["title"] == "burst" && i["status"] == "resolved")
            .count();
        if resolved == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(resolved, 50, "every resolve followed its open");

    // intake keeps running and taking work
    ctl_ok(
        &grpc,
        &[
            "open",
            "--title",
            "still here",
            "--service",
            "s",
            "--impact",
            "low",
            "--urgency",
            "low",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn random_bodies_on_every_route_get_clear_answers_and_valid_traffic_flows() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let base = intake.http_url();
    // a fixed-seed xorshift: the same garbage every run
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let shapes: [&[u8]; 6] = [
        b"{",
        b"[]",
        b"{\"version\":4}",
        b"null",
        b"\xff\xfe\x00",
        b"{\"payload\":{}}",
    ];
    for route in ["/v2/enqueue", "/v1/alertmanager", "/healthz", "/metrics"] {
        for i in 0..60 {
            let len = (next() % 2048) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 3 == 0 {
                body = shapes[i % shapes.len()].to_vec();
            }
            let (code, _) = post(&format!("{base}{route}"), body).await;
            assert!((400..500).contains(&code), "{route}: {code}");
        }
    }
    let (code, body) = post(
        &format!("{base}/v2/enqueue"),
        pd_trigger("after-garbage", "info").to_string(),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let all = incidents(&intake.grpc_url());
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["priority"], "P5");
}

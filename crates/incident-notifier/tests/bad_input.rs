//! Bad input: events on INCIDENT_EVENTS or SLA_EVENTS that are not valid envelopes (or break
//! the contract) are dead-lettered with the reason while valid traffic keeps being delivered; a
//! 4xx from a receiver is a permanent failure recorded with the response; an invalid routes
//! file refuses the start with an error naming the place.

mod common;

use std::process::Command;
use std::time::Duration;

use async_nats::HeaderMap;
use common::*;
use incident_domain::Impact;
use incident_proto::v1 as pb;
use incident_testkit::{NatsServer, bin_path};
use serde_json::json;

async fn publish_raw(js: &async_nats::jetstream::Context, subject: &str, id: &str, bytes: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    js.publish_with_headers(subject.to_owned(), headers, bytes.to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_events_are_dead_lettered_and_valid_ones_still_delivered() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0).await;
    // A real server that answers 404.
    let gone_base = start_404().await;
    let routes = routes_file(
        dir.path(),
        &format!(
            r#"
[[channels]]
name = "ops"
kind = "webhook"
url = "{}"

[[channels]]
name = "gone"
kind = "webhook"
url = "{}/missing"

[[routes]]
name = "p1"
priorities = ["P1"]
events = ["incident.opened", "sla.breached"]
channels = ["ops"]

[[routes]]
name = "breaches-to-gone"
events = ["sla.breached"]
channels = ["gone"]
"#,
            receiver.url("/ops"),
            gone_base
        ),
    );
    let js = jetstream(&nats).await;
    let notifier = spawn_notifier(&nats, dir.path(), &routes, "notifier.log");

    publish_raw(
        &js,
        "incident.v1.events.INC-garbage",
        "bad-1",
        b"this is not json",
    )
    .await;
    publish_raw(
        &js,
        "sla.v1.events.INC-garbage",
        "bad-2",
        b"{\"specversion\":\"1.0\"}",
    )
    .await;
    let no_context = sla_event("sla.breached.v1", &new_incident_id(), "P1", "x", json!({}));
    let mut broken = serde_json::to_value(&no_context).unwrap();
    broken["data"].as_object_mut().unwrap().remove("incident");
    publish_raw(
        &js,
        &format!("sla.v1.events.{}", no_context.subject),
        &no_context.id,
        &serde_json::to_vec(&broken).unwrap(),
    )
    .await;

    let id = new_incident_id();
    publish_incident(&js, &opened(&id, "Checkout down", "payments", Impact::High)).await;
    publish_sla(
        &js,
        &sla_event(
            "sla.breached.v1",
            &id,
            "P1",
            "payments",
            json!({"clock": "response"}),
        ),
    )
    .await;
    assert!(
        receiver
            .wait_until(Duration::from_secs(20), |r| r.len() >= 2)
            .await,
        "valid traffic was not delivered; log:\n{}",
        notifier.log()
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = read_stream(&js, "INCIDENT_DEADLETTER", "incident.v1.deadletter").await;
        if dead.len() >= 3 || std::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.len(), 3, "log:\n{}", notifier.log());
    let header = |h: &Option<HeaderMap>, k: &str| {
        h.as_ref()
            .and_then(|h| h.get(k))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    };
    let mut streams: Vec<String> = dead
        .iter()
        .map(|(_, h)| header(h, "Incident-Deadletter-Stream"))
        .collect();
    streams.sort();
    assert_eq!(streams, vec!["INCIDENT_EVENTS", "SLA_EVENTS", "SLA_EVENTS"]);
    assert!(
        dead.iter().any(|(p, _)| p == b"this is not json"),
        "the original bytes are kept"
    );
    for (_, h) in &dead {
        assert!(!header(h, "Incident-Deadletter-Reason").is_empty());
    }
    assert!(dead.iter().any(|(_, h)| {
        header(h, "Incident-Deadletter-Reason").contains("data.incident is missing")
    }));

    // The 404 is permanent after one attempt, recorded with the response.
    let list = wait_notifications(
        &notifier.grpc_url(),
        id.as_str(),
        Duration::from_secs(10),
        |l| {
            l.iter()
                .any(|n| n.channel == "gone" && n.status == pb::NotificationStatus::Failed as i32)
        },
    )
    .await;
    let gone = list.iter().find(|n| n.channel == "gone").unwrap();
    assert_eq!(
        gone.status,
        pb::NotificationStatus::Failed as i32,
        "{gone:?}"
    );
    assert_eq!(gone.attempts, 1);
    assert!(
        gone.last_error.contains("HTTP 404") && gone.last_error.contains("no such hook"),
        "{gone:?}"
    );

    // /metrics counts the rejects
    let metrics = reqwest::get(format!("{}/metrics", notifier.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("incident_notifier_inputs_rejected_total 3"),
        "{metrics}"
    );
}

/// A real HTTP server that answers 404 with a body.
async fn start_404() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no such hook") });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

#[test]
fn an_invalid_routes_file_refuses_the_start_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[channels]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://x/\"\n[[routes]]\nname = \"p1\"\nchannels = [\"opz\"]\n",
            "routes[0] (p1).channels: unknown channel \"opz\"",
        ),
        (
            "[[channels]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"not a url\"\n",
            "channels[0] (ops): bad url",
        ),
        (
            "[[channels]]\nname = \"ops\"\nkind = \"log\"\n[[routes]]\nname = \"p1\"\noncall = \"infra\"\n[[oncall]]\nname = \"infra\"\ntiers = [ { channels = [\"ops\"], ack_timeout = \"5 minutes\" } ]\n",
            "oncall[0] (infra).tiers[0].ack_timeout: bad duration",
        ),
    ];
    for (text, expected) in cases {
        let routes = routes_file(dir.path(), text);
        let out = Command::new(bin_path("incident-notifier"))
            .env("ROUTES_FILE", &routes)
            .env("DATA_DIR", dir.path().join("data"))
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env("GRPC_ADDR", "127.0.0.1:0")
            .env("HTTP_ADDR", "127.0.0.1:0")
            .output()
            .expect("run incident-notifier");
        assert!(!out.status.success(), "started with a bad routes file");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
        assert!(
            stderr.contains("routes.toml"),
            "the file is named:\n{stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening"),
            "it must not announce listeners"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_tokens_file_the_api_needs_a_token() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let routes = routes_file(
        dir.path(),
        "[[channels]]\nname = \"log\"\nkind = \"log\"\n[[routes]]\nname = \"all\"\nchannels = [\"log\"]\n",
    );
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"auditor\"\nrole = \"auditor\"\ntoken = \"auditor-secret-0123456789\"\n",
    )
    .unwrap();
    let notifier = incident_testkit::ServiceProcess::spawn(
        "incident-notifier",
        &[
            ("NATS_URL", nats.url()),
            (
                "DATA_DIR",
                dir.path().join("notifier").display().to_string(),
            ),
            ("ROUTES_FILE", routes.display().to_string()),
            ("TOKENS_FILE", tokens.display().to_string()),
        ],
        &dir.path().join("notifier.log"),
    );
    let url = notifier.grpc_url();
    let denied = client(&url)
        .await
        .list_notifications(pb::ListNotificationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(pb::ListNotificationsRequest::default());
    req.metadata_mut().insert(
        "authorization",
        "Bearer auditor-secret-0123456789".parse().unwrap(),
    );
    let ok = client(&url).await.list_notifications(req).await;
    assert!(ok.is_ok(), "{ok:?}");
}

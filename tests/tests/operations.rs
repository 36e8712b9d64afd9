//! The operations surface of every service, against real processes: grpc.health.v1 SERVING,
//! `incident.v1.*` listed by reflection, Prometheus text on /metrics, /healthz and /readyz,
//! and exit 0 within 10 s of SIGTERM.

use std::time::Duration;

use incident_e2e::{start_intake, start_sla};
use incident_testkit::{NatsServer, ServiceProcess};

async fn check_service(svc: &mut ServiceProcess, grpc_service: &str, metrics_named: &[&str]) {
    let channel = tonic::transport::Endpoint::from_shared(svc.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: grpc_service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
        "{grpc_service}"
    );

    use futures::StreamExt;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<String> = match resp.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("{other:?}"),
    };
    assert!(names.iter().any(|n| n == grpc_service), "{names:?}");

    let http = svc.http_url();
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{http}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut ready = false;
    for _ in 0..100 {
        if client
            .get(format!("{http}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "{grpc_service} ready");
    let metrics = client.get(format!("{http}/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for metric in metrics_named {
        assert!(
            text.contains(&format!("# TYPE {metric}")),
            "{metric}: {text}"
        );
    }
    assert!(
        text.contains("incident_grpc_request_duration_seconds_count{method=\"/grpc.health.v1.Health/Check\"} 1"),
        "the health check was measured: {text}"
    );

    let status = svc
        .terminate(Duration::from_secs(10))
        .expect("stops within 10 s of SIGTERM");
    assert!(
        status.success(),
        "{grpc_service}: {status:?}\n{}",
        svc.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_serves_health_reflection_metrics_and_stops_cleanly() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut intake = start_intake(&nats, &dir.path().join("intake"));
    check_service(
        &mut intake,
        "incident.v1.IntakeService",
        &[
            "incident_intake_commands_total",
            "incident_intake_relay_rechecked_chunks_total",
        ],
    )
    .await;
    let policy = dir.path().join("sla.toml");
    std::fs::write(
        &policy,
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/sla-policy.toml"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut sla = start_sla(&nats, &dir.path().join("sla"), &policy);
    check_service(
        &mut sla,
        "incident.v1.SlaService",
        &[
            "incident_sla_breaches_total",
            "incident_sla_append_batches_total",
            "incident_sla_relay_rechecked_chunks_total",
        ],
    )
    .await;
    let data = dir.path().join("notifier");
    let mut notifier = ServiceProcess::spawn(
        "incident-notifier",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", data.display().to_string()),
        ],
        &data.with_extension("log"),
    );
    check_service(
        &mut notifier,
        "incident.v1.NotificationService",
        &[
            "incident_notifier_delivery_attempts_total",
            "incident_notifier_relay_rechecked_chunks_total",
        ],
    )
    .await;
}

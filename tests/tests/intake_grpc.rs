//! Intake's gRPC surface: clear status codes for bad input, health and reflection, paging.

use incident_e2e::start_intake;
use incident_proto::v1 as pb;
use incident_proto::v1::intake_service_client::IntakeServiceClient;
use incident_testkit::NatsServer;
use tonic::Code;

fn open_req(title: &str) -> pb::OpenIncidentRequest {
    pb::OpenIncidentRequest {
        title: title.into(),
        service: "payments".into(),
        impact: pb::Impact::High as i32,
        urgency: pb::Urgency::Low as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_codes_and_the_service_keeps_running() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let mut c = IntakeServiceClient::connect(intake.grpc_url())
        .await
        .unwrap();

    let cases: Vec<(pb::OpenIncidentRequest, &str)> = vec![
        (
            pb::OpenIncidentRequest {
                title: "".into(),
                ..open_req("")
            },
            "title",
        ),
        (
            pb::OpenIncidentRequest {
                service: "".into(),
                ..open_req("t")
            },
            "service",
        ),
        (
            pb::OpenIncidentRequest {
                impact: 0,
                ..open_req("t")
            },
            "impact",
        ),
        (
            pb::OpenIncidentRequest {
                urgency: 42,
                ..open_req("t")
            },
            "urgency",
        ),
        (
            pb::OpenIncidentRequest {
                title: "x".repeat(5000),
                ..open_req("t")
            },
            "title",
        ),
        (
            pb::OpenIncidentRequest {
                title: "nul\u{0}".into(),
                ..open_req("t")
            },
            "title",
        ),
    ];
    for (req, field) in cases {
        let err = c.open_incident(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let err = c
        .acknowledge_incident(pb::AcknowledgeIncidentRequest {
            id: "a.b>".into(),
            actor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .get_incident(pb::GetIncidentRequest {
            id: "INC-NOPE".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .list_incidents(pb::ListIncidentsRequest {
            statuses: vec![99],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // a body over the size limit is refused, and valid traffic still flows
    let err = c
        .open_incident(pb::OpenIncidentRequest {
            description: "d".repeat(2 * 1024 * 1024),
            ..open_req("t")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let ok = c
        .open_incident(open_req("still works"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.incident.unwrap().priority, pb::Priority::P3 as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_and_dedup_keys_do_not_open_twice() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let mut c = IntakeServiceClient::connect(intake.grpc_url())
        .await
        .unwrap();

    let first = c
        .open_incident(pb::OpenIncidentRequest {
            request_id: "r-1".into(),
            ..open_req("a")
        })
        .await
        .unwrap()
        .into_inner();
    let retry = c
        .open_incident(pb::OpenIncidentRequest {
            request_id: "r-1".into(),
            ..open_req("a")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!first.deduplicated);
    assert!(retry.deduplicated);
    assert_eq!(
        first.incident.as_ref().unwrap().id,
        retry.incident.as_ref().unwrap().id
    );

    let a = c
        .open_incident(pb::OpenIncidentRequest {
            dedup_key: "disk".into(),
            ..open_req("disk full")
        })
        .await
        .unwrap()
        .into_inner();
    let b = c
        .open_incident(pb::OpenIncidentRequest {
            dedup_key: "disk".into(),
            ..open_req("disk full again")
        })
        .await
        .unwrap()
        .into_inner();
    let a_id = a.incident.unwrap().id;
    let b_inc = b.incident.unwrap();
    assert!(b.deduplicated);
    assert_eq!(a_id, b_inc.id);
    assert_eq!(b_inc.duplicate_count, 1);

    // once resolved, the same key opens a new incident
    c.resolve_incident(pb::ResolveIncidentRequest {
        id: a_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let c2 = c
        .open_incident(pb::OpenIncidentRequest {
            dedup_key: "disk".into(),
            ..open_req("disk full, later")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!c2.deduplicated);
    assert_ne!(c2.incident.unwrap().id, a_id);

    // paging walks every incident exactly once, newest first
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_incidents(pb::ListIncidentsRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.incidents.into_iter().map(|i| i.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reflection_and_watch() {
    use futures::StreamExt;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let channel = tonic::transport::Endpoint::from_shared(intake.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "incident.v1.IntakeService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    for v1alpha in [false, true] {
        let services = list_services(channel.clone(), v1alpha).await;
        assert!(
            services.iter().any(|s| s == "incident.v1.IntakeService"),
            "{services:?}"
        );
        assert!(
            services.iter().any(|s| s == "grpc.health.v1.Health"),
            "{services:?}"
        );
    }

    let mut c = IntakeServiceClient::new(channel);
    let mut watch = c
        .watch_incidents(pb::WatchIncidentsRequest {
            priorities: vec![pb::Priority::P1 as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // a P3 is filtered out, a P1 is seen
    c.open_incident(open_req("p3")).await.unwrap();
    let p1 = c
        .open_incident(pb::OpenIncidentRequest {
            urgency: pb::Urgency::High as i32,
            ..open_req("p1")
        })
        .await
        .unwrap()
        .into_inner();
    let change = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
        .await
        .expect("a change within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(change.event_type, "incident.opened.v1");
    assert_eq!(change.incident.unwrap().id, p1.incident.unwrap().id);
}

async fn list_services(channel: tonic::transport::Channel, v1alpha: bool) -> Vec<String> {
    use futures::StreamExt;
    if v1alpha {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut c = ServerReflectionClient::new(channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut resp = c
            .server_reflection_info(futures::stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        match resp.next().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    } else {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut c = ServerReflectionClient::new(channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut resp = c
            .server_reflection_info(futures::stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        match resp.next().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }
}

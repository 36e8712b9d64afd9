//! gRPC bearer tokens with roles, against a real intake process: no token is UNAUTHENTICATED,
//! an auditor reads but may not act, a reporter opens but may not acknowledge, a responder
//! acknowledges and is recorded as the actor; health stays open.

use std::process::Command;
use std::time::Duration;

use incident_e2e::stream_events;
use incident_testkit::{NatsServer, ServiceProcess, bin_path};

const TOKENS: &str = r#"
[[tokens]]
name = "rita-reporter"
role = "reporter"
token = "reporter-token-0123456789"

[[tokens]]
name = "alice"
role = "responder"
token = "responder-token-0123456789"

[[tokens]]
name = "audit"
role = "auditor"
token = "auditor-token-0123456789"
"#;

fn ctl(url: &str, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(bin_path("incidentctl"));
    cmd.args(["-o", "json", "--intake-url", url])
        .env_remove("INCIDENT_TOKEN");
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_decide_who_may_do_what() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let data = dir.path().join("intake");
    let intake = ServiceProcess::spawn(
        "incident-intake",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", data.display().to_string()),
            ("TOKENS_FILE", tokens.display().to_string()),
        ],
        &data.with_extension("log"),
    );
    let url = intake.grpc_url();
    let open = [
        "open",
        "--title",
        "Printer on fire",
        "--service",
        "office",
        "--impact",
        "low",
        "--urgency",
        "high",
    ];

    let (ok, _, err) = ctl(&url, None, &open);
    assert!(!ok && err.contains("UNAUTHENTICATED"), "{err}");
    let (ok, _, err) = ctl(&url, Some("not-a-known-token-at-all"), &open);
    assert!(!ok && err.contains("UNAUTHENTICATED"), "{err}");

    let (ok, out, err) = ctl(&url, Some("reporter-token-0123456789"), &open);
    assert!(ok, "{err}");
    let inc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let id = inc["id"].as_str().unwrap().to_owned();
    let (ok, _, err) = ctl(&url, Some("reporter-token-0123456789"), &["ack", &id]);
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");

    let (ok, out, _) = ctl(&url, Some("auditor-token-0123456789"), &["get", &id]);
    assert!(ok);
    assert!(out.contains("Printer on fire"));
    let (ok, _, err) = ctl(&url, Some("auditor-token-0123456789"), &["ack", &id]);
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");
    let (ok, _, err) = ctl(&url, Some("auditor-token-0123456789"), &open);
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");

    let (ok, _, err) = ctl(
        &url,
        Some("responder-token-0123456789"),
        &["ack", &id, "--actor", "someone-else"],
    );
    assert!(ok, "{err}");

    // health is open to all
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health without a token");

    // the token's name is the actor, whatever the caller claimed
    let events = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        &format!("incident.v1.events.{id}"),
        2,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(events[0]["data"]["actor"], "rita-reporter");
    assert_eq!(events[1]["data"]["actor"], "alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn intake_authenticates_to_nats_with_a_password_from_a_file() {
    let nats = incident_testkit::NatsServer::start_with(&[
        "--user",
        "intake",
        "--pass",
        "nats-secret-123",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("nats-password");
    std::fs::write(&password, "nats-secret-123\n").unwrap();
    let data = dir.path().join("intake");
    let intake = ServiceProcess::spawn(
        "incident-intake",
        &[
            ("NATS_URL", nats.url()),
            ("NATS_USER", "intake".into()),
            ("NATS_PASSWORD_FILE", password.display().to_string()),
            ("DATA_DIR", data.display().to_string()),
        ],
        &data.with_extension("log"),
    );
    let (ok, out, err) = ctl(
        &intake.grpc_url(),
        None,
        &[
            "open",
            "--title",
            "T",
            "--service",
            "s",
            "--impact",
            "low",
            "--urgency",
            "low",
        ],
    );
    assert!(ok, "{err}");
    let id = serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("nats://intake:nats-secret-123@127.0.0.1:{}", nats.port());
    let events = stream_events(
        &url,
        "INCIDENT_EVENTS",
        &format!("incident.v1.events.{id}"),
        1,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        events.len(),
        1,
        "the relay authenticated and published\n{}",
        intake.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_and_http_speak_tls_when_a_certificate_is_configured() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(dir.path());
    let data = dir.path().join("intake");
    let intake = ServiceProcess::spawn(
        "incident-intake",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", data.display().to_string()),
            ("TLS_CERT_FILE", cert.display().to_string()),
            ("TLS_KEY_FILE", key.display().to_string()),
        ],
        &data.with_extension("log"),
    );
    let grpc = format!("https://{}", intake.listening.grpc);
    let open = [
        "open",
        "--title",
        "Over TLS",
        "--service",
        "s",
        "--impact",
        "low",
        "--urgency",
        "low",
    ];
    let out = Command::new(bin_path("incidentctl"))
        .args(["-o", "json", "--intake-url", &grpc, "--ca-cert"])
        .arg(&ca)
        .args(open)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, _, _) = ctl(&intake.grpc_url(), None, &open);
    assert!(!ok, "plain text is refused by a TLS listener");
    let untrusted = Command::new(bin_path("incidentctl"))
        .args(["--intake-url", &grpc])
        .args(open)
        .output()
        .unwrap();
    assert!(
        !untrusted.status.success(),
        "a certificate nobody vouched for is refused"
    );

    let pem = std::fs::read(&ca).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://{}/healthz", intake.listening.http))
        .send()
        .await
        .expect("HTTPS");
    assert_eq!(resp.status(), 200);
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
fn make_certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |n: &str| dir.join(n);
    let ext = p("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

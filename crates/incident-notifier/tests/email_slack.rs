//! Email goes through a real SMTP conversation (testkit's listener) with the right envelope and
//! subject; the Slack-compatible channel posts `{"text": ...}` with blocks.

mod common;

use std::time::Duration;

use common::*;
use incident_domain::Impact;
use incident_proto::v1 as pb;
use incident_testkit::NatsServer;
use incident_testkit::smtp::SmtpServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn email_reaches_the_smtp_listener_and_slack_gets_text() {
    let nats = NatsServer::start();
    let smtp = SmtpServer::start();
    let receiver = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = routes_file(
        dir.path(),
        &format!(
            r#"
[smtp]
host = "127.0.0.1"
port = {}
tls = "none"
from = "Incidents <incidents@example.org>"

[[channels]]
name = "duty-manager"
kind = "email"
to = ["duty@example.org", "boss@example.org"]

[[channels]]
name = "chat"
kind = "slack"
url = "{}"

[[routes]]
name = "p1-mail"
priorities = ["P1"]
events = ["incident.opened"]
channels = ["duty-manager"]

[[routes]]
name = "breaches-to-chat"
events = ["sla.breached"]
channels = ["chat"]
"#,
            smtp.port(),
            receiver.url("/slack")
        ),
    );
    let js = jetstream(&nats).await;
    let notifier = spawn_notifier(&nats, dir.path(), &routes, "notifier.log");

    let id = new_incident_id();
    publish_incident(&js, &opened(&id, "Checkout down", "payments", Impact::High)).await;
    publish_sla(
        &js,
        &sla_event(
            "sla.breached.v1",
            &id,
            "P1",
            "payments",
            json!({"clock": "resolution"}),
        ),
    )
    .await;

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while smtp.mails().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "log:\n{}", notifier.log());
    let mail = &mails[0];
    assert_eq!(mail.mail_from, "incidents@example.org");
    let mut rcpt = mail.rcpt_to.clone();
    rcpt.sort();
    assert_eq!(rcpt, vec!["boss@example.org", "duty@example.org"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some(format!("[P1] {id} Checkout down: incident opened").as_str())
    );
    assert!(mail.header("To").unwrap().contains("duty@example.org"));
    assert!(
        mail.body().contains("matched route p1-mail"),
        "{}",
        mail.body()
    );

    assert!(
        receiver
            .wait_until(Duration::from_secs(20), |r| !r.is_empty())
            .await,
        "slack not called; log:\n{}",
        notifier.log()
    );
    let slack = receiver.requests()[0].json();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains(id.as_str()) && text.contains("sla breached"),
        "{text}"
    );
    assert_eq!(slack["blocks"][0]["type"], "section");

    let list = wait_notifications(
        &notifier.grpc_url(),
        id.as_str(),
        Duration::from_secs(10),
        |l| {
            l.len() == 2
                && l.iter()
                    .all(|n| n.status == pb::NotificationStatus::Delivered as i32)
        },
    )
    .await;
    let mail_n = list.iter().find(|n| n.channel == "duty-manager").unwrap();
    assert_eq!(mail_n.channel_kind, "email");
    assert!(mail_n.response.starts_with("250"), "{mail_n:?}");
    let chat_n = list.iter().find(|n| n.channel == "chat").unwrap();
    assert_eq!(chat_n.channel_kind, "slack");
    assert_eq!(chat_n.response, "200");
}

//! Delivery: one attempt of one notification through its channel, classified as delivered,
//! transient (retry) or permanent. Webhooks POST the canonical JSON body with
//! `Idempotency-Key: <notification id>` and, with a secret, `X-Signature: sha256=<hex HMAC>`;
//! Slack gets an incoming-webhook payload; email goes through SMTP (lettre); the log channel is
//! a tracing line.
//!
//! Classification: network errors, timeouts, HTTP 5xx, 408 and 429, and SMTP 4xx replies are
//! transient; other HTTP 4xx (and 3xx), SMTP 5xx replies and a channel that is no longer
//! configured are permanent. The error text keeps the response status and the start of its body.

use std::sync::Arc;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::decide::AttemptOutcome;
use crate::message;
use crate::routes::{ChannelKind, Routes, Smtp, SmtpTls};
use crate::state::Notification;

pub struct Deliverer {
    routes: Arc<Routes>,
    http: reqwest::Client,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

fn smtp_transport(
    s: &Smtp,
    timeout: std::time::Duration,
) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let builder = match s.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)?,
    };
    let mut builder = builder.port(s.port).timeout(Some(timeout));
    if let Some(user) = &s.user {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            s.password.clone().unwrap_or_default(),
        ));
    }
    Ok(builder.build())
}

fn snippet(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    one_line.trim().to_owned()
}

impl Deliverer {
    pub fn new(routes: Arc<Routes>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(routes.delivery.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("incident-notifier/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let smtp = match &routes.smtp {
            Some(s) => Some((
                smtp_transport(s, routes.delivery.timeout)?,
                s.from.parse::<Mailbox>()?,
            )),
            None => None,
        };
        Ok(Self { routes, http, smtp })
    }

    /// One attempt.
    pub async fn attempt(&self, n: &Notification) -> AttemptOutcome {
        let Some(channel) = self.routes.channel(&n.channel) else {
            return AttemptOutcome::Permanent {
                error: format!("channel {} is no longer configured", n.channel),
            };
        };
        match &channel.kind {
            ChannelKind::Webhook { url, secret } => {
                let body = message::webhook_body(n);
                let mut req = self
                    .http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("Idempotency-Key", &n.id);
                if let Some(secret) = secret {
                    req = req.header("X-Signature", message::signature(secret, &body));
                }
                self.http_outcome(req.body(body)).await
            }
            ChannelKind::Slack { url } => {
                let req = self
                    .http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("Idempotency-Key", &n.id)
                    .body(message::slack_body(n));
                self.http_outcome(req).await
            }
            ChannelKind::Email { to } => self.email(n, to).await,
            ChannelKind::Log => {
                tracing::info!(
                    target: "incident_notifier::notification",
                    notification_id = %n.id,
                    incident = %n.incident_id,
                    route = %n.route,
                    channel = %n.channel,
                    reason = %n.reason,
                    "{}",
                    message::headline(n)
                );
                AttemptOutcome::Delivered {
                    response: "logged".into(),
                }
            }
        }
    }

    async fn http_outcome(&self, req: reqwest::RequestBuilder) -> AttemptOutcome {
        match req.send().await {
            Err(e) => AttemptOutcome::Transient {
                error: format!("request failed: {e}"),
            },
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    return AttemptOutcome::Delivered {
                        response: status.as_u16().to_string(),
                    };
                }
                let body = resp.text().await.unwrap_or_default();
                let error = format!("HTTP {}: {}", status.as_u16(), snippet(&body));
                let code = status.as_u16();
                if status.is_server_error() || code == 429 || code == 408 {
                    AttemptOutcome::Transient { error }
                } else {
                    AttemptOutcome::Permanent { error }
                }
            }
        }
    }

    async fn email(&self, n: &Notification, to: &[String]) -> AttemptOutcome {
        let Some((transport, from)) = &self.smtp else {
            return AttemptOutcome::Permanent {
                error: "no [smtp] server configured".into(),
            };
        };
        let (subject, text) = message::email(n);
        let mut builder = Message::builder()
            .from(from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for addr in to {
            match addr.parse::<Mailbox>() {
                Ok(m) => builder = builder.to(m),
                Err(e) => {
                    return AttemptOutcome::Permanent {
                        error: format!("bad address {addr:?}: {e}"),
                    };
                }
            }
        }
        let email = match builder.body(text) {
            Ok(m) => m,
            Err(e) => {
                return AttemptOutcome::Permanent {
                    error: format!("cannot build the email: {e}"),
                };
            }
        };
        match transport.send(email).await {
            Ok(resp) => AttemptOutcome::Delivered {
                response: format!(
                    "{} {}",
                    resp.code(),
                    resp.message().collect::<Vec<_>>().join(" ")
                ),
            },
            Err(e) if e.is_permanent() => AttemptOutcome::Permanent {
                error: format!("SMTP: {e}"),
            },
            Err(e) => AttemptOutcome::Transient {
                error: format!("SMTP: {e}"),
            },
        }
    }
}

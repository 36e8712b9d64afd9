//! The JetStream streams of the product (a contract: names and subjects are relied on by other
//! systems) and the one way they are configured: limits retention, file storage, `discard: new`
//! (the default `old` would silently drop history), delete and purge denied, a duplicate window
//! for `Nats-Msg-Id`.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: &'static str,
    pub subjects: &'static [&'static str],
    /// `<prefix><incident_id>` is the subject of one incident's events; empty for single-subject
    /// streams.
    pub subject_prefix: &'static str,
}

pub const INCIDENT_EVENTS: StreamSpec = StreamSpec {
    name: "INCIDENT_EVENTS",
    subjects: &["incident.v1.events.*"],
    subject_prefix: "incident.v1.events.",
};

pub const SLA_EVENTS: StreamSpec = StreamSpec {
    name: "SLA_EVENTS",
    subjects: &["sla.v1.events.*"],
    subject_prefix: "sla.v1.events.",
};

pub const NOTIFY_EVENTS: StreamSpec = StreamSpec {
    name: "NOTIFY_EVENTS",
    subjects: &["notify.v1.events.*"],
    subject_prefix: "notify.v1.events.",
};

/// Other systems publish incidents here; kept while intake is down.
pub const INCIDENT_INTAKE: StreamSpec = StreamSpec {
    name: "INCIDENT_INTAKE",
    subjects: &["incident.v1.intake"],
    subject_prefix: "",
};

/// Input that was rejected, with the reason in headers and the original bytes as payload.
pub const INCIDENT_DEADLETTER: StreamSpec = StreamSpec {
    name: "INCIDENT_DEADLETTER",
    subjects: &["incident.v1.deadletter"],
    subject_prefix: "",
};

pub const DEADLETTER_SUBJECT: &str = "incident.v1.deadletter";

/// How long JetStream remembers a `Nats-Msg-Id` to drop a re-publish.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl StreamSpec {
    pub fn subject_for(&self, incident_id: &str) -> String {
        format!("{}{}", self.subject_prefix, incident_id)
    }

    pub fn config(&self, duplicate_window: Duration, replicas: usize) -> stream::Config {
        stream::Config {
            name: self.name.to_owned(),
            subjects: self.subjects.iter().map(|s| (*s).to_owned()).collect(),
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            deny_delete: true,
            deny_purge: true,
            duplicate_window,
            num_replicas: replicas.max(1),
            ..Default::default()
        }
    }
}

/// Creates the stream (one replica) if it does not exist; an existing stream is left as it is
/// (its settings may have been tuned by an operator) and returned.
pub async fn ensure_stream(
    js: &jetstream::Context,
    spec: &StreamSpec,
    duplicate_window: Duration,
) -> Result<jetstream::stream::Stream, async_nats::Error> {
    ensure_stream_replicated(js, spec, duplicate_window, 1).await
}

/// As [`ensure_stream`], with `replicas` copies (3 on a three-node cluster).
pub async fn ensure_stream_replicated(
    js: &jetstream::Context,
    spec: &StreamSpec,
    duplicate_window: Duration,
    replicas: usize,
) -> Result<jetstream::stream::Stream, async_nats::Error> {
    match js.get_stream(spec.name).await {
        Ok(s) => Ok(s),
        Err(_) => Ok(js
            .get_or_create_stream(spec.config(duplicate_window, replicas))
            .await?),
    }
}

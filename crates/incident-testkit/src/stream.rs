//! Reading what is on a JetStream stream, for assertions: every message on a stream whose
//! subject matches a filter, in stream order, through an ephemeral consumer.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;

/// Payload and headers of every message on `stream` matching `subject` (wildcards allowed);
/// empty when the stream does not exist (yet).
pub async fn read_subject(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Vec<(Vec<u8>, Option<HeaderMap>)> {
    let Ok(stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: subject.to_owned(),
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("ephemeral consumer");
    let pending = consumer.cached_info().num_pending as usize;
    if pending == 0 {
        return Vec::new();
    }
    let mut messages = consumer
        .fetch()
        .max_messages(pending)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let mut out = Vec::new();
    while let Some(Ok(m)) = messages.next().await {
        out.push((m.payload.to_vec(), m.headers.clone()));
        if out.len() == pending {
            break;
        }
    }
    out
}

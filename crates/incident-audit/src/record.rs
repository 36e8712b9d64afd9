//! [`AuditRecord`]: one record of one service's log as an auditor sees it: the service it
//! comes from, the stored [`Record`] (exact event bytes and hash chain), and the CloudEvents
//! envelope read from those bytes when they are one. The service names are the envelopes'
//! `source`s.

use incident_domain::Envelope;
use incident_eventlog::Record;
use jiff::Timestamp;

/// Intake's service name (and CloudEvents source).
pub const INTAKE: &str = "incident-intake";
/// The SLA timer's service name.
pub const SLA: &str = "incident-sla";
/// The notifier's service name.
pub const NOTIFIER: &str = "incident-notifier";
/// The services in the order reports list them.
pub const SERVICES: [&str; 3] = [INTAKE, SLA, NOTIFIER];

/// The rank of a service in [`SERVICES`] (unknown services after them).
pub fn service_rank(service: &str) -> usize {
    SERVICES
        .iter()
        .position(|s| *s == service)
        .unwrap_or(SERVICES.len())
}

/// One record of one service's log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The service whose log holds it.
    pub service: String,
    /// The stored record.
    pub record: Record,
    /// The envelope in `record.event`, `None` when the bytes are not one.
    pub envelope: Option<Envelope>,
}

impl AuditRecord {
    /// Wraps a record, reading its envelope.
    pub fn new(service: impl Into<String>, record: Record) -> Self {
        let envelope = Envelope::from_slice(&record.event).ok();
        AuditRecord {
            service: service.into(),
            record,
            envelope,
        }
    }

    /// The event's time, when the bytes are an envelope.
    pub fn time(&self) -> Option<Timestamp> {
        self.envelope.as_ref().map(|e| e.time)
    }

    /// The event's type (empty when not an envelope).
    pub fn event_type(&self) -> &str {
        self.envelope.as_ref().map_or("", |e| e.ty.as_str())
    }

    /// The event's subject (empty when not an envelope).
    pub fn subject(&self) -> &str {
        self.envelope.as_ref().map_or("", |e| e.subject.as_str())
    }

    /// Whether the record is about `incident_id` (its stream, its input stream, or its subject)
    /// or is a service-wide record (a stream starting with `_`, such as `_policy`).
    pub fn concerns(&self, incident_id: &str) -> bool {
        let stream = self.record.stream.as_str();
        stream == incident_id
            || stream.strip_prefix("input.") == Some(incident_id)
            || stream.starts_with('_')
            || self.subject() == incident_id
    }

    /// Whether the record is an input a service recorded (the SLA timer keeps each incident
    /// event it acted on under `input.<id>`), rather than an event of its own.
    pub fn is_input(&self) -> bool {
        self.record.stream.starts_with("input.")
    }
}

/// Sorts records for a merged history: by event time, then service (intake, SLA, notifier),
/// then seq. Records without a time come first. Stable and total, so the order is the same on
/// every run.
pub fn sort_merged(records: &mut [AuditRecord]) {
    records.sort_by(|a, b| {
        a.time()
            .cmp(&b.time())
            .then_with(|| service_rank(&a.service).cmp(&service_rank(&b.service)))
            .then_with(|| a.service.cmp(&b.service))
            .then_with(|| a.record.seq.cmp(&b.record.seq))
    });
}

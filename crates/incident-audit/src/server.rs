//! The gRPC `AuditService` (proto/incident/v1/audit.proto) over one service's [`EventLog`]:
//! `ReadLog` streams the records (exact bytes and hash chain) from a position or an instant,
//! optionally narrowed to one incident; `Verify` runs the log's own full verification; `Head`
//! gives the head. Read-only. Each service adds it with
//! `.add_service(incident_audit::service(log.clone(), "incident-intake"))`.

use std::pin::Pin;

use incident_eventlog::{EventLog, LogError, Record};
use incident_proto::v1 as pb;
use incident_proto::v1::audit_service_server::{AuditService, AuditServiceServer};
use jiff::Timestamp;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::record::AuditRecord;

/// Records sent per `ReadLog` stream before the reader waits for the client.
const READ_BUFFER: usize = 256;

/// The `AuditService` of one service's log.
#[derive(Debug, Clone)]
pub struct AuditApi {
    log: EventLog,
    service: &'static str,
}

/// The `AuditService` server for `log`, answering as `service_name` (`incident-intake`,
/// `incident-sla`, `incident-notifier`).
pub fn service(log: EventLog, service_name: &'static str) -> AuditServiceServer<AuditApi> {
    AuditServiceServer::new(AuditApi::new(log, service_name))
}

impl AuditApi {
    pub fn new(log: EventLog, service: &'static str) -> Self {
        AuditApi { log, service }
    }
}

fn pb_time(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

/// The wire form of a record.
pub fn to_pb(service: &str, rec: &AuditRecord) -> pb::LogRecord {
    let r = &rec.record;
    pb::LogRecord {
        service: service.to_owned(),
        seq: r.seq,
        stream: r.stream.clone(),
        version: r.version,
        event_id: r.event_id.clone(),
        prev_hash: r.prev_hash_hex(),
        hash: r.hash_hex(),
        event: r.event.clone(),
        r#type: rec.event_type().to_owned(),
        subject: rec.subject().to_owned(),
        time: rec.time().map(pb_time),
    }
}

/// A read or verification failure as a status: damage is DATA_LOSS naming the record (without
/// the path on the server's disk), anything else UNAVAILABLE.
fn status_of(e: &LogError) -> Status {
    match e.damage() {
        Some(d) => Status::data_loss(format!("record {}: {}", d.seq, d.reason)),
        None => Status::unavailable(e.to_string()),
    }
}

struct Filter {
    from_time: Option<Timestamp>,
    incident: Option<String>,
}

impl Filter {
    fn keeps(&self, rec: &AuditRecord) -> bool {
        if let Some(from) = self.from_time
            && rec.time().is_none_or(|t| t < from)
        {
            return false;
        }
        match &self.incident {
            Some(id) => rec.concerns(id),
            None => true,
        }
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<pb::LogRecord, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for AuditApi {
    type ReadLogStream = LogStream;

    async fn read_log(
        &self,
        request: Request<pb::ReadLogRequest>,
    ) -> Result<Response<Self::ReadLogStream>, Status> {
        let req = request.into_inner();
        let from_time = req
            .from_time
            .map(|t| Timestamp::new(t.seconds, t.nanos))
            .transpose()
            .map_err(|e| Status::invalid_argument(format!("from_time: {e}")))?;
        let filter = Filter {
            from_time,
            incident: (!req.incident_id.is_empty()).then_some(req.incident_id),
        };
        let log = self.log.clone();
        let service = self.service;
        let end = log.head().seq;
        let start = req.from_seq.max(1);
        let (tx, rx) = tokio::sync::mpsc::channel(READ_BUFFER);
        tokio::task::spawn_blocking(move || {
            if start > end {
                return;
            }
            for rec in log.read_from(start) {
                let item = match rec {
                    Ok(r) if r.seq > end => return,
                    Ok(r) => {
                        let rec = AuditRecord::new(service, r);
                        if !filter.keeps(&rec) {
                            continue;
                        }
                        Ok(to_pb(service, &rec))
                    }
                    Err(e) => Err(status_of(&e)),
                };
                let last = item.is_err();
                if tx.blocking_send(item).is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn verify(
        &self,
        _request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResult>, Status> {
        let log = self.log.clone();
        let result = tokio::task::spawn_blocking(move || log.verify())
            .await
            .map_err(|e| Status::internal(format!("verification did not finish: {e}")))?;
        let service = self.service.to_owned();
        Ok(Response::new(match result {
            Ok(head) => pb::VerifyResult {
                service,
                ok: true,
                records: head.seq,
                head_seq: head.seq,
                head_hash: head.hash_hex(),
                first_bad_seq: 0,
                reason: String::new(),
            },
            Err(e) => {
                let head = self.log.head();
                let (first_bad_seq, reason) = match e.damage() {
                    Some(d) => (d.seq, d.reason.clone()),
                    None => (0, e.to_string()),
                };
                pb::VerifyResult {
                    service,
                    ok: false,
                    records: first_bad_seq.saturating_sub(1),
                    head_seq: head.seq,
                    head_hash: head.hash_hex(),
                    first_bad_seq,
                    reason,
                }
            }
        }))
    }

    async fn head(
        &self,
        _request: Request<pb::HeadRequest>,
    ) -> Result<Response<pb::LogHead>, Status> {
        let head = self.log.head();
        Ok(Response::new(pb::LogHead {
            service: self.service.to_owned(),
            seq: head.seq,
            hash: head.hash_hex(),
        }))
    }
}

/// A record from its wire form (hashes decoded from hex); an error names what is malformed.
pub fn from_pb(r: pb::LogRecord) -> Result<AuditRecord, String> {
    let hash32 = |field: &str, s: &str| -> Result<[u8; 32], String> {
        hex::decode(s)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| format!("record {}: {field} is not 32 bytes of hex", r.seq))
    };
    let record = Record {
        seq: r.seq,
        stream: r.stream.clone(),
        version: r.version,
        event_id: r.event_id.clone(),
        prev_hash: hash32("prev_hash", &r.prev_hash)?,
        hash: hash32("hash", &r.hash)?,
        event: r.event,
    };
    Ok(AuditRecord::new(r.service, record))
}

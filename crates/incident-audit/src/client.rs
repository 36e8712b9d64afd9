//! Reading the running services' `AuditService`: their logs (whole or narrowed), their heads,
//! and the live verification that recomputes each chain on this side from the records read,
//! compares it with the head the service announces, and reports the service's own verdict
//! next to it (never instead of it).

use std::time::Duration;

use incident_proto::v1 as pb;
use incident_proto::v1::audit_service_client::AuditServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::record::AuditRecord;
use crate::server::from_pb;
use crate::verify::{ChainReport, verify_records};

/// A service to read: the name it is expected under and its gRPC URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: &'static str,
    pub url: String,
}

/// What reading one service's log gave.
#[derive(Debug, Clone)]
pub struct Read {
    pub service: String,
    pub records: Vec<AuditRecord>,
    /// Set when the stream ended with an error after these records (a damaged record).
    pub error: Option<String>,
}

/// Connects to `url`; the error says which address could not be reached and why.
pub async fn connect(url: &str) -> Result<AuditServiceClient<Channel>, String> {
    let channel = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("bad address {url}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    Ok(AuditServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

fn status_text(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// Reads `target`'s log with `req`. `Err` when the service cannot be reached or refuses the
/// request (nothing was read).
pub async fn read_log(target: &Target, req: pb::ReadLogRequest) -> Result<Read, String> {
    let mut client = connect(&target.url).await?;
    let mut stream = client
        .read_log(req)
        .await
        .map_err(|s| format!("{} at {}: {}", target.service, target.url, status_text(&s)))?
        .into_inner();
    let mut records = Vec::new();
    let mut error = None;
    loop {
        match stream.message().await {
            Ok(Some(r)) => match from_pb(r) {
                Ok(rec) => records.push(rec),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            },
            Ok(None) => break,
            Err(s) => {
                error = Some(status_text(&s));
                break;
            }
        }
    }
    let service = records
        .first()
        .map_or_else(|| target.service.to_owned(), |r| r.service.clone());
    Ok(Read {
        service,
        records,
        error,
    })
}

/// The head `target` announces.
pub async fn head(target: &Target) -> Result<pb::LogHead, String> {
    let mut client = connect(&target.url).await?;
    client
        .head(pb::HeadRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| status_text(&s))
}

/// The verdict on one live service.
#[derive(Debug, Clone)]
pub struct LiveVerdict {
    pub service: String,
    pub url: String,
    /// `Some(reason)` when the service could not be reached: nothing was verified.
    pub unreachable: Option<String>,
    /// The chain recomputed on this side.
    pub chain: Option<ChainReport>,
    /// The service's own verification.
    pub server: Option<pb::VerifyResult>,
    /// Everything that does not match, the first record to blame first.
    pub problems: Vec<String>,
}

impl LiveVerdict {
    /// Reached, and nothing found wrong.
    pub fn ok(&self) -> bool {
        self.unreachable.is_none() && self.problems.is_empty()
    }
}

/// Verifies one live service: reads its head, then its whole log, recomputes the chain here,
/// checks the chain reaches the announced head with the announced hash, and asks the service
/// for its own verification.
pub async fn verify_live(target: &Target) -> LiveVerdict {
    let mut v = LiveVerdict {
        service: target.service.to_owned(),
        url: target.url.clone(),
        unreachable: None,
        chain: None,
        server: None,
        problems: Vec::new(),
    };
    let announced = match head(target).await {
        Ok(h) => h,
        Err(e) => {
            v.unreachable = Some(e);
            return v;
        }
    };
    if !announced.service.is_empty() {
        v.service = announced.service.clone();
    }
    let read = match read_log(target, pb::ReadLogRequest::default()).await {
        Ok(r) => r,
        Err(e) => {
            v.unreachable = Some(e);
            return v;
        }
    };
    let mut reports = verify_records(&read.records);
    let chain = reports.pop().unwrap_or_else(|| ChainReport {
        service: v.service.clone(),
        records: 0,
        head_seq: 0,
        head_hash: incident_eventlog::Head::GENESIS.hash_hex(),
        problem: None,
    });
    if !reports.is_empty() {
        v.problems
            .push("the log holds records of more than one service".into());
    }
    if let Some(p) = &chain.problem {
        v.problems.push(p.to_string());
    }
    if let Some(e) = &read.error {
        v.problems.push(format!(
            "{}: reading stopped after {} records: {e}",
            v.service,
            read.records.len()
        ));
    }
    if chain.problem.is_none() && read.error.is_none() {
        match read.records.iter().find(|r| r.record.seq == announced.seq) {
            _ if announced.seq == 0 && read.records.is_empty() => {}
            Some(r) if r.record.hash_hex() == announced.hash => {}
            Some(_) => v.problems.push(format!(
                "{} record {}: its hash is not the head hash the service announces",
                v.service, announced.seq
            )),
            None => v.problems.push(format!(
                "{} record {}: missing: the service announces its head there, the log read ends at {}",
                v.service,
                announced.seq,
                read.records.last().map_or(0, |r| r.record.seq)
            )),
        }
    }
    v.chain = Some(chain);
    match connect(&target.url).await {
        Ok(mut c) => match c.verify(pb::VerifyRequest {}).await {
            Ok(r) => {
                let r = r.into_inner();
                if !r.ok {
                    v.problems.push(format!(
                        "{} record {}: the service's own verification: {}",
                        v.service, r.first_bad_seq, r.reason
                    ));
                }
                v.server = Some(r);
            }
            Err(s) => v
                .problems
                .push(format!("{}: Verify failed: {}", v.service, status_text(&s))),
        },
        Err(e) => v.problems.push(e),
    }
    v
}

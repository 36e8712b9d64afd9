//! The export format: JSON lines, one record per line, the records of several services in one
//! file (each service's records in seq order). Documented in docs/audit.md.
//!
//! ```json
//! {"service":"incident-intake","seq":1,"stream":"INC-…","version":1,"event_id":"…",
//!  "prev_hash":"00…00","hash":"…","type":"incident.opened.v1","subject":"INC-…",
//!  "time":"2026-…Z","event_raw":"{\"data\":…}","event":{"data":…}}
//! ```
//!
//! `event_raw` is the exact stored bytes as a JSON string (they are canonical UTF-8 JSON), so a
//! verifier recomputes `hash = sha256(hex_decode(prev_hash) || utf8(event_raw))`; bytes that are
//! not UTF-8 are written as `event_raw_hex` instead. `event` is the same event parsed, for
//! readers; verification checks it says the same as `event_raw`. `type`, `subject` and `time`
//! are read from the event for convenience.

use incident_eventlog::Record;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::record::AuditRecord;

#[derive(Serialize, Deserialize)]
struct Line {
    service: String,
    seq: u64,
    stream: String,
    version: u64,
    event_id: String,
    prev_hash: String,
    hash: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    ty: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_raw_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    event: Value,
}

/// A line of an export file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("export line {line}: {reason}")]
pub struct ExportError {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// One record read back from an export.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub record: AuditRecord,
    /// 1-based line number in the file.
    pub line: usize,
    /// Set when the parsed `event` object does not say the same as `event_raw`.
    pub event_mismatch: bool,
}

/// The export line of a record (no trailing newline).
pub fn to_line(rec: &AuditRecord) -> String {
    let r = &rec.record;
    let (event_raw, event_raw_hex, event) = match std::str::from_utf8(&r.event) {
        Ok(s) => (
            Some(s.to_owned()),
            None,
            serde_json::from_str(s).unwrap_or(Value::Null),
        ),
        Err(_) => (None, Some(hex::encode(&r.event)), Value::Null),
    };
    let line = Line {
        service: rec.service.clone(),
        seq: r.seq,
        stream: r.stream.clone(),
        version: r.version,
        event_id: r.event_id.clone(),
        prev_hash: r.prev_hash_hex(),
        hash: r.hash_hex(),
        ty: rec.event_type().to_owned(),
        subject: rec.subject().to_owned(),
        time: rec.time().map(|t| t.to_string()).unwrap_or_default(),
        event_raw,
        event_raw_hex,
        event,
    };
    // A struct of strings, numbers and a JSON value always serializes.
    serde_json::to_string(&line).unwrap_or_default()
}

/// The whole export of `records`, one line each, each line ending with a newline.
pub fn to_text<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&to_line(r));
        out.push('\n');
    }
    out
}

fn hash32(field: &str, s: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(s).map_err(|e| format!("{field} is not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{field} is {} bytes, not 32", bytes.len()))
}

/// Reads one line (`line` is its 1-based number, for errors).
pub fn parse_line(text: &str, line: usize) -> Result<Exported, ExportError> {
    let err = |reason: String| ExportError { line, reason };
    let l: Line = serde_json::from_str(text).map_err(|e| err(format!("not a record: {e}")))?;
    let at = |reason: String| err(format!("{} seq {}: {reason}", l.service, l.seq));
    let prev_hash = hash32("prev_hash", &l.prev_hash).map_err(at)?;
    let hash = hash32("hash", &l.hash).map_err(at)?;
    let event = match (&l.event_raw, &l.event_raw_hex) {
        (Some(s), None) => s.as_bytes().to_vec(),
        (None, Some(h)) => {
            hex::decode(h).map_err(|e| at(format!("event_raw_hex is not hex: {e}")))?
        }
        _ => return Err(at("needs exactly one of event_raw and event_raw_hex".into())),
    };
    let event_mismatch = match &l.event_raw {
        Some(raw) if !l.event.is_null() => {
            serde_json::from_str::<Value>(raw).ok().as_ref() != Some(&l.event)
        }
        _ => false,
    };
    let record = Record {
        seq: l.seq,
        stream: l.stream,
        version: l.version,
        event_id: l.event_id,
        prev_hash,
        hash,
        event,
    };
    Ok(Exported {
        record: AuditRecord::new(l.service, record),
        line,
        event_mismatch,
    })
}

/// Reads a whole export; blank lines are skipped. The first bad line is an error naming it.
pub fn parse(text: &str) -> Result<Vec<Exported>, ExportError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l, i + 1))
        .collect()
}

/// The records of a parsed export.
pub fn records(exported: &[Exported]) -> Vec<AuditRecord> {
    exported.iter().map(|e| e.record.clone()).collect()
}

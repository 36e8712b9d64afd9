//! The CloudEvents 1.0 envelope (JSON structured mode) every event is stored and published in,
//! and its canonical bytes: object keys sorted, no insignificant whitespace. The hash chain of a
//! service's log is computed over exactly these bytes.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

pub const SPEC_VERSION: &str = "1.0";
pub const CONTENT_TYPE: &str = "application/json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub specversion: String,
    /// UUIDv7.
    pub id: String,
    /// `incident-intake`, `incident-sla` or `incident-notifier`.
    pub source: String,
    /// Versioned event type, e.g. `incident.opened.v1`.
    #[serde(rename = "type")]
    pub ty: String,
    /// The incident id.
    pub subject: String,
    pub time: Timestamp,
    pub datacontenttype: String,
    pub data: Value,
}

#[derive(Debug, Error)]
pub enum EnvelopeError {
    #[error("not a CloudEvents JSON envelope: {0}")]
    Json(String),
    #[error("unsupported CloudEvents specversion {0:?}")]
    SpecVersion(String),
    #[error("envelope field {0} is empty")]
    Empty(&'static str),
}

impl Envelope {
    pub fn new(
        id: impl Into<String>,
        source: &str,
        ty: &str,
        subject: &str,
        time: Timestamp,
        data: Value,
    ) -> Self {
        Self {
            specversion: SPEC_VERSION.into(),
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            subject: subject.into(),
            time,
            datacontenttype: CONTENT_TYPE.into(),
            data,
        }
    }

    /// The canonical JSON bytes of the envelope.
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        canonical_bytes(
            EnvelopeFields {
                specversion: &self.specversion,
                id: &self.id,
                source: &self.source,
                ty: &self.ty,
                subject: &self.subject,
                time: self.time,
                datacontenttype: &self.datacontenttype,
            },
            |out| write_canonical(&self.data, out),
        )
    }

    /// Parses and checks an envelope (any key order, any whitespace).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let env: Envelope =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        check(
            &env.specversion,
            [&env.id, &env.source, &env.ty, &env.subject],
        )?;
        Ok(env)
    }
}

/// An envelope read without building its data: the strings are borrowed from the bytes where
/// the JSON has no escapes, and `data` stays raw JSON for a typed decode
/// ([`crate::stored::decode_slice`]). Accepts exactly what [`Envelope::from_slice`] accepts.
#[derive(Debug, Deserialize)]
pub struct EnvelopeRef<'a> {
    #[serde(borrow)]
    pub specversion: Cow<'a, str>,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    pub ty: Cow<'a, str>,
    #[serde(borrow)]
    pub subject: Cow<'a, str>,
    pub time: Timestamp,
    #[serde(borrow)]
    pub datacontenttype: Cow<'a, str>,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

impl<'a> EnvelopeRef<'a> {
    /// Parses and checks an envelope, as [`Envelope::from_slice`] does.
    pub fn from_slice(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        let env: EnvelopeRef<'a> =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        check(
            &env.specversion,
            [&env.id, &env.source, &env.ty, &env.subject],
        )?;
        Ok(env)
    }
}

/// The checks every parsed envelope passes: the spec version, and no empty id, source, type or
/// subject (in that order).
fn check<S: AsRef<str>>(specversion: &str, fields: [S; 4]) -> Result<(), EnvelopeError> {
    if specversion != SPEC_VERSION {
        return Err(EnvelopeError::SpecVersion(specversion.to_owned()));
    }
    for (name, v) in ["id", "source", "type", "subject"].into_iter().zip(fields) {
        if v.as_ref().is_empty() {
            return Err(EnvelopeError::Empty(name));
        }
    }
    Ok(())
}

/// An envelope's fields other than its data, borrowed.
pub struct EnvelopeFields<'a> {
    pub specversion: &'a str,
    pub id: &'a str,
    pub source: &'a str,
    pub ty: &'a str,
    pub subject: &'a str,
    pub time: Timestamp,
    pub datacontenttype: &'a str,
}

/// The canonical bytes of an envelope whose data `write_data` writes (canonical itself): the
/// envelope's own keys in byte order, without building a JSON value of it.
pub fn canonical_bytes(
    fields: EnvelopeFields<'_>,
    write_data: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    // data, datacontenttype, id, source, specversion, subject, time, type
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"data\":");
    write_data(&mut out);
    for (key, value) in [
        ("datacontenttype", fields.datacontenttype),
        ("id", fields.id),
        ("source", fields.source),
        ("specversion", fields.specversion),
        ("subject", fields.subject),
    ] {
        out.push(b',');
        write_str(key, &mut out);
        out.push(b':');
        write_str(value, &mut out);
    }
    out.extend_from_slice(b",\"time\":");
    // a timestamp serializes as its RFC 3339 string; writing into a Vec cannot fail
    let _ = serde_json::to_writer(&mut out, &fields.time);
    out.extend_from_slice(b",\"type\":");
    write_str(fields.ty, &mut out);
    out.push(b'}');
    out
}

/// Writes `value` as JSON with object keys in byte order and no whitespace.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Writing a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_bytes_sort_keys_at_every_level() {
        let env = Envelope::new(
            "0190f4c2-0000-7000-8000-000000000001",
            "incident-intake",
            "incident.commented.v1",
            "INC-1",
            "2026-12-02T10:00:00Z".parse().unwrap(),
            json!({"z": 1, "a": {"y": [ {"b": 2, "a": 1} ], "x": "é\"\n"}}),
        );
        let bytes = String::from_utf8(env.to_canonical_bytes()).unwrap();
        assert_eq!(
            bytes,
            r#"{"data":{"a":{"x":"é\"\n","y":[{"a":1,"b":2}]},"z":1},"datacontenttype":"application/json","id":"0190f4c2-0000-7000-8000-000000000001","source":"incident-intake","specversion":"1.0","subject":"INC-1","time":"2026-12-02T10:00:00Z","type":"incident.commented.v1"}"#
        );
        let back = Envelope::from_slice(bytes.as_bytes()).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.to_canonical_bytes(), bytes.as_bytes());
    }

    #[test]
    fn bad_envelopes_are_errors() {
        assert!(Envelope::from_slice(b"not json").is_err());
        assert!(Envelope::from_slice(b"{}").is_err());
        let mut v = serde_json::to_value(Envelope::new(
            "1",
            "s",
            "t",
            "x",
            Timestamp::UNIX_EPOCH,
            json!({}),
        ))
        .unwrap();
        v["specversion"] = json!("0.3");
        let err = Envelope::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, EnvelopeError::SpecVersion(_)));
        v["specversion"] = json!("1.0");
        v["id"] = json!("");
        let err = Envelope::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, EnvelopeError::Empty("id")));
    }
}

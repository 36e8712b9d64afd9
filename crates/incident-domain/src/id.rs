//! Incident ids: safe in a NATS subject token (letters, digits, `-`, `_`), at most 64 bytes.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::DomainError;

/// The id of an incident. Generated ids look like `INC-01JF3Q8ZK7M5V0TS6D2XWQ4N9B`
/// (Crockford base32 of a UUIDv7, so they sort by creation time).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IncidentId(String);

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl IncidentId {
    pub const MAX_LEN: usize = 64;

    /// Checks that `s` can be an incident id.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() {
            return Err(DomainError::invalid("id", "must not be empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(DomainError::invalid("id", "must be at most 64 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(DomainError::invalid(
                "id",
                "may hold only letters, digits, '-' and '_'",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// A new id from 16 bytes the caller generated (a UUIDv7, so ids sort by time).
    pub fn from_uuid_bytes(bytes: [u8; 16]) -> Self {
        let mut n = u128::from_be_bytes(bytes);
        let mut out = [0u8; 26];
        for slot in out.iter_mut().rev() {
            *slot = CROCKFORD[(n & 31) as usize];
            n >>= 5;
        }
        let body = std::str::from_utf8(&out).unwrap_or_default();
        Self(format!("INC-{body}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for IncidentId {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<IncidentId> for String {
    fn from(id: IncidentId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_subject_safe_and_sort_by_bytes() {
        let a = IncidentId::from_uuid_bytes([0x01; 16]);
        let b = IncidentId::from_uuid_bytes([0x02; 16]);
        assert!(a < b);
        assert_eq!(a.as_str().len(), 30);
        assert!(IncidentId::parse(a.as_str()).is_ok());
    }

    #[test]
    fn ids_with_subject_separators_or_wildcards_are_refused() {
        for bad in ["", "a.b", "a*", "a>", "a b", "é", &"x".repeat(65)] {
            let err = IncidentId::parse(bad).unwrap_err();
            assert!(matches!(err, DomainError::InvalidField { ref field, .. } if field == "id"));
        }
        assert!(IncidentId::parse("INC-42_a").is_ok());
    }
}

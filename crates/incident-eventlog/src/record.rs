//! The hash chain: one stored [`Record`], the log's [`Head`], [`chain_hash`], and
//! [`verify_chain`], which checks any sequence of records (read from the log or from an export
//! file) without touching storage. A broken link is a [`Damage`] naming the record.

use std::fmt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// The `prev_hash` of record 1: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// `sha256(prev || event)`: the hash of a record whose predecessor's hash is `prev`.
pub fn chain_hash(prev: &[u8; 32], event: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(event);
    h.finalize().into()
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Global position in this log, 1-based, gap-free.
    pub seq: u64,
    /// The stream (incident id) the event belongs to.
    pub stream: String,
    /// 1-based position within its stream.
    pub version: u64,
    /// The event's unique id.
    pub event_id: String,
    /// Hash of record `seq - 1`; [`GENESIS`] for record 1.
    pub prev_hash: [u8; 32],
    /// `sha256(prev_hash || event)`.
    pub hash: [u8; 32],
    /// The exact bytes as appended.
    pub event: Vec<u8>,
}

impl Record {
    /// The record's hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// The previous record's hash as lowercase hex.
    pub fn prev_hash_hex(&self) -> String {
        hex::encode(self.prev_hash)
    }

    /// Whether `hash` is `sha256(prev_hash || event)`.
    pub fn hash_matches(&self) -> bool {
        chain_hash(&self.prev_hash, &self.event) == self.hash
    }
}

/// The end of a chain: the last record's sequence number and hash (`seq` 0 and [`GENESIS`] for
/// an empty log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl Head {
    /// The head of an empty log.
    pub const GENESIS: Head = Head {
        seq: 0,
        hash: GENESIS,
    };

    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

impl Default for Head {
    fn default() -> Self {
        Head::GENESIS
    }
}

impl From<&Record> for Head {
    fn from(r: &Record) -> Self {
        Head {
            seq: r.seq,
            hash: r.hash,
        }
    }
}

/// A broken record: its sequence number and what is wrong with it.
///
/// `path` is the log the record was read from, when there is one (it is `None` from
/// [`verify_chain`]); it is not part of this type's `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub seq: u64,
    pub reason: String,
    pub path: Option<PathBuf>,
}

impl Damage {
    /// Damage to record `seq`, not tied to a log on disk.
    pub fn new(seq: u64, reason: impl Into<String>) -> Self {
        Damage {
            seq,
            reason: reason.into(),
            path: None,
        }
    }

    /// The same damage, found in the log at `path`.
    pub fn at(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}: {}", self.seq, self.reason)
    }
}

impl std::error::Error for Damage {}

/// Checks that `rec` follows `head`: the next sequence number, and `prev_hash` equal to the
/// head's hash. Cheap: no hashing.
pub(crate) fn check_link(head: &Head, rec: &Record) -> Result<(), Damage> {
    check_link_parts(head, rec.seq, &rec.prev_hash)
}

/// [`check_link`] on a record's seq and `prev_hash`.
pub(crate) fn check_link_parts(head: &Head, seq: u64, prev_hash: &[u8; 32]) -> Result<(), Damage> {
    let expected = head.seq.checked_add(1).ok_or_else(|| {
        Damage::new(
            seq,
            "follows a record whose sequence number is the largest possible",
        )
    })?;
    if seq > expected {
        return Err(Damage::new(
            expected,
            format!("missing (the next record present is {})", seq),
        ));
    }
    if seq < expected {
        return Err(Damage::new(
            seq,
            format!("out of order: record {expected} was expected here"),
        ));
    }
    if *prev_hash != head.hash {
        return Err(Damage::new(
            seq,
            format!(
                "its prev_hash does not match the hash of record {}",
                head.seq
            ),
        ));
    }
    Ok(())
}

/// Checks that the record's hash is the hash of its contents.
pub(crate) fn check_hash(rec: &Record) -> Result<(), Damage> {
    check_hash_parts(rec.seq, &rec.prev_hash, &rec.event, &rec.hash)
}

/// [`check_hash`] on a record's parts.
pub(crate) fn check_hash_parts(
    seq: u64,
    prev_hash: &[u8; 32],
    event: &[u8],
    hash: &[u8; 32],
) -> Result<(), Damage> {
    if chain_hash(prev_hash, event) == *hash {
        Ok(())
    } else {
        Err(Damage::new(seq, "hash does not match its contents"))
    }
}

/// Verifies a sequence of records as a chain that continues `prev` ([`Head::GENESIS`] when the
/// records start at seq 1): sequence numbers gap-free, each `prev_hash` equal to the previous
/// hash, each hash recomputed. Returns the last head (`prev` when there are no records), or the
/// first broken record with the reason.
pub fn verify_chain<I: IntoIterator<Item = Record>>(
    prev: Head,
    records: I,
) -> Result<Head, Damage> {
    let mut head = prev;
    for rec in records {
        check_link(&head, &rec)?;
        check_hash(&rec)?;
        head = Head::from(&rec);
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<Record> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let event = format!("{{\"n\":{seq}}}").into_bytes();
                let hash = chain_hash(&prev, &event);
                let r = Record {
                    seq,
                    stream: "s".into(),
                    version: seq,
                    event_id: format!("e{seq}"),
                    prev_hash: prev,
                    hash,
                    event,
                };
                prev = hash;
                r
            })
            .collect()
    }

    #[test]
    fn chain_hash_is_sha256_of_prev_then_event() {
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(b"abc");
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(chain_hash(&GENESIS, b"abc"), want);
    }

    #[test]
    fn intact_chain_verifies() {
        let recs = chain(5);
        let last = Head::from(&recs[4]);
        assert_eq!(verify_chain(Head::GENESIS, recs.clone()), Ok(last));
        // from the middle
        let mid = Head::from(&recs[1]);
        assert_eq!(verify_chain(mid, recs[2..].to_vec()), Ok(last));
        assert_eq!(verify_chain(mid, Vec::new()), Ok(mid));
    }

    #[test]
    fn broken_chains_name_the_record() {
        let mut recs = chain(5);
        recs[2].event = b"tampered".to_vec();
        let d = verify_chain(Head::GENESIS, recs).unwrap_err();
        assert_eq!(d.seq, 3);
        assert_eq!(d.to_string(), "record 3: hash does not match its contents");

        let mut recs = chain(5);
        recs.remove(3);
        assert_eq!(verify_chain(Head::GENESIS, recs).unwrap_err().seq, 4);

        let mut recs = chain(5);
        recs[3].prev_hash = [7; 32];
        assert_eq!(verify_chain(Head::GENESIS, recs).unwrap_err().seq, 4);

        let mut recs = chain(3);
        recs.swap(1, 2);
        assert_eq!(verify_chain(Head::GENESIS, recs).unwrap_err().seq, 2);
    }
}

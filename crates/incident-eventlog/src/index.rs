//! The log's two indexes, held in memory: event id -> seq of the record holding it, and stream
//! -> the seqs of its versions in order (so a stream's version is the length of its list).
//!
//! They are derived from the record file: built when the log opens and extended by each append
//! once it is durable. An append that kept them in sled paid two inserts per event, about half
//! of the CPU an incident cost intake. Each snapshot saves them beside the record file
//! ([`layout::INDEX_FILE`], checksummed, naming the seq and hash of the last record they
//! cover); opening loads that file if it fits the log (its last record is in the log with that
//! hash, event id, stream and version) and reads only the records after it, links checked from the saved last record on, each
//! the next version of its stream, no event id twice. Without a saved index, or with one that
//! does not fit (it is then removed), opening reads every record. Like the sled index of
//! earlier builds, a saved index is not checked against the records it covers on open;
//! [`crate::EventLog::verify`] reads every record and checks it against the index.
//!
//! Names are keyed by their 128-bit xxh3 hash, which keeps an entry at 24 bytes for an event
//! and about 40 for a stream whatever the names' lengths (30-60 and 50-90 with the hash maps'
//! free slots). What the keys are used for is checked against the records where it matters: [`Index::event`]'s answer is confirmed by reading the
//! record it names before the log reports a seq or refuses an append as a duplicate, and a
//! stream's records are checked to be of that stream as they are read. (Two different names
//! with one key, about one chance in 10^26 for a million names, would make opening report the
//! log as damaged, never make it lose or mix up records.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use crate::error::LogError;
use crate::iter::{Records, Source};
use crate::layout;
use crate::record::{Damage, Head};

/// A name's key in the index.
pub(crate) type Key = u128;

/// The key of an event id or a stream name.
pub(crate) fn key(name: &str) -> Key {
    xxhash_rust::xxh3::xxh3_128(name.as_bytes())
}

/// Keys are hashes already: the map uses their low bits as they are.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type Map<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

/// The seqs of one stream's versions: version `n` is at index `n - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seqs {
    One(u64),
    Many(Vec<u64>),
}

impl Seqs {
    fn as_slice(&self) -> &[u64] {
        match self {
            Seqs::One(s) => std::slice::from_ref(s),
            Seqs::Many(v) => v,
        }
    }

    fn push(&mut self, seq: u64) {
        match self {
            Seqs::One(first) => *self = Seqs::Many(vec![*first, seq]),
            Seqs::Many(v) => v.push(seq),
        }
    }
}

/// One record's entries, as an append stages them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) stream: Key,
    pub(crate) event: Key,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Index {
    events: Map<u64>,
    streams: Map<Seqs>,
    /// The last record indexed.
    through: Head,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            events: Map::default(),
            streams: Map::default(),
            through: Head::GENESIS,
        }
    }
}

impl Index {
    /// The seq of the record whose event id has `id`'s key, if any.
    pub(crate) fn event(&self, id: Key) -> Option<u64> {
        self.events.get(&id).copied()
    }

    /// The number of events in the stream with key `stream`.
    pub(crate) fn version(&self, stream: Key) -> u64 {
        self.streams
            .get(&stream)
            .map_or(0, |s| s.as_slice().len() as u64)
    }

    /// The number of events in the stream with key `stream` among the records up to `upto`.
    pub(crate) fn version_upto(&self, stream: Key, upto: u64) -> u64 {
        self.streams.get(&stream).map_or(0, |s| {
            s.as_slice().partition_point(|seq| *seq <= upto) as u64
        })
    }

    /// The seq of version `version` of the stream with key `stream`.
    pub(crate) fn seq_at(&self, stream: Key, version: u64) -> Option<u64> {
        let i = usize::try_from(version.checked_sub(1)?).ok()?;
        self.streams.get(&stream)?.as_slice().get(i).copied()
    }

    /// The last record indexed.
    pub(crate) fn through(&self) -> Head {
        self.through
    }

    /// The seqs of the stream's versions, those up to `upto`.
    pub(crate) fn seqs(&self, stream: Key, upto: u64) -> Vec<u64> {
        self.streams.get(&stream).map_or_else(Vec::new, |s| {
            s.as_slice()
                .iter()
                .copied()
                .take_while(|s| *s <= upto)
                .collect()
        })
    }

    /// How many events and streams it holds.
    pub(crate) fn len(&self) -> (u64, usize) {
        (self.events.len() as u64, self.streams.len())
    }

    /// Adds the records of a durable append, in seq order, each the next version of its stream
    /// (the append checked that); `head` is its last record.
    pub(crate) fn extend(&mut self, entries: &[Entry], head: Head) {
        for e in entries {
            self.add(*e);
        }
        debug_assert_eq!(entries.last().map_or(self.through.seq, |e| e.seq), head.seq);
        self.through = head;
    }

    fn add(&mut self, e: Entry) {
        self.events.insert(e.event, e.seq);
        self.streams
            .entry(e.stream)
            .and_modify(|s| s.push(e.seq))
            .or_insert(Seqs::One(e.seq));
    }

    /// Indexes the records after [`Index::through`] up to `head`, checking their links, that
    /// each is the next version of its stream and that no event id is stored twice.
    pub(crate) fn catch_up(&mut self, src: Source<'_>, head: Head) -> Result<(), LogError> {
        if head.seq < self.through.seq || (head.seq == self.through.seq && head != self.through) {
            return Err(LogError::damaged(
                src.path,
                Damage::new(
                    self.through.seq,
                    format!(
                        "the index ends at it, but the log's head is record {}",
                        head.seq
                    ),
                ),
            ));
        }
        if head.seq == self.through.seq {
            return Ok(());
        }
        let from = self.through.seq + 1;
        // no more records than frames fit in the file: a forged head cannot make this huge
        let fit = src.end / (layout::FRAME_HEADER_LEN + layout::RECORD_HEADER_LEN) as u64;
        let n = (head.seq - self.through.seq).min(fit);
        self.events.reserve(usize::try_from(n).unwrap_or(0));
        // the first record must follow the last one indexed
        let mut records = Records::new(src, from, head.seq, Some(self.through), false);
        let damaged = |seq, reason: String| LogError::damaged(src.path, Damage::new(seq, reason));
        while records.remaining() {
            let entry = records.step_with(|r| {
                let entry = Entry {
                    seq: r.seq,
                    stream: key(r.stream),
                    event: key(r.event_id),
                };
                let last = Head {
                    seq: r.seq,
                    hash: r.hash,
                };
                let expected = self.version(entry.stream) + 1;
                if r.version != expected {
                    return Err(damaged(
                        r.seq,
                        format!(
                            "it is version {} of stream {}, but should be version {expected}",
                            r.version, r.stream
                        ),
                    ));
                }
                if let Some(earlier) = self.event(entry.event) {
                    return Err(damaged(
                        r.seq,
                        format!(
                            "its event id {} is already the event id of record {earlier}",
                            r.event_id
                        ),
                    ));
                }
                Ok((entry, last))
            })??;
            self.add(entry.0);
            self.through = entry.1;
        }
        Ok(())
    }
}

/// The saved index: [`SAVED_MAGIC`], then the seq and hash of the last record it covers (u64,
/// 32 bytes), the number of events and of streams (u64 each), each event (key u128, seq u64),
/// each stream (key u128, count u32, its seqs u64), and the xxh3-128 of all of that (16 bytes).
/// Numbers big-endian.
pub(crate) const SAVED_MAGIC: &[u8] = b"incident-eventlog-index\x01";

impl Index {
    /// The index in its saved form.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let through = self.through;
        let mut out = Vec::with_capacity(
            SAVED_MAGIC.len() + 72 + self.events.len() * 24 + self.streams.len() * 40,
        );
        out.extend_from_slice(SAVED_MAGIC);
        out.extend_from_slice(&through.seq.to_be_bytes());
        out.extend_from_slice(&through.hash);
        out.extend_from_slice(&(self.events.len() as u64).to_be_bytes());
        out.extend_from_slice(&(self.streams.len() as u64).to_be_bytes());
        for (k, seq) in &self.events {
            out.extend_from_slice(&k.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
        }
        for (k, seqs) in &self.streams {
            let seqs = seqs.as_slice();
            out.extend_from_slice(&k.to_be_bytes());
            out.extend_from_slice(&(seqs.len() as u32).to_be_bytes());
            for s in seqs {
                out.extend_from_slice(&s.to_be_bytes());
            }
        }
        let sum = xxhash_rust::xxh3::xxh3_128(&out);
        out.extend_from_slice(&sum.to_be_bytes());
        out
    }

    /// A saved index; why not when it cannot be used.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Index, String> {
        let (body, sum) = bytes.split_last_chunk::<16>().ok_or("it is too short")?;
        if xxhash_rust::xxh3::xxh3_128(body) != u128::from_be_bytes(*sum) {
            return Err("its checksum does not match".into());
        }
        let mut r = body
            .strip_prefix(SAVED_MAGIC)
            .ok_or("it is not a saved index of this format")?;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let (head, rest) = r.split_at_checked(n).ok_or("it ends early")?;
            r = rest;
            Ok(head)
        };
        let u64_ = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
        let seq = u64_(take(8)?);
        let hash: [u8; 32] = take(32)?.try_into().map_err(|_| "it ends early")?;
        let events = u64_(take(8)?);
        let streams = u64_(take(8)?);
        if events != seq {
            return Err(format!("it holds {events} events for {seq} records"));
        }
        let mut index = Index {
            through: Head { seq, hash },
            ..Index::default()
        };
        // each event entry takes 24 bytes, and each stream holds a record: counts the file
        // cannot hold are refused before anything is allocated for them
        if seq > (bytes.len() / 24) as u64 || streams > seq {
            return Err(format!(
                "it says it covers {seq} records of {streams} streams, more than it can hold"
            ));
        }
        index.events.reserve(seq as usize);
        // every record 1..=seq must be named exactly once among the events, and once among the
        // streams
        let mut named = Named::new(seq);
        for _ in 0..events {
            let k = u128::from_be_bytes(take(16)?.try_into().map_err(|_| "it ends early")?);
            let s = u64_(take(8)?);
            if !named.first_time(s) || index.events.insert(k, s).is_some() {
                return Err(format!("an event entry is out of place (record {s})"));
            }
        }
        let mut named = Named::new(seq);
        index.streams.reserve(streams as usize);
        let mut total = 0u64;
        for _ in 0..streams {
            let k = u128::from_be_bytes(take(16)?.try_into().map_err(|_| "it ends early")?);
            let n = u32::from_be_bytes(take(4)?.try_into().map_err(|_| "it ends early")?);
            if n == 0 {
                return Err("a stream entry holds no records".into());
            }
            let mut seqs = Vec::with_capacity((n as usize).min(bytes.len() / 8));
            let mut last = 0;
            for _ in 0..n {
                let s = u64_(take(8)?);
                if s <= last || !named.first_time(s) {
                    return Err(format!("a stream entry is out of order (record {s})"));
                }
                last = s;
                seqs.push(s);
            }
            total += u64::from(n);
            let seqs = if n == 1 {
                Seqs::One(seqs[0])
            } else {
                Seqs::Many(seqs)
            };
            if index.streams.insert(k, seqs).is_some() {
                return Err("a stream is saved twice".into());
            }
        }
        if total != seq || !r.is_empty() {
            return Err(format!(
                "its streams hold {total} records for {seq}, or bytes are left over"
            ));
        }
        Ok(index)
    }
}

/// Which of the records `1..=n` were named already.
struct Named {
    bits: Vec<u64>,
    n: u64,
}

impl Named {
    fn new(n: u64) -> Self {
        Named {
            bits: vec![0; usize::try_from(n.div_ceil(64)).unwrap_or(0)],
            n,
        }
    }

    /// Whether `seq` is one of the records and not named before; names it.
    fn first_time(&mut self, seq: u64) -> bool {
        if seq == 0 || seq > self.n {
            return false;
        }
        let (word, bit) = (((seq - 1) / 64) as usize, (seq - 1) % 64);
        let fresh = self.bits[word] & (1 << bit) == 0;
        self.bits[word] |= 1 << bit;
        fresh
    }
}

/// Writes a saved index into `dir` in place of the one there: to a temporary file, synced, then
/// renamed over it, and the folder synced.
pub(crate) fn save(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{}.tmp", layout::INDEX_FILE));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(layout::INDEX_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The index saved in `dir`, if it is there, can be read, and covers records of this log up to
/// `tip`; else an empty one (with a warning when one was there but is not used).
pub(crate) fn load(src: Source<'_>, tip: Head) -> Index {
    let path = src.path.join(layout::INDEX_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Index::default(),
        Err(e) => {
            tracing::warn!(log = %src.path.display(), error = %e, "could not read the saved index; indexing every record");
            return Index::default();
        }
    };
    let checked = Index::decode(&bytes).and_then(|index| {
        let through = index.through;
        if through.seq > tip.seq {
            return Err(format!(
                "it covers records up to {}, past the log's head {}",
                through.seq, tip.seq
            ));
        }
        if through.seq == 0 {
            return if through.hash == Head::GENESIS.hash {
                Ok(index)
            } else {
                Err("it covers no record but names a hash".into())
            };
        }
        // the record it ends at: the same hash (the same events up to it), and the same event
        // id, stream and version (which the hash does not cover) as the index says
        let (hash, fits) = Records::new(src, through.seq, through.seq, None, false)
            .step_with(|r| {
                let fits = index.event(key(r.event_id)) == Some(r.seq)
                    && index.seq_at(key(r.stream), r.version) == Some(r.seq);
                (r.hash, fits)
            })
            .map_err(|e| e.to_string())?;
        if hash != through.hash || !fits {
            return Err(format!(
                "record {} of this log is not the one it was saved at",
                through.seq
            ));
        }
        Ok(index)
    });
    checked.unwrap_or_else(|reason| {
        tracing::warn!(log = %src.path.display(), reason, "the saved index cannot be used; indexing every record");
        discard(src.path);
        Index::default()
    })
}

/// Removes the saved index in `dir` (never to be read again, even once the log has grown past
/// the record it ends at), and syncs the folder.
pub(crate) fn discard(dir: &Path) {
    let removed = std::fs::remove_file(dir.join(layout::INDEX_FILE))
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })
        .and_then(|()| std::fs::File::open(dir)?.sync_all());
    if let Err(e) = removed {
        tracing::warn!(log = %dir.display(), error = %e, "could not remove the saved index that cannot be used");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let mut index = Index::default();
        let entries: Vec<Entry> = (1..=5u64)
            .map(|seq| Entry {
                seq,
                stream: key(if seq % 2 == 1 { "a" } else { "b" }),
                event: key(&format!("e{seq}")),
            })
            .collect();
        index.extend(
            &entries,
            Head {
                seq: 5,
                hash: [7; 32],
            },
        );
        index
    }

    /// `bytes` with its checksum made right again after an edit.
    fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
        let body = bytes.len() - 16;
        let sum = xxhash_rust::xxh3::xxh3_128(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum.to_be_bytes());
        bytes
    }

    #[test]
    fn a_saved_index_round_trips() {
        let index = sample();
        assert_eq!(Index::decode(&index.encode()).unwrap(), index);
        assert_eq!(index.version(key("a")), 3);
        assert_eq!(index.seq_at(key("b"), 2), Some(4));
        assert_eq!(index.version_upto(key("a"), 4), 2);
    }

    #[test]
    fn a_saved_index_naming_a_record_twice_is_refused_even_with_a_right_checksum() {
        let bytes = sample().encode();
        let events_at = SAVED_MAGIC.len() + 8 + 32 + 8 + 8;
        // the first event entry's seq made the second's
        let mut twice = bytes.clone();
        let first = events_at + 16;
        let second = events_at + 24 + 16;
        let other: [u8; 8] = twice[second..second + 8].try_into().unwrap();
        twice[first..first + 8].copy_from_slice(&other);
        let e = Index::decode(&resealed(twice)).unwrap_err();
        assert!(e.contains("out of place"), "{e}");
        // a count of records the file cannot hold
        let mut huge = bytes;
        for at in [SAVED_MAGIC.len(), SAVED_MAGIC.len() + 8 + 32] {
            huge[at..at + 8].copy_from_slice(&(1u64 << 40).to_be_bytes());
        }
        let e = Index::decode(&resealed(huge)).unwrap_err();
        assert!(e.contains("more than it can hold"), "{e}");
    }
}

//! The log's two indexes, held in memory: event id -> seq of the record holding it, and stream
//! -> the seqs of its versions in order (so a stream's version is the length of its list).
//!
//! They are derived from the record file, never stored: built when the log opens (reading the
//! records front to back, links checked) and extended by each append once it is durable. An
//! append that kept them in sled paid two inserts per event, about half of the CPU an incident
//! cost intake; reading them back on open costs a read of the record file instead.
//!
//! Names are keyed by their 128-bit xxh3 hash, which keeps an entry at 24 bytes for an event
//! and about 40 for a stream whatever the names' lengths. What the keys are used for is checked
//! against the records where it matters: [`Index::event`]'s answer is confirmed by reading the
//! record it names before the log reports a seq or refuses an append as a duplicate, and a
//! stream's records are checked to be of that stream as they are read. (Two different names
//! with one key, about one chance in 10^26 for a million names, would make opening report the
//! log as damaged, never make it lose or mix up records.)

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::LogError;
use crate::iter::{Records, Source};
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

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Index {
    events: Map<u64>,
    streams: Map<Seqs>,
    /// The last seq indexed.
    through: u64,
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
    /// (the append checked that).
    pub(crate) fn extend(&mut self, entries: &[Entry]) {
        for e in entries {
            self.add(*e);
        }
    }

    fn add(&mut self, e: Entry) {
        self.events.insert(e.event, e.seq);
        self.streams
            .entry(e.stream)
            .and_modify(|s| s.push(e.seq))
            .or_insert(Seqs::One(e.seq));
        self.through = e.seq;
    }

    /// Indexes the records after [`Index::through`] up to `head`, checking their links, that
    /// each is the next version of its stream and that no event id is stored twice.
    pub(crate) fn catch_up(&mut self, src: Source<'_>, head: Head) -> Result<(), LogError> {
        if head.seq <= self.through {
            return Ok(());
        }
        let from = self.through + 1;
        self.events
            .reserve(usize::try_from(head.seq - self.through).unwrap_or(0));
        let prev = (from == 1).then_some(Head::GENESIS);
        let mut records = Records::new(src, from, head.seq, prev, false);
        let damaged = |seq, reason: String| LogError::damaged(src.path, Damage::new(seq, reason));
        while records.remaining() {
            let entry = records.step_with(|r| {
                let entry = Entry {
                    seq: r.seq,
                    stream: key(r.stream),
                    event: key(r.event_id),
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
                Ok(entry)
            })??;
            self.add(entry);
        }
        Ok(())
    }
}

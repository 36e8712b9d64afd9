//! The on-disk layout: the record file, every key and value the log stores in sled, and their
//! codecs. Public so tools (benchmarks, forensics) can read a log directly.
//!
//! A log is a folder holding a sled database, the record file [`RECORD_FILE`] and, once a
//! snapshot was taken, the saved index [`INDEX_FILE`] (its format is in `index.rs`). The record
//! file holds the records, one frame after another in sequence order: the record value's
//! length (u32, big-endian) and the record value. sled holds the head, the batch index, the
//! processed input ids, the cursors and the snapshots. All numbers are big-endian u64, so keys
//! iterate in sequence order. Everything but the snapshots lives in sled's default tree; the
//! first byte of a key says what it is. The event id and stream indexes are held in memory,
//! built from the records (and the saved index) when the log opens (see `index.rs`).
//!
//! | key | value |
//! |---|---|
//! | `m` | [`MAGIC`] then the log format byte ([`LOG_FORMAT`]) |
//! | `h` | head: format byte 2, seq u64, hash 32 bytes, end of the record file u64 (49 bytes) |
//! | `b` seq | byte offset in the record file of record seq, the first of a group commit (in a log moved from format 1: of every 256th record) |
//! | `p` input id | seq u64 of the head when the input was recorded as processed |
//! | `c` name | cursor u64 |
//!
//! An append writes its frames at the end the head names and syncs the file; then it writes
//! one `b` entry, the processed `p` entries and `h` (with the new end) in one `apply_batch`,
//! and flushes sled. The head decides what the log holds: bytes
//! past its end are an append that never completed (it was not acknowledged) and are cut off on
//! open. Reading record `seq` starts at the last `b` entry at or before it.
//!
//! Why the records are not in sled: sled keeps values inline in its pages and rewrites and
//! caches them as pages change, so a 1 KB record cost an append about as much CPU again as
//! its three small index entries, and kept about 1.3 KiB more of memory per event (measured
//! with 100,000 appends of 1,000-byte events: about 51 against 28 us of CPU per event, and
//! 1.8 against 0.5 KiB of resident memory per event). Written once to a file, a record costs
//! a copy and its share of one `fdatasync`.
//!
//! Why the event id and stream indexes are not in sled either: they were two inserts per event
//! (`e` + event id -> seq, `v` + stream + version -> seq), and with the records gone they were
//! most of what an append cost: intake spent 50-72 us of CPU per incident with them and 27-36
//! with the index in memory (`incident-bench --quick --only intake`, 3 alternating pairs). Held in memory they cost
//! about 30-60 bytes per event and 50-90 per stream, and on open a read of the records the
//! saved index does not cover.
//!
//! Format 2 (earlier builds) is this format with the `e` and `v` entries in sled; on open its
//! marker is switched to this format, then the entries are removed. Format 1 kept each record
//! in sled under `r` + seq and a 41-byte head without the end; such a log is moved to this
//! format on open: the chain is verified while its records are copied to the record file, then
//! the head and the format marker switch in one batch, then the `r`, `e` and `v` keys are
//! removed.
//!
//! Snapshots live in their own tree, [`SNAPSHOT_TREE`], keyed by name: format byte 1, seq u64,
//! sha256(seq u64, bytes) 32 bytes, bytes. Not in the default tree: sled keeps a leaf's values
//! inline and copies the whole leaf when it splits, and the leaf holding the newest event ids
//! and the head is written by every append. A snapshot of hundreds of megabytes there made each
//! small append copy it (200 batches of 10 events after a 50 MB snapshot: 36 s, against 0.1 s).
//! An `n`-prefixed snapshot an earlier build left in the default tree is removed on open.
//!
//! Record value, format 1 (an 85-byte header): format byte `1`, seq u64, version u64,
//! prev_hash 32, hash 32, stream length u16, event id length u16; then the stream and the
//! event id (UTF-8) and the event bytes to the end of the value. The seq inside the value must
//! be the seq expected at its place.
//!
//! A stream's version is the number of its records. Earlier builds also stored it under
//! `s` + stream, one more write per event (about 15% of an append's CPU); such keys are removed
//! on open.

use sha2::{Digest, Sha256};

use crate::record::{Damage, Head, Record};

/// Key of the format marker.
pub const META_KEY: &[u8] = b"m";
/// Key of the head.
pub const HEAD_KEY: &[u8] = b"h";
/// Prefix of the records of a format-1 log (`r` + seq); moved to the record file on open.
pub const RECORD: u8 = b'r';
/// Prefix of the batch index (`b` + seq of the first record of a group commit).
pub const BATCH: u8 = b'b';
/// The record file's name inside the log's folder.
pub const RECORD_FILE: &str = "records";
/// Length of a frame's header in the record file: the record value's length, u32 big-endian.
pub const FRAME_HEADER_LEN: usize = 4;
/// The file the in-memory index is saved to with each snapshot, beside the record file, so
/// that opening reads only the records after it (see `index.rs`).
pub const INDEX_FILE: &str = "index";
/// Prefix of the event id index formats 1 and 2 kept in sled (`e` + event id); removed on open.
pub const EVENT_ID: u8 = b'e';
/// Prefix of the stream versions earlier builds stored (`s` + stream); removed on open.
pub const STREAM_VERSION: u8 = b's';
/// Prefix of the stream index formats 1 and 2 kept in sled (`v` + len + stream + version);
/// removed on open.
pub const STREAM_INDEX: u8 = b'v';
/// Prefix of processed input ids (`p` + input id).
pub const PROCESSED: u8 = b'p';
/// Prefix of cursors (`c` + name).
pub const CURSOR: u8 = b'c';
/// Prefix of snapshots an earlier build kept in the default tree (`n` + name); removed on open.
pub const SNAPSHOT: u8 = b'n';
/// The sled tree holding snapshots, keyed by name.
pub const SNAPSHOT_TREE: &str = "snapshots";

/// The start of the format marker's value.
pub const MAGIC: &[u8] = b"incident-eventlog";
/// The log format this build writes and reads.
pub const LOG_FORMAT: u8 = 3;
/// The format of logs whose event id and stream indexes are in sled; switched to
/// [`LOG_FORMAT`] on open.
pub const INDEXED_LOG_FORMAT: u8 = 2;
/// The format of logs whose records are in sled; moved to [`LOG_FORMAT`] on open.
pub const LEGACY_LOG_FORMAT: u8 = 1;
/// The record format this build writes and reads.
pub const RECORD_FORMAT: u8 = 1;
/// Length of a format-1 record header.
pub const RECORD_HEADER_LEN: usize = 1 + 8 + 8 + 32 + 32 + 2 + 2;
/// The head's format byte.
pub const HEAD_FORMAT: u8 = 2;
/// Length of the head value.
pub const HEAD_LEN: usize = 1 + 8 + 32 + 8;
/// The format byte of a format-1 log's head.
pub const LEGACY_HEAD_FORMAT: u8 = 1;
/// Length of a format-1 log's head value.
pub const LEGACY_HEAD_LEN: usize = 1 + 8 + 32;
/// The snapshot format byte.
pub const SNAPSHOT_FORMAT: u8 = 1;
/// Longest stream name or event id, in bytes.
pub const MAX_NAME_LEN: usize = u16::MAX as usize;
/// Longest record value, in bytes: an append of a longer event is refused, and a frame that
/// says it is longer is damage. (The services refuse inputs far smaller: 512 KB over HTTP.)
pub const MAX_RECORD_LEN: usize = 64 << 20;

/// `prefix` followed by `rest`.
pub fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

/// The key of record `seq`.
pub fn record_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = RECORD;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The seq of a record key, or `None` when `key` is not one.
pub fn record_key_seq(key: &[u8]) -> Option<u64> {
    match key.split_first() {
        Some((&RECORD, rest)) => be_u64(rest),
        _ => None,
    }
}

/// The `b` key of the group commit whose first record is `seq`.
pub fn batch_key(seq: u64) -> [u8; 9] {
    let mut k = record_key(seq);
    k[0] = BATCH;
    k
}

/// The seq of a `b` key, or `None` when `key` is not one.
pub fn batch_key_seq(key: &[u8]) -> Option<u64> {
    match key.split_first() {
        Some((&BATCH, rest)) => be_u64(rest),
        _ => None,
    }
}

/// A big-endian u64 of exactly 8 bytes.
pub fn be_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// The prefix of all `v` keys of `stream` (`v`, stream length u16, stream). `None` when the
/// name is longer than [`MAX_NAME_LEN`].
pub fn stream_index_prefix(stream: &str) -> Option<Vec<u8>> {
    let len = u16::try_from(stream.len()).ok()?;
    let mut k = Vec::with_capacity(3 + stream.len() + 8);
    k.push(STREAM_INDEX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(stream.as_bytes());
    Some(k)
}

/// The `v` key of version `version` of `stream`.
pub fn stream_index_key(stream: &str, version: u64) -> Option<Vec<u8>> {
    let mut k = stream_index_prefix(stream)?;
    k.extend_from_slice(&version.to_be_bytes());
    Some(k)
}

/// Appends the frame of a format-1 record (its length, then its value) to `out`. `None`, with
/// `out` unchanged, when the stream or event id is longer than [`MAX_NAME_LEN`] or the value
/// longer than [`MAX_RECORD_LEN`].
#[allow(clippy::too_many_arguments)]
pub fn encode_frame(
    out: &mut Vec<u8>,
    seq: u64,
    version: u64,
    stream: &str,
    event_id: &str,
    prev_hash: &[u8; 32],
    hash: &[u8; 32],
    event: &[u8],
) -> Option<()> {
    let stream_len = u16::try_from(stream.len()).ok()?;
    let id_len = u16::try_from(event_id.len()).ok()?;
    let len = RECORD_HEADER_LEN + stream.len() + event_id.len() + event.len();
    if len > MAX_RECORD_LEN {
        return None;
    }
    let frame_len = u32::try_from(len).ok()?;
    out.reserve(FRAME_HEADER_LEN + len);
    out.extend_from_slice(&frame_len.to_be_bytes());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(prev_hash);
    out.extend_from_slice(hash);
    out.extend_from_slice(&stream_len.to_be_bytes());
    out.extend_from_slice(&id_len.to_be_bytes());
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(event_id.as_bytes());
    out.extend_from_slice(event);
    Some(())
}

/// Encodes a record's value (a frame without its length). `None` when the stream or event id
/// or the value is too long.
pub fn encode_record(r: &Record) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    encode_frame(
        &mut v,
        r.seq,
        r.version,
        &r.stream,
        &r.event_id,
        &r.prev_hash,
        &r.hash,
        &r.event,
    )?;
    v.drain(..FRAME_HEADER_LEN);
    Some(v)
}

/// Reads fixed-size pieces off the front of a slice, never panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(u16::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(be_u64)
    }
    fn hash(&mut self) -> Option<[u8; 32]> {
        self.take(32).and_then(|b| <[u8; 32]>::try_from(b).ok())
    }
}

/// A record as stored, borrowing from the value: decoding without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub seq: u64,
    pub version: u64,
    pub stream: &'a str,
    pub event_id: &'a str,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub event: &'a [u8],
}

impl RecordRef<'_> {
    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            seq: self.seq,
            stream: self.stream.to_owned(),
            version: self.version,
            event_id: self.event_id.to_owned(),
            prev_hash: self.prev_hash,
            hash: self.hash,
            event: self.event.to_vec(),
        }
    }
}

/// Decodes a record value found where record `key_seq` should be, without copying. Anything
/// that is not a well-formed format-1 record for that seq is [`Damage`] naming `key_seq`.
pub fn decode_record_ref(key_seq: u64, value: &[u8]) -> Result<RecordRef<'_>, Damage> {
    let short = |what: &str| {
        Damage::new(
            key_seq,
            format!(
                "too short to decode ({} bytes; {what} is missing)",
                value.len()
            ),
        )
    };
    let mut r = Reader(value);
    let format = r.u8().ok_or_else(|| Damage::new(key_seq, "empty value"))?;
    if format != RECORD_FORMAT {
        return Err(Damage::new(
            key_seq,
            format!("unknown record format {format} (this build reads format {RECORD_FORMAT})"),
        ));
    }
    if value.len() < RECORD_HEADER_LEN {
        return Err(short("part of the header"));
    }
    let seq = r.u64().ok_or_else(|| short("the seq"))?;
    if seq != key_seq {
        return Err(Damage::new(
            key_seq,
            format!("where it should be, record {seq} is stored"),
        ));
    }
    let version = r.u64().ok_or_else(|| short("the version"))?;
    let prev_hash = r.hash().ok_or_else(|| short("the prev_hash"))?;
    let hash = r.hash().ok_or_else(|| short("the hash"))?;
    let stream_len = r.u16().ok_or_else(|| short("the stream length"))?;
    let id_len = r.u16().ok_or_else(|| short("the event id length"))?;
    let stream = r
        .take(usize::from(stream_len))
        .ok_or_else(|| short("part of the stream name"))?;
    let event_id = r
        .take(usize::from(id_len))
        .ok_or_else(|| short("part of the event id"))?;
    let stream = std::str::from_utf8(stream)
        .map_err(|_| Damage::new(key_seq, "its stream name is not UTF-8"))?;
    let event_id = std::str::from_utf8(event_id)
        .map_err(|_| Damage::new(key_seq, "its event id is not UTF-8"))?;
    if version == 0 {
        return Err(Damage::new(key_seq, "its stream version is 0"));
    }
    Ok(RecordRef {
        seq,
        version,
        stream,
        event_id,
        prev_hash,
        hash,
        event: r.0,
    })
}

/// Decodes a record value found where record `key_seq` should be into an owned [`Record`].
pub fn decode_record(key_seq: u64, value: &[u8]) -> Result<Record, Damage> {
    decode_record_ref(key_seq, value).map(|r| r.to_record())
}

/// Encodes the head value: the head and the end of the record file.
pub fn encode_head(head: &Head, end: u64) -> [u8; HEAD_LEN] {
    let mut v = [0u8; HEAD_LEN];
    v[0] = HEAD_FORMAT;
    v[1..9].copy_from_slice(&head.seq.to_be_bytes());
    v[9..41].copy_from_slice(&head.hash);
    v[41..].copy_from_slice(&end.to_be_bytes());
    v
}

/// Reads a head value of `len` bytes and format `format`: the head, and a reader over what
/// follows it.
fn read_head(value: &[u8], len: usize, format: u8) -> Result<(Head, Reader<'_>), String> {
    if value.len() != len {
        return Err(format!("the head is {} bytes, not {len}", value.len()));
    }
    let mut r = Reader(value);
    let found = r.u8().ok_or("the head is empty")?;
    if found != format {
        return Err(format!("unknown head format {found}"));
    }
    let seq = r.u64().ok_or("the head has no seq")?;
    let hash = r.hash().ok_or("the head has no hash")?;
    Ok((Head { seq, hash }, r))
}

/// Decodes the head value into the head and the end of the record file; the error says what
/// is wrong.
pub fn decode_head(value: &[u8]) -> Result<(Head, u64), String> {
    let (head, mut r) = read_head(value, HEAD_LEN, HEAD_FORMAT)?;
    let end = r.u64().ok_or("the head has no end")?;
    Ok((head, end))
}

/// Decodes the head of a format-1 log.
pub fn decode_legacy_head(value: &[u8]) -> Result<Head, String> {
    read_head(value, LEGACY_HEAD_LEN, LEGACY_HEAD_FORMAT).map(|(head, _)| head)
}

/// Encodes the head of a format-1 log (for tools and tests that write one): the head value
/// without the end, under the format-1 byte.
pub fn encode_legacy_head(head: &Head) -> [u8; LEGACY_HEAD_LEN] {
    let mut v = [0u8; LEGACY_HEAD_LEN];
    v.copy_from_slice(&encode_head(head, 0)[..LEGACY_HEAD_LEN]);
    v[0] = LEGACY_HEAD_FORMAT;
    v
}

/// Where one frame of a record file sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpan {
    /// Byte offset of the frame (its length field).
    pub offset: u64,
    /// Length of the record value that follows the 4-byte length.
    pub len: u32,
    /// The seq the value says it is, when it is long enough to say.
    pub seq: Option<u64>,
}

impl FrameSpan {
    /// Byte offset of the record value.
    pub fn value_offset(&self) -> u64 {
        self.offset + FRAME_HEADER_LEN as u64
    }
}

/// The frames of the record file in the log folder `dir`, read as they are (nothing checked,
/// the head not consulted; an incomplete last frame is left out): for tools that need to find
/// a record on disk. Reads each frame's length and seq and skips the rest.
pub fn record_frames(dir: &std::path::Path) -> std::io::Result<Vec<FrameSpan>> {
    use std::io::{BufReader, Read};
    let file = std::fs::File::open(dir.join(RECORD_FILE))?;
    let file_len = file.metadata()?.len();
    let mut file = BufReader::with_capacity(256 * 1024, file);
    let mut spans = Vec::new();
    let mut at = 0u64;
    let mut head = [0u8; FRAME_HEADER_LEN + 9];
    while at + FRAME_HEADER_LEN as u64 <= file_len {
        file.read_exact(&mut head[..FRAME_HEADER_LEN])?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let next = at + FRAME_HEADER_LEN as u64 + u64::from(len);
        if next > file_len {
            break;
        }
        let seq_len = (len as usize).min(9);
        file.read_exact(&mut head[FRAME_HEADER_LEN..FRAME_HEADER_LEN + seq_len])?;
        file.seek_relative(i64::from(len) - seq_len as i64)?;
        spans.push(FrameSpan {
            offset: at,
            len,
            seq: head
                .get(FRAME_HEADER_LEN + 1..FRAME_HEADER_LEN + seq_len)
                .and_then(be_u64),
        });
        at = next;
    }
    Ok(spans)
}

/// The format marker's value.
pub fn meta_value() -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    v.push(LOG_FORMAT);
    v
}

/// The checksum stored with a snapshot: `sha256(seq u64 || bytes)`.
pub fn snapshot_checksum(seq: u64, bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seq.to_be_bytes());
    h.update(bytes);
    h.finalize().into()
}

/// Encodes a snapshot value.
pub fn encode_snapshot(seq: u64, bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 8 + 32 + bytes.len());
    v.push(SNAPSHOT_FORMAT);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&snapshot_checksum(seq, bytes));
    v.extend_from_slice(bytes);
    v
}

/// Why a snapshot value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotDefect {
    /// Too short or an unknown format: not even its seq can be read.
    Unreadable(String),
    /// Readable, but the checksum does not match (the seq read may itself be damaged).
    Checksum { seq: u64 },
}

/// Decodes a snapshot value into its seq and bytes, checking the checksum.
pub fn decode_snapshot(value: &[u8]) -> Result<(u64, Vec<u8>), SnapshotDefect> {
    let mut r = Reader(value);
    let format = r
        .u8()
        .ok_or_else(|| SnapshotDefect::Unreadable("empty value".into()))?;
    if format != SNAPSHOT_FORMAT {
        return Err(SnapshotDefect::Unreadable(format!(
            "unknown snapshot format {format}"
        )));
    }
    let short = || SnapshotDefect::Unreadable(format!("too short ({} bytes)", value.len()));
    let seq = r.u64().ok_or_else(short)?;
    let sum = r.hash().ok_or_else(short)?;
    if snapshot_checksum(seq, r.0) != sum {
        return Err(SnapshotDefect::Checksum { seq });
    }
    Ok((seq, r.0.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::chain_hash;
    use proptest::prelude::*;

    fn sample() -> Record {
        let event = b"{\"a\":1}".to_vec();
        Record {
            seq: 42,
            stream: "INC-1".into(),
            version: 3,
            event_id: "01J-id".into(),
            prev_hash: [9; 32],
            hash: chain_hash(&[9; 32], &event),
            event,
        }
    }

    #[test]
    fn record_round_trips() {
        let r = sample();
        let v = encode_record(&r).unwrap();
        assert_eq!(v.len(), RECORD_HEADER_LEN + 5 + 6 + 7);
        assert_eq!(decode_record(42, &v), Ok(r));
    }

    #[test]
    fn record_under_the_wrong_key_is_damage() {
        let v = encode_record(&sample()).unwrap();
        let d = decode_record(41, &v).unwrap_err();
        assert_eq!(d.seq, 41);
        assert!(d.reason.contains("record 42 is stored"), "{d}");
    }

    #[test]
    fn truncated_values_are_damage() {
        let v = encode_record(&sample()).unwrap();
        for n in 0..RECORD_HEADER_LEN + 11 {
            let d = decode_record(42, &v[..n]).unwrap_err();
            assert_eq!(d.seq, 42);
        }
        // cutting into the event bytes cannot be seen here (the hash catches it)
        assert!(decode_record(42, &v[..v.len() - 1]).is_ok());
    }

    #[test]
    fn frames_hold_the_record_value_after_its_length() {
        let r = sample();
        let mut file = Vec::new();
        encode_frame(
            &mut file,
            r.seq,
            r.version,
            &r.stream,
            &r.event_id,
            &r.prev_hash,
            &r.hash,
            &r.event,
        )
        .unwrap();
        let first = file.len();
        encode_frame(
            &mut file, 43, 4, &r.stream, "other", &r.hash, &r.hash, b"{}",
        )
        .unwrap();
        let value = encode_record(&r).unwrap();
        assert_eq!(&file[..4], &(value.len() as u32).to_be_bytes());
        assert_eq!(&file[4..first], &value[..]);
        assert_eq!(
            decode_record(43, &file[first + 4..]).unwrap().event_id,
            "other"
        );
        let dir = tempfile::tempdir().unwrap();
        // an incomplete last frame is left out
        std::fs::write(dir.path().join(RECORD_FILE), &file[..file.len() - 1]).unwrap();
        let spans = record_frames(dir.path()).unwrap();
        assert_eq!(
            spans,
            vec![FrameSpan {
                offset: 0,
                len: value.len() as u32,
                seq: Some(42)
            }]
        );
        assert_eq!(spans[0].value_offset(), 4);
        // zeroed bytes read as empty frames, with no seq
        std::fs::write(dir.path().join(RECORD_FILE), [0u8; 10]).unwrap();
        let spans = record_frames(dir.path()).unwrap();
        assert_eq!(spans.len(), 2);
        assert!(spans.iter().all(|s| s.len == 0 && s.seq.is_none()));
        assert!(batch_key(3) < batch_key(256));
        assert_eq!(batch_key_seq(&batch_key(9)), Some(9));
        assert_eq!(batch_key_seq(&record_key(9)), None);
    }

    #[test]
    fn keys_sort_in_seq_order() {
        assert!(record_key(255) < record_key(256));
        assert_eq!(record_key_seq(&record_key(7)), Some(7));
        assert_eq!(record_key_seq(b"r12"), None);
        assert_eq!(record_key_seq(&prefixed(EVENT_ID, &[0; 8])), None);
        let a = stream_index_key("ab", 2).unwrap();
        assert!(a.starts_with(&stream_index_prefix("ab").unwrap()));
        assert!(!a.starts_with(&stream_index_prefix("a").unwrap()));
    }

    #[test]
    fn head_and_snapshot_round_trip() {
        let h = Head {
            seq: 5,
            hash: [3; 32],
        };
        assert_eq!(decode_head(&encode_head(&h, 77)), Ok((h, 77)));
        assert!(decode_head(&[1, 2]).is_err());
        assert!(decode_head(&encode_legacy_head(&h)).is_err());
        assert_eq!(decode_legacy_head(&encode_legacy_head(&h)), Ok(h));
        let s = encode_snapshot(9, b"state");
        assert_eq!(decode_snapshot(&s), Ok((9, b"state".to_vec())));
        let mut bad = s.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert_eq!(
            decode_snapshot(&bad),
            Err(SnapshotDefect::Checksum { seq: 9 })
        );
        assert!(matches!(
            decode_snapshot(&s[..5]),
            Err(SnapshotDefect::Unreadable(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(seq in any::<u64>(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_record(seq, &bytes);
            let _ = decode_head(&bytes);
            let _ = decode_snapshot(&bytes);
            let mut with_format = bytes.clone();
            with_format.insert(0, RECORD_FORMAT);
            let _ = decode_record(seq, &with_format);
        }
    }
}

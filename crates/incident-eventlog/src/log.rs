//! [`EventLog`]: the log on its record file and sled. Owns opening (running the checks in
//! `checks`, moving a format-1 log over in `migrate`, loading and building the index in
//! `index`, which is saved with each snapshot), the group-commit append, reads, full
//! verification, cursors, processed ids and snapshots. The layout is in [`crate::layout`].
//!
//! Appends are serialized by one mutex (the writer). The writer keeps the head and the end of
//! the record file equal to what sled holds; after a failed write or flush it re-reads them.
//! The in-memory index is extended only by the writer, after its append is durable and before
//! the new head is published. Readers see records up to the published head, which moves after
//! the frames are synced and sled's batch is written and flushed; after a failed flush it moves
//! to what sled then holds (records whose frames are synced but whose sled batch may not be
//! durable yet: the caller was told the append failed, and a later flush makes them durable).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::append::{AppendRequest, Appended};
use crate::checks::{Format, check_meta, load_head, verify_tail};
use crate::error::{AppendError, LogError};
use crate::file::RecordFile;
use crate::index::{self, Entry, Index, Key};
use crate::iter::{Records, Source, StreamRecords};
use crate::layout::{self, HEAD_KEY, RecordRef};
use crate::record::{Damage, Head, Record, chain_hash};

/// How [`EventLog::open_with`] opens a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How many of the last records to re-verify (chain and hashes) on open. Default 1024.
    pub verify_tail: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { verify_tail: 1024 }
    }
}

/// A service's append-only, hash-chained event log. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.inner.path)
            .field("head", &self.inner.head())
            .finish()
    }
}

pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    pub(crate) file: RecordFile,
    /// [`layout::SNAPSHOT_TREE`].
    snapshots: sled::Tree,
    pub(crate) path: PathBuf,
    writer: Mutex<Writer>,
    /// The head readers see: always a durable, fully written record (or genesis).
    published: RwLock<Tip>,
    /// The event id and stream indexes; they cover at least the published head (an append
    /// adds its records before it publishes its head).
    index: RwLock<Index>,
    /// Held while the index is saved: one save at a time.
    saving: Mutex<()>,
}

/// A head and where its records end in the record file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tip {
    pub(crate) head: Head,
    pub(crate) end: u64,
}

impl Tip {
    pub(crate) const EMPTY: Tip = Tip {
        head: Head::GENESIS,
        end: 0,
    };
}

/// State owned by the appender; equal to what sled holds whenever the mutex is free.
struct Writer {
    tip: Tip,
    /// Set when, after a failed write, sled's state could not be read back consistently.
    broken: Option<String>,
    /// The buffer the frames of a group commit are encoded into, kept between commits so a
    /// commit neither grows a fresh buffer nor faults in fresh pages.
    frames: Vec<u8>,
}

/// Opening a log of at least this many records says in the service's log how long indexing
/// them took.
const INDEX_LOG_THRESHOLD: u64 = 100_000;

/// A frames buffer larger than this is not kept after its commit.
const FRAMES_KEEP_MAX: usize = 4 << 20;

/// One group commit being assembled.
struct Staging {
    batch: sled::Batch,
    /// The frames of the accepted events, to be written at the writer's end.
    frames: Vec<u8>,
    head: Head,
    /// Versions of the streams the batch appends to.
    versions: HashMap<Key, u64>,
    /// Keys of the event ids the batch appends.
    ids: HashSet<Key>,
    /// The index entries of the batch's records.
    entries: Vec<Entry>,
    writes: bool,
}

/// Opens the sled database. A database just closed in this process can still be locked for a
/// moment by sled's background flusher, so a busy lock is retried for up to two seconds; a
/// lock held longer (another process has the log open) is an error.
pub fn open_db(path: &Path) -> Result<sled::Db, LogError> {
    let mut attempts = 0;
    loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => return Ok(db),
            // sled reports a busy lock as `Other` with this text
            Err(sled::Error::Io(e))
                if attempts < 100 && e.to_string().contains("could not acquire lock") =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(LogError::storage(path, "opening", e)),
        }
    }
}

/// Removes what earlier builds kept that this one derives or keeps elsewhere: snapshots in the
/// default tree (see [`layout::SNAPSHOT`]; a cache, and there they slow every append down),
/// stored stream versions (see [`layout::STREAM_VERSION`]; the stream index holds them) and
/// format-1 records a move to the record file had not finished removing (see
/// [`layout::RECORD`]; the record file holds them), and the event id and stream index entries
/// of formats 1 and 2 (see [`layout::EVENT_ID`], [`layout::STREAM_INDEX`]; the index is built
/// from the records).
fn remove_legacy(db: &sled::Db, path: &Path) -> Result<(), LogError> {
    let mut removed = false;
    for prefix in [
        layout::SNAPSHOT,
        layout::STREAM_VERSION,
        layout::RECORD,
        layout::EVENT_ID,
        layout::STREAM_INDEX,
    ] {
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for key in db.scan_prefix([prefix]).keys() {
            let key = key.map_err(|e| LogError::storage(path, "reading", e))?;
            batch.remove(key);
            in_batch += 1;
            if in_batch == 10_000 {
                db.apply_batch(std::mem::take(&mut batch))
                    .map_err(|e| LogError::storage(path, "writing to", e))?;
                in_batch = 0;
            }
            removed = true;
        }
        db.apply_batch(batch)
            .map_err(|e| LogError::storage(path, "writing to", e))?;
    }
    if removed {
        db.flush()
            .map_err(|e| LogError::storage(path, "flushing", e))?;
    }
    Ok(())
}

/// Cuts the bytes past the head's end off the record file: an append that wrote its frames and
/// stopped before sled took its batch, so it was never answered. They are first copied, and
/// synced, beside the log (`records.unfinished-<end>-<length>[-n]`, never overwritten), for
/// whoever wants to look at them.
fn cut_unfinished_append(file: &RecordFile, path: &Path, end: u64) -> Result<(), LogError> {
    let len = file
        .len()
        .map_err(|e| LogError::storage(path, "reading the record file of", e))?;
    if len <= end {
        return Ok(());
    }
    let name = format!("{}.unfinished-{end}-{}", layout::RECORD_FILE, len - end);
    let mut aside = path.join(&name);
    let mut n = 0;
    let copy = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&aside)
        {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                n += 1;
                aside = path.join(format!("{name}-{n}"));
            }
            other => break other,
        }
    };
    let failed = |e: std::io::Error| {
        LogError::storage(
            path,
            &format!(
                "keeping an unfinished append at {} before cutting it off the record file of",
                aside.display()
            ),
            e,
        )
    };
    let mut copy = copy.map_err(failed)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = end;
    while at < len {
        let n = usize::try_from(len - at)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        file.read_exact_at(&mut buf[..n], at).map_err(failed)?;
        std::io::Write::write_all(&mut copy, &buf[..n]).map_err(failed)?;
        at += n as u64;
    }
    copy.sync_all()
        .and_then(|()| std::fs::File::open(path)?.sync_all())
        .map_err(failed)?;
    file.truncate(end).map_err(|e| {
        LogError::storage(
            path,
            "cutting an unfinished append off the record file of",
            e,
        )
    })?;
    tracing::warn!(
        log = %path.display(),
        bytes = len - end,
        kept_at = %aside.display(),
        "cut an append that never completed (it was not answered) off the end of the log"
    );
    Ok(())
}

impl EventLog {
    /// Opens (or creates) the log in the folder `path` with [`Options::default`].
    pub fn open(path: &Path) -> Result<Self, LogError> {
        Self::open_with(path, Options::default())
    }

    /// Opens (or creates) the log in the folder `path`. Checks the format marker, that the
    /// stored head matches the last record, and re-verifies the last `opts.verify_tail` records.
    pub fn open_with(path: &Path, opts: Options) -> Result<Self, LogError> {
        let db = open_db(path)?;
        let format = check_meta(&db, path, true)?;
        let file = RecordFile::open(path)?;
        if format == Format::Legacy {
            crate::migrate::records_to_file(&db, &file, path)?;
        }
        let tip = load_head(&db, &file, path)?;
        verify_tail(
            Source {
                db: &db,
                file: &file,
                path,
                end: tip.end,
            },
            tip.head,
            opts.verify_tail,
        )?;
        // only once the log is known to be sound: a refused log is left as it was
        cut_unfinished_append(&file, path, tip.end)?;
        let started = std::time::Instant::now();
        let src = Source {
            db: &db,
            file: &file,
            path,
            end: tip.end,
        };
        // the index saved with the last snapshot, then the records after it
        let mut index = index::load(src, tip.head);
        let saved = index.len().0;
        if let Err(e) = index.catch_up(src, tip.head) {
            if saved == 0 {
                return Err(e);
            }
            // the records after the saved index do not follow it: read them all instead, so a
            // saved index that does not fit never stops a sound log from opening
            tracing::warn!(log = %path.display(), error = %e, "the records after the saved index do not follow it; indexing every record");
            index::discard(path);
            index = Index::default();
            index.catch_up(src, tip.head)?;
        }
        if tip.head.seq >= INDEX_LOG_THRESHOLD {
            tracing::info!(
                log = %path.display(),
                records = tip.head.seq,
                from_saved_index = saved,
                millis = started.elapsed().as_millis() as u64,
                "indexed the log's records"
            );
        }
        if format == Format::IndexedInSled {
            crate::checks::switch_to_current(&db, path)?;
        }
        let snapshots = db
            .open_tree(layout::SNAPSHOT_TREE)
            .map_err(|e| LogError::storage(path, "opening the snapshots of", e))?;
        remove_legacy(&db, path)?;
        Ok(EventLog {
            inner: Arc::new(Inner {
                db,
                file,
                snapshots,
                path: path.to_path_buf(),
                writer: Mutex::new(Writer {
                    tip,
                    broken: None,
                    frames: Vec::new(),
                }),
                published: RwLock::new(tip),
                index: RwLock::new(index),
                saving: Mutex::new(()),
            }),
        })
    }

    /// Appends many requests as one group commit. Each request is checked on its own (a
    /// conflict in one fails only that one); requests for the same stream see the effect of
    /// earlier ones in the batch. The records of all accepted requests are written to the record
    /// file in one write and synced, then the batch index entry, the processed ids and the new
    /// head in one atomic sled batch, flushed once, then the records are added to the in-memory
    /// index, before this returns. Results are in request order.
    pub fn append_batch(&self, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, AppendError>> {
        self.inner.append_batch(reqs)
    }

    /// Appends one request (a batch of one).
    pub fn append(&self, req: AppendRequest) -> Result<Appended, AppendError> {
        self.inner
            .append_batch(vec![req])
            .pop()
            .unwrap_or_else(|| Err(AppendError::Storage("the append returned no result".into())))
    }

    /// The last durable record's seq and hash.
    pub fn head(&self) -> Head {
        self.inner.head()
    }

    /// The number of events in `stream` (0 for a stream never written).
    pub fn stream_version(&self, stream: &str) -> Result<u64, LogError> {
        self.inner.stream_version(stream)
    }

    /// Records with seq >= `seq` up to the head at the time of the call, in order. Sequence
    /// numbers and `prev_hash` links are checked as it goes (hashes are not recomputed; see
    /// [`EventLog::verify`]); the first damage ends the iteration with an error.
    pub fn read_from(&self, seq: u64) -> impl Iterator<Item = Result<Record, LogError>> + '_ {
        self.inner.read_from(seq)
    }

    /// The records after `after` up to the head at the time of the call, handed to `f` borrowed
    /// from the store (no copy), with [`EventLog::read_from`]'s checks, and that the first one
    /// links to `after` (its seq and hash): for start-up folds, from [`Head::GENESIS`] or from a
    /// snapshot taken at `after`. Stops at the first damage or the first error `f` returns.
    /// Returns the number of records visited.
    pub fn visit_after<E: From<LogError>>(
        &self,
        after: Head,
        mut f: impl FnMut(RecordRef<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let tip = self.inner.tip();
        let mut records = Records::new(
            self.inner.source(tip),
            after.seq.saturating_add(1),
            tip.head.seq,
            Some(after),
            false,
        );
        let mut visited = 0;
        while records.remaining() {
            records.step_with(&mut f)??;
            visited += 1;
        }
        Ok(visited)
    }

    /// The records of one stream in version order.
    pub fn read_stream(&self, stream: &str) -> impl Iterator<Item = Result<Record, LogError>> + '_ {
        self.inner.read_stream(stream)
    }

    /// The record at `seq`, or `None` past the head.
    pub fn get(&self, seq: u64) -> Result<Option<Record>, LogError> {
        self.inner.get(seq)
    }

    /// The seq of the record holding the event `event_id`, if it is in the log.
    pub fn seq_of_event(&self, event_id: &str) -> Result<Option<u64>, LogError> {
        self.inner.seq_of_event(event_id)
    }

    /// Whether an append recorded `input_id` as processed.
    pub fn is_processed(&self, input_id: &str) -> Result<bool, LogError> {
        self.inner.is_processed(input_id)
    }

    /// The cursor `name`; 0 when never set.
    pub fn cursor(&self, name: &str) -> Result<u64, LogError> {
        self.inner.cursor(name)
    }

    /// Sets the cursor `name`. Written, not flushed (sled flushes it within half a second, and
    /// every append or [`EventLog::flush`] flushes it too).
    pub fn set_cursor(&self, name: &str, seq: u64) -> Result<(), LogError> {
        self.inner.set_cursor(name, seq)
    }

    /// Stores a snapshot taken at `seq` under `name` with a sha256 checksum, and flushes; then
    /// saves the index beside the record file, so the next open reads only the records after
    /// it (a failure to save the index is logged, not returned: the snapshot is stored).
    pub fn save_snapshot(&self, name: &str, seq: u64, bytes: &[u8]) -> Result<(), LogError> {
        self.inner.save_snapshot(name, seq, bytes)
    }

    /// The snapshot `name` and the seq it was taken at; a checksum mismatch is
    /// [`LogError::Damaged`].
    pub fn load_snapshot(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        self.inner.load_snapshot(name)
    }

    /// Removes the snapshot `name` (e.g. after it was found damaged).
    pub fn delete_snapshot(&self, name: &str) -> Result<(), LogError> {
        self.inner.delete_snapshot(name)
    }

    /// Verifies the whole log: the format marker, the head against the last record, every
    /// record's link and hash, every stream's versions, and the event id, stream and version
    /// indexes. Appends wait while it runs. Returns the head.
    pub fn verify(&self) -> Result<Head, LogError> {
        self.inner.verify()
    }

    /// Flushes everything written to sled (fsync); the record file is synced by every append.
    pub fn flush(&self) -> Result<(), LogError> {
        self.inner.flush()
    }

    /// The folder the log lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Inner {
    fn head(&self) -> Head {
        self.tip().head
    }

    /// The published head and the end of its records.
    pub(crate) fn tip(&self) -> Tip {
        match self.published.read() {
            Ok(t) => *t,
            Err(p) => *p.into_inner(),
        }
    }

    pub(crate) fn index(&self) -> RwLockReadGuard<'_, Index> {
        match self.index.read() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        }
    }

    fn index_mut(&self) -> RwLockWriteGuard<'_, Index> {
        match self.index.write() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        }
    }

    fn publish(&self, tip: Tip) {
        match self.published.write() {
            Ok(mut t) => *t = tip,
            Err(p) => *p.into_inner() = tip,
        }
    }

    /// Where the records up to `tip` are.
    pub(crate) fn source(&self, tip: Tip) -> Source<'_> {
        Source {
            db: &self.db,
            file: &self.file,
            path: &self.path,
            end: tip.end,
        }
    }

    fn storage(&self, doing: &str, e: impl std::fmt::Display) -> LogError {
        LogError::storage(&self.path, doing, e)
    }

    /// The writer; after a panic while it was held, its state is re-read from sled.
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        match self.writer.lock() {
            Ok(w) => w,
            Err(p) => {
                self.writer.clear_poison();
                let mut w = p.into_inner();
                self.reload(&mut w);
                w
            }
        }
    }

    /// Makes the writer equal to sled again after a failed write; marks it broken when sled's
    /// state is not consistent.
    fn reload(&self, w: &mut Writer) {
        let loaded = load_head(&self.db, &self.file, &self.path).and_then(|tip| {
            // a batch sled took before its flush failed is in the log: index it too
            self.index_mut().catch_up(self.source(tip), tip.head)?;
            Ok(tip)
        });
        match loaded {
            Ok(tip) => {
                w.tip = tip;
                w.broken = None;
                self.publish(tip);
            }
            Err(e) => {
                w.broken = Some(e.to_string());
            }
        }
    }

    fn stream_version(&self, stream: &str) -> Result<u64, LogError> {
        let upto = self.tip().head.seq;
        Ok(self.index().version_upto(index::key(stream), upto))
    }

    /// `seq` (what the index names for `event_id`) if it is among the records up to `tip` and
    /// that record holds this event id.
    fn holds_event(
        &self,
        seq: Option<u64>,
        tip: Tip,
        event_id: &str,
    ) -> Result<Option<u64>, LogError> {
        let Some(seq) = seq.filter(|s| *s <= tip.head.seq) else {
            return Ok(None);
        };
        let held = self
            .get_record(tip, seq)?
            .is_some_and(|r| r.event_id == event_id);
        Ok(held.then_some(seq))
    }

    /// Checks one request against the log (as of the writer's tip, which `index` covers) and
    /// the batch so far, and stages its writes.
    fn stage(
        &self,
        tip: Tip,
        index: &Index,
        staging: &mut Staging,
        req: AppendRequest,
    ) -> Result<Appended, AppendError> {
        req.validate()?;
        let stream_key = index::key(&req.stream);
        let current = match staging.versions.get(&stream_key) {
            Some(v) => *v,
            None => index.version(stream_key),
        };
        req.expected
            .check(current)
            .map_err(|expected| AppendError::Conflict {
                stream: req.stream.clone(),
                expected,
                actual: current,
            })?;
        let keys: Vec<Key> = req.events.iter().map(|e| index::key(&e.id)).collect();
        let mut ids = HashSet::with_capacity(keys.len());
        for (e, &id) in req.events.iter().zip(&keys) {
            // (within a batch, equal keys count as equal ids)
            let staged = staging.ids.contains(&id) || !ids.insert(id);
            let duplicate = staged || self.holds_event(index.event(id), tip, &e.id)?.is_some();
            if duplicate {
                return Err(AppendError::DuplicateEventId(e.id.clone()));
            }
        }
        let n = u64::try_from(req.events.len()).unwrap_or(u64::MAX);
        let (Some(last_seq), Some(new_version)) =
            (staging.head.seq.checked_add(n), current.checked_add(n))
        else {
            return Err(AppendError::Invalid(
                "the append would overflow a sequence number".into(),
            ));
        };

        // The request is accepted. Encode everything first: the batch is touched only once
        // nothing can fail any more, so a refused request leaves no writes behind.
        let first_seq = staging.head.seq.saturating_add(1);
        let mut head = staging.head;
        let mut version = current;
        let frames_before = staging.frames.len();
        let entries_before = staging.entries.len();
        for (e, &event) in req.events.iter().zip(&keys) {
            let seq = head.seq + 1;
            version += 1;
            let hash = chain_hash(&head.hash, &e.bytes);
            if layout::encode_frame(
                &mut staging.frames,
                seq,
                version,
                &req.stream,
                &e.id,
                &head.hash,
                &hash,
                &e.bytes,
            )
            .is_none()
            {
                staging.frames.truncate(frames_before);
                staging.entries.truncate(entries_before);
                return Err(AppendError::Invalid(
                    "a name or an event is too long to store".into(),
                ));
            }
            staging.entries.push(Entry {
                seq,
                stream: stream_key,
                event,
            });
            head = Head { seq, hash };
        }
        if n > 0 {
            staging.versions.insert(stream_key, new_version);
            staging.writes = true;
        }
        for p in &req.processed {
            staging.batch.insert(
                layout::prefixed(layout::PROCESSED, p.as_bytes()),
                &head.seq.to_be_bytes(),
            );
            staging.writes = true;
        }
        staging.ids.extend(ids);
        staging.head = head;
        debug_assert_eq!(head.seq, last_seq);
        Ok(if n == 0 {
            Appended {
                first_seq: head.seq,
                last_seq: head.seq,
                stream_version: current,
            }
        } else {
            Appended {
                first_seq,
                last_seq,
                stream_version: new_version,
            }
        })
    }

    fn append_batch(&self, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, AppendError>> {
        let mut w = self.lock_writer();
        if let Some(reason) = &w.broken {
            let msg = format!(
                "the log at {} refuses appends after a failed write left it inconsistent ({reason}); reopen it",
                self.path.display()
            );
            return reqs
                .iter()
                .map(|_| Err(AppendError::Storage(msg.clone())))
                .collect();
        }
        let mut staging = Staging {
            batch: sled::Batch::default(),
            frames: std::mem::take(&mut w.frames),
            head: w.tip.head,
            versions: HashMap::new(),
            ids: HashSet::new(),
            entries: Vec::new(),
            writes: false,
        };
        let mut results = Vec::with_capacity(reqs.len());
        // Whether each result depends on the batch being written.
        let mut writes = Vec::with_capacity(reqs.len());
        {
            // only appends change the index, and they hold the writer
            let index = self.index();
            for req in reqs {
                let touches = !req.events.is_empty() || !req.processed.is_empty();
                let before = staging.writes;
                let r = self.stage(w.tip, &index, &mut staging, req);
                writes.push(r.is_ok() && touches);
                debug_assert!(r.is_ok() || staging.writes == before);
                results.push(r);
            }
        }
        if !staging.writes {
            w.frames = staging.frames;
            return results;
        }
        let start = w.tip.end;
        let tip = Tip {
            head: staging.head,
            end: start + staging.frames.len() as u64,
        };
        if !staging.frames.is_empty() {
            staging
                .batch
                .insert(&layout::batch_key(w.tip.head.seq + 1), &start.to_be_bytes());
        }
        staging
            .batch
            .insert(HEAD_KEY, &layout::encode_head(&tip.head, tip.end)[..]);
        let written = if staging.frames.is_empty() {
            Ok(())
        } else {
            self.file.write_at(&staging.frames, start)
        };
        let failure = match written {
            Err(e) => Some(format!(
                "writing the record file of {}: {e}",
                self.path.display()
            )),
            Ok(()) => match self.db.apply_batch(staging.batch) {
                Err(e) => Some(format!("writing to {}: {e}", self.path.display())),
                Ok(()) => match self.db.flush() {
                    Err(e) => Some(format!(
                        "flushing {} (the events may be in the log): {e}",
                        self.path.display()
                    )),
                    Ok(_) => None,
                },
            },
        };
        let mut frames = staging.frames;
        if frames.capacity() <= FRAMES_KEEP_MAX {
            frames.clear();
            w.frames = frames;
        }
        match failure {
            None => {
                w.tip = tip;
                self.index_mut().extend(&staging.entries, tip.head);
                self.publish(tip);
            }
            Some(msg) => {
                self.reload(&mut w);
                for (r, wrote) in results.iter_mut().zip(writes) {
                    if wrote {
                        *r = Err(AppendError::Storage(msg.clone()));
                    }
                }
            }
        }
        results
    }

    fn read_from(&self, seq: u64) -> Records<'_> {
        let start = seq.max(1);
        let prev = (start == 1).then_some(Head::GENESIS);
        let tip = self.tip();
        Records::new(self.source(tip), start, tip.head.seq, prev, false)
    }

    fn read_stream(&self, stream: &str) -> StreamRecords<'_> {
        StreamRecords::new(self, stream, self.tip())
    }

    /// Record `seq` of the log up to `tip`; `None` past it.
    pub(crate) fn get_record(&self, tip: Tip, seq: u64) -> Result<Option<Record>, LogError> {
        if seq == 0 || seq > tip.head.seq {
            return Ok(None);
        }
        Records::new(self.source(tip), seq, seq, None, false)
            .step()
            .map(Some)
    }

    fn get(&self, seq: u64) -> Result<Option<Record>, LogError> {
        self.get_record(self.tip(), seq)
    }

    fn seq_of_event(&self, event_id: &str) -> Result<Option<u64>, LogError> {
        let tip = self.tip();
        // the seq copied out: the record is read without holding the index
        let seq = self.index().event(index::key(event_id));
        self.holds_event(seq, tip, event_id)
    }

    fn is_processed(&self, input_id: &str) -> Result<bool, LogError> {
        let key = layout::prefixed(layout::PROCESSED, input_id.as_bytes());
        self.db
            .contains_key(key)
            .map_err(|e| self.storage("reading", e))
    }

    fn cursor(&self, name: &str) -> Result<u64, LogError> {
        let key = layout::prefixed(layout::CURSOR, name.as_bytes());
        match self.db.get(key).map_err(|e| self.storage("reading", e))? {
            None => Ok(0),
            Some(v) => layout::be_u64(&v).ok_or_else(|| {
                LogError::corrupt(
                    &self.path,
                    format!("cursor {name}"),
                    format!("{} bytes, not 8", v.len()),
                )
            }),
        }
    }

    fn set_cursor(&self, name: &str, seq: u64) -> Result<(), LogError> {
        let key = layout::prefixed(layout::CURSOR, name.as_bytes());
        self.db
            .insert(key, &seq.to_be_bytes())
            .map(|_| ())
            .map_err(|e| self.storage("writing to", e))
    }

    fn save_snapshot(&self, name: &str, seq: u64, bytes: &[u8]) -> Result<(), LogError> {
        self.snapshots
            .insert(name.as_bytes(), layout::encode_snapshot(seq, bytes))
            .map_err(|e| self.storage("writing to", e))?;
        self.flush()?;
        // the snapshot is stored; without a saved index the next open only takes longer
        if let Err(e) = self.save_index() {
            tracing::warn!(log = %self.path.display(), error = %e, "could not save the index with the snapshot");
        }
        Ok(())
    }

    /// Saves the index beside the record file, so the next open reads only the records after
    /// it. Appends wait while it is encoded, not while it is written.
    fn save_index(&self) -> Result<(), LogError> {
        let _one = match self.saving.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let bytes = {
            let w = self.lock_writer();
            let index = self.index();
            if w.broken.is_some() || index.through() != w.tip.head {
                return Ok(());
            }
            index.encode()
        };
        // the head it covers must be durable before it is (after a failed flush it may not be)
        self.flush()?;
        index::save(&self.path, &bytes).map_err(|e| self.storage("saving the index of", e))
    }

    fn load_snapshot(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        let Some(v) = self
            .snapshots
            .get(name.as_bytes())
            .map_err(|e| self.storage("reading", e))?
        else {
            return Ok(None);
        };
        match layout::decode_snapshot(&v) {
            Ok(s) => Ok(Some(s)),
            Err(layout::SnapshotDefect::Checksum { seq }) => Err(LogError::damaged(
                &self.path,
                Damage::new(
                    seq,
                    format!(
                        "the snapshot {name:?} taken at this record fails its checksum (delete it to rebuild from the log)"
                    ),
                ),
            )),
            Err(layout::SnapshotDefect::Unreadable(reason)) => Err(LogError::corrupt(
                &self.path,
                format!("snapshot {name:?}"),
                reason,
            )),
        }
    }

    fn delete_snapshot(&self, name: &str) -> Result<(), LogError> {
        self.snapshots
            .remove(name.as_bytes())
            .map_err(|e| self.storage("writing to", e))?;
        self.flush()
    }

    fn flush(&self) -> Result<(), LogError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| self.storage("flushing", e))
    }

    fn verify(&self) -> Result<Head, LogError> {
        let w = self.lock_writer();
        let path = self.path.as_path();
        check_meta(&self.db, path, false)?;
        let tip = load_head(&self.db, &self.file, path)?;
        let head = tip.head;
        if tip != w.tip {
            return Err(LogError::damaged(
                path,
                Damage::new(
                    head.seq,
                    format!(
                        "the stored head (record {}, byte {}) is not the head this process wrote (record {}, byte {})",
                        head.seq, tip.end, w.tip.head.seq, w.tip.end
                    ),
                ),
            ));
        }
        let damaged = |seq, reason: String| LogError::damaged(path, Damage::new(seq, reason));
        let index = self.index();
        // every batch entry must name the offset where its record's frame starts
        let mut batches = Vec::new();
        for kv in self.db.scan_prefix([layout::BATCH]) {
            let (k, v) = kv.map_err(|e| self.storage("reading", e))?;
            let entry = layout::batch_key_seq(&k).zip(layout::be_u64(&v));
            let Some(entry) = entry else {
                return Err(LogError::corrupt(
                    path,
                    "the batch index",
                    format!("the entry under {} cannot be read", hex::encode(&k)),
                ));
            };
            batches.push(entry);
        }
        let mut batches = batches.into_iter().peekable();
        let mut versions: HashMap<String, u64> = HashMap::new();
        let mut last = Head::GENESIS;
        let mut records = Records::new(self.source(tip), 1, head.seq, Some(Head::GENESIS), true);
        while records.remaining() {
            let rec = records.step()?;
            if let Some(&(seq, offset)) = batches.peek()
                && seq == rec.seq
            {
                if offset != records.last_offset() {
                    return Err(LogError::corrupt(
                        path,
                        "the batch index",
                        format!(
                            "it puts record {seq} at byte {offset}, but it is at byte {}",
                            records.last_offset()
                        ),
                    ));
                }
                batches.next();
            }
            let v = versions.entry(rec.stream.clone()).or_insert(0);
            *v += 1;
            if rec.version != *v {
                return Err(damaged(
                    rec.seq,
                    format!(
                        "it is version {} of stream {}, but should be version {}",
                        rec.version, rec.stream, v
                    ),
                ));
            }
            let indexed = index.event(index::key(&rec.event_id));
            if indexed != Some(rec.seq) {
                return Err(damaged(
                    rec.seq,
                    format!(
                        "the event id index maps its event {} to {}",
                        rec.event_id,
                        describe(indexed)
                    ),
                ));
            }
            let indexed = index.seq_at(index::key(&rec.stream), rec.version);
            if indexed != Some(rec.seq) {
                return Err(damaged(
                    rec.seq,
                    format!(
                        "the stream index maps version {} of stream {} to {}",
                        rec.version,
                        rec.stream,
                        describe(indexed)
                    ),
                ));
            }
            last = Head::from(&rec);
        }
        if last != head {
            return Err(damaged(head.seq, "it does not match the log's head".into()));
        }
        if let Some((seq, _)) = batches.next() {
            return Err(LogError::corrupt(
                path,
                "the batch index",
                format!(
                    "it has an entry for record {seq}, which is not where a frame starts or is past the head"
                ),
            ));
        }
        if index.len() != (head.seq, versions.len()) {
            let (events, streams) = index.len();
            return Err(LogError::corrupt(
                path,
                "the index",
                format!(
                    "it holds {events} events of {streams} streams, but the log {} events of {} streams",
                    head.seq,
                    versions.len()
                ),
            ));
        }
        Ok(head)
    }
}

fn describe(seq: Option<u64>) -> String {
    match seq {
        Some(s) => format!("record {s}"),
        None => "nothing".into(),
    }
}

/// Used by [`crate::EventStore`]'s implementation.
impl EventLog {
    pub(crate) fn boxed_read_from(
        &self,
        seq: u64,
    ) -> Box<dyn Iterator<Item = Result<Record, LogError>> + '_> {
        Box::new(self.inner.read_from(seq))
    }

    pub(crate) fn boxed_read_stream(
        &self,
        stream: &str,
    ) -> Box<dyn Iterator<Item = Result<Record, LogError>> + '_> {
        Box::new(self.inner.read_stream(stream))
    }
}

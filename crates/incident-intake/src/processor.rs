//! The command processor: the single writer of intake's log. Commands are decided as they
//! arrive; a batch of decided commands is appended to the log as one group commit (one synced
//! write of the record file, one sled batch and flush), and only then applied to the state,
//! announced to watchers and answered.
//! Nothing is answered before it is durable.
//!
//! Deciding is pipelined with writing: while one batch is being written, the commands arriving
//! are decided into the next one, against the state plus an overlay of what the batches not yet
//! applied will change (incidents, request ids, dedup keys). When the written batch is applied,
//! its overlay entries go. If a write does not land whole, the commands decided on top of it
//! (none answered or written yet) are decided again, in order, against the state as it then is;
//! the failed ones get `UNAVAILABLE`. When a write reports a failure but sled holds the records
//! (a failed flush), the state takes them up from the log, so it keeps equal to the log and a
//! retry finds what was recorded. Answers keep the order of the batches, so a repeated request
//! is never answered before the original is durable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use incident_domain::{
    Action, Command, Incident, IncidentEvent, IncidentId, OpenIncident, PriorityMatrix, decide,
    stored,
};
use incident_eventlog::{
    AppendError, AppendRequest, Appended, EventLog, ExpectedVersion, Head, NewEvent,
};
use jiff::Timestamp;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::projection::Projection;

/// Most commands written in one batch.
pub const MAX_BATCH: usize = 1024;

/// What a caller asks for.
#[derive(Debug, Clone)]
pub enum Intent {
    /// Open under a freshly generated id, unless the request id or dedup key says it exists.
    Open {
        id: IncidentId,
        open: OpenIncident,
    },
    Act {
        id: IncidentId,
        action: Action,
    },
    /// Act on the active incident holding this dedup key, as it stands after the commands
    /// queued before this one (so an open and its resolve sent back to back stay in order).
    ActOnDedupKey {
        key: String,
        action: Action,
    },
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub incident: Incident,
    /// The open was folded into an existing incident.
    pub deduplicated: bool,
}

/// A change announced to watchers after it is durable.
#[derive(Debug, Clone)]
pub struct Change {
    pub event_type: &'static str,
    pub event_id: String,
    pub incident: Incident,
}

struct Pending {
    intent: Intent,
    actor: String,
    at: Timestamp,
    command: &'static str,
    reply: oneshot::Sender<Result<Outcome, ServiceError>>,
}

/// Submits commands to the processor; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    tx: Queue,
}

#[derive(Clone)]
enum Queue {
    /// Bounded: callers wait for room (gRPC, HTTP).
    Shared(mpsc::Sender<Pending>),
    /// Never waits, so commands submitted one after another are queued in that order even
    /// while the shared queue is full (the NATS subject's stream order; its consumer bounds
    /// how many are in flight).
    Ordered(mpsc::UnboundedSender<Pending>),
}

impl Handle {
    /// Decides, records durably and applies one command; answers once it is on disk.
    pub async fn submit(
        &self,
        intent: Intent,
        actor: &str,
        command: &'static str,
    ) -> Result<Outcome, ServiceError> {
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            intent,
            actor: if actor.trim().is_empty() {
                "anonymous".to_owned()
            } else {
                actor.trim().to_owned()
            },
            at: Timestamp::now(),
            command,
            reply,
        };
        let sent = match &self.tx {
            Queue::Shared(tx) => tx.send(pending).await.is_ok(),
            Queue::Ordered(tx) => tx.send(pending).is_ok(),
        };
        if !sent {
            return Err(ServiceError::Unavailable("intake is shutting down".into()));
        }
        rx.await
            .map_err(|_| ServiceError::Unavailable("intake is shutting down".into()))?
    }
}

pub struct Processor {
    log: EventLog,
    state: Arc<RwLock<Projection>>,
    matrix: PriorityMatrix,
    changes: broadcast::Sender<Change>,
    relay_wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// The last log record the state holds.
    applied: AtomicU64,
    /// Set when the log holds records the state could not take up: commands are refused from
    /// then on, since they would be decided on a state that is not the log's.
    diverged: AtomicBool,
}

/// What commands are answered once the state and the log have diverged.
const DIVERGED: &str =
    "intake's state no longer matches its log (see its error log); restart intake";

/// What to answer for one pending command once its batch is written.
enum Plan {
    Refused(ServiceError),
    /// No new events: answer with the incident's state after the batch.
    Current {
        id: IncidentId,
        deduplicated: bool,
    },
    /// The request at this index of the batch's appends.
    Append {
        index: usize,
        deduplicated: bool,
    },
}

/// What the batches decided but not yet applied change, each entry tagged with the batch that
/// made it; the state as the next decision must see it is the projection with this on top.
#[derive(Default)]
struct Overlay {
    incidents: HashMap<IncidentId, (u64, Incident)>,
    requests: HashMap<String, (u64, IncidentId)>,
    dedup: HashMap<String, (u64, IncidentId)>,
}

impl Overlay {
    /// Drops what batch `seq` (and any before it) staged: the projection holds it now.
    fn applied(&mut self, seq: u64) {
        self.incidents.retain(|_, (b, _)| *b > seq);
        self.requests.retain(|_, (b, _)| *b > seq);
        self.dedup.retain(|_, (b, _)| *b > seq);
    }

    fn clear(&mut self) {
        self.incidents.clear();
        self.requests.clear();
        self.dedup.clear();
    }
}

/// Commands decided together, written as one group commit.
struct Batch {
    seq: u64,
    pending: Vec<Pending>,
    plans: Vec<Plan>,
    appends: Vec<AppendRequest>,
    decided: Vec<Vec<(IncidentEvent, String)>>,
}

impl Batch {
    fn new(seq: u64) -> Self {
        Batch {
            seq,
            pending: Vec::new(),
            plans: Vec::new(),
            appends: Vec::new(),
            decided: Vec::new(),
        }
    }
}

/// A batch whose append runs on a blocking thread.
struct Writing {
    batch: Batch,
    task: tokio::task::JoinHandle<Vec<Result<Appended, AppendError>>>,
}

/// The two queues commands arrive on.
struct Inbox {
    shared: mpsc::Receiver<Pending>,
    ordered: mpsc::UnboundedReceiver<Pending>,
    shared_open: bool,
    ordered_open: bool,
}

impl Inbox {
    fn is_open(&self) -> bool {
        self.shared_open || self.ordered_open
    }

    /// The next command from either queue; `None` once both are closed. Cancel-safe.
    async fn recv(&mut self) -> Option<Pending> {
        while self.is_open() {
            tokio::select! {
                p = self.shared.recv(), if self.shared_open => match p {
                    Some(p) => return Some(p),
                    None => self.shared_open = false,
                },
                p = self.ordered.recv(), if self.ordered_open => match p {
                    Some(p) => return Some(p),
                    None => self.ordered_open = false,
                },
            }
        }
        None
    }

    /// What already waits, up to `room` commands (the ordered queue first).
    fn take_waiting(&mut self, into: &mut Vec<Pending>, room: usize) {
        while into.len() < room {
            match self.ordered.try_recv() {
                Ok(p) => into.push(p),
                Err(_) => break,
            }
        }
        while into.len() < room {
            match self.shared.try_recv() {
                Ok(p) => into.push(p),
                Err(_) => break,
            }
        }
    }
}

impl Processor {
    pub fn new(
        log: EventLog,
        state: Arc<RwLock<Projection>>,
        matrix: PriorityMatrix,
        changes: broadcast::Sender<Change>,
        relay_wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        // the state was folded from the whole log
        let applied = AtomicU64::new(log.head().seq);
        Self {
            log,
            state,
            matrix,
            changes,
            relay_wake,
            metrics,
            applied,
            diverged: AtomicBool::new(false),
        }
    }

    /// Starts the processor task; it ends once every handle is dropped and the queues are
    /// empty. Answers the shared handle (a bounded queue) and the ordered one.
    pub fn spawn(self, queue: usize) -> (Handle, Handle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue);
        let (otx, orx) = mpsc::unbounded_channel();
        let inbox = Inbox {
            shared: rx,
            ordered: orx,
            shared_open: true,
            ordered_open: true,
        };
        let task = tokio::spawn(self.run(inbox));
        (
            Handle {
                tx: Queue::Shared(tx),
            },
            Handle {
                tx: Queue::Ordered(otx),
            },
            task,
        )
    }

    async fn run(self, mut inbox: Inbox) {
        let mut overlay = Overlay::default();
        let mut next_seq = 0u64;
        // decided, waiting for the batch being written
        let mut next: Option<Batch> = None;
        let mut writing: Option<Writing> = None;
        let mut arrived = Vec::with_capacity(MAX_BATCH);
        loop {
            let room = MAX_BATCH - next.as_ref().map_or(0, |b| b.pending.len());
            match writing.as_mut() {
                Some(w) => {
                    tokio::select! {
                        // finishing the written batch comes first: it frees its callers
                        biased;
                        results = &mut w.task => {
                            if let Some(done) = writing.take() {
                                writing = self.written(done.batch, results, next.take(), &mut overlay);
                            }
                            continue;
                        }
                        p = inbox.recv(), if room > 0 && inbox.is_open() => match p {
                            Some(p) => arrived.push(p),
                            None => continue,
                        },
                    }
                }
                None => match inbox.recv().await {
                    Some(p) => arrived.push(p),
                    None => break,
                },
            }
            inbox.take_waiting(&mut arrived, room);
            let batch = next.get_or_insert_with(|| {
                next_seq += 1;
                Batch::new(next_seq)
            });
            self.decide(batch, std::mem::take(&mut arrived), &mut overlay);
            if writing.is_none()
                && let Some(b) = next.take()
            {
                writing = self.write(b, &mut overlay);
            }
        }
        if let Err(e) = self.log.flush() {
            tracing::error!(error = %e, "flushing the log at shutdown failed");
        }
    }

    /// Finishes the batch that was written and starts writing the one decided meanwhile. When
    /// the written batch did not land whole, the decisions made on top of it may rest on what
    /// was not written: that batch's commands (none answered or written yet) are decided again,
    /// in the same order, against the state as it is now.
    fn written(
        &self,
        batch: Batch,
        results: Result<Vec<Result<Appended, AppendError>>, tokio::task::JoinError>,
        next: Option<Batch>,
        overlay: &mut Overlay,
    ) -> Option<Writing> {
        let intact = self.finish(batch, results, overlay);
        let next = next?;
        if intact {
            return self.write(next, overlay);
        }
        overlay.clear();
        let mut again = Batch::new(next.seq);
        self.decide(&mut again, next.pending, overlay);
        self.write(again, overlay)
    }

    /// Starts writing `batch`; a batch with nothing to append is answered at once (nothing is
    /// being written before it, so the state it answers from is durable).
    fn write(&self, mut batch: Batch, overlay: &mut Overlay) -> Option<Writing> {
        if batch.appends.is_empty() {
            self.finish(batch, Ok(Vec::new()), overlay);
            return None;
        }
        let log = self.log.clone();
        let appends = std::mem::take(&mut batch.appends);
        let task = tokio::task::spawn_blocking(move || log.append_batch(appends));
        Some(Writing { batch, task })
    }

    /// Decides `pending` into `batch`, against the state with `overlay` on top, and stages
    /// what the new events change in `overlay`.
    fn decide(&self, batch: &mut Batch, pending: Vec<Pending>, overlay: &mut Overlay) {
        let state = match self.state.read() {
            Ok(s) => s,
            Err(_) => return self.fail_all(pending, "state lock poisoned"),
        };
        let seq = batch.seq;
        if self.diverged.load(Ordering::Relaxed) {
            for p in pending {
                batch
                    .plans
                    .push(Plan::Refused(ServiceError::Unavailable(DIVERGED.into())));
                batch.pending.push(p);
            }
            return;
        }
        for p in pending {
            let plan = self.decide_one(&p, &state, overlay, seq, batch);
            batch.plans.push(plan);
            batch.pending.push(p);
        }
    }

    fn decide_one(
        &self,
        p: &Pending,
        state: &Projection,
        overlay: &mut Overlay,
        seq: u64,
        batch: &mut Batch,
    ) -> Plan {
        fn current<'a>(
            id: &IncidentId,
            overlay: &'a Overlay,
            state: &'a Projection,
        ) -> Option<&'a Incident> {
            overlay
                .incidents
                .get(id)
                .map(|(_, i)| i)
                .or_else(|| state.get(id))
        }
        let active_by_dedup = |key: &str, overlay: &Overlay| {
            overlay
                .dedup
                .get(key)
                .map(|(_, id)| id)
                .or_else(|| state.active_by_dedup(key))
                .filter(|id| current(id, overlay, state).is_some_and(|i| i.status.is_active()))
                .cloned()
        };
        let (target, action, deduplicated) = match &p.intent {
            Intent::Act { id, action } => (id.clone(), action.clone(), false),
            Intent::ActOnDedupKey { key, action } => match active_by_dedup(key, overlay) {
                Some(id) => (id, action.clone(), false),
                None => {
                    return Plan::Refused(ServiceError::Rejected(
                        incident_domain::DomainError::NotFound(format!(
                            "no active incident holds dedup key {key}"
                        )),
                    ));
                }
            },
            Intent::Open { id, open } => {
                let by_request = open.request_id.as_deref().and_then(|r| {
                    overlay
                        .requests
                        .get(r)
                        .map(|(_, id)| id)
                        .or_else(|| state.by_request(r))
                        .cloned()
                });
                if let Some(existing) = by_request {
                    return Plan::Current {
                        id: existing,
                        deduplicated: true,
                    };
                }
                match open
                    .dedup_key
                    .as_deref()
                    .and_then(|k| active_by_dedup(k, overlay))
                {
                    Some(existing) => (
                        existing,
                        Action::RecordDuplicate {
                            source: open.source.clone(),
                            request_id: open.request_id.clone(),
                        },
                        true,
                    ),
                    None => (id.clone(), Action::Open(open.clone()), false),
                }
            }
        };
        let before = current(&target, overlay, state);
        let version = before.map_or(0, |b| b.version);
        let cmd = Command::new(target.clone(), p.at, &p.actor, action);
        let events = match decide(before, &cmd, &self.matrix) {
            Err(e) => return Plan::Refused(e.into()),
            Ok(events) if events.is_empty() => {
                return Plan::Current {
                    id: target,
                    deduplicated,
                };
            }
            Ok(events) => events,
        };
        let mut after = before.cloned();
        let mut encoded = Vec::with_capacity(events.len());
        let mut new_events = Vec::with_capacity(events.len());
        for e in events {
            match incident_domain::evolve(after.take(), &e) {
                Ok(a) => after = Some(a),
                Err(err) => return Plan::Refused(ServiceError::Internal(err.to_string())),
            }
            let event_id = uuid::Uuid::now_v7().to_string();
            new_events.push(NewEvent {
                id: event_id.clone(),
                bytes: stored::encode_canonical(&e, &event_id),
            });
            encoded.push((e, event_id));
        }
        let Some(after) = after else {
            return Plan::Refused(ServiceError::Internal("no state after the events".into()));
        };
        for (e, _) in &encoded {
            if let incident_domain::EventKind::Opened {
                request_id: Some(r),
                ..
            }
            | incident_domain::EventKind::DuplicateReceived {
                request_id: Some(r),
                ..
            } = &e.kind
            {
                overlay.requests.insert(r.clone(), (seq, after.id.clone()));
            }
        }
        if let Some(k) = &after.dedup_key
            && after.status.is_active()
        {
            overlay.dedup.insert(k.clone(), (seq, after.id.clone()));
        }
        batch.appends.push(AppendRequest {
            stream: target.to_string(),
            expected: ExpectedVersion::Exact(version),
            events: new_events,
            processed: Vec::new(),
        });
        batch.decided.push(encoded);
        overlay.incidents.insert(target, (seq, after));
        Plan::Append {
            index: batch.appends.len() - 1,
            deduplicated,
        }
    }

    /// Applies what of `batch` is durable, announces and answers it, and drops its overlay
    /// entries. Returns whether every append was written: when not, decisions made on top of
    /// this batch cannot stand.
    fn finish(
        &self,
        batch: Batch,
        results: Result<Vec<Result<Appended, AppendError>>, tokio::task::JoinError>,
        overlay: &mut Overlay,
    ) -> bool {
        // a write that died may still have landed: handled as a storage error, below
        let results = results.unwrap_or_else(|e| {
            let reason = format!("the append task failed: {e}");
            (0..batch.decided.len())
                .map(|_| Err(AppendError::Storage(reason.clone())))
                .collect()
        });
        self.metrics
            .append_batches
            .fetch_add(u64::from(!results.is_empty()), Ordering::Relaxed);
        let intact = results.iter().all(Result::is_ok);

        // Apply what is durable, in order, and keep each request's resulting state.
        let mut after_append: Vec<Option<Result<Incident, ServiceError>>> =
            Vec::with_capacity(results.len());
        let mut changes = Vec::new();
        let mut recorded = false;
        {
            let mut state = match self.state.write() {
                Ok(s) => s,
                Err(_) => {
                    overlay.clear();
                    self.fail_all(batch.pending, "state lock poisoned");
                    return false;
                }
            };
            let mut storage_failed = false;
            // each change carries the incident: built only when someone watches
            let watched = self.changes.receiver_count() > 0;
            for (result, events) in results.into_iter().zip(batch.decided) {
                match result {
                    Ok(landed) => {
                        self.applied.fetch_max(landed.last_seq, Ordering::Relaxed);
                        recorded |= !events.is_empty();
                        let mut last = None;
                        let appended = events.len() as u64;
                        for (e, event_id) in events {
                            match state.apply(&e) {
                                Ok(inc) => {
                                    if watched {
                                        changes.push(Change {
                                            event_type: stored::type_name(&e.kind),
                                            event_id,
                                            incident: inc.clone(),
                                        });
                                    }
                                    last = Some(inc.clone());
                                }
                                Err(err) => {
                                    last = None;
                                    tracing::error!(error = %err, "a durable event did not fold");
                                    break;
                                }
                            }
                        }
                        self.metrics
                            .events_appended
                            .fetch_add(appended, Ordering::Relaxed);
                        after_append.push(Some(last.ok_or_else(|| {
                            ServiceError::Internal("recorded event did not fold".into())
                        })));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "append failed");
                        storage_failed |= matches!(e, AppendError::Storage(_));
                        after_append.push(Some(Err(ServiceError::Unavailable(format!(
                            "could not record the command: {e}"
                        )))));
                    }
                }
            }
            if storage_failed {
                self.catch_up(&mut state);
            }
        }
        // the projection holds the batch now (the state lock is released: deciding the next
        // batch reads the state, then the overlay, never the other way round)
        if intact {
            overlay.applied(batch.seq);
        } else {
            overlay.clear();
        }
        // the relay publishes what was recorded now, not at its next poll
        if recorded {
            self.relay_wake.notify_one();
        }
        for change in changes {
            let _ = self.changes.send(change);
        }

        let state = self.state.read().ok();
        for (p, plan) in batch.pending.into_iter().zip(batch.plans) {
            let answer = match plan {
                Plan::Refused(e) => Err(e),
                Plan::Current { id, deduplicated } => state
                    .as_ref()
                    .and_then(|s| s.get(&id).cloned())
                    .map(|incident| Outcome {
                        incident,
                        deduplicated,
                    })
                    .ok_or_else(|| {
                        // the open it refers to was refused or not written
                        ServiceError::Unavailable(
                            "the incident this answers with was not recorded; try again".into(),
                        )
                    }),
                Plan::Append {
                    index,
                    deduplicated,
                } => match after_append.get_mut(index).and_then(Option::take) {
                    // each append answers one request: its state moves into the answer
                    Some(Ok(incident)) => Ok(Outcome {
                        incident,
                        deduplicated,
                    }),
                    Some(Err(e)) => Err(e),
                    None => Err(ServiceError::Internal("missing append result".into())),
                },
            };
            self.metrics.command(
                p.command,
                match &answer {
                    Ok(_) => "ok",
                    Err(e) => e.result_label(),
                },
            );
            let _ = p.reply.send(answer);
        }
        intact
    }

    /// After a failed write or flush, the log may hold records the state does not (a batch
    /// sled wrote whose flush then failed): folds them in, so the state keeps equal to the log
    /// and a retry finds what was recorded.
    fn catch_up(&self, state: &mut Projection) {
        let applied = self.applied.load(Ordering::Relaxed);
        let head = self.log.head().seq;
        if head <= applied {
            return;
        }
        let after = match applied {
            0 => Ok(Head::GENESIS),
            seq => self
                .log
                .get(seq)
                .map_err(crate::FoldError::from)
                .and_then(|r| {
                    r.map(|r| Head::from(&r)).ok_or_else(|| {
                        crate::FoldError::Read(anyhow::anyhow!("record {seq} is missing"))
                    })
                }),
        };
        match after.and_then(|after| crate::fold_after(state, &self.log, after)) {
            Ok(n) => {
                tracing::warn!(
                    records = n,
                    "records whose write reported a failure are in the log; the state holds them"
                );
                self.applied.store(head, Ordering::Relaxed);
                self.relay_wake.notify_one();
            }
            Err(e) => {
                self.diverged.store(true, Ordering::Relaxed);
                tracing::error!(
                    error = %e.into_anyhow(),
                    "the state could not take up records the log holds; refusing commands until intake restarts"
                );
            }
        }
    }

    fn fail_all(&self, batch: Vec<Pending>, reason: &str) {
        tracing::error!(reason, "a command batch failed");
        for p in batch {
            let e = ServiceError::Unavailable(reason.to_owned());
            self.metrics.command(p.command, e.result_label());
            let _ = p.reply.send(Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use incident_domain::testing::open_cmd;
    use incident_domain::{Impact, Urgency};

    fn processor(dir: &std::path::Path) -> Processor {
        let (changes, _) = broadcast::channel(64);
        Processor::new(
            EventLog::open(&dir.join("log")).unwrap(),
            Arc::new(RwLock::new(Projection::default())),
            PriorityMatrix::default(),
            changes,
            Arc::new(Notify::new()),
            Arc::new(Metrics::default()),
        )
    }

    type Answer = oneshot::Receiver<Result<Outcome, ServiceError>>;

    /// An open of incident `n` under `dedup_key`, and the receiver of its answer.
    fn open(n: u8, dedup_key: &str) -> (Pending, Answer) {
        open_with(n, Some(dedup_key), None)
    }

    /// An open of incident `n` with an optional dedup key and request id.
    fn open_with(n: u8, dedup_key: Option<&str>, request_id: Option<&str>) -> (Pending, Answer) {
        let Action::Open(mut open) = open_cmd(Impact::High, Urgency::High) else {
            unreachable!("open_cmd opens")
        };
        open.dedup_key = dedup_key.map(str::to_owned);
        open.request_id = request_id.map(str::to_owned);
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            intent: Intent::Open {
                id: IncidentId::from_uuid_bytes([n; 16]),
                open,
            },
            actor: "alice".into(),
            at: Timestamp::now(),
            command: "open",
            reply,
        };
        (pending, rx)
    }

    fn appends(batch: &mut Batch) -> Vec<AppendRequest> {
        std::mem::take(&mut batch.appends)
    }

    #[tokio::test]
    async fn a_batch_decided_while_another_is_written_sees_its_effects() {
        let dir = tempfile::tempdir().unwrap();
        let p = processor(dir.path());
        let mut overlay = Overlay::default();
        let (first, first_rx) = open(1, "disk");
        let mut one = Batch::new(1);
        p.decide(&mut one, vec![first], &mut overlay);
        // decided while the first batch is not written yet: the same dedup key adds to it
        let (second, second_rx) = open(2, "disk");
        let mut two = Batch::new(2);
        p.decide(&mut two, vec![second], &mut overlay);
        assert!(
            p.state.read().unwrap().is_empty(),
            "nothing applied before it is written"
        );

        let results = p.log.append_batch(appends(&mut one));
        let writing = p.written(one, Ok(results), Some(two), &mut overlay);
        let first = first_rx.await.unwrap().unwrap();
        assert!(!first.deduplicated);
        let w = writing.expect("the second batch is being written");
        let results = w.task.await;
        assert!(p.written(w.batch, results, None, &mut overlay).is_none());
        let second = second_rx.await.unwrap().unwrap();
        assert!(second.deduplicated);
        assert_eq!(second.incident.id, first.incident.id);
        assert_eq!(second.incident.duplicate_count, 1);
        assert_eq!(p.log.head().seq, 2);
        assert!(overlay.incidents.is_empty() && overlay.dedup.is_empty());
        // nobody watches, and the relay is woken all the same
        assert_eq!(p.changes.receiver_count(), 0);
        let woken = tokio::time::timeout(std::time::Duration::ZERO, p.relay_wake.notified()).await;
        assert!(woken.is_ok(), "the relay was not woken");
    }

    /// A command acting on incident `id`, and the receiver of its answer.
    fn act(
        id: &IncidentId,
        action: Action,
    ) -> (Pending, oneshot::Receiver<Result<Outcome, ServiceError>>) {
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            intent: Intent::Act {
                id: id.clone(),
                action,
            },
            actor: "alice".into(),
            at: Timestamp::now(),
            command: "act",
            reply,
        };
        (pending, rx)
    }

    /// Writes `batch` and finishes it, with nothing decided after it.
    async fn write_now(p: &Processor, mut batch: Batch, overlay: &mut Overlay) {
        let results = p.log.append_batch(appends(&mut batch));
        assert!(p.written(batch, Ok(results), None, overlay).is_none());
    }

    #[tokio::test]
    async fn a_failed_write_makes_the_batch_decided_on_it_decide_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = processor(dir.path());
        let mut overlay = Overlay::default();
        let (first, first_rx) = open(1, "disk");
        let mut zero = Batch::new(1);
        p.decide(&mut zero, vec![first], &mut overlay);
        write_now(&p, zero, &mut overlay).await;
        let disk = first_rx.await.unwrap().unwrap().incident;

        // resolving it frees the dedup key, so an open under the key decided after it is new
        let (resolve, resolve_rx) = act(&disk.id, Action::Resolve { note: None });
        let mut one = Batch::new(2);
        p.decide(&mut one, vec![resolve], &mut overlay);
        let (second, second_rx) = open(2, "disk");
        let mut two = Batch::new(3);
        p.decide(&mut two, vec![second], &mut overlay);
        assert!(matches!(
            two.plans[0],
            Plan::Append {
                deduplicated: false,
                ..
            }
        ));

        // the resolve's write fails (as a full disk would fail it)
        let failed = appends(&mut one)
            .iter()
            .map(|_| Err(AppendError::Storage("no space left on device".into())))
            .collect();
        let again = p
            .written(one, Ok(failed), Some(two), &mut overlay)
            .expect("the open is decided again and written");
        let resolve = resolve_rx.await.unwrap().unwrap_err();
        assert!(
            matches!(resolve, ServiceError::Unavailable(_)),
            "{resolve:?}"
        );
        // decided again on the state as it is on disk, the open adds to the incident that is
        // still active: the key never has two active incidents
        let results = again.task.await;
        assert!(
            p.written(again.batch, results, None, &mut overlay)
                .is_none()
        );
        let second = second_rx.await.unwrap().unwrap();
        assert!(second.deduplicated);
        assert_eq!(second.incident.id, disk.id);
        assert!(second.incident.status.is_active());
        assert_eq!(p.log.head().seq, 2);
        assert_eq!(p.state.read().unwrap().len(), 1);
        assert!(overlay.incidents.is_empty() && overlay.dedup.is_empty());
    }

    #[tokio::test]
    async fn one_refused_request_leaves_the_rest_of_its_batch_and_the_next_standing() {
        let dir = tempfile::tempdir().unwrap();
        let p = processor(dir.path());
        let mut overlay = Overlay::default();
        let (a, a_rx) = open(1, "a");
        let (b, b_rx) = open(2, "b");
        let mut one = Batch::new(1);
        p.decide(&mut one, vec![a, b], &mut overlay);
        let (c, c_rx) = open(3, "a");
        let mut two = Batch::new(2);
        p.decide(&mut two, vec![c], &mut overlay);

        // the first request lands; the log refuses the second
        let mut reqs = appends(&mut one);
        let refused = reqs.pop().unwrap();
        let mut results = p.log.append_batch(reqs);
        results.push(Err(AppendError::Conflict {
            stream: refused.stream,
            expected: 0,
            actual: 1,
        }));
        let again = p
            .written(one, Ok(results), Some(two), &mut overlay)
            .expect("the next batch is written");
        let a = a_rx.await.unwrap().unwrap();
        assert!(!a.deduplicated);
        assert!(matches!(
            b_rx.await.unwrap().unwrap_err(),
            ServiceError::Unavailable(_)
        ));
        let results = again.task.await;
        assert!(
            p.written(again.batch, results, None, &mut overlay)
                .is_none()
        );
        let c = c_rx.await.unwrap().unwrap();
        assert!(c.deduplicated);
        assert_eq!(c.incident.id, a.incident.id);
        assert_eq!(p.log.head().seq, 2);
    }

    #[tokio::test]
    async fn a_batch_written_during_another_keeps_its_effects_when_that_one_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let p = processor(dir.path());
        let mut overlay = Overlay::default();
        let (a, a_rx) = open(1, "a");
        let mut one = Batch::new(1);
        p.decide(&mut one, vec![a], &mut overlay);
        let (b, b_rx) = open(2, "disk");
        let mut two = Batch::new(2);
        p.decide(&mut two, vec![b], &mut overlay);
        let results = p.log.append_batch(appends(&mut one));
        let writing = p
            .written(one, Ok(results), Some(two), &mut overlay)
            .expect("the second batch is being written");
        a_rx.await.unwrap().unwrap();
        // applying the first batch kept what the second staged: an open under its key,
        // decided while it is written, adds to its incident
        let (c, c_rx) = open(3, "disk");
        let mut three = Batch::new(3);
        p.decide(&mut three, vec![c], &mut overlay);
        let results = writing.task.await;
        let writing = p
            .written(writing.batch, results, Some(three), &mut overlay)
            .expect("the third batch is being written");
        let b = b_rx.await.unwrap().unwrap();
        let results = writing.task.await;
        assert!(
            p.written(writing.batch, results, None, &mut overlay)
                .is_none()
        );
        let c = c_rx.await.unwrap().unwrap();
        assert!(c.deduplicated);
        assert_eq!(c.incident.id, b.incident.id);
        assert_eq!(p.state.read().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn records_written_by_a_write_that_reported_failure_join_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let p = processor(dir.path());
        let mut overlay = Overlay::default();
        let (first, first_rx) = open_with(1, None, Some("req-1"));
        let mut one = Batch::new(1);
        p.decide(&mut one, vec![first], &mut overlay);
        // sled takes the batch, then its flush fails: the log holds the open, the caller is told
        // it failed
        for r in p.log.append_batch(appends(&mut one)) {
            r.unwrap();
        }
        let failed = vec![Err(AppendError::Storage("flushing: I/O error".into()))];
        assert!(p.written(one, Ok(failed), None, &mut overlay).is_none());
        assert!(matches!(
            first_rx.await.unwrap().unwrap_err(),
            ServiceError::Unavailable(_)
        ));
        // the state holds what the log holds, so the caller's retry finds the incident
        let rebuilt = crate::rebuild(&p.log).unwrap();
        assert_eq!(rebuilt.len(), 1);
        {
            let state = p.state.read().unwrap();
            for inc in rebuilt.list(&Default::default(), None, 10).0 {
                assert_eq!(state.get(&inc.id), Some(&inc));
            }
        }
        let (retry, retry_rx) = open_with(2, None, Some("req-1"));
        let mut two = Batch::new(2);
        p.decide(&mut two, vec![retry], &mut overlay);
        assert!(
            p.write(two, &mut overlay).is_none(),
            "nothing to write for a retry"
        );
        let retry = retry_rx.await.unwrap().unwrap();
        assert!(retry.deduplicated);
        assert_eq!(p.log.head().seq, 1);
        assert_eq!(p.applied.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn commands_are_refused_once_the_state_cannot_take_up_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = processor(dir.path());
        let mut overlay = Overlay::default();
        let (first, first_rx) = open(1, "disk");
        let mut one = Batch::new(1);
        p.decide(&mut one, vec![first], &mut overlay);
        // a write that reported failure left a record intake cannot read in the log
        p.log
            .append(AppendRequest::new(
                "INC-X",
                ExpectedVersion::Any,
                vec![NewEvent::new("garbage", b"not an event".to_vec())],
            ))
            .unwrap();
        let failed = appends(&mut one)
            .iter()
            .map(|_| Err(AppendError::Storage("flushing: I/O error".into())))
            .collect();
        assert!(p.written(one, Ok(failed), None, &mut overlay).is_none());
        assert!(first_rx.await.unwrap().is_err());

        // nothing more is decided on a state that is not the log's
        let (second, second_rx) = open(2, "other");
        let mut two = Batch::new(2);
        p.decide(&mut two, vec![second], &mut overlay);
        assert!(p.write(two, &mut overlay).is_none(), "nothing is written");
        let refused = second_rx.await.unwrap().unwrap_err();
        assert!(
            matches!(&refused, ServiceError::Unavailable(m) if m.contains("restart")),
            "{refused:?}"
        );
        assert_eq!(p.log.head().seq, 1);
    }

    #[tokio::test]
    async fn concurrent_opens_under_a_few_keys_open_one_incident_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = processor(dir.path());
        let state = p.state.clone();
        let log = p.log.clone();
        let (handle, ordered, task) = p.spawn(64);
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..400u32 {
            let h = if i % 2 == 0 {
                handle.clone()
            } else {
                ordered.clone()
            };
            calls.spawn(async move {
                let Action::Open(mut open) = open_cmd(Impact::High, Urgency::High) else {
                    unreachable!("open_cmd opens")
                };
                open.dedup_key = Some(format!("key-{}", i % 7));
                let id = IncidentId::from_uuid_bytes(*uuid::Uuid::now_v7().as_bytes());
                h.submit(Intent::Open { id, open }, "alice", "open").await
            });
        }
        let mut fresh = 0;
        while let Some(r) = calls.join_next().await {
            fresh += usize::from(!r.unwrap().unwrap().deduplicated);
        }
        drop((handle, ordered));
        task.await.unwrap();
        assert_eq!(fresh, 7);
        let state = state.read().unwrap();
        assert_eq!(state.len(), 7);
        // the log holds exactly what the state says: 7 opens and 393 duplicates
        assert_eq!(log.head().seq, 400);
        let rebuilt = crate::rebuild(&log).unwrap();
        for (_, inc) in rebuilt
            .list(&Default::default(), None, 100)
            .0
            .iter()
            .map(|i| ((), i))
        {
            assert_eq!(state.get(&inc.id), Some(inc));
        }
    }
}

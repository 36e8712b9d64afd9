//! The command processor: the single writer of intake's log. Commands queue up while a batch is
//! being written; each batch is decided against the current state, appended to the log in one
//! sled batch with one fsync (group commit), and only then applied to the state, announced to
//! watchers and answered. Nothing is answered before it is durable.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use incident_domain::{
    Action, Command, Incident, IncidentEvent, IncidentId, OpenIncident, PriorityMatrix, decide,
    envelope::Envelope, stored,
};
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent};
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
}

/// What to answer for one pending command once the batch is written.
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

impl Processor {
    pub fn new(
        log: EventLog,
        state: Arc<RwLock<Projection>>,
        matrix: PriorityMatrix,
        changes: broadcast::Sender<Change>,
        relay_wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            log,
            state,
            matrix,
            changes,
            relay_wake,
            metrics,
        }
    }

    /// Starts the processor task; it ends once every handle is dropped and the queues are
    /// empty. Answers the shared handle (a bounded queue) and the ordered one.
    pub fn spawn(self, queue: usize) -> (Handle, Handle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue);
        let (otx, orx) = mpsc::unbounded_channel();
        let task = tokio::spawn(self.run(rx, orx));
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

    async fn run(self, mut rx: mpsc::Receiver<Pending>, mut orx: mpsc::UnboundedReceiver<Pending>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let (mut shared_open, mut ordered_open) = (true, true);
        while shared_open || ordered_open {
            tokio::select! {
                p = rx.recv(), if shared_open => match p {
                    Some(p) => batch.push(p),
                    None => shared_open = false,
                },
                p = orx.recv(), if ordered_open => match p {
                    Some(p) => batch.push(p),
                    None => ordered_open = false,
                },
            }
            // what already waits in the other queue joins the batch
            while batch.len() < MAX_BATCH {
                match orx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.process(std::mem::take(&mut batch)).await;
            }
        }
        if let Err(e) = self.log.flush() {
            tracing::error!(error = %e, "flushing the log at shutdown failed");
        }
    }

    async fn process(&self, batch: Vec<Pending>) {
        let mut plans = Vec::with_capacity(batch.len());
        let mut appends: Vec<AppendRequest> = Vec::new();
        let mut decided: Vec<Vec<(IncidentEvent, String)>> = Vec::new();
        {
            let state = match self.state.read() {
                Ok(s) => s,
                Err(_) => return fail_all(batch, "state lock poisoned"),
            };
            let mut staged: HashMap<IncidentId, Incident> = HashMap::new();
            let mut staged_requests: HashMap<String, IncidentId> = HashMap::new();
            let mut staged_dedup: HashMap<String, IncidentId> = HashMap::new();
            for p in &batch {
                let current = |id: &IncidentId, staged: &HashMap<IncidentId, Incident>| {
                    staged.get(id).cloned().or_else(|| state.get(id).cloned())
                };
                let (target, action, deduplicated) = match &p.intent {
                    Intent::Act { id, action } => (id.clone(), action.clone(), false),
                    Intent::ActOnDedupKey { key, action } => {
                        let found = staged_dedup
                            .get(key)
                            .or_else(|| state.active_by_dedup(key))
                            .filter(|id| current(id, &staged).is_some_and(|i| i.status.is_active()))
                            .cloned();
                        match found {
                            Some(id) => (id, action.clone(), false),
                            None => {
                                plans.push(Plan::Refused(ServiceError::Rejected(
                                    incident_domain::DomainError::NotFound(format!(
                                        "no active incident holds dedup key {key}"
                                    )),
                                )));
                                continue;
                            }
                        }
                    }
                    Intent::Open { id, open } => {
                        let by_request = open.request_id.as_deref().and_then(|r| {
                            staged_requests
                                .get(r)
                                .or_else(|| state.by_request(r))
                                .cloned()
                        });
                        let by_dedup = open.dedup_key.as_deref().and_then(|k| {
                            staged_dedup
                                .get(k)
                                .or_else(|| state.active_by_dedup(k))
                                .filter(|id| {
                                    current(id, &staged).is_some_and(|i| i.status.is_active())
                                })
                                .cloned()
                        });
                        if let Some(existing) = by_request {
                            plans.push(Plan::Current {
                                id: existing,
                                deduplicated: true,
                            });
                            continue;
                        }
                        match by_dedup {
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
                let before = current(&target, &staged);
                let cmd = Command::new(target.clone(), p.at, &p.actor, action);
                match decide(before.as_ref(), &cmd, &self.matrix) {
                    Err(e) => plans.push(Plan::Refused(e.into())),
                    Ok(events) if events.is_empty() => plans.push(Plan::Current {
                        id: target,
                        deduplicated,
                    }),
                    Ok(events) => {
                        let mut after = before.clone();
                        let mut encoded = Vec::with_capacity(events.len());
                        let mut new_events = Vec::with_capacity(events.len());
                        let mut folded = true;
                        for e in events {
                            match incident_domain::evolve(after.take(), &e) {
                                Ok(a) => after = Some(a),
                                Err(err) => {
                                    plans.push(Plan::Refused(ServiceError::Internal(
                                        err.to_string(),
                                    )));
                                    folded = false;
                                    break;
                                }
                            }
                            let event_id = uuid::Uuid::now_v7().to_string();
                            let env: Envelope = stored::encode(&e, &event_id);
                            new_events.push(NewEvent {
                                id: event_id.clone(),
                                bytes: env.to_canonical_bytes(),
                            });
                            encoded.push((e, event_id));
                        }
                        let Some(after) = after.filter(|_| folded) else {
                            continue;
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
                                staged_requests.insert(r.clone(), after.id.clone());
                            }
                        }
                        if let Some(k) = &after.dedup_key
                            && after.status.is_active()
                        {
                            staged_dedup.insert(k.clone(), after.id.clone());
                        }
                        let version = before.as_ref().map_or(0, |b| b.version);
                        appends.push(AppendRequest {
                            stream: target.to_string(),
                            expected: ExpectedVersion::Exact(version),
                            events: new_events,
                            processed: Vec::new(),
                        });
                        decided.push(encoded);
                        staged.insert(target, after);
                        plans.push(Plan::Append {
                            index: appends.len() - 1,
                            deduplicated,
                        });
                    }
                }
            }
        }

        let results = if appends.is_empty() {
            Vec::new()
        } else {
            let log = self.log.clone();
            match tokio::task::spawn_blocking(move || log.append_batch(appends)).await {
                Ok(r) => r,
                Err(e) => return fail_all(batch, &format!("append task failed: {e}")),
            }
        };
        self.metrics.append_batches.fetch_add(
            u64::from(!results.is_empty()),
            std::sync::atomic::Ordering::Relaxed,
        );

        // Apply what is durable, in order, and keep each request's resulting state.
        let mut after_append: Vec<Result<Incident, ServiceError>> =
            Vec::with_capacity(results.len());
        let mut changes = Vec::new();
        {
            let mut state = match self.state.write() {
                Ok(s) => s,
                Err(_) => return fail_all(batch, "state lock poisoned"),
            };
            for (result, events) in results.into_iter().zip(decided) {
                match result {
                    Ok(_) => {
                        let mut last = None;
                        let appended = events.len() as u64;
                        for (e, event_id) in events {
                            match state.apply(&e) {
                                Ok(inc) => {
                                    changes.push(Change {
                                        event_type: stored::type_name(&e.kind),
                                        event_id,
                                        incident: inc.clone(),
                                    });
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
                            .fetch_add(appended, std::sync::atomic::Ordering::Relaxed);
                        after_append.push(last.ok_or_else(|| {
                            ServiceError::Internal("recorded event did not fold".into())
                        }));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "append failed");
                        after_append.push(Err(ServiceError::Unavailable(format!(
                            "could not record the command: {e}"
                        ))));
                    }
                }
            }
        }
        if !changes.is_empty() {
            self.relay_wake.notify_one();
        }
        for change in changes {
            let _ = self.changes.send(change);
        }

        let state = self.state.read().ok();
        for (p, plan) in batch.into_iter().zip(plans) {
            let answer = match plan {
                Plan::Refused(e) => Err(e),
                Plan::Current { id, deduplicated } => state
                    .as_ref()
                    .and_then(|s| s.get(&id).cloned())
                    .map(|incident| Outcome {
                        incident,
                        deduplicated,
                    })
                    .ok_or_else(|| ServiceError::Internal("incident vanished".into())),
                Plan::Append {
                    index,
                    deduplicated,
                } => match after_append.get(index) {
                    Some(Ok(incident)) => Ok(Outcome {
                        incident: incident.clone(),
                        deduplicated,
                    }),
                    Some(Err(e)) => Err(clone_err(e)),
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
    }
}

fn clone_err(e: &ServiceError) -> ServiceError {
    match e {
        ServiceError::Rejected(d) => ServiceError::Rejected(d.clone()),
        ServiceError::Unavailable(s) => ServiceError::Unavailable(s.clone()),
        ServiceError::Internal(s) => ServiceError::Internal(s.clone()),
    }
}

fn fail_all(batch: Vec<Pending>, reason: &str) {
    tracing::error!(reason, "a command batch failed");
    for p in batch {
        let _ = p
            .reply
            .send(Err(ServiceError::Unavailable(reason.to_owned())));
    }
}

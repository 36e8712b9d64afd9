//! The engine: the single writer of the notifier's log, and its one timer task.
//!
//! Work arrives as consumed input events (from the two durable consumers), outcomes of delivery
//! attempts (from delivery tasks) and timers coming due (retries, page deadlines). Everything
//! that has queued up is decided together against the state (pure functions in
//! [`crate::decide`]), appended to the log as one group commit (one synced write of the record
//! file and one sled batch; each input's id is recorded as processed in the same batch as what
//! it derived), and only then are
//! inputs acked, the relay woken, timers set and deliveries started. If the write fails, inputs
//! are redelivered later and the state is folded again from the log.
//!
//! Timers are one ordered set of due instants ([`Timers`]); the engine sleeps until the first.
//! On start the set is rebuilt from the state: every queued notification is attempted (at once,
//! or at its retry instant), every running page waits for its deadline.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use incident_bus::Handled;
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent};
use jiff::Timestamp;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::channels::Deliverer;
use crate::clock::Clock;
use crate::decide::{self, AttemptOutcome};
use crate::events::NotifierEvent;
use crate::input::Input;
use crate::metrics::{Metrics, inc};
use crate::routes::Routes;
use crate::state::{NotificationStatus, State};
use crate::timers::{TimerKey, Timers};

/// Most work items decided and written in one group commit.
pub const MAX_BATCH: usize = 512;
/// Most delivery attempts running at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long a stop waits for attempts in flight to report.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Submits consumed input events to the engine; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<(Box<Input>, oneshot::Sender<Handled>)>,
}

impl Handle {
    /// Records the input (and what it leads to) durably; answers what to do with the message.
    pub async fn submit(&self, input: Box<Input>) -> Handled {
        let (reply, rx) = oneshot::channel();
        if self.tx.send((input, reply)).await.is_err() {
            return Handled::Retry("the notifier is stopping".into());
        }
        rx.await
            .unwrap_or_else(|_| Handled::Retry("the notifier is stopping".into()))
    }
}

enum Item {
    Input {
        input: Box<Input>,
        reply: oneshot::Sender<Handled>,
    },
    Attempted {
        id: String,
        outcome: AttemptOutcome,
    },
    Deadline {
        page_id: String,
    },
}

pub struct Engine {
    log: EventLog,
    state: Arc<RwLock<State>>,
    routes: Arc<Routes>,
    clock: Clock,
    deliverer: Arc<Deliverer>,
    relay_wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    applied: watch::Sender<u64>,
    timers: Timers,
    in_flight: HashSet<String>,
    permits: Arc<Semaphore>,
    attempts_tx: mpsc::UnboundedSender<(String, AttemptOutcome)>,
    attempts_rx: mpsc::UnboundedReceiver<(String, AttemptOutcome)>,
    stopping: bool,
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Folds the whole log into the state; a record that cannot be read stops the start.
pub fn fold_log(log: &EventLog) -> anyhow::Result<State> {
    use anyhow::Context as _;
    let mut state = State::default();
    for rec in log.read_from(1) {
        let rec = rec.context("reading the notifier's log")?;
        let (env, ev) = NotifierEvent::decode_bytes(&rec.event)
            .with_context(|| format!("log record {} cannot be read", rec.seq))?;
        state.apply(&env.subject, env.time, &ev);
    }
    Ok(state)
}

impl Engine {
    pub fn new(
        log: EventLog,
        state: Arc<RwLock<State>>,
        routes: Arc<Routes>,
        clock: Clock,
        deliverer: Arc<Deliverer>,
        relay_wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (attempts_tx, attempts_rx) = mpsc::unbounded_channel();
        let (applied, _) = watch::channel(log.head().seq);
        Self {
            log,
            state,
            routes,
            clock,
            deliverer,
            relay_wake,
            metrics,
            applied,
            timers: Timers::default(),
            in_flight: HashSet::new(),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            attempts_tx,
            attempts_rx,
            stopping: false,
        }
    }

    /// Changes to the log head after each applied batch (tests wait on it).
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Starts the engine; it runs until `stop` turns true, then waits briefly for attempts in
    /// flight and flushes the log.
    pub fn spawn(
        self,
        queue: usize,
        stop: watch::Receiver<bool>,
    ) -> (Handle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue);
        let task = tokio::spawn(self.run(rx, stop));
        (Handle { tx }, task)
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<(Box<Input>, oneshot::Sender<Handled>)>,
        mut stop: watch::Receiver<bool>,
    ) {
        self.reschedule_all();
        let mut open = true;
        loop {
            if *stop.borrow() {
                break;
            }
            let wake = self.timers.next_due().map(|t| self.clock.instant_at(t));
            let mut items = Vec::new();
            tokio::select! {
                w = rx.recv(), if open => match w {
                    Some((input, reply)) => items.push(Item::Input { input, reply }),
                    None => open = false,
                },
                a = self.attempts_rx.recv() => {
                    if let Some((id, outcome)) = a {
                        items.push(Item::Attempted { id, outcome });
                    }
                }
                _ = sleep_until_opt(wake) => {}
                _ = stop.changed() => {}
            }
            while items.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok((input, reply)) => items.push(Item::Input { input, reply }),
                    Err(_) => break,
                }
            }
            while items.len() < MAX_BATCH {
                match self.attempts_rx.try_recv() {
                    Ok((id, outcome)) => items.push(Item::Attempted { id, outcome }),
                    Err(_) => break,
                }
            }
            self.fire_due(&mut items);
            if !items.is_empty() {
                self.process(items).await;
            }
        }

        self.stopping = true;
        let deadline = Instant::now() + STOP_GRACE;
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(deadline, self.attempts_rx.recv()).await {
                Ok(Some((id, outcome))) => {
                    let mut items = vec![Item::Attempted { id, outcome }];
                    while let Ok((id, outcome)) = self.attempts_rx.try_recv() {
                        items.push(Item::Attempted { id, outcome });
                    }
                    self.process(items).await;
                }
                _ => break,
            }
        }
        let log = self.log.clone();
        match tokio::task::spawn_blocking(move || log.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "flushing the log at stop failed"),
            Err(e) => tracing::error!(error = %e, "flushing the log at stop failed"),
        }
    }

    /// Pops the timers that are due: attempts start at once, page deadlines become work.
    fn fire_due(&mut self, items: &mut Vec<Item>) {
        // tokio's timer resolution is a millisecond: what is due within it is due now.
        let now = self
            .clock
            .now()
            .checked_add(Duration::from_millis(1))
            .unwrap_or(Timestamp::MAX);
        for key in self.timers.pop_due(now) {
            match key {
                TimerKey::Attempt(id) => self.dispatch(&id),
                TimerKey::PageDeadline(page_id) => items.push(Item::Deadline { page_id }),
            }
        }
    }

    /// Starts one delivery attempt of a queued notification, unless one is running.
    fn dispatch(&mut self, id: &str) {
        if self.stopping || self.in_flight.contains(id) {
            return;
        }
        let n = match self.state.read() {
            Ok(s) => match s.notification(id) {
                Some(n) if n.status == NotificationStatus::Queued => n.clone(),
                _ => return,
            },
            Err(_) => return,
        };
        self.in_flight.insert(id.to_owned());
        let deliverer = self.deliverer.clone();
        let tx = self.attempts_tx.clone();
        let permits = self.permits.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let outcome = deliverer.attempt(&n).await;
            let _ = tx.send((n.id, outcome));
        });
    }

    /// Sets every timer from the state (on start, and after the state was folded again).
    fn reschedule_all(&mut self) {
        self.timers.clear();
        let now = self.clock.now();
        let Ok(state) = self.state.read() else {
            return;
        };
        for n in state.pending() {
            if !self.in_flight.contains(&n.id) {
                self.timers.schedule(
                    TimerKey::Attempt(n.id.clone()),
                    n.next_attempt_at.unwrap_or(now),
                );
            }
        }
        for p in state.active_pages() {
            self.timers
                .schedule(TimerKey::PageDeadline(p.id.clone()), p.ack_deadline);
        }
    }

    fn after_durable(&mut self, events: &[NotifierEvent], now: Timestamp) {
        for ev in events {
            match ev {
                NotifierEvent::Queued(q) => self.dispatch(&q.notification_id),
                NotifierEvent::Failed(f) if !f.permanent => self.timers.schedule(
                    TimerKey::Attempt(f.notification_id.clone()),
                    f.next_attempt_at.unwrap_or(now),
                ),
                NotifierEvent::Failed(f) => self
                    .timers
                    .cancel(&TimerKey::Attempt(f.notification_id.clone())),
                NotifierEvent::Delivered(d) => self
                    .timers
                    .cancel(&TimerKey::Attempt(d.notification_id.clone())),
                NotifierEvent::PageStarted(p) => self
                    .timers
                    .schedule(TimerKey::PageDeadline(p.page_id.clone()), p.ack_deadline),
                NotifierEvent::PageEscalated(p) => self
                    .timers
                    .schedule(TimerKey::PageDeadline(p.page_id.clone()), p.ack_deadline),
                NotifierEvent::PageStopped(p) => self
                    .timers
                    .cancel(&TimerKey::PageDeadline(p.page_id.clone())),
                NotifierEvent::Observed(_) | NotifierEvent::Suppressed(_) => {}
            }
        }
    }

    async fn process(&mut self, items: Vec<Item>) {
        // Which inputs were processed before (redeliveries).
        let ids: Vec<String> = items
            .iter()
            .filter_map(|i| match i {
                Item::Input { input, .. } => Some(input.event_id.clone()),
                _ => None,
            })
            .collect();
        let seen: Result<HashSet<String>, String> = if ids.is_empty() {
            Ok(HashSet::new())
        } else {
            let log = self.log.clone();
            tokio::task::spawn_blocking(move || {
                let mut seen = HashSet::new();
                for id in ids {
                    if log.is_processed(&id).map_err(|e| e.to_string())? {
                        seen.insert(id);
                    }
                }
                Ok(seen)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        };

        let now = self.clock.now();
        let mut requests: Vec<AppendRequest> = Vec::new();
        let mut derived: Vec<NotifierEvent> = Vec::new();
        let mut replies: Vec<oneshot::Sender<Handled>> = Vec::new();
        let mut recorded_inputs = 0u64;
        {
            let Ok(mut state) = self.state.write() else {
                tracing::error!("state lock poisoned");
                return;
            };
            let mut in_batch: HashSet<String> = HashSet::new();
            for item in items {
                let (incident, events, processed) = match item {
                    Item::Input { input, reply } => {
                        let seen = match &seen {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = reply.send(Handled::Retry(format!(
                                    "cannot read the processed ids: {e}"
                                )));
                                continue;
                            }
                        };
                        if seen.contains(&input.event_id) {
                            inc(&self.metrics.inputs_duplicate, 1);
                            let _ = reply.send(Handled::Done);
                            continue;
                        }
                        replies.push(reply);
                        if !in_batch.insert(input.event_id.clone()) {
                            inc(&self.metrics.inputs_duplicate, 1);
                            continue;
                        }
                        recorded_inputs += 1;
                        let events = decide::on_input(&state, &self.routes, &input, now);
                        (
                            input.incident_id.clone(),
                            events,
                            Some(input.event_id.clone()),
                        )
                    }
                    Item::Attempted { id, outcome } => {
                        self.in_flight.remove(&id);
                        let Some(n) = state.notification(&id) else {
                            continue;
                        };
                        let label = match &outcome {
                            AttemptOutcome::Delivered { .. } => "delivered",
                            AttemptOutcome::Transient { .. } => "transient",
                            AttemptOutcome::Permanent { .. } => "permanent",
                        };
                        self.metrics.attempt(&n.kind, label);
                        let incident = n.incident_id.clone();
                        let jitter = rand::random_range(0.75..1.25);
                        let events = decide::on_attempt(
                            &state,
                            &self.routes.delivery,
                            &id,
                            &outcome,
                            now,
                            jitter,
                        );
                        (incident, events, None)
                    }
                    Item::Deadline { page_id } => {
                        let Some(p) = state.page(&page_id) else {
                            continue;
                        };
                        let incident = p.incident_id.clone();
                        let events = decide::on_page_deadline(&state, &self.routes, &page_id, now);
                        (incident, events, None)
                    }
                };
                if events.is_empty() && processed.is_none() {
                    continue;
                }
                let mut new_events = Vec::with_capacity(events.len());
                for ev in &events {
                    state.apply(&incident, now, ev);
                    let id = uuid::Uuid::now_v7().to_string();
                    new_events.push(NewEvent::new(
                        id.clone(),
                        ev.encode(&id, &incident, now).to_canonical_bytes(),
                    ));
                }
                derived.extend(events);
                requests.push(AppendRequest {
                    stream: incident,
                    expected: ExpectedVersion::Any,
                    events: new_events,
                    processed: processed.into_iter().collect(),
                });
            }
        }
        if requests.is_empty() {
            for r in replies {
                let _ = r.send(Handled::Done);
            }
            return;
        }

        let appended: usize = requests.iter().map(|r| r.events.len()).sum();
        let log = self.log.clone();
        let results = tokio::task::spawn_blocking(move || log.append_batch(requests)).await;
        let failure = match &results {
            Err(e) => Some(e.to_string()),
            Ok(rs) => rs
                .iter()
                .find_map(|r| r.as_ref().err().map(|e| e.to_string())),
        };
        match failure {
            None => {
                inc(&self.metrics.append_batches, 1);
                inc(&self.metrics.events_appended, appended as u64);
                inc(&self.metrics.inputs_processed, recorded_inputs);
                for r in replies {
                    let _ = r.send(Handled::Done);
                }
                if appended > 0 {
                    self.relay_wake.notify_one();
                }
                self.after_durable(&derived, now);
                let _ = self.applied.send(self.log.head().seq);
            }
            Some(e) => {
                inc(&self.metrics.append_failures, 1);
                tracing::error!(error = %e, "could not record a batch; folding the state again from the log");
                for r in replies {
                    let _ = r.send(Handled::Retry(format!("could not record it: {e}")));
                }
                let log = self.log.clone();
                match tokio::task::spawn_blocking(move || fold_log(&log)).await {
                    Ok(Ok(fresh)) => {
                        if let Ok(mut s) = self.state.write() {
                            *s = fresh;
                        }
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "folding the log failed"),
                    Err(e) => tracing::error!(error = %e, "folding the log failed"),
                }
                self.reschedule_all();
            }
        }
    }
}

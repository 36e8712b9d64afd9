//! The single writer of the SLA log: records each consumed incident event with the SLA events it
//! caused (and the input's id as processed) in one atomic, flushed append before the input is
//! acked, and records fired timers before they count as fired.
//!
//! Every SLA event it writes carries `after_input`: the id of the last incident event recorded
//! before it. The inputs stay in the log only, so this is what lets the log be rebuilt from
//! SLA_EVENTS and INCIDENT_EVENTS in its original order (see `rebuild`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use incident_bus::{Delivery, Handled};
use incident_domain::Envelope;
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent};
use jiff::Timestamp;
use tokio::sync::{Notify, oneshot, watch};

use crate::engine::{Derived, Engine};
use crate::events;

/// Log stream of the inputs of an incident (kept in the log, not published).
pub fn input_stream(incident_id: &str) -> String {
    format!("input.{incident_id}")
}

/// Whether a log record is one of the SLA timer's own events (published) rather than an input.
pub fn is_own_event(rec: &incident_eventlog::Record) -> bool {
    !rec.stream.starts_with("input.")
}

#[derive(Debug, Default)]
pub struct Counters {
    pub inputs: AtomicU64,
    pub duplicates_skipped: AtomicU64,
    pub rejected: AtomicU64,
    pub events_derived: AtomicU64,
    pub warnings: AtomicU64,
    pub breaches: AtomicU64,
    pub escalations: AtomicU64,
    pub append_failures: AtomicU64,
    /// Flushed appends to the log (group commits).
    pub append_batches: AtomicU64,
}

pub struct Writer {
    pub log: EventLog,
    pub engine: Arc<Mutex<Engine>>,
    pub counters: Arc<Counters>,
    /// Woken after each append: the relay publishes, the timer re-reads the next due instant.
    pub relay_wake: Arc<Notify>,
    pub timer_wake: Arc<Notify>,
    /// One append at a time, so the log order is the order the engine saw.
    lock: tokio::sync::Mutex<()>,
    /// Deliveries waiting for the next group commit, in the order they came.
    queue: Mutex<Vec<Queued>>,
    /// The id of the last incident event recorded (`after_input` of the next SLA event).
    last_input: Mutex<Option<String>>,
    /// The highest INCIDENT_EVENTS sequence delivered, and the one that counts as caught up.
    seen_seq: AtomicU64,
    catch_up_target: AtomicU64,
    caught_up: watch::Sender<bool>,
}

/// A delivery waiting to be recorded, and where its outcome goes.
struct Queued {
    d: Delivery,
    reply: oneshot::Sender<Handled>,
}

/// An input of a batch the engine took, to be put back if the append fails.
struct Accepted {
    delivery_id: String,
    input_id: String,
    derived: Derived,
}

/// What becomes of a delivery of a batch.
enum Outcome {
    /// Decided before the append: skipped as recorded before, or rejected.
    Known(Handled),
    /// Recorded by the batch's append.
    Recorded,
    /// The same input as one recorded by the batch's append.
    Repeat,
}

fn answer_all(batch: Vec<Queued>, handled: &Handled) {
    for q in batch {
        let _ = q.reply.send(handled.clone());
    }
}

/// Most fired incidents recorded in one append.
pub const FIRE_BATCH: usize = 1024;

fn new_event(env: &Envelope) -> NewEvent {
    NewEvent {
        id: env.id.clone(),
        bytes: env.to_canonical_bytes(),
    }
}

impl Writer {
    pub fn new(
        log: EventLog,
        engine: Arc<Mutex<Engine>>,
        relay_wake: Arc<Notify>,
        timer_wake: Arc<Notify>,
    ) -> Self {
        Self {
            log,
            engine,
            counters: Arc::default(),
            relay_wake,
            timer_wake,
            lock: tokio::sync::Mutex::new(()),
            queue: Mutex::new(Vec::new()),
            last_input: Mutex::new(None),
            seen_seq: AtomicU64::new(0),
            catch_up_target: AtomicU64::new(u64::MAX),
            caught_up: watch::channel(true).0,
        }
    }

    /// The last incident event the log holds (after a restart).
    pub fn set_last_input(&self, id: Option<String>) {
        if let Ok(mut last) = self.last_input.lock() {
            *last = id;
        }
    }

    /// Sets `after_input` on `events`: `after`, or with `None` the last input recorded.
    fn tag(&self, events: &mut [Envelope], after: Option<&str>) {
        match after {
            Some(a) => Self::tag_after(events, Some(a)),
            None => {
                let last = self.last_input.lock().ok().and_then(|l| l.clone());
                Self::tag_after(events, last.as_deref());
            }
        }
    }

    fn tag_after(events: &mut [Envelope], after: Option<&str>) {
        for e in events {
            if let serde_json::Value::Object(m) = &mut e.data {
                m.insert("after_input".into(), after.into());
            }
        }
    }

    /// Holds the timers back (see [`Writer::caught_up`]) until [`Writer::catch_up_to`] says
    /// what to wait for.
    pub fn hold_timers(&self) {
        self.caught_up.send_replace(false);
    }

    /// Timers may fire once a delivery at or past `target` (INCIDENT_EVENTS' last sequence at
    /// start) was handled; `None`: nothing was waiting.
    pub fn catch_up_to(&self, target: Option<u64>) {
        match target {
            Some(t) => {
                // the target first, then the check: a delivery handled in between sees it
                self.catch_up_target.store(t, Ordering::SeqCst);
                if self.seen_seq.load(Ordering::SeqCst) >= t {
                    self.caught_up.send_replace(true);
                }
            }
            None => {
                self.caught_up.send_replace(true);
            }
        }
    }

    /// Resolves once the incident events that arrived while the service was down have been
    /// handled, so a deadline passed meanwhile fires only if they did not stop the clock.
    pub async fn caught_up(&self) {
        let mut rx = self.caught_up.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    fn saw(&self, seq: u64) {
        let seen = self.seen_seq.fetch_max(seq, Ordering::SeqCst).max(seq);
        if seen >= self.catch_up_target.load(Ordering::SeqCst) {
            self.caught_up.send_replace(true);
        }
    }

    async fn append(&self, reqs: Vec<AppendRequest>) -> Result<(), String> {
        let log = self.log.clone();
        let results = tokio::task::spawn_blocking(move || log.append_batch(reqs))
            .await
            .map_err(|e| e.to_string())?;
        for r in results {
            r.map_err(|e| e.to_string())?;
        }
        self.counters.append_batches.fetch_add(1, Ordering::Relaxed);
        self.relay_wake.notify_one();
        Ok(())
    }

    fn derived_request(id: &str, derived: &Derived) -> Option<AppendRequest> {
        (!derived.events.is_empty()).then(|| AppendRequest {
            stream: id.to_owned(),
            expected: ExpectedVersion::Any,
            events: derived.events.iter().map(new_event).collect(),
            processed: Vec::new(),
        })
    }

    fn count(&self, events: &[Envelope]) {
        let c = &self.counters;
        c.events_derived
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        for e in events {
            match e.ty.as_str() {
                events::WARNING => c.warnings.fetch_add(1, Ordering::Relaxed),
                events::BREACHED => c.breaches.fetch_add(1, Ordering::Relaxed),
                events::ESCALATION => c.escalations.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
    }

    /// Records the activation of a policy version (at start, when the file changed).
    pub async fn activate(&self, mut env: Envelope) -> Result<(), String> {
        let _guard = self.lock.lock().await;
        self.tag(std::slice::from_mut(&mut env), None);
        self.append(vec![AppendRequest {
            stream: events::POLICY_SUBJECT.to_owned(),
            expected: ExpectedVersion::Any,
            events: vec![new_event(&env)],
            processed: Vec::new(),
        }])
        .await
    }

    /// Handles one delivery from INCIDENT_EVENTS. Deliveries handled concurrently are recorded
    /// together: each joins the queue on its first poll (so the queue keeps the order they
    /// were started in, the stream order), and whichever takes the writer's lock first records
    /// everything queued in one group commit, then answers each. A delivery that finds its
    /// answer waiting when it gets the lock was recorded by another.
    pub async fn on_delivery(&self, d: Delivery) -> Handled {
        let seq = d.stream_sequence;
        let (reply, mut answer) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Queued { d, reply });
        let handled = {
            let _guard = self.lock.lock().await;
            match answer.try_recv() {
                Ok(h) => h,
                Err(oneshot::error::TryRecvError::Empty) => {
                    let batch = std::mem::take(
                        &mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner),
                    );
                    self.record_deliveries(batch).await;
                    answer
                        .try_recv()
                        .unwrap_or_else(|_| Handled::Retry("the delivery was not recorded".into()))
                }
                // the caller recording it stopped before answering
                Err(oneshot::error::TryRecvError::Closed) => {
                    Handled::Retry("the delivery was not recorded".into())
                }
            }
        };
        // a delivery to be retried is not in yet
        if !matches!(handled, Handled::Retry(_)) {
            self.saw(seq);
        }
        handled
    }

    /// Records `batch` (in order) in one append and answers each delivery. Inputs already in
    /// the log (by delivery id or by event id) or earlier in the batch are skipped, bad ones
    /// rejected, before the engine sees them: what is left can only be refused by a storage
    /// failure, which fails every request of the append. Then every input of it is put back
    /// out of the engine, latest first, and retried.
    async fn record_deliveries(&self, batch: Vec<Queued>) {
        let parsed: Vec<Result<Envelope, String>> = batch
            .iter()
            .map(|q| Envelope::from_slice(&q.d.payload).map_err(|e| e.to_string()))
            .collect();
        // what the log already holds: the delivery recorded as processed, or the event itself
        // (recorded under another delivery id): either way its effect is in
        let keys: Vec<(String, Option<String>)> = batch
            .iter()
            .zip(&parsed)
            .map(|(q, env)| (q.d.id.clone(), env.as_ref().ok().map(|e| e.id.clone())))
            .collect();
        let log = self.log.clone();
        let seen = tokio::task::spawn_blocking(move || {
            keys.iter()
                .map(|(delivery, event)| {
                    Ok(log.is_processed(delivery)?
                        || match event {
                            Some(id) => log.seq_of_event(id)?.is_some(),
                            None => false,
                        })
                })
                .collect::<Result<Vec<bool>, incident_eventlog::LogError>>()
        })
        .await;
        let seen = match seen {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return answer_all(batch, &Handled::Retry(e.to_string())),
            Err(e) => return answer_all(batch, &Handled::Retry(e.to_string())),
        };
        let mut reqs = Vec::new();
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        {
            let Ok(mut engine) = self.engine.lock() else {
                return answer_all(batch, &Handled::Retry("engine lock poisoned".into()));
            };
            let mut last = self.last_input.lock().ok().and_then(|l| l.clone());
            for ((q, seen), env) in batch.iter().zip(seen).zip(parsed) {
                if seen {
                    self.counters
                        .duplicates_skipped
                        .fetch_add(1, Ordering::Relaxed);
                    outcomes.push(Outcome::Known(Handled::Done));
                    continue;
                }
                let env = match env {
                    Ok(env) => env,
                    Err(e) => {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        outcomes.push(Outcome::Known(Handled::Reject(e)));
                        continue;
                    }
                };
                if accepted
                    .iter()
                    .any(|a| a.delivery_id == q.d.id || a.input_id == env.id)
                {
                    // the same input twice in the stream (again, or under another id):
                    // recorded with the first, whose event id the log would refuse twice
                    outcomes.push(Outcome::Repeat);
                    continue;
                }
                let mut derived = match engine.on_incident_event(&env, Timestamp::now()) {
                    Ok(d) => d,
                    Err(e) => {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        outcomes.push(Outcome::Known(Handled::Reject(e.to_string())));
                        continue;
                    }
                };
                self.tag(&mut derived.events, Some(&env.id));
                // timers due before the input are recorded before it, after the previous input
                Self::tag_after(&mut derived.fired_before, last.as_deref());
                if !derived.fired_before.is_empty() {
                    reqs.push(AppendRequest {
                        stream: env.subject.clone(),
                        expected: ExpectedVersion::Any,
                        events: derived.fired_before.iter().map(new_event).collect(),
                        processed: Vec::new(),
                    });
                }
                reqs.push(AppendRequest {
                    stream: input_stream(&env.subject),
                    expected: ExpectedVersion::Any,
                    events: vec![new_event(&env)],
                    processed: vec![q.d.id.clone()],
                });
                reqs.extend(Self::derived_request(&env.subject, &derived));
                outcomes.push(Outcome::Recorded);
                accepted.push(Accepted {
                    delivery_id: q.d.id.clone(),
                    input_id: env.id.clone(),
                    derived,
                });
                last = Some(env.id);
            }
        }
        let recorded = if reqs.is_empty() {
            Ok(())
        } else {
            self.append(reqs).await
        };
        match &recorded {
            Ok(()) => {
                if let Some(a) = accepted.last() {
                    self.set_last_input(Some(a.input_id.clone()));
                }
                self.counters
                    .inputs
                    .fetch_add(accepted.len() as u64, Ordering::Relaxed);
                for a in &accepted {
                    self.count(&a.derived.fired_before);
                    self.count(&a.derived.events);
                }
                if !accepted.is_empty() {
                    self.timer_wake.notify_one();
                }
            }
            Err(_) => {
                self.counters
                    .append_failures
                    .fetch_add(1, Ordering::Relaxed);
                if let Ok(mut engine) = self.engine.lock() {
                    // latest first: an incident may have several inputs in the batch
                    for a in accepted.into_iter().rev() {
                        engine.undo(a.derived.undo);
                    }
                }
            }
        }
        for (q, outcome) in batch.into_iter().zip(outcomes) {
            let handled = match (outcome, &recorded) {
                (Outcome::Known(h), _) => h,
                (Outcome::Recorded, Ok(())) => Handled::Done,
                (Outcome::Repeat, Ok(())) => {
                    self.counters
                        .duplicates_skipped
                        .fetch_add(1, Ordering::Relaxed);
                    Handled::Done
                }
                (Outcome::Recorded | Outcome::Repeat, Err(e)) => {
                    Handled::Retry(format!("recording the input failed: {e}"))
                }
            };
            let _ = q.reply.send(handled);
        }
    }

    /// Fires what is due at `now`, recording each incident's fired timers. The incidents fired
    /// together are recorded in group commits of up to [`FIRE_BATCH`] (one flushed append for a
    /// burst of deadlines, not one each, so the last of a burst is not late by the others'
    /// writes). Fired events have fresh ids, so only a storage failure refuses an append, and
    /// it fails every request written in it: its incidents and those after it are put back as
    /// they were, to fire again.
    pub async fn fire(&self, now: Timestamp) {
        let _guard = self.lock.lock().await;
        let mut fired = match self.engine.lock() {
            Ok(mut engine) => engine.fire_due(now),
            Err(_) => return,
        };
        for (_, derived) in &mut fired {
            self.tag(&mut derived.events, None);
        }
        let mut start = 0;
        while start < fired.len() {
            let end = fired.len().min(start + FIRE_BATCH);
            let reqs = fired[start..end]
                .iter()
                .filter_map(|(id, derived)| Self::derived_request(id, derived))
                .collect();
            if let Err(e) = self.append(reqs).await {
                self.counters
                    .append_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(incidents = fired.len() - start, error = %e, "recording fired timers failed; they will fire again");
                if let Ok(mut engine) = self.engine.lock() {
                    // the last fired first: each undo puts back what its firing changed
                    for (_, derived) in fired.drain(start..).rev() {
                        engine.undo(derived.undo);
                    }
                }
                return;
            }
            for (id, derived) in &fired[start..end] {
                self.count(&derived.events);
                for e in &derived.events {
                    tracing::info!(incident = %id, r#type = %e.ty, late_ms = %e.data["late_ms"], "timer fired");
                }
            }
            start = end;
        }
    }
}

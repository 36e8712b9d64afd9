//! The notifier's state, a fold of its own log: incident summaries (for routing and messages),
//! notifications and their delivery state (pending retries included), and pages with their
//! current tier and deadline. Pure: `apply` never fails; an event that refers to something
//! unknown is ignored (the log is the authority, not this view).

use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::Value;

use crate::events::{NotifierEvent, PageRef, Summary, Trigger};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationStatus {
    /// Waiting for its first attempt or a retry.
    Queued,
    Delivered,
    /// Permanently failed.
    Failed,
    Suppressed,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Queued => "queued",
            NotificationStatus::Delivered => "delivered",
            NotificationStatus::Failed => "failed",
            NotificationStatus::Suppressed => "suppressed",
        }
    }

    pub const ALL: [NotificationStatus; 4] = [
        NotificationStatus::Queued,
        NotificationStatus::Delivered,
        NotificationStatus::Failed,
        NotificationStatus::Suppressed,
    ];
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: String,
    pub incident_id: String,
    pub trigger: Trigger,
    pub route: String,
    pub channel: String,
    pub kind: String,
    pub reason: String,
    /// The incident as it was when the notification was queued.
    pub incident: Summary,
    /// The triggering envelope; dropped once the notification is final.
    pub event: Value,
    pub page: Option<PageRef>,
    pub attempts: u32,
    pub status: NotificationStatus,
    pub last_error: Option<String>,
    pub response: Option<String>,
    pub silence: Option<String>,
    pub queued_at: Timestamp,
    /// For a queued notification that failed before: when it is tried again.
    pub next_attempt_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub id: String,
    pub incident_id: String,
    pub oncall: String,
    pub route: String,
    pub trigger: Trigger,
    /// The triggering envelope, for the messages of later tiers.
    pub event: Value,
    pub tier: u32,
    pub round: u32,
    pub ack_deadline: Timestamp,
    pub active: bool,
    pub stop_reason: Option<String>,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct State {
    incidents: HashMap<String, Summary>,
    notifications: HashMap<String, Notification>,
    /// Notification ids in the order they were queued.
    order: Vec<String>,
    by_incident: HashMap<String, Vec<String>>,
    pages: HashMap<String, Page>,
    page_order: Vec<String>,
}

impl State {
    pub fn incident(&self, id: &str) -> Option<&Summary> {
        self.incidents.get(id)
    }

    pub fn notification(&self, id: &str) -> Option<&Notification> {
        self.notifications.get(id)
    }

    pub fn page(&self, id: &str) -> Option<&Page> {
        self.pages.get(id)
    }

    /// In the order they were queued; all, or one incident's.
    pub fn notifications(&self, incident: Option<&str>) -> Vec<&Notification> {
        let ids: &[String] = match incident {
            Some(i) => self.by_incident.get(i).map(Vec::as_slice).unwrap_or(&[]),
            None => &self.order,
        };
        ids.iter()
            .filter_map(|id| self.notifications.get(id))
            .collect()
    }

    /// Queued notifications: those to attempt (now, or at their `next_attempt_at`).
    pub fn pending(&self) -> impl Iterator<Item = &Notification> {
        self.notifications
            .values()
            .filter(|n| n.status == NotificationStatus::Queued)
    }

    pub fn pages(&self, incident: Option<&str>) -> Vec<&Page> {
        self.page_order
            .iter()
            .filter_map(|id| self.pages.get(id))
            .filter(|p| incident.is_none_or(|i| p.incident_id == i))
            .collect()
    }

    pub fn active_pages(&self) -> impl Iterator<Item = &Page> {
        self.pages.values().filter(|p| p.active)
    }

    pub fn active_pages_of<'a>(&'a self, incident: &'a str) -> impl Iterator<Item = &'a Page> {
        self.active_pages()
            .filter(move |p| p.incident_id == incident)
    }

    pub fn count_by_status(&self) -> HashMap<NotificationStatus, u64> {
        let mut out = HashMap::new();
        for n in self.notifications.values() {
            *out.entry(n.status).or_insert(0) += 1;
        }
        out
    }

    pub fn incidents_known(&self) -> usize {
        self.incidents.len()
    }

    fn insert(&mut self, n: Notification) {
        if self.notifications.contains_key(&n.id) {
            return;
        }
        self.order.push(n.id.clone());
        self.by_incident
            .entry(n.incident_id.clone())
            .or_default()
            .push(n.id.clone());
        self.notifications.insert(n.id.clone(), n);
    }

    /// Folds one event of the notifier's log into the state.
    pub fn apply(&mut self, incident_id: &str, at: Timestamp, event: &NotifierEvent) {
        match event {
            NotifierEvent::Observed(o) => {
                self.incidents
                    .insert(incident_id.to_owned(), o.incident.clone());
            }
            NotifierEvent::Queued(q) => self.insert(Notification {
                id: q.notification_id.clone(),
                incident_id: incident_id.to_owned(),
                trigger: q.trigger.clone(),
                route: q.route.clone(),
                channel: q.channel.clone(),
                kind: q.kind.clone(),
                reason: q.reason.clone(),
                incident: q.incident.clone(),
                event: q.event.clone(),
                page: q.page.clone(),
                attempts: 0,
                status: NotificationStatus::Queued,
                last_error: None,
                response: None,
                silence: None,
                queued_at: at,
                next_attempt_at: None,
                finished_at: None,
            }),
            NotifierEvent::Suppressed(s) => self.insert(Notification {
                id: s.notification_id.clone(),
                incident_id: incident_id.to_owned(),
                trigger: s.trigger.clone(),
                route: s.route.clone(),
                channel: s.channel.clone(),
                kind: String::new(),
                reason: s.reason.clone(),
                incident: self.incidents.get(incident_id).cloned().unwrap_or_default(),
                event: Value::Null,
                page: s.page.clone(),
                attempts: 0,
                status: NotificationStatus::Suppressed,
                last_error: None,
                response: None,
                silence: Some(s.silence.clone()),
                queued_at: at,
                next_attempt_at: None,
                finished_at: Some(at),
            }),
            NotifierEvent::Delivered(d) => {
                if let Some(n) = self.notifications.get_mut(&d.notification_id) {
                    n.status = NotificationStatus::Delivered;
                    n.attempts = d.attempts;
                    n.response = Some(d.response.clone());
                    n.next_attempt_at = None;
                    n.finished_at = Some(at);
                    n.event = Value::Null;
                }
            }
            NotifierEvent::Failed(f) => {
                if let Some(n) = self.notifications.get_mut(&f.notification_id) {
                    n.attempts = f.attempts;
                    n.last_error = Some(f.error.clone());
                    if f.permanent {
                        n.status = NotificationStatus::Failed;
                        n.next_attempt_at = None;
                        n.finished_at = Some(at);
                        n.event = Value::Null;
                    } else {
                        n.next_attempt_at = f.next_attempt_at.or(Some(at));
                    }
                }
            }
            NotifierEvent::PageStarted(p) => {
                if !self.pages.contains_key(&p.page_id) {
                    self.page_order.push(p.page_id.clone());
                }
                self.pages.insert(
                    p.page_id.clone(),
                    Page {
                        id: p.page_id.clone(),
                        incident_id: incident_id.to_owned(),
                        oncall: p.oncall.clone(),
                        route: p.route.clone(),
                        trigger: p.trigger.clone(),
                        event: p.event.clone(),
                        tier: p.tier,
                        round: p.round,
                        ack_deadline: p.ack_deadline,
                        active: true,
                        stop_reason: None,
                        started_at: at,
                        updated_at: at,
                    },
                );
            }
            NotifierEvent::PageEscalated(e) => {
                if let Some(p) = self.pages.get_mut(&e.page_id) {
                    p.tier = e.tier;
                    p.round = e.round;
                    p.ack_deadline = e.ack_deadline;
                    p.updated_at = at;
                }
            }
            NotifierEvent::PageStopped(s) => {
                if let Some(p) = self.pages.get_mut(&s.page_id) {
                    p.active = false;
                    p.stop_reason = Some(s.reason.clone());
                    p.updated_at = at;
                }
            }
        }
    }
}

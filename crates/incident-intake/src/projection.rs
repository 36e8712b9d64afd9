//! Intake's in-memory state, rebuilt by folding its event log: every incident, plus the indexes
//! that deduplicate opens (active incidents by dedup key, incidents by request id).

use std::collections::{BTreeMap, HashMap};

use incident_domain::{
    EventKind, HistoryError, Incident, IncidentEvent, IncidentId, Priority, Status, evolve,
    evolve_in_place,
};

#[derive(Debug, Default, PartialEq)]
pub struct Projection {
    /// Boxed: the tree's nodes then move pointers, not whole incidents, as it grows.
    incidents: BTreeMap<IncidentId, Box<Incident>>,
    by_dedup: HashMap<String, IncidentId>,
    by_request: HashMap<String, IncidentId>,
}

/// Which incidents `list` and `watch` return.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub statuses: Vec<Status>,
    pub priorities: Vec<Priority>,
    pub service: Option<String>,
    pub group: Option<String>,
}

impl Filter {
    pub fn matches(&self, inc: &Incident) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&inc.status))
            && (self.priorities.is_empty() || self.priorities.contains(&inc.priority))
            && self.service.as_ref().is_none_or(|s| *s == inc.service)
            && self.group.as_ref().is_none_or(|g| *g == inc.group)
    }
}

/// A projection taken apart, for the snapshot (`crate::snapshot`), which stores the indexes too:
/// `by_request` also holds the request ids of repeats, which no incident keeps.
pub(crate) struct Parts {
    pub incidents: BTreeMap<IncidentId, Box<Incident>>,
    pub by_dedup: HashMap<String, IncidentId>,
    pub by_request: HashMap<String, IncidentId>,
}

/// A projection's parts, borrowed.
pub(crate) struct PartsRef<'a> {
    pub incidents: &'a BTreeMap<IncidentId, Box<Incident>>,
    pub by_dedup: &'a HashMap<String, IncidentId>,
    pub by_request: &'a HashMap<String, IncidentId>,
}

impl Projection {
    pub(crate) fn parts(&self) -> PartsRef<'_> {
        PartsRef {
            incidents: &self.incidents,
            by_dedup: &self.by_dedup,
            by_request: &self.by_request,
        }
    }

    pub(crate) fn from_parts(parts: Parts) -> Self {
        Projection {
            incidents: parts.incidents,
            by_dedup: parts.by_dedup,
            by_request: parts.by_request,
        }
    }

    /// Events folded in: every event adds one to its incident's version, and every record of
    /// intake's log is one incident event, so after folding records 1..=n this is n.
    pub fn events_folded(&self) -> u64 {
        self.incidents.values().map(|i| i.version).sum()
    }

    pub fn get(&self, id: &IncidentId) -> Option<&Incident> {
        self.incidents.get(id).map(|b| &**b)
    }

    pub fn len(&self) -> usize {
        self.incidents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
    }

    /// The active incident holding this dedup key.
    pub fn active_by_dedup(&self, key: &str) -> Option<&IncidentId> {
        self.by_dedup.get(key)
    }

    pub fn by_request(&self, request_id: &str) -> Option<&IncidentId> {
        self.by_request.get(request_id)
    }

    /// Folds one event in and returns the incident after it; the state is unchanged when the
    /// event does not fit.
    pub fn apply(&mut self, event: &IncidentEvent) -> Result<&Incident, HistoryError> {
        self.fold_in(event)?;
        self.get(&event.incident_id)
            .ok_or_else(|| HistoryError::NotOpened {
                id: event.incident_id.to_string(),
                event_type: incident_domain::stored::type_name(&event.kind),
            })
    }

    /// Folds one event in: an incident's later events are folded where it lies, so nothing is
    /// moved or allocated for it; the state is unchanged when the event does not fit.
    pub fn fold_in(&mut self, event: &IncidentEvent) -> Result<(), HistoryError> {
        let Projection {
            incidents,
            by_dedup,
            by_request,
        } = self;
        match incidents.get_mut(&event.incident_id) {
            Some(inc) => {
                evolve_in_place(inc, event)?;
                index(by_dedup, by_request, inc, &event.kind);
            }
            None => {
                let opened = evolve(None, event)?;
                index(by_dedup, by_request, &opened, &event.kind);
                incidents.insert(opened.id.clone(), Box::new(opened));
            }
        }
        Ok(())
    }

    /// Newest first, after `before` (exclusive) when paging.
    pub fn list(
        &self,
        filter: &Filter,
        before: Option<&IncidentId>,
        limit: usize,
    ) -> (Vec<Incident>, Option<IncidentId>) {
        let range: Box<dyn DoubleEndedIterator<Item = (&IncidentId, &Box<Incident>)>> = match before
        {
            Some(b) => Box::new(self.incidents.range(..b.clone())),
            None => Box::new(self.incidents.iter()),
        };
        let mut out = Vec::new();
        let mut next = None;
        for (_, inc) in range.rev().filter(|(_, i)| filter.matches(i)) {
            if out.len() == limit {
                next = out.last().map(|i: &Incident| i.id.clone());
                break;
            }
            out.push(Incident::clone(inc));
        }
        (out, next)
    }

    pub fn count_by_status(&self) -> BTreeMap<&'static str, u64> {
        let mut counts: BTreeMap<&'static str, u64> =
            Status::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for inc in self.incidents.values() {
            *counts.entry(inc.status.as_str()).or_default() += 1;
        }
        counts
    }
}

/// Keeps the dedup and request indexes up to date with an incident after `kind` was folded in.
fn index(
    by_dedup: &mut HashMap<String, IncidentId>,
    by_request: &mut HashMap<String, IncidentId>,
    inc: &Incident,
    kind: &EventKind,
) {
    if let EventKind::Opened {
        request_id: Some(r),
        ..
    }
    | EventKind::DuplicateReceived {
        request_id: Some(r),
        ..
    } = kind
    {
        by_request.insert(r.clone(), inc.id.clone());
    }
    if let Some(key) = &inc.dedup_key {
        if inc.status.is_active() {
            if by_dedup.get(key) != Some(&inc.id) {
                by_dedup.insert(key.clone(), inc.id.clone());
            }
        } else if by_dedup.get(key) == Some(&inc.id) {
            by_dedup.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use incident_domain::testing::{ev, opened};
    use incident_domain::{Impact, Source, Urgency};

    fn with_keys() -> IncidentEvent {
        let mut open = opened(Impact::High, Urgency::Low);
        if let EventKind::Opened {
            dedup_key,
            request_id,
            ..
        } = &mut open.kind
        {
            *dedup_key = Some("disk-full".into());
            *request_id = Some("req-1".into());
        }
        open
    }

    fn history() -> Vec<IncidentEvent> {
        vec![
            with_keys(),
            ev(1, EventKind::Acknowledged),
            ev(
                2,
                EventKind::Assigned {
                    group: "dba".into(),
                    assignee: Some("bob".into()),
                },
            ),
            ev(3, EventKind::WorkStarted),
            ev(
                4,
                EventKind::PutOnHold {
                    reason: "vendor".into(),
                },
            ),
            ev(5, EventKind::Resumed),
            ev(6, EventKind::Commented { text: "x".into() }),
            ev(
                7,
                EventKind::PriorityChanged {
                    from: Priority::P2,
                    to: Priority::P1,
                    impact: Impact::High,
                    urgency: Urgency::High,
                    reason: "worse".into(),
                },
            ),
            ev(
                8,
                EventKind::DuplicateReceived {
                    source: Source {
                        kind: "nats".into(),
                        key: "disk-full".into(),
                    },
                    request_id: Some("req-2".into()),
                },
            ),
            ev(9, EventKind::Resolved { note: None }),
            ev(
                10,
                EventKind::Reopened {
                    reason: "again".into(),
                    status: Status::InProgress,
                },
            ),
            ev(11, EventKind::Resolved { note: None }),
            ev(12, EventKind::Closed),
        ]
    }

    #[test]
    fn folding_in_place_gives_the_domain_fold_and_keeps_the_indexes() {
        let history = history();
        let mut p = Projection::default();
        for (n, e) in history.iter().enumerate() {
            let after = p.apply(e).unwrap().clone();
            let expected = incident_domain::fold(&history[..=n]).unwrap().unwrap();
            assert_eq!(after, expected, "after event {n}");
            let by_key = p.active_by_dedup("disk-full").cloned();
            assert_eq!(
                by_key.is_some(),
                expected.status.is_active(),
                "the dedup key names the incident while it is active (after event {n})"
            );
        }
        assert_eq!(p.len(), 1);
        assert_eq!(p.events_folded(), history.len() as u64);
        for r in ["req-1", "req-2"] {
            assert_eq!(p.by_request(r), Some(&history[0].incident_id), "{r}");
        }
    }

    #[test]
    fn an_event_that_does_not_fit_leaves_the_state_as_it_was() {
        let mut p = Projection::default();
        assert!(matches!(
            p.fold_in(&ev(1, EventKind::Acknowledged)),
            Err(HistoryError::NotOpened { .. })
        ));
        assert!(p.is_empty(), "nothing is kept of an event before the open");
        p.fold_in(&with_keys()).unwrap();
        p.fold_in(&ev(1, EventKind::Acknowledged)).unwrap();
        let before = p.get(&with_keys().incident_id).cloned();
        assert!(matches!(
            p.fold_in(&with_keys()),
            Err(HistoryError::OpenedTwice { .. })
        ));
        assert_eq!(p.get(&with_keys().incident_id).cloned(), before);
        assert_eq!(p.events_folded(), 2);
    }
}

//! Intake's in-memory state, rebuilt by folding its event log: every incident, plus the indexes
//! that deduplicate opens (active incidents by dedup key, incidents by request id).

use std::collections::{BTreeMap, HashMap};

use incident_domain::{
    EventKind, HistoryError, Incident, IncidentEvent, IncidentId, Priority, Status, evolve,
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

    /// Folds one event in and returns the incident after it.
    pub fn apply(&mut self, event: &IncidentEvent) -> Result<&Incident, HistoryError> {
        let before = self.incidents.remove(&event.incident_id).map(|b| *b);
        let after = evolve(before, event)?;
        self.index(&after, &event.kind);
        Ok(self
            .incidents
            .entry(after.id.clone())
            .or_insert(Box::new(after)))
    }

    /// Replaces an incident's state as a whole (after a batch decided on a copy).
    pub fn put(&mut self, inc: Incident, kinds: &[&EventKind]) {
        for kind in kinds {
            self.index(&inc, kind);
        }
        self.incidents.insert(inc.id.clone(), Box::new(inc));
    }

    fn index(&mut self, inc: &Incident, kind: &EventKind) {
        if let EventKind::Opened {
            request_id: Some(r),
            ..
        }
        | EventKind::DuplicateReceived {
            request_id: Some(r),
            ..
        } = kind
        {
            self.by_request.insert(r.clone(), inc.id.clone());
        }
        if let Some(key) = &inc.dedup_key {
            if inc.status.is_active() {
                self.by_dedup.insert(key.clone(), inc.id.clone());
            } else if self.by_dedup.get(key) == Some(&inc.id) {
                self.by_dedup.remove(key);
            }
        }
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

//! A small given/when/then harness for decisions, with no I/O:
//! `given(history).when(command).then(expected_events)` or `.then_err(..)`.

use jiff::Timestamp;

use crate::{
    Action, Command, DomainError, EventKind, Impact, Incident, IncidentEvent, IncidentId,
    OpenIncident, PriorityMatrix, Source, Urgency, decide, fold,
};

/// A fixed instant for tests: 2026-12-01T09:00:00Z plus `minutes`.
pub fn t(minutes: i64) -> Timestamp {
    let base: Timestamp = "2026-12-01T09:00:00Z"
        .parse()
        .unwrap_or(Timestamp::UNIX_EPOCH);
    base + jiff::SignedDuration::from_mins(minutes)
}

pub fn test_id() -> IncidentId {
    IncidentId::parse("INC-TEST").unwrap_or_else(|_| IncidentId::from_uuid_bytes([0; 16]))
}

/// An open command for a test incident.
pub fn open_cmd(impact: Impact, urgency: Urgency) -> Action {
    Action::Open(OpenIncident {
        title: "Checkout fails".into(),
        description: "Customers see HTTP 500".into(),
        service: "payments".into(),
        group: "payments-oncall".into(),
        impact,
        urgency,
        dedup_key: None,
        request_id: None,
        source: Source::person(),
    })
}

/// The event a test incident was opened with, at `t(0)`.
pub fn opened(impact: Impact, urgency: Urgency) -> IncidentEvent {
    let cmd = Command::new(test_id(), t(0), "alice", open_cmd(impact, urgency));
    let mut events = decide(None, &cmd, &PriorityMatrix::default()).unwrap_or_default();
    events.remove(0)
}

/// An event on the test incident.
pub fn ev(minutes: i64, kind: EventKind) -> IncidentEvent {
    IncidentEvent {
        incident_id: test_id(),
        at: t(minutes),
        actor: "alice".into(),
        kind,
    }
}

pub struct Given {
    history: Vec<IncidentEvent>,
    matrix: PriorityMatrix,
}

pub fn given(history: impl IntoIterator<Item = IncidentEvent>) -> Given {
    Given {
        history: history.into_iter().collect(),
        matrix: PriorityMatrix::default(),
    }
}

pub struct When {
    before: Option<Incident>,
    result: Result<Vec<IncidentEvent>, DomainError>,
}

impl Given {
    pub fn with_matrix(mut self, matrix: PriorityMatrix) -> Self {
        self.matrix = matrix;
        self
    }

    /// Decides `action` by `alice` at `t(minutes)` on the test incident.
    pub fn when(self, minutes: i64, action: Action) -> When {
        let before = fold(&self.history).expect("the given history folds");
        let cmd = Command::new(test_id(), t(minutes), "alice", action);
        let result = decide(before.as_ref(), &cmd, &self.matrix);
        When { before, result }
    }
}

impl When {
    /// Asserts the decided events' kinds and returns the state after them.
    #[track_caller]
    pub fn then(self, expected: &[EventKind]) -> Incident {
        let events = match self.result {
            Ok(events) => events,
            Err(e) => panic!("expected events {expected:?}, got error {e}"),
        };
        let kinds: Vec<&EventKind> = events.iter().map(|e| &e.kind).collect();
        let expected: Vec<&EventKind> = expected.iter().collect();
        assert_eq!(kinds, expected);
        let mut state = self.before;
        for e in &events {
            state = Some(crate::evolve(state, e).expect("decided events fold"));
        }
        state.expect("an incident after the events")
    }

    /// Asserts the command was accepted and returns the state after its events, whatever they were.
    #[track_caller]
    pub fn then_state(self) -> Incident {
        let events = match self.result {
            Ok(events) => events,
            Err(e) => panic!("expected the command to be accepted, got error {e}"),
        };
        let mut state = self.before;
        for e in &events {
            state = Some(crate::evolve(state, e).expect("decided events fold"));
        }
        state.expect("an incident after the events")
    }

    /// Asserts the command was refused and returns the error.
    #[track_caller]
    pub fn then_err(self) -> DomainError {
        match self.result {
            Ok(events) => panic!("expected a refusal, got {events:?}"),
            Err(e) => e,
        }
    }
}

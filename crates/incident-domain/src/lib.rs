//! The incident domain, pure: commands, the decisions they lead to, the events that record
//! them, the lifecycle, the impact x urgency priority matrix, and the CloudEvents envelope the
//! events are stored and published in.
//!
//! Nothing here reads a clock, draws a random number or does I/O: the time of a command and
//! the ids it needs arrive inside it, so every decision can be replayed.
//!
//! ```
//! use incident_domain::*;
//! let matrix = PriorityMatrix::default();
//! let id = IncidentId::parse("INC-1").unwrap();
//! let at: jiff::Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
//! let open = Command::new(id.clone(), at, "alice", Action::Open(OpenIncident {
//!     title: "Checkout is down".into(),
//!     description: String::new(),
//!     service: "payments".into(),
//!     group: "payments-oncall".into(),
//!     impact: Impact::High,
//!     urgency: Urgency::High,
//!     dedup_key: None,
//!     request_id: None,
//!     source: Source::person(),
//! }));
//! let events = decide(None, &open, &matrix).unwrap();
//! let incident = fold(&events).unwrap().unwrap();
//! assert_eq!(incident.priority, Priority::P1);
//! assert_eq!(incident.status, Status::Open);
//! ```

mod command;
mod decide;
pub mod envelope;
mod error;
mod event;
mod id;
mod incident;
mod priority;
pub mod stored;
pub mod testing;

pub use command::{Action, Command, OpenIncident};
pub use decide::decide;
pub use envelope::{Envelope, EnvelopeError};
pub use error::{DomainError, HistoryError};
pub use event::{EventKind, IncidentEvent};
pub use id::IncidentId;
pub use incident::{Comment, Incident, Source, Status, evolve, evolve_in_place, fold};
pub use priority::{Impact, MatrixError, Priority, PriorityMatrix, Urgency};

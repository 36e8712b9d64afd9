//! `incident-audit`: what auditors and managers use to check the history.
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`record`] | [`AuditRecord`]: one record of one service's log, with its envelope | none |
//! | [`export`] | the JSON-lines export format (docs/audit.md), writing and reading it | none |
//! | [`verify`] | client-side recomputation of every service's hash chain | none |
//! | [`slalog`] | the SLA log read back: policy versions, bindings, clocks at an instant | none |
//! | [`timeline`] | one incident across the services, and its state at any instant | none |
//! | [`sim`] | the what-if simulation of recorded incidents or a synthetic load, its report | none |
//! | [`rng`] | a small deterministic PRNG for scenario mode | none |
//! | [`server`] | the gRPC `AuditService` a service serves over its log | tonic |
//! | [`client`] | reading the `AuditService` of the running services | tonic |
//!
//! A service adds the audit API with one line:
//! `.add_service(incident_audit::service(log.clone(), "incident-intake"))`.

pub mod client;
pub mod export;
pub mod record;
pub mod rng;
pub mod server;
pub mod sim;
pub mod slalog;
pub mod timeline;
pub mod verify;

pub use record::{AuditRecord, INTAKE, NOTIFIER, SERVICES, SLA};
pub use server::{AuditApi, service};
pub use verify::{ChainReport, Problem};

//! Carries out what another system asked for (a parsed [`sources::Request`]): a trigger opens an
//! incident or adds to the active one with the same dedup key; acknowledge and resolve act on
//! the active incident holding the key. Repeats are harmless: acting on an incident already in
//! the asked-for state is reported, not refused.

use std::sync::{Arc, RwLock};

use incident_domain::{Action, DomainError, Incident, IncidentId};

use crate::error::ServiceError;
use crate::processor::{Handle, Intent};
use crate::projection::Projection;
use crate::sources::Request;

#[derive(Debug, Clone)]
pub enum Ingested {
    Opened(Incident),
    /// Added to (or already recorded on) an active incident.
    Added(Incident),
    Acted(Incident),
    /// The incident was already acknowledged or resolved.
    AlreadyDone(Incident),
    /// No active incident holds the dedup key.
    NoIncident,
}

impl Ingested {
    pub fn incident_id(&self) -> Option<&IncidentId> {
        match self {
            Ingested::Opened(i)
            | Ingested::Added(i)
            | Ingested::Acted(i)
            | Ingested::AlreadyDone(i) => Some(&i.id),
            Ingested::NoIncident => None,
        }
    }
}

pub async fn ingest(
    handle: &Handle,
    state: &Arc<RwLock<Projection>>,
    req: Request,
    actor: &str,
) -> Result<Ingested, ServiceError> {
    let (key, action, command) = match req {
        Request::Trigger(open) => {
            let id = IncidentId::from_uuid_bytes(*uuid::Uuid::now_v7().as_bytes());
            let out = handle
                .submit(Intent::Open { id, open }, actor, "open")
                .await?;
            return Ok(if out.deduplicated {
                Ingested::Added(out.incident)
            } else {
                Ingested::Opened(out.incident)
            });
        }
        Request::Acknowledge { dedup_key, .. } => (dedup_key, Action::Acknowledge, "acknowledge"),
        Request::Resolve {
            dedup_key, note, ..
        } => (dedup_key, Action::Resolve { note }, "resolve"),
    };
    match handle
        .submit(Intent::ActOnDedupKey { key, action }, actor, command)
        .await
    {
        Ok(out) => Ok(Ingested::Acted(out.incident)),
        Err(ServiceError::Rejected(DomainError::NotFound(_))) => Ok(Ingested::NoIncident),
        Err(ServiceError::Rejected(DomainError::IllegalTransition { id, .. })) => {
            let current = IncidentId::parse(&id)
                .ok()
                .and_then(|id| state.read().ok().and_then(|s| s.get(&id).cloned()));
            Ok(current.map_or(Ingested::NoIncident, Ingested::AlreadyDone))
        }
        Err(e) => Err(e),
    }
}

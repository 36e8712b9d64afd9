//! The `incident.v1.IntakeService` gRPC API: each command goes through the processor; queries
//! read the projection. Errors become status codes only through `ServiceError`.

use std::pin::Pin;
use std::sync::{Arc, RwLock};

use futures::Stream;
use incident_domain::{Action, DomainError, IncidentId, OpenIncident, Source};
use incident_proto::v1 as pb;
use incident_proto::v1::intake_service_server::IntakeService;
use tokio::sync::{broadcast, watch};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::ServiceError;
use crate::processor::{Change, Handle, Intent};
use crate::projection::{Filter, Projection};

pub struct IntakeApi {
    handle: Handle,
    state: Arc<RwLock<Projection>>,
    changes: broadcast::Sender<Change>,
    /// Turns true when intake starts stopping: watch streams then end, so they do not hold the
    /// server's graceful shutdown up.
    stopping: watch::Receiver<bool>,
}

impl IntakeApi {
    pub fn new(
        handle: Handle,
        state: Arc<RwLock<Projection>>,
        changes: broadcast::Sender<Change>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            handle,
            state,
            changes,
            stopping,
        }
    }

    async fn act(
        &self,
        id: &str,
        actor: &str,
        command: &'static str,
        action: impl FnOnce() -> Result<Action, DomainError>,
    ) -> Result<Response<pb::Incident>, Status> {
        let id = convert::id(id).map_err(ServiceError::from)?;
        let action = action().map_err(ServiceError::from)?;
        let outcome = self
            .handle
            .submit(Intent::Act { id, action }, actor, command)
            .await?;
        Ok(Response::new(convert::incident(&outcome.incident)))
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Projection>, Status> {
        self.state
            .read()
            .map_err(|_| ServiceError::Internal("state lock poisoned".into()).into())
    }
}

fn filter(
    statuses: &[i32],
    priorities: &[i32],
    service: &str,
    group: &str,
) -> Result<Filter, ServiceError> {
    let statuses = statuses
        .iter()
        .map(|s| convert::status(*s, "statuses"))
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()?;
    let priorities = priorities
        .iter()
        .map(|p| convert::priority(*p, "priorities"))
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()?;
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    Ok(Filter {
        statuses,
        priorities,
        service: some(service),
        group: some(group),
    })
}

fn opt(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::IncidentChange, Status>> + Send>>;

#[tonic::async_trait]
impl IntakeService for IntakeApi {
    async fn open_incident(
        &self,
        request: Request<pb::OpenIncidentRequest>,
    ) -> Result<Response<pb::OpenIncidentResponse>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        let open = (|| -> Result<OpenIncident, DomainError> {
            Ok(OpenIncident {
                title: r.title.clone(),
                description: r.description.clone(),
                service: r.service.clone(),
                group: r.group.clone(),
                impact: convert::required(convert::impact(r.impact, "impact"), "impact")?,
                urgency: convert::required(convert::urgency(r.urgency, "urgency"), "urgency")?,
                dedup_key: opt(&r.dedup_key),
                request_id: opt(&r.request_id),
                source: Source {
                    kind: "person".into(),
                    key: r.dedup_key.clone(),
                },
            })
        })()
        .map_err(ServiceError::from)?;
        let id = IncidentId::from_uuid_bytes(*uuid::Uuid::now_v7().as_bytes());
        let outcome = self
            .handle
            .submit(Intent::Open { id, open }, &actor, "open")
            .await?;
        Ok(Response::new(pb::OpenIncidentResponse {
            incident: Some(convert::incident(&outcome.incident)),
            deduplicated: outcome.deduplicated,
        }))
    }

    async fn acknowledge_incident(
        &self,
        request: Request<pb::AcknowledgeIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        self.act(&r.id, &actor, "acknowledge", || Ok(Action::Acknowledge))
            .await
    }

    async fn assign_incident(
        &self,
        request: Request<pb::AssignIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        self.act(&r.id, &actor, "assign", || {
            Ok(Action::Assign {
                group: r.group.clone(),
                assignee: opt(&r.assignee),
            })
        })
        .await
    }

    async fn start_work(
        &self,
        request: Request<pb::StartWorkRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        self.act(&r.id, &actor, "start", || Ok(Action::StartWork))
            .await
    }

    async fn put_on_hold(
        &self,
        request: Request<pb::PutOnHoldRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        self.act(&r.id, &actor, "hold", || {
            Ok(Action::PutOnHold {
                reason: r.reason.clone(),
            })
        })
        .await
    }

    async fn resume_incident(
        &self,
        request: Request<pb::ResumeIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        self.act(&r.id, &actor, "resume", || Ok(Action::Resume))
            .await
    }

    async fn resolve_incident(
        &self,
        request: Request<pb::ResolveIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        self.act(&r.id, &actor, "resolve", || {
            Ok(Action::Resolve { note: opt(&r.note) })
        })
        .await
    }

    async fn close_incident(
        &self,
        request: Request<pb::CloseIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        self.act(&r.id, &actor, "close", || Ok(Action::Close)).await
    }

    async fn reopen_incident(
        &self,
        request: Request<pb::ReopenIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        self.act(&r.id, &actor, "reopen", || {
            Ok(Action::Reopen {
                reason: r.reason.clone(),
            })
        })
        .await
    }

    async fn comment_incident(
        &self,
        request: Request<pb::CommentIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        self.act(&r.id, &actor, "comment", || {
            Ok(Action::Comment {
                text: r.text.clone(),
            })
        })
        .await
    }

    async fn change_priority(
        &self,
        request: Request<pb::ChangePriorityRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let actor = incident_runtime::auth::actor(&request, &request.get_ref().actor);
        let r = request.into_inner();
        self.act(&r.id, &actor, "change_priority", || {
            Ok(Action::ChangePriority {
                impact: convert::impact(r.impact, "impact")?,
                urgency: convert::urgency(r.urgency, "urgency")?,
                priority: convert::priority(r.priority, "priority")?,
                reason: r.reason.clone(),
            })
        })
        .await
    }

    async fn get_incident(
        &self,
        request: Request<pb::GetIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let id = convert::id(&request.get_ref().id).map_err(ServiceError::from)?;
        let state = self.read()?;
        let inc = state
            .get(&id)
            .ok_or_else(|| ServiceError::from(DomainError::NotFound(id.to_string())))?;
        Ok(Response::new(convert::incident(inc)))
    }

    async fn list_incidents(
        &self,
        request: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        let r = request.into_inner();
        let f = filter(&r.statuses, &r.priorities, &r.service, &r.group)?;
        let limit = match r.page_size {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let before = match r.page_token.trim() {
            "" => None,
            t => Some(
                IncidentId::parse(t)
                    .map_err(|_| DomainError::invalid("page_token", "not a token from a list"))
                    .map_err(ServiceError::from)?,
            ),
        };
        let state = self.read()?;
        let (incidents, next) = state.list(&f, before.as_ref(), limit);
        Ok(Response::new(pb::ListIncidentsResponse {
            incidents: incidents.iter().map(convert::incident).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    type WatchIncidentsStream = WatchStream;

    async fn watch_incidents(
        &self,
        request: Request<pb::WatchIncidentsRequest>,
    ) -> Result<Response<Self::WatchIncidentsStream>, Status> {
        let r = request.into_inner();
        let f = filter(&r.statuses, &r.priorities, &r.service, &r.group)?;
        let mut rx = self.changes.subscribe();
        let stopping = self.stopping.clone();
        let stream = async_stream(move |tx| async move {
            let stopped = stopped(stopping);
            tokio::pin!(stopped);
            loop {
                let next = tokio::select! {
                    next = rx.recv() => next,
                    () = &mut stopped => {
                        let _ = tx
                            .send(Err(Status::unavailable(
                                "intake is stopping; watch again once it is back",
                            )))
                            .await;
                        return;
                    }
                };
                match next {
                    Ok(change) => {
                        if !f.matches(&change.incident) {
                            continue;
                        }
                        let msg = pb::IncidentChange {
                            event_type: change.event_type.to_owned(),
                            event_id: change.event_id,
                            incident: Some(convert::incident(&change.incident)),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::aborted(format!(
                                "this watcher fell {n} changes behind; list and watch again"
                            ))))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// Completes once intake is stopping (or has stopped).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    loop {
        if *stopping.borrow_and_update() || stopping.changed().await.is_err() {
            return;
        }
    }
}

/// A stream fed by a task, ending when the task ends or the client goes away.
fn async_stream<F, Fut>(body: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::IncidentChange, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

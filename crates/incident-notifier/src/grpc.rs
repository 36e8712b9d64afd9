//! The `incident.v1.NotificationService` gRPC API: reads of the state folded from the log.
//! Errors become status codes only through `ServiceError`.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use incident_proto::v1 as pb;
use incident_proto::v1::notification_service_server::NotificationService;
use jiff::Timestamp;
use tonic::{Request, Response, Status};

use crate::error::ServiceError;
use crate::events::Trigger;
use crate::state::{Notification, NotificationStatus, Page, State};

pub struct NotifierApi {
    state: Arc<RwLock<State>>,
}

impl NotifierApi {
    pub fn new(state: Arc<RwLock<State>>) -> Self {
        Self { state }
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, State>, ServiceError> {
        self.state
            .read()
            .map_err(|_| ServiceError::Internal("state lock poisoned".into()))
    }
}

fn ts(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

fn status_pb(s: NotificationStatus) -> pb::NotificationStatus {
    match s {
        NotificationStatus::Queued => pb::NotificationStatus::Queued,
        NotificationStatus::Delivered => pb::NotificationStatus::Delivered,
        NotificationStatus::Failed => pb::NotificationStatus::Failed,
        NotificationStatus::Suppressed => pb::NotificationStatus::Suppressed,
    }
}

fn status_of(v: i32) -> Result<Option<NotificationStatus>, ServiceError> {
    let s = pb::NotificationStatus::try_from(v).map_err(|_| ServiceError::InvalidArgument {
        field: "statuses",
        reason: format!("{v} is not a notification status"),
    })?;
    Ok(match s {
        pb::NotificationStatus::Unspecified => None,
        pb::NotificationStatus::Queued => Some(NotificationStatus::Queued),
        pb::NotificationStatus::Delivered => Some(NotificationStatus::Delivered),
        pb::NotificationStatus::Failed => Some(NotificationStatus::Failed),
        pb::NotificationStatus::Suppressed => Some(NotificationStatus::Suppressed),
    })
}

fn trigger(t: &Trigger) -> pb::NotificationTrigger {
    pb::NotificationTrigger {
        event_id: t.event_id.clone(),
        r#type: t.ty.clone(),
    }
}

pub fn notification(n: &Notification) -> pb::Notification {
    pb::Notification {
        id: n.id.clone(),
        incident_id: n.incident_id.clone(),
        trigger: Some(trigger(&n.trigger)),
        route: n.route.clone(),
        channel: n.channel.clone(),
        channel_kind: n.kind.clone(),
        reason: n.reason.clone(),
        attempts: n.attempts,
        status: status_pb(n.status) as i32,
        last_error: n.last_error.clone().unwrap_or_default(),
        response: n.response.clone().unwrap_or_default(),
        queued_at: Some(ts(n.queued_at)),
        next_attempt_at: n.next_attempt_at.map(ts),
        finished_at: n.finished_at.map(ts),
        page: n.page.as_ref().map(|p| pb::PageStep {
            page_id: p.page_id.clone(),
            oncall: p.oncall.clone(),
            tier: p.tier,
            round: p.round,
        }),
        silence: n.silence.clone().unwrap_or_default(),
    }
}

pub fn page(p: &Page) -> pb::Page {
    pb::Page {
        id: p.id.clone(),
        incident_id: p.incident_id.clone(),
        oncall: p.oncall.clone(),
        route: p.route.clone(),
        trigger: Some(trigger(&p.trigger)),
        tier: p.tier,
        round: p.round,
        active: p.active,
        ack_deadline: Some(ts(p.ack_deadline)),
        stop_reason: p.stop_reason.clone().unwrap_or_default(),
        started_at: Some(ts(p.started_at)),
        updated_at: Some(ts(p.updated_at)),
    }
}

#[tonic::async_trait]
impl NotificationService for NotifierApi {
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let req = request.into_inner();
        let statuses = req
            .statuses
            .iter()
            .map(|s| status_of(*s))
            .filter_map(Result::transpose)
            .collect::<Result<Vec<_>, _>>()?;
        let incident = req.incident_id.trim();
        let state = self.read()?;
        let mut list: Vec<pb::Notification> = state
            .notifications((!incident.is_empty()).then_some(incident))
            .into_iter()
            .filter(|n| statuses.is_empty() || statuses.contains(&n.status))
            .map(notification)
            .collect();
        if req.limit > 0 && list.len() > req.limit as usize {
            list.drain(..list.len() - req.limit as usize);
        }
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: list,
        }))
    }

    async fn get_notification(
        &self,
        request: Request<pb::GetNotificationRequest>,
    ) -> Result<Response<pb::Notification>, Status> {
        let id = request.into_inner().id;
        if id.trim().is_empty() {
            return Err(ServiceError::InvalidArgument {
                field: "id",
                reason: "must not be empty".into(),
            }
            .into());
        }
        let state = self.read()?;
        let n = state
            .notification(id.trim())
            .ok_or_else(|| ServiceError::NotFound(format!("notification {id}")))?;
        Ok(Response::new(notification(n)))
    }

    async fn list_pages(
        &self,
        request: Request<pb::ListPagesRequest>,
    ) -> Result<Response<pb::ListPagesResponse>, Status> {
        let req = request.into_inner();
        let incident = req.incident_id.trim();
        let state = self.read()?;
        let pages = state
            .pages((!incident.is_empty()).then_some(incident))
            .into_iter()
            .filter(|p| !req.active_only || p.active)
            .map(page)
            .collect();
        Ok(Response::new(pb::ListPagesResponse { pages }))
    }
}

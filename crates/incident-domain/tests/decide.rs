//! Given/when/then tests for every command branch of `decide`.

use incident_domain::testing::{ev, given, open_cmd, opened, t};
use incident_domain::*;

use EventKind as E;
use Impact as I;
use Urgency as U;

fn p1() -> IncidentEvent {
    opened(I::High, U::High)
}

fn history(kinds: &[EventKind]) -> Vec<IncidentEvent> {
    let mut h = vec![p1()];
    h.extend(
        kinds
            .iter()
            .enumerate()
            .map(|(i, k)| ev(i as i64 + 1, k.clone())),
    );
    h
}

fn status_histories() -> Vec<(Status, Vec<IncidentEvent>)> {
    vec![
        (Status::Open, history(&[])),
        (Status::Acknowledged, history(&[E::Acknowledged])),
        (
            Status::InProgress,
            history(&[E::Acknowledged, E::WorkStarted]),
        ),
        (
            Status::OnHold,
            history(&[
                E::Acknowledged,
                E::WorkStarted,
                E::PutOnHold {
                    reason: "vendor".into(),
                },
            ]),
        ),
        (Status::Resolved, history(&[E::Resolved { note: None }])),
        (
            Status::Closed,
            history(&[E::Resolved { note: None }, E::Closed]),
        ),
    ]
}

/// Runs `action` from every status; expects success exactly from `allowed`.
fn only_from(action: Action, allowed: &[Status]) {
    for (status, h) in status_histories() {
        let when = given(h).when(100, action.clone());
        if allowed.contains(&status) {
            let _ = when.then_state();
        } else {
            let err = when.then_err();
            assert!(
                matches!(err, DomainError::IllegalTransition { status: s, .. } if s == status.as_str()),
                "{action:?} from {status}: {err}"
            );
        }
    }
}

#[test]
fn open_prioritises_by_the_matrix() {
    let inc = given([])
        .when(0, open_cmd(I::High, U::High))
        .then(&[E::Opened {
            title: "Checkout fails".into(),
            description: "Customers see HTTP 500".into(),
            service: "payments".into(),
            group: "payments-oncall".into(),
            impact: I::High,
            urgency: U::High,
            priority: Priority::P1,
            dedup_key: None,
            request_id: None,
            source: Source::person(),
        }]);
    assert_eq!(inc.status, Status::Open);
    assert_eq!(inc.priority, Priority::P1);
    assert_eq!(inc.opened_at, t(0));
    assert_eq!(inc.version, 1);

    let inc = given([])
        .when(0, open_cmd(I::Medium, U::Medium))
        .then_state();
    assert_eq!(inc.priority, Priority::P3);
}

#[test]
fn open_uses_an_overridden_matrix() {
    let mut m = PriorityMatrix::default();
    m.set(I::Medium, U::Medium, Priority::P2);
    let inc = given([])
        .with_matrix(m)
        .when(0, open_cmd(I::Medium, U::Medium))
        .then_state();
    assert_eq!(inc.priority, Priority::P2);
}

#[test]
fn open_names_the_bad_field() {
    let mut cases: Vec<(&str, OpenIncident)> = Vec::new();
    let Action::Open(base) = open_cmd(I::Low, U::Low) else {
        unreachable!()
    };
    cases.push((
        "title",
        OpenIncident {
            title: "   ".into(),
            ..base.clone()
        },
    ));
    cases.push((
        "title",
        OpenIncident {
            title: "x".repeat(1025),
            ..base.clone()
        },
    ));
    cases.push((
        "service",
        OpenIncident {
            service: String::new(),
            ..base.clone()
        },
    ));
    cases.push((
        "group",
        OpenIncident {
            group: "g".repeat(129),
            ..base.clone()
        },
    ));
    cases.push((
        "dedup_key",
        OpenIncident {
            dedup_key: Some("k".repeat(256)),
            ..base.clone()
        },
    ));
    cases.push((
        "title",
        OpenIncident {
            title: "bell\u{7}".into(),
            ..base.clone()
        },
    ));
    cases.push((
        "source.kind",
        OpenIncident {
            source: Source {
                kind: String::new(),
                key: String::new(),
            },
            ..base.clone()
        },
    ));
    for (field, open) in cases {
        let err = given([]).when(0, Action::Open(open)).then_err();
        assert!(
            matches!(&err, DomainError::InvalidField { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }
}

#[test]
fn open_twice_is_refused() {
    let err = given([p1()]).when(1, open_cmd(I::High, U::High)).then_err();
    assert!(matches!(err, DomainError::AlreadyExists(_)));
}

#[test]
fn commands_on_a_missing_incident_are_not_found() {
    for action in [
        Action::Acknowledge,
        Action::Close,
        Action::Comment { text: "x".into() },
    ] {
        let err = given([]).when(1, action).then_err();
        assert!(matches!(err, DomainError::NotFound(_)));
    }
}

#[test]
fn acknowledge_only_an_open_incident() {
    let inc = given([p1()])
        .when(5, Action::Acknowledge)
        .then(&[E::Acknowledged]);
    assert_eq!(inc.status, Status::Acknowledged);
    assert_eq!(inc.acknowledged_at, Some(t(5)));
    only_from(Action::Acknowledge, &[Status::Open]);
}

#[test]
fn ack_of_a_resolved_incident_is_refused_with_its_status() {
    let err = given(history(&[E::Resolved { note: None }]))
        .when(9, Action::Acknowledge)
        .then_err();
    assert_eq!(
        err.to_string(),
        "cannot acknowledge incident INC-TEST: it is resolved"
    );
}

#[test]
fn start_work_acknowledges_an_open_incident_too() {
    let inc = given([p1()])
        .when(3, Action::StartWork)
        .then(&[E::Acknowledged, E::WorkStarted]);
    assert_eq!(inc.status, Status::InProgress);
    assert_eq!(inc.acknowledged_at, Some(t(3)));
    given(history(&[E::Acknowledged]))
        .when(3, Action::StartWork)
        .then(&[E::WorkStarted]);
    only_from(Action::StartWork, &[Status::Open, Status::Acknowledged]);
}

#[test]
fn hold_needs_a_reason_and_work_under_way() {
    let inc = given(history(&[E::Acknowledged, E::WorkStarted]))
        .when(
            10,
            Action::PutOnHold {
                reason: " waiting on vendor ".into(),
            },
        )
        .then(&[E::PutOnHold {
            reason: "waiting on vendor".into(),
        }]);
    assert_eq!(inc.status, Status::OnHold);
    assert_eq!(inc.hold_reason.as_deref(), Some("waiting on vendor"));
    let err = given(history(&[E::Acknowledged]))
        .when(10, Action::PutOnHold { reason: "".into() })
        .then_err();
    assert!(matches!(err, DomainError::InvalidField { field, .. } if field == "reason"));
    only_from(
        Action::PutOnHold { reason: "r".into() },
        &[Status::Acknowledged, Status::InProgress],
    );
}

#[test]
fn resume_only_from_hold() {
    let inc = given(history(&[
        E::Acknowledged,
        E::PutOnHold { reason: "r".into() },
    ]))
    .when(20, Action::Resume)
    .then(&[E::Resumed]);
    assert_eq!(inc.status, Status::InProgress);
    assert_eq!(inc.hold_reason, None);
    only_from(Action::Resume, &[Status::OnHold]);
}

#[test]
fn resolve_any_active_incident() {
    let inc = given(history(&[E::Acknowledged]))
        .when(
            30,
            Action::Resolve {
                note: Some("rolled back".into()),
            },
        )
        .then(&[E::Resolved {
            note: Some("rolled back".into()),
        }]);
    assert_eq!(inc.status, Status::Resolved);
    assert_eq!(inc.resolved_at, Some(t(30)));
    assert_eq!(inc.resolution_note.as_deref(), Some("rolled back"));
    only_from(
        Action::Resolve { note: None },
        &[
            Status::Open,
            Status::Acknowledged,
            Status::InProgress,
            Status::OnHold,
        ],
    );
}

#[test]
fn close_only_a_resolved_incident() {
    let inc = given(history(&[E::Resolved { note: None }]))
        .when(40, Action::Close)
        .then(&[E::Closed]);
    assert_eq!(inc.status, Status::Closed);
    assert_eq!(inc.closed_at, Some(t(40)));
    only_from(Action::Close, &[Status::Resolved]);
}

#[test]
fn reopen_returns_to_work_or_to_open() {
    let inc = given(history(&[E::Acknowledged, E::Resolved { note: None }]))
        .when(
            50,
            Action::Reopen {
                reason: "came back".into(),
            },
        )
        .then(&[E::Reopened {
            reason: "came back".into(),
            status: Status::InProgress,
        }]);
    assert_eq!(inc.status, Status::InProgress);
    assert_eq!(inc.reopen_count, 1);
    assert_eq!(inc.resolved_at, None);

    let inc = given(history(&[E::Resolved { note: None }]))
        .when(
            50,
            Action::Reopen {
                reason: "came back".into(),
            },
        )
        .then(&[E::Reopened {
            reason: "came back".into(),
            status: Status::Open,
        }]);
    assert_eq!(inc.status, Status::Open);

    let err = given(history(&[E::Resolved { note: None }]))
        .when(50, Action::Reopen { reason: " ".into() })
        .then_err();
    assert!(matches!(err, DomainError::InvalidField { field, .. } if field == "reason"));
    only_from(Action::Reopen { reason: "r".into() }, &[Status::Resolved]);
}

#[test]
fn comment_anywhere_even_closed() {
    let inc = given(history(&[E::Resolved { note: None }, E::Closed]))
        .when(
            60,
            Action::Comment {
                text: "post-mortem linked".into(),
            },
        )
        .then(&[E::Commented {
            text: "post-mortem linked".into(),
        }]);
    assert_eq!(inc.comments.len(), 1);
    assert_eq!(inc.comments[0].author, "alice");
    let err = given([p1()])
        .when(60, Action::Comment { text: "".into() })
        .then_err();
    assert!(matches!(err, DomainError::InvalidField { field, .. } if field == "text"));
}

#[test]
fn assign_changes_group_and_is_a_no_op_when_unchanged() {
    let inc = given([p1()])
        .when(
            2,
            Action::Assign {
                group: "dba".into(),
                assignee: Some("bob".into()),
            },
        )
        .then(&[E::Assigned {
            group: "dba".into(),
            assignee: Some("bob".into()),
        }]);
    assert_eq!(inc.group, "dba");
    assert_eq!(inc.assignee.as_deref(), Some("bob"));
    given([p1()])
        .when(
            2,
            Action::Assign {
                group: "payments-oncall".into(),
                assignee: None,
            },
        )
        .then(&[]);
    let err = given([p1()])
        .when(
            2,
            Action::Assign {
                group: "".into(),
                assignee: None,
            },
        )
        .then_err();
    assert!(matches!(err, DomainError::InvalidField { field, .. } if field == "group"));
    only_from(
        Action::Assign {
            group: "dba".into(),
            assignee: None,
        },
        &[
            Status::Open,
            Status::Acknowledged,
            Status::InProgress,
            Status::OnHold,
            Status::Resolved,
        ],
    );
}

#[test]
fn change_priority_by_matrix_or_explicitly() {
    let inc = given([p1()])
        .when(
            4,
            Action::ChangePriority {
                impact: Some(I::Low),
                urgency: None,
                priority: None,
                reason: "only one shop".into(),
            },
        )
        .then(&[E::PriorityChanged {
            from: Priority::P1,
            to: Priority::P3,
            impact: I::Low,
            urgency: U::High,
            reason: "only one shop".into(),
        }]);
    assert_eq!(inc.priority, Priority::P3);
    assert_eq!(inc.impact, I::Low);

    let inc = given([p1()])
        .when(
            4,
            Action::ChangePriority {
                impact: None,
                urgency: None,
                priority: Some(Priority::P2),
                reason: "manager call".into(),
            },
        )
        .then_state();
    assert_eq!(inc.priority, Priority::P2);
    assert_eq!(inc.impact, I::High);

    // the same priority, impact and urgency: nothing changes
    given([p1()])
        .when(
            4,
            Action::ChangePriority {
                impact: Some(I::High),
                urgency: None,
                priority: None,
                reason: "x".into(),
            },
        )
        .then(&[]);

    let err = given([p1()])
        .when(
            4,
            Action::ChangePriority {
                impact: None,
                urgency: None,
                priority: None,
                reason: "x".into(),
            },
        )
        .then_err();
    assert!(matches!(err, DomainError::InvalidField { field, .. } if field == "priority"));
    let err = given([p1()])
        .when(
            4,
            Action::ChangePriority {
                impact: Some(I::Low),
                urgency: None,
                priority: None,
                reason: "".into(),
            },
        )
        .then_err();
    assert!(matches!(err, DomainError::InvalidField { field, .. } if field == "reason"));
    only_from(
        Action::ChangePriority {
            impact: Some(I::Low),
            urgency: Some(U::Low),
            priority: None,
            reason: "r".into(),
        },
        &[
            Status::Open,
            Status::Acknowledged,
            Status::InProgress,
            Status::OnHold,
        ],
    );
}

#[test]
fn duplicates_add_to_an_active_incident_only() {
    let src = Source {
        kind: "pagerduty".into(),
        key: "disk-full".into(),
    };
    let inc = given([p1()])
        .when(
            7,
            Action::RecordDuplicate {
                source: src.clone(),
                request_id: Some("am-1".into()),
            },
        )
        .then(&[E::DuplicateReceived {
            source: src.clone(),
            request_id: Some("am-1".into()),
        }]);
    assert_eq!(inc.duplicate_count, 1);
    assert_eq!(inc.sources.last(), Some(&(src.clone(), t(7))));
    only_from(
        Action::RecordDuplicate {
            source: src,
            request_id: None,
        },
        &[
            Status::Open,
            Status::Acknowledged,
            Status::InProgress,
            Status::OnHold,
        ],
    );
}

#[test]
fn sources_are_bounded_but_counted() {
    let src = Source {
        kind: "nats".into(),
        key: "k".into(),
    };
    let mut h = vec![p1()];
    for i in 0..200 {
        h.push(ev(
            i + 1,
            E::DuplicateReceived {
                source: src.clone(),
                request_id: None,
            },
        ));
    }
    let inc = fold(&h).unwrap().unwrap();
    assert_eq!(inc.duplicate_count, 200);
    assert_eq!(inc.sources.len(), 50);
    assert_eq!(inc.sources[0].0, Source::person());
    assert_eq!(inc.sources.last().unwrap().1, t(200));
}

#[test]
fn actor_is_checked() {
    let cmd = Command::new(
        incident_domain::testing::test_id(),
        t(1),
        &"a".repeat(200),
        Action::Acknowledge,
    );
    let err = decide(
        fold(&[p1()]).unwrap().as_ref(),
        &cmd,
        &PriorityMatrix::default(),
    )
    .unwrap_err();
    assert!(matches!(err, DomainError::InvalidField { field, .. } if field == "actor"));
}

#[test]
fn a_history_that_does_not_start_with_opened_is_an_error() {
    let err = fold(&[ev(1, E::Acknowledged)]).unwrap_err();
    assert!(matches!(err, HistoryError::NotOpened { .. }));
    let err = fold(&[p1(), p1()]).unwrap_err();
    assert!(matches!(err, HistoryError::OpenedTwice { .. }));
}

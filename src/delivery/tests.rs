//! `deliver` with an injected sender: no HTTP.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::deliver::Sender;
use super::*;
use crate::issue::{Issue, IssueCode};
use crate::mapping::{Identity, Mapping, MappingDoc, Op, Row};
use crate::sender::batch;
use crate::sender::{Attempt, SendError, Sent};

fn mapping(id: &str, doc: serde_json::Value) -> Arc<Mapping> {
    let doc: MappingDoc = serde_json::from_value(doc).unwrap();
    Arc::new(
        Mapping::compile(
            &doc,
            Identity {
                destination_id: "dst_1".into(),
                mapping_id: id.into(),
            },
        )
        .unwrap(),
    )
}

fn track(id: &str) -> Arc<Mapping> {
    mapping(
        id,
        serde_json::json!({
            "action": "track",
            "trigger": "added",
            "fields": {
                "event_name": {"@literal": "Order Completed"},
                "user_id": {"@path": "$.properties.user_id"},
                "properties": {"n": {"@path": "$.properties.n"}},
                "message_id": {"@path": "$.properties.mid"}
            }
        }),
    )
}

fn row(i: usize, columns: serde_json::Value) -> Input {
    let columns = serde_json::from_value(columns).unwrap();
    Input {
        id: format!("r{i}"),
        row: Ok(Row::new(Some(format!("r{i}")), Op::Added, columns, None)),
    }
}

fn rows(n: usize) -> Vec<Input> {
    (0..n)
        .map(|i| row(i, serde_json::json!({"user_id": format!("u{i}"), "n": i})))
        .collect()
}

/// Answers per batch from a script; bodies with a poisoned event get 400.
#[derive(Default)]
struct Fake {
    script: Mutex<Vec<Result<Sent, SendError>>>,
    bodies: Mutex<Vec<Vec<String>>>,
    poison: HashSet<String>,
    /// Bodies of more events than this get 413 (an upstream whose body limit is below ours).
    max_events: Option<usize>,
    /// What it says of itself as `max_batch_events` (a rate limit's burst).
    burst: Option<usize>,
}

impl Sender for Fake {
    async fn send(
        &self,
        body: Bytes,
        _events: usize,
        _deadline: Instant,
    ) -> Result<Sent, SendError> {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let ids: Vec<String> = v["batch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["messageId"].as_str().unwrap().to_owned())
            .collect();
        let poisoned = ids.iter().any(|i| self.poison.contains(i));
        let too_large = self.max_events.is_some_and(|max| ids.len() > max);
        self.bodies.lock().unwrap().push(ids);
        if too_large {
            return Err(SendError::Rejected {
                status: 413,
                attempts: 1,
            });
        }
        if poisoned {
            return Err(SendError::Rejected {
                status: 400,
                attempts: 1,
            });
        }
        self.script
            .lock()
            .unwrap()
            .pop()
            .unwrap_or(Ok(Sent { attempts: 1 }))
    }

    fn max_batch_events(&self) -> Option<usize> {
        self.burst
    }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

async fn run(mappings: &[Arc<Mapping>], input: Vec<Input>, fake: &Fake) -> Vec<RowResult> {
    deliver(
        &Arc::from(mappings),
        input,
        fake,
        &SeenIds::all(),
        later(),
        Shutdown::never(),
        &DeliverySettings::default(),
        None,
    )
    .await
}

#[tokio::test]
async fn every_row_gets_its_results_in_order() {
    let fake = Fake::default();
    let mut input = rows(3);
    input.push(Input {
        id: "bad".into(),
        row: Err(Issue::new(IssueCode::InvalidRow, "/op", "is required")),
    });
    // Deleted: the `added` trigger does not match.
    let columns = serde_json::from_value(serde_json::json!({"user_id": "u"})).unwrap();
    input.push(Input {
        id: "del".into(),
        row: Ok(Row::new(Some("del".into()), Op::Deleted, columns, None)),
    });
    // No identity: rejected by render.
    input.push(row(5, serde_json::json!({"n": 1})));
    let results = run(&[track("m1")], input, &fake).await;
    let got: Vec<(u32, &str, &str, RowStatus)> = results
        .iter()
        .map(|r| {
            (
                r.row_index,
                r.row_id.as_str(),
                r.mapping_id.as_str(),
                r.status,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (0, "r0", "m1", RowStatus::Delivered),
            (1, "r1", "m1", RowStatus::Delivered),
            (2, "r2", "m1", RowStatus::Delivered),
            (3, "bad", "", RowStatus::Rejected),
            (4, "del", "", RowStatus::Skipped),
            (5, "r5", "m1", RowStatus::Rejected),
        ]
    );
    assert_eq!(results[3].issues[0].code, IssueCode::InvalidRow);
    assert_eq!(results[5].issues[0].code, IssueCode::MissingIdentity);
    assert!(
        results[0]
            .message_id
            .as_deref()
            .unwrap()
            .starts_with("sc2-")
    );
    assert_eq!(fake.bodies.lock().unwrap().len(), 1);
    assert_eq!(
        Counts::of(&results),
        Counts {
            delivered: 3,
            rejected: 2,
            failed: 0,
            skipped: 1
        }
    );
}

#[tokio::test]
async fn two_mappings_two_results_per_row() {
    let fake = Fake::default();
    let results = run(&[track("m1"), track("m2")], rows(2), &fake).await;
    let got: Vec<(u32, &str)> = results
        .iter()
        .map(|r| (r.row_index, r.mapping_id.as_str()))
        .collect();
    assert_eq!(got, [(0, "m1"), (0, "m2"), (1, "m1"), (1, "m2")]);
    assert!(results.iter().all(|r| r.status == RowStatus::Delivered));
    // Different mappings, different derived ids.
    assert_ne!(results[0].message_id, results[1].message_id);
}

#[tokio::test]
async fn a_duplicate_message_id_is_rejected_and_never_sent() {
    let fake = Fake::default();
    let input = vec![
        row(0, serde_json::json!({"user_id": "a", "mid": "same"})),
        row(1, serde_json::json!({"user_id": "b", "mid": "same"})),
        row(2, serde_json::json!({"user_id": "c", "mid": "other"})),
    ];
    let results = run(&[track("m1")], input, &fake).await;
    let statuses: Vec<RowStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            RowStatus::Delivered,
            RowStatus::Rejected,
            RowStatus::Delivered
        ]
    );
    assert_eq!(results[1].issues[0].code, IssueCode::DuplicateMessageId);
    assert_eq!(*fake.bodies.lock().unwrap(), [vec!["same", "other"]]);
}

#[tokio::test]
async fn a_poisoned_event_is_isolated_by_bisection() {
    let input = rows(10);
    let mut probe = Vec::new();
    let poison_id = {
        let r = track("m1").render(input[6].row.as_ref().unwrap(), &mut probe);
        r.built.message_id.unwrap()
    };
    let fake = Fake {
        poison: HashSet::from([poison_id.clone()]),
        ..Fake::default()
    };
    let results = run(&[track("m1")], input, &fake).await;
    for r in &results {
        if r.message_id.as_deref() == Some(poison_id.as_str()) {
            assert_eq!(r.status, RowStatus::Failed);
            assert_eq!(r.upstream_status, Some(400));
            assert!(!r.retryable);
            assert_eq!(r.issues[0].code, IssueCode::UpstreamRejected);
        } else {
            assert_eq!(r.status, RowStatus::Delivered, "{r:?}");
        }
    }
    // 1 + 2 per split level (10 → 5 → 3 → 2 → 1): at most 1 + 2·4.
    assert!(fake.bodies.lock().unwrap().len() <= 9);
}

fn message_ids(input: &[Input]) -> Vec<String> {
    input
        .iter()
        .map(|inp| {
            let mut out = Vec::new();
            let r = track("m1").render(inp.row.as_ref().unwrap(), &mut out);
            r.built.message_id.unwrap()
        })
        .collect()
}

#[tokio::test]
async fn bisection_is_bounded_and_what_it_did_not_isolate_is_retryable() {
    let input = rows(200);
    // Every event poisoned: isolating them all would take 398 extra requests.
    let fake = Fake {
        poison: message_ids(&input).into_iter().collect(),
        ..Fake::default()
    };
    let results = run(&[track("m1")], input, &fake).await;
    // The budget: one extra request per two events of the batch (at least 64).
    assert!(fake.bodies.lock().unwrap().len() <= 1 + 100);
    assert!(results.iter().all(|r| r.status == RowStatus::Failed));
    assert!(
        results
            .iter()
            .all(|r| r.issues[0].code == IssueCode::UpstreamRejected)
    );
    // The budget ran out before every event was tried alone: those are not failed for good.
    let unresolved: Vec<_> = results.iter().filter(|r| r.retryable).collect();
    assert!(!unresolved.is_empty());
    for r in &unresolved {
        assert!(r.issues[0].message.contains("may be innocent"), "{r:?}");
    }
}

#[tokio::test]
async fn one_bad_event_in_a_hundred_leaves_the_innocent_delivered() {
    let input = rows(2_500);
    let ids = message_ids(&input);
    let poison: HashSet<String> = ids.iter().step_by(100).cloned().collect();
    let fake = Fake {
        poison: poison.clone(),
        ..Fake::default()
    };
    let results = run(&[track("m1")], input, &fake).await;
    let mut delivered = 0;
    for r in &results {
        let bad = poison.contains(r.message_id.as_deref().unwrap());
        match bad {
            true => assert!(r.status == RowStatus::Failed && !r.retryable, "{r:?}"),
            // An innocent event is never failed for good.
            false if r.status == RowStatus::Delivered => delivered += 1,
            false => assert!(r.status == RowStatus::Failed && r.retryable, "{r:?}"),
        }
    }
    let innocent = results.len() - poison.len();
    assert!(
        delivered * 100 >= innocent * 99,
        "{delivered} of {innocent} innocent events delivered"
    );
}

#[tokio::test]
async fn a_413_is_split_like_a_400() {
    let fake = Fake {
        max_events: Some(3),
        ..Fake::default()
    };
    let results = run(&[track("m1")], rows(20), &fake).await;
    assert!(results.iter().all(|r| r.status == RowStatus::Delivered));
    let bodies = fake.bodies.lock().unwrap();
    let sent: usize = bodies.iter().filter(|b| b.len() <= 3).map(Vec::len).sum();
    assert_eq!(
        sent, 20,
        "every event reached the upstream in a body it takes"
    );
}

#[tokio::test]
async fn a_duplicate_message_id_is_caught_across_calls_sharing_a_window() {
    let fake = Fake::default();
    let seen = SeenIds::window(2);
    let mappings: Arc<[_]> = Arc::from([track("m1")]);
    let settings = DeliverySettings::default();
    let call = |rows: Vec<serde_json::Value>| {
        let input = rows
            .into_iter()
            .enumerate()
            .map(|(i, c)| row(i, c))
            .collect();
        deliver(
            &mappings,
            input,
            &fake,
            &seen,
            later(),
            Shutdown::never(),
            &settings,
            None,
        )
    };
    let statuses = |results: Vec<RowResult>| results.iter().map(|r| r.status).collect::<Vec<_>>();
    let first = call(vec![
        serde_json::json!({"user_id": "a", "mid": "m-1"}),
        serde_json::json!({"user_id": "a", "mid": "m-2"}),
    ])
    .await;
    assert_eq!(
        statuses(first),
        [RowStatus::Delivered, RowStatus::Delivered]
    );
    // A later chunk of the same stream repeats m-2: rejected, never sent.
    let second = call(vec![
        serde_json::json!({"user_id": "a", "mid": "m-2"}),
        serde_json::json!({"user_id": "a", "mid": "m-3"}),
    ])
    .await;
    assert_eq!(
        statuses(second),
        [RowStatus::Rejected, RowStatus::Delivered]
    );
    // The window holds the latest two (m-2, m-3): m-1 has been forgotten.
    let third = call(vec![serde_json::json!({"user_id": "a", "mid": "m-1"})]).await;
    assert_eq!(statuses(third), [RowStatus::Delivered]);
    let sent: Vec<Vec<String>> = fake.bodies.lock().unwrap().clone();
    assert_eq!(sent, [vec!["m-1", "m-2"], vec!["m-3"], vec!["m-1"]]);
}

#[tokio::test]
async fn failures_carry_status_attempts_and_retryable() {
    let fake = Fake {
        script: Mutex::new(vec![Err(SendError::RetriesExhausted {
            last: Attempt::Status(503),
            attempts: 4,
        })]),
        ..Fake::default()
    };
    let results = run(&[track("m1")], rows(2), &fake).await;
    for r in &results {
        assert_eq!(r.status, RowStatus::Failed);
        assert_eq!(r.upstream_status, Some(503));
        assert_eq!(r.attempts, 4);
        assert!(r.retryable);
        assert_eq!(r.issues[0].code, IssueCode::RetriesExhausted);
    }
}

#[tokio::test]
async fn past_the_stop_nothing_is_sent_and_rows_fail_with_deadline() {
    let fake = Fake::default();
    let stop = Instant::now();
    let results = deliver(
        &Arc::from([track("m1")]),
        rows(3),
        &fake,
        &SeenIds::all(),
        stop,
        Shutdown::never(),
        &DeliverySettings::default(),
        None,
    )
    .await;
    assert!(fake.bodies.lock().unwrap().is_empty());
    for r in &results {
        assert_eq!(r.status, RowStatus::Failed);
        assert_eq!(r.issues[0].code, IssueCode::Deadline);
        assert!(r.retryable);
    }
}

#[tokio::test]
async fn batches_respect_the_event_limit() {
    let fake = Fake::default();
    let settings = DeliverySettings {
        batch: batch::BatchLimits {
            max_bytes: batch::MAX_BATCH_BYTES,
            max_events: 4,
        },
        ..DeliverySettings::default()
    };
    let results = deliver(
        &Arc::from([track("m1")]),
        rows(10),
        &fake,
        &SeenIds::all(),
        later(),
        Shutdown::never(),
        &settings,
        None,
    )
    .await;
    assert!(results.iter().all(|r| r.status == RowStatus::Delivered));
    let sizes: Vec<usize> = fake.bodies.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 10);
    assert!(sizes.iter().all(|&s| s <= 4));
}

/// A rate-limited sender's batches hold at most its burst; the rows and the events counted
/// for the limit are the batches' own.
#[tokio::test]
async fn a_rate_limited_sender_gets_batches_of_its_burst() {
    let fake = Fake {
        burst: Some(3),
        ..Fake::default()
    };
    let results = run(&[track("m1")], rows(10), &fake).await;
    assert!(results.iter().all(|r| r.status == RowStatus::Delivered));
    let sizes: Vec<usize> = fake.bodies.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 3, 1]);
}

/// Events the rate limit held past the deadline answer as deadline results: failed, never
/// sent, retryable, with the wait they needed (the answer's RetryInfo).
#[tokio::test]
async fn events_held_back_by_the_rate_limit_are_deadline_results() {
    let held = SendError::RateLimited {
        wait: Duration::from_millis(2500),
        last: None,
        attempts: 0,
    };
    let fake = Fake {
        script: Mutex::new(vec![Err(held)]),
        ..Fake::default()
    };
    let results = run(&[track("m1")], rows(2), &fake).await;
    for r in &results {
        assert_eq!(r.status, RowStatus::Failed);
        assert!(r.retryable);
        assert_eq!((r.attempts, r.upstream_status), (0, None));
        assert_eq!(r.retry_after, Some(Duration::from_millis(2500)));
        assert_eq!(r.issues[0].code, IssueCode::Deadline);
        assert!(
            r.issues[0].message.contains("needed 2.5 s more"),
            "{:?}",
            r.issues
        );
    }
}

#[test]
fn stop_leaves_a_margin() {
    let s = DeliverySettings::default();
    let now = Instant::now();
    assert_eq!(s.stop_at(now, None), now + Duration::from_millis(29_500));
    assert_eq!(
        s.stop_at(now, Some(Duration::from_millis(400))),
        now + Duration::from_millis(200)
    );
}

#[tokio::test]
async fn large_requests_are_rendered_and_sent_in_slices() {
    let fake = Fake::default();
    let settings = DeliverySettings {
        max_render_bytes: 1_000,
        ..DeliverySettings::default()
    };
    let mut input = rows(20);
    // A messageId repeated in a later slice is still a duplicate.
    input.push(row(20, serde_json::json!({"user_id": "x", "mid": "dup"})));
    input.push(row(21, serde_json::json!({"user_id": "y", "mid": "dup"})));
    let meter = crate::usage::Meter::new();
    let usage = super::deliver::UsageSink {
        meter: &meter,
        destination_id: "dst_1",
    };
    let results = deliver(
        &Arc::from([track("m1")]),
        input,
        &fake,
        &SeenIds::all(),
        later(),
        Shutdown::never(),
        &settings,
        Some(usage),
    )
    .await;
    let indexes: Vec<u32> = results.iter().map(|r| r.row_index).collect();
    assert_eq!(indexes, (0..22).collect::<Vec<u32>>());
    // Usage: each delivered event one call, each body one batch; users u0..u19 and x (y's event
    // was a duplicate, never sent).
    let month = crate::usage::Month::now();
    let used = meter.local("dst_1", month).expect("counted");
    assert_eq!(used.counts.calls, 21);
    assert_eq!(
        used.counts.batches,
        fake.bodies.lock().unwrap().len() as u64
    );
    assert!(used.counts.bytes > 21 * 50);
    assert_eq!(used.users.estimate(), 21);
    assert!(
        results[..21]
            .iter()
            .all(|r| r.status == RowStatus::Delivered)
    );
    assert_eq!(results[21].status, RowStatus::Rejected);
    assert_eq!(results[21].issues[0].code, IssueCode::DuplicateMessageId);
    // Several slices, so several bodies, every event sent once.
    let bodies = fake.bodies.lock().unwrap();
    assert!(bodies.len() > 1);
    assert_eq!(bodies.iter().map(Vec::len).sum::<usize>(), 21);
}

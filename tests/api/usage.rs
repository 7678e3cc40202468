//! Usage and cost over real gRPC against the fake Tracking API: GetUsage's calls, batches,
//! bytes and users per destination and month, their persistence across a restart, TestMapping's
//! estimates, and `destinations usage`.

use tonic::Code;

use crate::common::app::{TestApp, order_row, track_mapping, violations};
use crate::common::bin::cli;
use crate::common::fake_segment::FakeSegment;
use crate::submit_rows::{WRITE_KEY, setup};
use segment_connections::grpc::proto;
use segment_connections::grpc::proto::ResultStatus;
use segment_connections::usage::Month;

/// Rows `o-{first}..`, each for user `u{i % users}`.
fn rows(first: usize, n: usize, users: usize) -> Vec<proto::Row> {
    (first..first + n)
        .map(|i| order_row(&format!("o-{i}"), &format!("u{}", i % users)))
        .collect()
}

async fn submit(app: &TestApp, destination_id: &str, rows: Vec<proto::Row>) -> Vec<i32> {
    app.client
        .clone()
        .submit_rows(proto::SubmitRowsRequest {
            destination_id: destination_id.into(),
            model: "orders".into(),
            rows,
            results: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .iter()
        .map(|r| r.status)
        .collect()
}

async fn usage(
    app: &TestApp,
    destination_id: &str,
    month: Option<&str>,
) -> proto::GetUsageResponse {
    app.client
        .clone()
        .get_usage(proto::GetUsageRequest {
            destination_id: destination_id.into(),
            month: month.map(str::to_owned),
        })
        .await
        .unwrap()
        .into_inner()
}

/// What the fake Tracking API accepted: (batches, events, bytes before compression).
fn accepted(fake: &FakeSegment) -> (u64, u64, u64) {
    let ok: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    (
        ok.len() as u64,
        ok.iter().map(|r| r.events as u64).sum(),
        ok.iter().map(|r| r.bytes as u64).sum(),
    )
}

#[tokio::test]
async fn delivered_events_are_calls_and_their_users_are_counted_once() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    // 1,200 rows of 150 users, in two calls; and one row without a user (rejected, no call).
    let statuses = submit(&app, &d, rows(0, 700, 150)).await;
    assert!(
        statuses
            .iter()
            .all(|&s| s == ResultStatus::Delivered as i32)
    );
    submit(&app, &d, rows(700, 500, 150)).await;
    let mut no_user = order_row("o-x", "");
    no_user.columns_json = br#"{"order_id": "o-x"}"#.to_vec();
    assert_eq!(
        submit(&app, &d, vec![no_user]).await,
        [ResultStatus::Rejected as i32]
    );

    let u = usage(&app, &d, None).await;
    assert_eq!(u.month, Month::now().to_string());
    let (batches, events, bytes) = accepted(&fake);
    assert_eq!(events, 1200);
    assert_eq!(u.calls, 1200, "one API call per event delivered");
    assert_eq!(u.batches, batches);
    assert_eq!(
        u.bytes, bytes,
        "the batch bodies' bytes, before compression"
    );
    assert!(
        (148..=152).contains(&u.users),
        "150 distinct userIds, estimated {}",
        u.users
    );

    // Another destination, other months: nothing.
    let other = app
        .create_destination_at("other", &fake.url(), WRITE_KEY)
        .await;
    let none = usage(&app, &other.id, None).await;
    assert_eq!(
        (none.calls, none.batches, none.bytes, none.users),
        (0, 0, 0, 0)
    );
    let past = usage(&app, &d, Some("2020-01")).await;
    assert_eq!(past.month, "2020-01");
    assert_eq!((past.calls, past.users), (0, 0));
}

#[tokio::test]
async fn a_bad_month_or_destination_is_refused_by_name() {
    let (app, _fake, d) = setup().await;
    for month in ["2026-13", "2026-1", "december", ""] {
        let e = app
            .client
            .clone()
            .get_usage(proto::GetUsageRequest {
                destination_id: d.clone(),
                month: Some(month.into()),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{month}");
        let v = violations(&e);
        assert_eq!(v[0].0, "month", "{month}: {v:?}");
        assert!(v[0].1.contains("YYYY-MM"), "{v:?}");
    }
    let e = app
        .client
        .clone()
        .get_usage(proto::GetUsageRequest {
            destination_id: "dst_nope".into(),
            month: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("dst_nope"), "{}", e.message());
    let e = app
        .client
        .clone()
        .get_usage(proto::GetUsageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violations(&e)[0].0, "destination_id");
}

#[tokio::test]
async fn usage_survives_a_restart_and_keeps_counting() {
    let (app, _fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    submit(&app, &d, rows(0, 400, 100)).await;
    let before = usage(&app, &d, None).await;
    assert_eq!(before.calls, 400);

    // The shutdown flush writes it to the SQLite file; a new process reads it back.
    let app = app.restart().await;
    let after = usage(&app, &d, None).await;
    assert_eq!(after, before);

    // Users seen before the restart are not new after it: 50 of these 100 are.
    submit(&app, &d, rows(50, 100, 150)).await;
    let more = usage(&app, &d, None).await;
    assert_eq!(more.calls, 500);
    assert_eq!(more.batches, before.batches + 1);
    assert!(
        (148..=152).contains(&more.users),
        "u0..u149: estimated {}",
        more.users
    );
    let app = app.restart().await;
    assert_eq!(usage(&app, &d, None).await, more);
}

#[tokio::test]
async fn test_mapping_estimates_the_calls_and_the_new_users() {
    let (app, _fake, d) = setup().await;
    let m = app.create_mapping(&d, &track_mapping("orders")).await;
    submit(&app, &d, rows(0, 200, 100)).await;

    // u5 and u7 are this month's already; new-1 and new-2 are not; one row has no user.
    let mut no_user = order_row("o-x", "");
    no_user.columns_json = br#"{"order_id": "o-x"}"#.to_vec();
    let sample = vec![
        order_row("s1", "u5"),
        order_row("s2", "u7"),
        order_row("s3", "new-1"),
        order_row("s4", "new-2"),
        no_user,
    ];
    let answer = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingId(
                m.id.clone(),
            )),
            destination_id: None,
            rows: sample.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.estimated_calls,
        Some(4),
        "the row without a user makes no call"
    );
    assert_eq!(answer.estimated_new_users, Some(2));

    // An inline mapping with the destination named: the same estimate.
    let inline = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
                track_mapping("orders"),
            )),
            destination_id: Some(d.clone()),
            rows: sample.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (inline.estimated_calls, inline.estimated_new_users),
        (Some(4), Some(2))
    );

    // No destination: no estimate.
    let offline = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
                track_mapping("orders"),
            )),
            destination_id: None,
            rows: sample,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (offline.estimated_calls, offline.estimated_new_users),
        (None, None)
    );
}

#[tokio::test]
async fn the_cli_prints_one_json_object_or_a_table() {
    let (app, _fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    submit(&app, &d, rows(0, 30, 10)).await;
    let url = app.url();
    let server = ["--server", url.as_str()];

    let out = cli(
        &[&["destinations", "usage", &d, "--json"][..], &server].concat(),
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["month", "calls", "batches", "bytes", "users"]);
    assert_eq!(v["month"], Month::now().to_string());
    assert_eq!(v["calls"], 30);
    assert_eq!(v["users"], 10);
    assert!(v["bytes"].as_u64().unwrap() > 0);

    let out = cli(
        &[
            &["destinations", "usage", &d, "--month", "2020-02", "--json"][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"month": "2020-02", "calls": 0, "batches": 0, "bytes": 0, "users": 0})
    );

    let out = cli(&[&["destinations", "usage", &d][..], &server].concat(), &[]).await;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("calls:") && text.contains("30"), "{text}");

    // A bad month is a usage error before any call; an unknown destination is the server's.
    let out = cli(
        &[
            &["destinations", "usage", &d, "--month", "2026-13"][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM"));
    let out = cli(
        &[&["destinations", "usage", "dst_nope"][..], &server].concat(),
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("dst_nope"));
}

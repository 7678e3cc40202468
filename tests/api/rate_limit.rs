//! A destination's rate limit over real gRPC against the fake Tracking API: every event of a
//! limited destination arrives once, in batches no larger than the limit; the limit is stored
//! (a restart keeps it) and an update applies at once; a deadline too short for it gets the
//! deadline results and a RetryInfo. (How fast events go is tested with paused time in
//! src/sender/limit.rs, never timed here.)

use std::collections::HashSet;
use std::time::Duration;

use crate::common::app::{TestApp, track_mapping};
use crate::submit_rows::{request, rows_from, setup_with};
use segment_connections::grpc::proto::{self, IssueCode, ResultStatus};

/// A destination at the fake with this limit and one track mapping.
async fn limited(rate_limit: u32) -> (TestApp, crate::common::fake_segment::FakeSegment, String) {
    let (app, fake, d) = setup_with(|_| {}).await;
    set_limit(&app, &d, rate_limit).await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    (app, fake, d)
}

async fn set_limit(app: &TestApp, id: &str, rate_limit: u32) -> proto::Destination {
    let mut c = app.client.clone();
    let current = c
        .get_destination(proto::GetDestinationRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    c.update_destination(proto::UpdateDestinationRequest {
        id: id.into(),
        version: current.version,
        rate_limit: Some(rate_limit),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .destination
    .unwrap()
}

/// SubmitRows of `n` rows from `first`, with the caller's deadline `timeout`.
async fn submit_within(
    app: &TestApp,
    d: &str,
    first: usize,
    n: usize,
    timeout: Duration,
) -> proto::SubmitRowsResponse {
    let mut req = tonic::Request::new(request(d, rows_from(first, n)));
    req.set_timeout(timeout);
    app.client
        .clone()
        .submit_rows(req)
        .await
        .unwrap()
        .into_inner()
}

fn status(r: &proto::RowResult) -> ResultStatus {
    ResultStatus::try_from(r.status).unwrap()
}

fn ids_with(resp: &proto::SubmitRowsResponse, s: ResultStatus) -> Vec<String> {
    resp.results
        .iter()
        .filter(|r| status(r) == s)
        .map(|r| r.message_id.clone().unwrap())
        .collect()
}

/// 300 events at 100/s: all delivered, each exactly once, in batches of at most 100 events.
#[tokio::test]
async fn a_limited_destination_gets_every_event_once() {
    let (app, fake, d) = limited(100).await;
    let resp = submit_within(&app, &d, 0, 300, Duration::from_secs(30)).await;
    let counts = resp.counts.unwrap();
    assert_eq!((counts.delivered, counts.failed), (300, 0), "{resp:?}");
    assert!(resp.retry_info.is_none());
    let delivered: HashSet<String> = ids_with(&resp, ResultStatus::Delivered)
        .into_iter()
        .collect();
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), 300, "none lost, none sent twice");
    assert_eq!(accepted.into_iter().collect::<HashSet<_>>(), delivered);
    let requests = fake.requests();
    assert!(requests.iter().all(|r| r.events <= 100), "{requests:?}");
    assert!(requests.len() >= 3);
}

/// At 1 event/s a call with a 2 s deadline cannot send 10 events: what the limit holds back is
/// FAILED with the deadline's code, retryable, never sent, and the answer's RetryInfo says how
/// long to wait. Delivered and held back add up to every row, and the fake got exactly the
/// delivered ones.
#[tokio::test]
async fn a_deadline_too_short_for_the_limit_gets_deadline_results_and_retry_info() {
    let (app, fake, d) = limited(1).await;
    let resp = submit_within(&app, &d, 0, 10, Duration::from_secs(2)).await;
    let counts = resp.counts.unwrap();
    assert_eq!(counts.delivered + counts.failed, 10, "{resp:?}");
    assert!(counts.delivered >= 1 && counts.failed >= 1, "{resp:?}");
    for r in resp
        .results
        .iter()
        .filter(|r| status(r) == ResultStatus::Failed)
    {
        assert!(r.retryable, "{r:?}");
        assert_eq!(r.attempts, 0, "{r:?}");
        assert_eq!(r.issues[0].code, i32::from(IssueCode::Deadline), "{r:?}");
        assert!(r.issues[0].message.contains("rate limit"), "{r:?}");
    }
    let delay = resp
        .retry_info
        .and_then(|i| i.retry_delay)
        .expect("a RetryInfo with a delay");
    let delay = Duration::new(delay.seconds as u64, delay.nanos as u32);
    // The longest wait: up to one second per event held back.
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(10),
        "{delay:?}"
    );
    let delivered: HashSet<String> = ids_with(&resp, ResultStatus::Delivered)
        .into_iter()
        .collect();
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), delivered.len());
    assert_eq!(accepted.into_iter().collect::<HashSet<_>>(), delivered);
}

/// The limit is stored: after a restart the destination still has it and the sender applies
/// it (10 events at 1/s do not fit a 2 s deadline). An update to a high limit applies at once,
/// without a restart: the same call then delivers everything.
#[tokio::test]
async fn the_limit_survives_a_restart_and_an_update_applies_at_once() {
    let (app, fake, d) = limited(1).await;
    let app = app.restart().await;
    let got = app
        .client
        .clone()
        .get_destination(proto::GetDestinationRequest { id: d.clone() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(got.rate_limit, 1);
    let held = submit_within(&app, &d, 0, 10, Duration::from_secs(2)).await;
    assert!(held.counts.unwrap().failed >= 1, "{held:?}");
    assert!(held.retry_info.is_some());

    let updated = set_limit(&app, &d, 10_000).await;
    assert_eq!(updated.rate_limit, 10_000);
    let resp = submit_within(&app, &d, 100, 10, Duration::from_secs(2)).await;
    assert_eq!(resp.counts.unwrap().delivered, 10, "{resp:?}");
    assert!(resp.retry_info.is_none());
    // Removing the limit (0) is shown as 0 and delivers too.
    assert_eq!(set_limit(&app, &d, 0).await.rate_limit, 0);
    let resp = submit_within(&app, &d, 200, 10, Duration::from_secs(2)).await;
    assert_eq!(resp.counts.unwrap().delivered, 10, "{resp:?}");
    let accepted = fake.accepted();
    assert_eq!(
        accepted.len(),
        accepted.iter().collect::<HashSet<_>>().len(),
        "nothing sent twice"
    );
}

/// StreamRows: the limit holds across the stream's chunks (sent at once, so they share the
/// bucket), and each chunk's answer carries its own RetryInfo when its events were held back
/// past the stream's deadline; what was delivered arrived once.
#[tokio::test]
async fn a_stream_s_held_back_chunks_carry_retry_info() {
    use proto::stream_rows_request::Message;
    use tokio_stream::StreamExt as _;
    let (app, fake, d) = limited(1).await;
    let header = proto::StreamRowsRequest {
        message: Some(Message::Header(proto::StreamHeader {
            destination_id: d.clone(),
            model: "orders".into(),
            ..Default::default()
        })),
    };
    let chunks = (0..3u64).map(|c| proto::StreamRowsRequest {
        message: Some(Message::Chunk(proto::RowChunk {
            chunk_id: c,
            rows: rows_from(c as usize * 5, 5),
        })),
    });
    let mut req = tonic::Request::new(tokio_stream::iter(
        std::iter::once(header).chain(chunks).collect::<Vec<_>>(),
    ));
    req.set_timeout(Duration::from_secs(2));
    let mut answers = app
        .client
        .clone()
        .stream_rows(req)
        .await
        .unwrap()
        .into_inner();
    let (mut delivered, mut failed, mut with_retry_info) = (HashSet::new(), 0, 0);
    while let Some(a) = answers.next().await {
        let a = a.unwrap();
        let counts = a.counts.unwrap();
        failed += counts.failed;
        for r in &a.results {
            if status(r) == ResultStatus::Delivered {
                delivered.insert(r.message_id.clone().unwrap());
            }
        }
        if counts.failed > 0 {
            assert!(a.retry_info.is_some(), "{a:?}");
            with_retry_info += 1;
        } else {
            assert!(a.retry_info.is_none(), "{a:?}");
        }
    }
    assert_eq!(delivered.len() as u32 + failed, 15);
    assert!(with_retry_info >= 1 && failed >= 10, "{failed} failed");
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), delivered.len());
    assert_eq!(accepted.into_iter().collect::<HashSet<_>>(), delivered);
}

//! StreamRows: a header, then chunks; one answer per chunk; flow control bounds rows in flight.

use tokio_stream::StreamExt as _;
use tonic::Code;

use crate::common::app::track_mapping;
use crate::common::fake_segment::Fault;
use crate::submit_rows::{rows, rows_from, setup, setup_with};
use segment_connections::grpc::proto;
use segment_connections::grpc::proto::stream_rows_request::Message;

fn header(d: &str) -> proto::StreamRowsRequest {
    proto::StreamRowsRequest {
        message: Some(Message::Header(proto::StreamHeader {
            destination_id: d.into(),
            model: "orders".into(),
            ..Default::default()
        })),
    }
}

fn chunk(id: u64, rows: Vec<proto::Row>) -> proto::StreamRowsRequest {
    proto::StreamRowsRequest {
        message: Some(Message::Chunk(proto::RowChunk { chunk_id: id, rows })),
    }
}

#[tokio::test]
async fn every_chunk_is_answered() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    let mut msgs = vec![header(&d)];
    for c in 0..5 {
        msgs.push(chunk(c, rows_from(c as usize * 20, 20)));
    }
    let mut answers = app
        .client
        .clone()
        .stream_rows(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    while let Some(a) = answers.next().await {
        let a = a.unwrap();
        assert_eq!(a.results.len(), 20);
        assert_eq!(a.counts.unwrap().delivered, 20);
        ids.push(a.chunk_id);
    }
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    assert_eq!(fake.accepted().len(), 100);
}

/// A row repeated in a later chunk of the same stream has the same messageId: Segment would
/// drop it silently, so it is rejected and never sent.
#[tokio::test]
async fn a_message_id_repeated_in_a_later_chunk_is_rejected() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(header(&d)).await.unwrap();
    let mut answers = app
        .client
        .clone()
        .stream_rows(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(chunk(0, rows(3))).await.unwrap();
    let first = answers.next().await.unwrap().unwrap();
    assert_eq!(first.counts.unwrap().delivered, 3);
    // o-2 again, and a new o-3.
    tx.send(chunk(1, rows_from(2, 2))).await.unwrap();
    drop(tx);
    let second = answers.next().await.unwrap().unwrap();
    let statuses: Vec<i32> = second.results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            proto::ResultStatus::Rejected as i32,
            proto::ResultStatus::Delivered as i32
        ]
    );
    assert_eq!(
        second.results[0].issues[0].code,
        proto::IssueCode::DuplicateMessageId as i32
    );
    assert!(answers.next().await.is_none());
    assert_eq!(fake.accepted().len(), 4, "o-2 was sent once");
}

#[tokio::test]
async fn the_header_comes_first() {
    let (app, _fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    let err = app
        .client
        .clone()
        .stream_rows(tokio_stream::iter(vec![chunk(0, rows(1))]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = app
        .client
        .clone()
        .stream_rows(tokio_stream::iter(vec![header("dst_nope")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // A second header fails the stream.
    let mut answers = app
        .client
        .clone()
        .stream_rows(tokio_stream::iter(vec![header(&d), header(&d)]))
        .await
        .unwrap()
        .into_inner();
    let err = answers.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// With room for 10 rows in flight and chunks of 10, the server reads a chunk only after the
/// previous one is answered: the fake never sees two batches at once, however fast the caller
/// writes.
#[tokio::test]
async fn rows_in_flight_are_bounded() {
    let (app, fake, d) = setup_with(|s| s.delivery.stream_rows_in_flight = 10).await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    fake.script((0..6).map(|_| Fault::Slow(std::time::Duration::from_millis(50))));
    let mut msgs = vec![header(&d)];
    for c in 0..6 {
        msgs.push(chunk(c, rows_from(c as usize * 10, 10)));
    }
    let mut answers = app
        .client
        .clone()
        .stream_rows(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(a) = answers.next().await {
        assert_eq!(a.unwrap().counts.unwrap().delivered, 10);
        n += 1;
    }
    assert_eq!(n, 6);
    assert_eq!(fake.max_in_progress(), 1);
}

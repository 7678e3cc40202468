//! Fault injection over real sockets: a hostile caller (bad messages mid-stream, idle streams,
//! too many streams) and a hostile upstream (poisoned events, a smaller body limit, slow
//! answers past the caller's deadline). Every row must get a true answer.

use std::collections::HashSet;
use std::time::Duration;

use tokio_stream::StreamExt as _;
use tonic::Code;

use crate::common::app::track_mapping;
use crate::common::fake_segment::Fault;
use crate::submit_rows::{request, rows, rows_from, setup, setup_with, track_with_message_id};
use segment_connections::grpc::proto;
use segment_connections::grpc::proto::ResultStatus;
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

fn status(r: &proto::RowResult) -> ResultStatus {
    ResultStatus::try_from(r.status).unwrap()
}

fn with_message_ids(rows: Vec<proto::Row>) -> Vec<proto::Row> {
    rows.into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.message_id = Some(format!("m-{i}"));
            r
        })
        .collect()
}

/// One bad event in a hundred: the bad ones fail alone, at least 99 % of the others are
/// delivered in the same call, and none of the others is failed for good.
#[tokio::test]
async fn one_poisoned_event_in_a_hundred() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_with_message_id("orders"))
        .await;
    let input = with_message_ids(rows(5_000));
    let poison: HashSet<String> = (0..5_000).step_by(100).map(|i| format!("m-{i}")).collect();
    for p in &poison {
        fake.poison(p);
    }
    let resp = app
        .client
        .clone()
        .submit_rows(request(&d, input))
        .await
        .unwrap()
        .into_inner();
    let mut delivered = 0;
    for r in &resp.results {
        let bad = poison.contains(r.message_id.as_deref().unwrap());
        match (bad, status(r)) {
            (true, ResultStatus::Failed) => assert!(!r.retryable, "{r:?}"),
            (false, ResultStatus::Delivered) => delivered += 1,
            (false, ResultStatus::Failed) => {
                assert!(r.retryable, "innocent failed for good: {r:?}")
            }
            (_, s) => panic!("{s:?}: {r:?}"),
        }
    }
    assert!(
        delivered >= 4_950 * 99 / 100,
        "{delivered} of 4,950 delivered"
    );
    assert_eq!(fake.accepted().len(), delivered);
}

/// An upstream whose body limit is below ours answers 413: the batch is split until it fits.
#[tokio::test]
async fn an_upstream_with_a_smaller_body_limit_gets_every_event() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    fake.max_body_bytes(4_000);
    let resp = app
        .client
        .clone()
        .submit_rows(request(&d, rows(300)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.counts.unwrap().delivered, 300);
    assert_eq!(fake.accepted().len(), 300);
    assert!(fake.requests().iter().any(|r| r.status == 413));
}

/// A bad message after good chunks: every chunk already accepted is answered (its events were
/// delivered) before the stream ends with the error.
#[tokio::test]
async fn a_bad_message_mid_stream_loses_no_answer() {
    let (app, fake, d) = setup_with(|s| s.limits.max_rows = 50).await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    // Slow answers, so the good chunks are still in flight when the bad message arrives.
    fake.script((0..4).map(|_| Fault::Slow(Duration::from_millis(300))));
    let bad_messages = [
        chunk(9, rows_from(1_000, 51)),
        header(&d),
        proto::StreamRowsRequest { message: None },
    ];
    for (n, bad) in bad_messages.into_iter().enumerate() {
        let first = n * 100;
        let msgs = vec![
            header(&d),
            chunk(0, rows_from(first, 10)),
            chunk(1, rows_from(first + 10, 10)),
            bad,
            chunk(2, rows_from(first + 20, 10)),
        ];
        let mut answers = app
            .client
            .clone()
            .stream_rows(tokio_stream::iter(msgs))
            .await
            .unwrap()
            .into_inner();
        let mut answered = Vec::new();
        let error = loop {
            match answers.next().await {
                Some(Ok(a)) => {
                    assert_eq!(a.counts.unwrap().delivered, 10);
                    answered.push(a.chunk_id);
                }
                Some(Err(e)) => break e,
                None => panic!("the stream ended without its error"),
            }
        };
        answered.sort();
        assert_eq!(answered, [0, 1], "message {n}");
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        assert!(answers.next().await.is_none());
    }
    assert_eq!(fake.accepted().len(), 60);
}

/// Bytes that are not a message at all, after a good chunk: the chunk is answered first, and the
/// stream (like a unary call with such bytes) ends `INVALID_ARGUMENT`.
#[tokio::test]
async fn garbage_bytes_mid_stream_lose_no_answer() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    fake.script([Fault::Slow(Duration::from_millis(300))]);
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.unwrap();
    let encode = |m: proto::StreamRowsRequest| prost::Message::encode_to_vec(&m);
    let msgs = vec![
        encode(header(&d)),
        encode(chunk(0, rows(10))),
        // A field 1 of wire type 7: no protobuf decoder takes it.
        vec![0x0f, 0xff, 0xff],
    ];
    let path =
        http::uri::PathAndQuery::from_static("/segment_connections.v1.Connections/StreamRows");
    let mut answers = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(msgs)),
            path,
            raw::RawCodec,
        )
        .await
        .unwrap()
        .into_inner();
    let first = answers.next().await.unwrap().unwrap();
    assert_eq!(first.chunk_id, 0);
    assert_eq!(first.counts.unwrap().delivered, 10);
    let error = answers.next().await.unwrap().unwrap_err();
    // The caller's mistake, not the server's: INVALID_ARGUMENT, not INTERNAL.
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("not valid protobuf"), "{error:?}");
    assert!(answers.next().await.is_none());
    assert_eq!(fake.accepted().len(), 10);

    // The same bytes as a unary request.
    grpc.ready().await.unwrap();
    let path =
        http::uri::PathAndQuery::from_static("/segment_connections.v1.Connections/SubmitRows");
    let error = grpc
        .unary(
            tonic::Request::new(vec![0x0f, 0xff, 0xff]),
            path,
            raw::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
}

/// A header-only stream, and a stream that never sends its header, are closed once idle, with
/// a status naming the setting.
#[tokio::test]
async fn idle_streams_are_closed() {
    let (app, _fake, d) = setup_with(|s| s.delivery.stream_idle = Duration::from_millis(300)).await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(header(&d)).await.unwrap();
    let mut answers = app
        .client
        .clone()
        .stream_rows(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let error = answers.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded);
    assert!(
        error.message().contains("--stream-idle-seconds"),
        "{error:?}"
    );
    drop(tx);

    // No header at all: refused once idle.
    let (_tx, rx) = tokio::sync::mpsc::channel::<proto::StreamRowsRequest>(1);
    let error = app
        .client
        .clone()
        .stream_rows(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded);
}

/// Streams have a cap of their own below the call limit: however many a caller opens, unary
/// calls still get in.
#[tokio::test]
async fn streams_cannot_take_the_slots_unary_calls_need() {
    let (app, _fake, d) = setup_with(|s| {
        s.max_concurrent_calls = 4;
        s.max_row_streams = 2;
    })
    .await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(header(&d)).await.unwrap();
        let answers = app
            .client
            .clone()
            .stream_rows(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap();
        open.push((tx, answers));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(header(&d)).await.unwrap();
    let error = app
        .client
        .clone()
        .stream_rows(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted);
    assert!(error.message().contains("--max-row-streams"), "{error:?}");
    // Unary calls still answer while the streams stay open.
    for _ in 0..3 {
        app.client
            .clone()
            .list_destinations(proto::ListDestinationsRequest {})
            .await
            .unwrap();
    }
    drop(open);
}

/// A slow upstream and short deadlines: the upstream never has more requests at once than
/// `--max-in-flight-batches`, nothing is sent after its call's stop, and every event the
/// upstream stored is reported delivered or "may have the event" — never "nothing was sent".
#[tokio::test]
async fn deadlines_never_burst_upstream_nor_hide_what_was_sent() {
    let (app, fake, d) = setup_with(|s| {
        s.delivery.retry.max_in_flight = 2;
        s.delivery.batch.max_events = 10;
    })
    .await;
    app.create_mapping(&d, &track_with_message_id("orders"))
        .await;
    // Every request takes 1.2 s (under the 2 s attempt timeout); the calls stop one after the
    // other, 0.5 s to 1.4 s in, while the requests of earlier ones are still on the wire.
    fake.script((0..200).map(|_| Fault::Slow(Duration::from_millis(1_200))));
    let mut calls = Vec::new();
    for c in 0..4 {
        let input: Vec<proto::Row> = rows_from(c * 100, 100)
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.message_id = Some(format!("c{c}-{i}"));
                r
            })
            .collect();
        let mut req = tonic::Request::new(request(&d, input));
        req.set_timeout(Duration::from_millis(1_000 + 300 * c as u64));
        let mut client = app.client.clone();
        calls.push(tokio::spawn(async move {
            client.submit_rows(req).await.unwrap().into_inner()
        }));
    }
    let mut results = Vec::new();
    for c in calls {
        results.extend(c.await.unwrap().results);
    }
    // Let whatever is still on the wire land.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        fake.max_in_progress() <= 2,
        "{} requests at once",
        fake.max_in_progress()
    );
    let stored: HashSet<String> = fake.accepted().into_iter().collect();
    assert!(!stored.is_empty());
    for r in &results {
        let id = r.message_id.as_deref().unwrap();
        let message = &r
            .issues
            .first()
            .map(|i| i.message.clone())
            .unwrap_or_default();
        match status(r) {
            ResultStatus::Delivered => assert!(stored.contains(id)),
            ResultStatus::Failed if stored.contains(id) => {
                assert!(message.contains("may have the event"), "{id}: {message}")
            }
            ResultStatus::Failed => assert!(
                message.contains("may have the event") || message.contains("nothing was sent"),
                "{id}: {message}"
            ),
            s => panic!("{s:?}: {r:?}"),
        }
    }
}

/// A codec that sends bytes as they are and reads answers as StreamRowsResponse.
/// Out of file descriptors: a `serve` process limited to 48 has its accepts fail with EMFILE
/// while connections hold them. It says so in its log, naming the cause and the fix, without
/// spinning, and serves again once they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_logged_and_survived() {
    use crate::cli::{exit_status, serve_with, sigterm};
    use crate::common::bin::BIN;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let dir = tempfile::tempdir().unwrap();
    let mut limited = std::process::Command::new("prlimit");
    limited.args(["--nofile=48:48", BIN]);
    let server = serve_with(limited, dir.path(), &["--metrics-listen", "off"]);
    // Connections the kernel completes and the server must accept, each taking a descriptor.
    let holders: Vec<std::net::TcpStream> = (0..80)
        .map_while(|_| std::net::TcpStream::connect(&server.addr).ok())
        .collect();
    assert!(holders.len() > 48, "only {} connections", holders.len());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let warning = loop {
        let line = server
            .lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("no log line says the accepts fail");
        if line.contains("cannot accept connections") {
            break line;
        }
    };
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("EMFILE") && warning.contains("ulimit -n"),
        "{warning}"
    );
    drop(holders);

    // Descriptors free again: the server answers, and says it accepts again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let health = async {
            let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
                .unwrap()
                .connect()
                .await?;
            HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .map_err(Into::into)
        };
        let answered: Result<_, Box<dyn std::error::Error>> =
            tokio::time::timeout(Duration::from_secs(2), health)
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
        match answered {
            Ok(_) => break,
            Err(e) => assert!(std::time::Instant::now() < deadline, "no answer again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = std::iter::from_fn(|| server.lines.recv_timeout(Duration::from_secs(5)).ok())
        .any(|l| l.contains("accepting connections again"));
    assert!(recovered, "no log line says accepting resumed");
    sigterm(&server.child);
    assert!(exit_status(server.child).await.success());
}

mod raw {
    use bytes::{Buf as _, BufMut as _};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    use segment_connections::grpc::proto;

    pub struct RawCodec;
    pub struct RawEncoder;
    pub struct ResponseDecoder;

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = proto::StreamRowsResponse;
        type Encoder = RawEncoder;
        type Decoder = ResponseDecoder;

        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }

        fn decoder(&mut self) -> ResponseDecoder {
            ResponseDecoder
        }
    }

    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;

        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for ResponseDecoder {
        type Item = proto::StreamRowsResponse;
        type Error = tonic::Status;

        fn decode(
            &mut self,
            src: &mut DecodeBuf<'_>,
        ) -> Result<Option<proto::StreamRowsResponse>, tonic::Status> {
            let bytes = src.copy_to_bytes(src.remaining());
            prost::Message::decode(bytes)
                .map(Some)
                .map_err(|e| tonic::Status::internal(e.to_string()))
        }
    }
}

//! Sync stream messages, and a sync held open after its first chunk (the caller or the
//! replica then goes away).

use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

use segment_connections::grpc::proto::sync_request::Message as Req;
use segment_connections::grpc::proto::sync_response::Message as Ans;
use segment_connections::grpc::proto::{self, ConnectionsClient};

/// The header of a sync of the `orders` model.
pub fn header(destination_id: &str, mode: proto::SyncMode, dry_run: bool) -> proto::SyncRequest {
    header_of(destination_id, "orders", mode, dry_run)
}

/// The header of a sync of `model`.
pub fn header_of(
    destination_id: &str,
    model: &str,
    mode: proto::SyncMode,
    dry_run: bool,
) -> proto::SyncRequest {
    proto::SyncRequest {
        message: Some(Req::Header(proto::SyncHeader {
            destination_id: destination_id.into(),
            model: model.into(),
            mode: mode.into(),
            dry_run,
        })),
    }
}

pub fn chunk(chunk_id: u64, records: Vec<proto::SyncRecord>) -> proto::SyncRequest {
    proto::SyncRequest {
        message: Some(Req::Chunk(proto::SyncChunk { chunk_id, records })),
    }
}

pub fn commit() -> proto::SyncRequest {
    proto::SyncRequest {
        message: Some(Req::Commit(proto::SyncCommit {})),
    }
}

/// Opens a FULL sync of `orders` and sends one chunk; returns, once the chunk is answered, the
/// request sender (the stream stays open while it is held), the answers and the sync's id.
pub async fn open_with_chunk(
    client: ConnectionsClient<Channel>,
    destination_id: &str,
    records: Vec<proto::SyncRecord>,
) -> (
    mpsc::Sender<proto::SyncRequest>,
    tonic::Streaming<proto::SyncResponse>,
    String,
) {
    open_with_chunk_as(client, destination_id, false, records).await
}

/// [`open_with_chunk`], a dry run if `dry_run`.
#[allow(dead_code, reason = "tests/api only")]
pub async fn open_with_chunk_as(
    mut client: ConnectionsClient<Channel>,
    destination_id: &str,
    dry_run: bool,
    records: Vec<proto::SyncRecord>,
) -> (
    mpsc::Sender<proto::SyncRequest>,
    tonic::Streaming<proto::SyncResponse>,
    String,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(header(destination_id, proto::SyncMode::Full, dry_run))
        .await
        .unwrap();
    tx.send(chunk(1, records)).await.unwrap();
    let mut answers = client
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(proto::SyncResponse {
        message: Some(Ans::Started(started)),
    })) = answers.next().await
    else {
        panic!("started")
    };
    let Some(Ok(proto::SyncResponse {
        message: Some(Ans::Chunk(_)),
    })) = answers.next().await
    else {
        panic!("chunk answered")
    };
    (tx, answers, started.sync_id)
}

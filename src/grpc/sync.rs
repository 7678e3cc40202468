//! The sync RPCs' transport: the `Sync` stream's messages in and answers out, and the history
//! RPCs' conversions. The engine is `crate::sync`.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::{Status, Streaming};

use super::convert;
use super::proto;
use crate::error::Error;
use crate::issue::{Issue, IssueCode};
use crate::limits::{MAX_RESPONSE_BYTES, RequestLimits};
use crate::mapping::Op;
use crate::store::{FailureRecord, Ledger, Store, SyncMode, SyncRun, SyncStatus};
use crate::sync::{Answer, MappingCounts, Record, SyncCounts, SyncResult, SyncResultStatus, Syncs};

pub(crate) type SyncStream =
    Pin<Box<dyn Stream<Item = Result<proto::SyncResponse, Status>> + Send + 'static>>;

/// Runs one `Sync` call: the header opens the sync (or fails the call), then each chunk is
/// answered in order, `commit` sends what follows from it, and the summary ends the answers,
/// however the caller's stream ends. A caller's bad message or a service error ends the call
/// with its status after the summary.
pub(super) async fn sync<S: Store + Ledger>(
    syncs: std::sync::Arc<Syncs<S>>,
    limits: RequestLimits,
    idle: std::time::Duration,
    deadline: Option<Instant>,
    mut inbound: Streaming<proto::SyncRequest>,
) -> Result<SyncStream, Status> {
    use proto::sync_request::Message;
    let first = tokio::time::timeout(idle, inbound.message())
        .await
        .map_err(|_| Error::StreamIdle(idle))??;
    let header = match first {
        Some(proto::SyncRequest {
            message: Some(Message::Header(h)),
        }) => h,
        _ => return Err(Error::invalid("header", "the first message must be the header").into()),
    };
    let proto::SyncHeader {
        destination_id,
        model,
        mode,
        dry_run,
    } = header;
    let destination_id = convert::id("header.destination_id", destination_id)?;
    crate::store::check_model(&model).map_err(|e| Error::invalid("header.model", e))?;
    let mode = match proto::SyncMode::try_from(mode) {
        Ok(proto::SyncMode::Full) => SyncMode::Full,
        Ok(proto::SyncMode::Incremental) => SyncMode::Incremental,
        _ => {
            return Err(Error::invalid(
                "header.mode",
                "is required: SYNC_MODE_FULL (the stream holds every record) or \
                 SYNC_MODE_INCREMENTAL",
            )
            .into());
        }
    };
    let stop = deadline.map(|d| {
        syncs
            .delivery_settings()
            .stop_at(Instant::now(), Some(d - Instant::now()))
    });
    let mut running = syncs
        .start(destination_id, model, mode, dry_run, stop)
        .await?;
    let (tx, rx) = mpsc::channel(4);
    let started = proto::sync_response::Message::Started(proto::SyncStarted {
        sync_id: running.id().to_owned(),
    });
    tx.send(Ok(proto::SyncResponse {
        message: Some(started),
    }))
    .await
    .ok();
    // The caller's messages are read and their records parsed (and checksummed) by a task of
    // their own, a chunk ahead of the one the sync is working on.
    let (parsed_tx, mut parsed) = mpsc::channel(1);
    let reader = tokio::spawn(read(inbound, limits, idle, parsed_tx)).abort_handle();
    tokio::spawn(async move {
        let send = |m| proto::SyncResponse { message: Some(m) };
        // Ok(committed) or why the sync ended early; a caller's fault is also its status.
        let (committed, failure, caller): (bool, Option<Error>, Option<Status>) = loop {
            let next = tokio::select! {
                m = parsed.recv() => m.unwrap_or(Inbound::End(None)),
                () = sleep_until(deadline) => break (false, None, None),
            };
            match next {
                Inbound::Chunk(chunk_id, records) => match running.chunk(records).await {
                    Ok(answer) => {
                        let a =
                            proto::sync_response::Message::Chunk(chunk_answer(chunk_id, answer));
                        if tx.send(Ok(send(a))).await.is_err() {
                            break (false, None, None);
                        }
                    }
                    Err(e) => break (false, Some(e), None),
                },
                Inbound::Commit => match running.commit().await {
                    Ok(answer) => {
                        let a = proto::sync_response::Message::Committed(chunk_answer(0, answer));
                        tx.send(Ok(send(a))).await.ok();
                        break (true, None, None);
                    }
                    Err(e) => break (false, Some(e), None),
                },
                Inbound::End(status) => break (false, None, status),
            }
        };
        reader.abort();
        let run = running.finish(committed, failure.as_ref()).await;
        let summary = proto::sync_response::Message::Summary(info(&run));
        tx.send(Ok(send(summary))).await.ok();
        if let Some(status) = failure.map(Status::from).or(caller) {
            tx.send(Err(status)).await.ok();
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// A caller's message after the header, as the sync takes it.
enum Inbound {
    Chunk(u64, Vec<Record>),
    Commit,
    /// The stream ended without commit: half-closed or gone (`None`), or by the caller's fault.
    End(Option<Status>),
}

/// Reads the caller's messages until the commit or the end, parsing each chunk's records.
async fn read(
    mut inbound: Streaming<proto::SyncRequest>,
    limits: RequestLimits,
    idle: std::time::Duration,
    parsed: mpsc::Sender<Inbound>,
) {
    use proto::sync_request::Message;
    loop {
        let next = match tokio::time::timeout(idle, inbound.message()).await {
            Err(_) => Inbound::End(Some(Error::StreamIdle(idle).into())),
            Ok(Ok(Some(proto::SyncRequest {
                message: Some(Message::Chunk(proto::SyncChunk { chunk_id, records })),
            }))) if records.len() > limits.max_rows => {
                let e = Error::invalid(
                    "chunk.records",
                    format!(
                        "chunk {chunk_id}: {} records; at most {} per chunk (--max-submit-rows)",
                        records.len(),
                        limits.max_rows
                    ),
                );
                Inbound::End(Some(e.into()))
            }
            Ok(Ok(Some(proto::SyncRequest {
                message: Some(Message::Chunk(proto::SyncChunk { chunk_id, records })),
            }))) => {
                let records = records.into_iter().map(|r| record(r, &limits)).collect();
                Inbound::Chunk(chunk_id, records)
            }
            Ok(Ok(Some(proto::SyncRequest {
                message: Some(Message::Commit(_)),
            }))) => Inbound::Commit,
            Ok(Ok(Some(_))) => {
                let e = Error::invalid(
                    "message",
                    "after the header every message must be a chunk or the commit",
                );
                Inbound::End(Some(e.into()))
            }
            Ok(Ok(None)) => Inbound::End(None),
            Ok(Err(status)) => Inbound::End(Some(status)),
        };
        let last = !matches!(next, Inbound::Chunk(..));
        if parsed.send(next).await.is_err() || last {
            return;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A record as the engine reads it: its id checked, its columns parsed within the row limits.
fn record(r: proto::SyncRecord, limits: &RequestLimits) -> Record {
    let proto::SyncRecord { id, columns_json } = r;
    if id.is_empty() {
        let issue = Issue::new(IssueCode::InvalidRow, "/id", "is required");
        return Record::new(id, Err(issue));
    }
    let row = proto::Row {
        id: id.clone(),
        op: proto::Op::Added as i32,
        columns_json,
        message_id: None,
    };
    let row = convert::row(row, &limits.rows);
    Record::new(id, row)
}

fn change(op: Option<Op>) -> i32 {
    (match op {
        None => proto::SyncChange::Unspecified,
        Some(Op::Added) => proto::SyncChange::Added,
        Some(Op::Updated) => proto::SyncChange::Updated,
        Some(Op::Deleted) => proto::SyncChange::Deleted,
    }) as i32
}

fn result_status(s: SyncResultStatus) -> i32 {
    (match s {
        SyncResultStatus::Delivered => proto::SyncResultStatus::Delivered,
        SyncResultStatus::Rejected => proto::SyncResultStatus::Rejected,
        SyncResultStatus::Failed => proto::SyncResultStatus::Failed,
        SyncResultStatus::Skipped => proto::SyncResultStatus::Skipped,
        SyncResultStatus::GaveUp => proto::SyncResultStatus::GaveUp,
        SyncResultStatus::WouldSend => proto::SyncResultStatus::WouldSend,
    }) as i32
}

fn result(r: SyncResult) -> proto::SyncResult {
    proto::SyncResult {
        record_id: r.record_id,
        mapping_id: r.mapping_id,
        change: change(r.change),
        status: result_status(r.status),
        message_id: r.message_id,
        issues: r.issues.into_iter().map(convert::to_proto_issue).collect(),
        retried: r.retried,
        event_json: r.event_json,
    }
}

fn counts(c: &MappingCounts) -> proto::SyncMappingCounts {
    proto::SyncMappingCounts {
        mapping_id: c.mapping_id.clone(),
        added: c.added,
        updated: c.updated,
        deleted: c.deleted,
        unchanged: c.unchanged,
        delivered: c.delivered,
        rejected: c.rejected,
        failed: c.failed,
        skipped: c.skipped,
        retried: c.retried,
        gave_up: c.gave_up,
        would_send: c.would_send,
    }
}

/// A chunk's answer, its results listed while the answer stays within the response bound.
fn chunk_answer(chunk_id: u64, answer: Answer) -> proto::SyncChunkAnswer {
    use prost::Message as _;
    let mut out = proto::SyncChunkAnswer {
        chunk_id,
        counts: answer.counts.mappings.iter().map(counts).collect(),
        results: Vec::new(),
        truncated: false,
    };
    let mut size = out.encoded_len();
    for r in answer.results {
        let r = result(r);
        let len = r.encoded_len() + 8;
        if size + len > MAX_RESPONSE_BYTES {
            out.truncated = true;
            break;
        }
        size += len;
        out.results.push(r);
    }
    out
}

pub(super) fn status(s: SyncStatus) -> i32 {
    (match s {
        SyncStatus::Running => proto::SyncStatus::Running,
        SyncStatus::Completed => proto::SyncStatus::Completed,
        SyncStatus::CompletedWithFailures => proto::SyncStatus::CompletedWithFailures,
        SyncStatus::Incomplete => proto::SyncStatus::Incomplete,
        SyncStatus::Abandoned => proto::SyncStatus::Abandoned,
        SyncStatus::Failed => proto::SyncStatus::Failed,
    }) as i32
}

pub(super) fn info(run: &SyncRun) -> proto::SyncInfo {
    let c = SyncCounts::parse(&run.counts);
    proto::SyncInfo {
        id: run.id.clone(),
        destination_id: run.destination_id.clone(),
        model: run.model.clone(),
        mode: match run.mode {
            SyncMode::Full => proto::SyncMode::Full,
            SyncMode::Incremental => proto::SyncMode::Incremental,
        } as i32,
        dry_run: run.dry_run,
        status: status(run.status),
        started_at_ms: run.started_at,
        ended_at_ms: run.ended_at,
        received: run.received,
        mappings: c.mappings.iter().map(counts).collect(),
        message: run.message.clone(),
        rejected_records: c.rejected_records,
        estimated_calls: c.estimated_calls,
        estimated_new_users: c.estimated_new_users,
    }
}

pub(super) fn failure(f: FailureRecord) -> proto::SyncFailure {
    let code = IssueCode::parse(&f.code)
        .map(|c| convert::to_proto_issue_code(c) as i32)
        .unwrap_or(0);
    proto::SyncFailure {
        record_id: f.record_id,
        mapping_id: f.mapping_id,
        status: SyncResultStatus::parse(&f.status)
            .map(result_status)
            .unwrap_or(0),
        issue: Some(proto::Issue {
            code,
            pointer: f.pointer,
            message: f.message,
        }),
        message_id: f.message_id,
        event_json: f.event_json,
    }
}

/// A page size: `0` is the default 50; at most 500.
pub(super) fn page_size(n: u32) -> u32 {
    match n {
        0 => 50,
        n => n.min(500),
    }
}

/// One page of `rows`, read with one more than `size` to know whether another follows: the
/// page, and the next page's token (`token` of its last row) or `""` on the last page.
pub(super) fn page<T>(
    mut rows: Vec<T>,
    size: u32,
    token: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next = match (more, rows.last()) {
        (true, Some(last)) => token(last),
        _ => String::new(),
    };
    (rows, next)
}

/// ListSyncs' page token: the last sync's `started_at` and id.
pub(super) fn syncs_token(run: &SyncRun) -> String {
    format!("{}.{}", run.started_at, run.id)
}

pub(super) fn parse_syncs_token(t: &str) -> Result<Option<(i64, String)>, Error> {
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "is not a token from a previous answer");
    let (at, id) = t.split_once('.').ok_or_else(bad)?;
    Ok(Some((at.parse().map_err(|_| bad())?, id.to_owned())))
}

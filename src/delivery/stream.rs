//! StreamRows' flow control, apart from the transport: chunks are read only while their rows fit
//! in the stream's in-flight budget (so a fast caller waits on HTTP/2 flow control instead of
//! filling memory), each chunk is delivered in a task of its own against the target as it is then
//! (a mapping changed mid-stream is seen by the next chunk), every chunk taken is answered before
//! the stream ends, and a stream with no message and nothing in flight for `stream_idle` is
//! closed.

use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Delivery, Input, RowResult, SeenIds};
use crate::error::Error;
use crate::store::Store;

/// One chunk as the caller sent it: its id and its rows, not yet read (each becomes an
/// [`Input`] in the chunk's own task).
#[derive(Debug)]
pub(crate) struct Chunk<R> {
    pub id: u64,
    pub rows: Vec<R>,
}

/// A chunk's results, in row order.
#[derive(Debug)]
pub(crate) struct ChunkAnswer {
    pub chunk_id: u64,
    /// The rows the chunk held.
    pub rows: usize,
    pub results: Vec<RowResult>,
}

/// Why a stream ended other than by the caller half-closing it: the caller's own stream failed
/// (`Caller`, passed through: a message the transport refused, such as an oversize chunk), or
/// the service ended it (`Error`: the idle timeout, a target that went away).
#[derive(Debug)]
pub(crate) enum StreamEnd<E> {
    Caller(E),
    Error(Error),
}

/// The answers of one stream: one per chunk, then at most one end.
pub(super) type Answers<E> = mpsc::Receiver<Result<ChunkAnswer, StreamEnd<E>>>;

impl<S: Store> Delivery<S> {
    /// Opens a stream to `(destination_id, model)`: the target is checked once before any chunk
    /// is read (an unknown destination or model fails the call itself), then every chunk of
    /// `inbound` is delivered under the flow control above. `stream_stop` is the caller's
    /// deadline for the whole stream; without one each chunk gets the default.
    pub(crate) async fn stream<R, E, In, F>(
        self: &Arc<Self>,
        destination_id: String,
        model: String,
        stream_stop: Option<Instant>,
        mut inbound: In,
        read_row: F,
    ) -> Result<Answers<E>, Error>
    where
        R: Send + 'static,
        E: Send + 'static,
        In: Stream<Item = Result<Chunk<R>, E>> + Send + Unpin + 'static,
        F: Fn(R) -> Input + Clone + Send + Sync + 'static,
    {
        let settings = self.settings.clone();
        let stop_of_chunk =
            move || stream_stop.unwrap_or_else(|| settings.stop_at(Instant::now(), None));
        self.target(&destination_id, &model, stop_of_chunk())
            .await?;
        let settings = &self.settings;
        let idle = settings.stream_idle;
        let in_flight = settings.stream_rows_in_flight.max(1);
        let seen = Arc::new(SeenIds::window(settings.stream_dedup_window));
        let budget = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let key = Arc::new((destination_id, model));
        let (tx, rx) = mpsc::channel(8);
        let delivery = self.clone();
        tokio::spawn(async move {
            let mut chunks = tokio::task::JoinSet::new();
            // Why the stream ends, if not by the caller half-closing it.
            let ended: Option<StreamEnd<E>> = loop {
                // Idle: no message and nothing in flight for `idle`.
                let next = tokio::select! {
                    m = inbound.next() => m,
                    Some(_) = chunks.join_next(), if !chunks.is_empty() => continue,
                    () = tokio::time::sleep(idle), if chunks.is_empty() => {
                        break Some(StreamEnd::Error(Error::StreamIdle(idle)));
                    }
                };
                let Chunk { id, rows } = match next {
                    None => break None,
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => break Some(StreamEnd::Caller(e)),
                };
                let weight = rows.len().clamp(1, in_flight) as u32;
                let Ok(permit) = budget.clone().acquire_many_owned(weight).await else {
                    break None;
                };
                let stop = stop_of_chunk();
                let (delivery, key, seen, tx, read_row) = (
                    delivery.clone(),
                    key.clone(),
                    seen.clone(),
                    tx.clone(),
                    read_row.clone(),
                );
                chunks.spawn(async move {
                    let answer = match delivery.target(&key.0, &key.1, stop).await {
                        Ok(target) => {
                            let n = rows.len();
                            let inputs = rows.into_iter().map(read_row).collect();
                            let results = delivery.submit(&target, inputs, &seen, stop).await;
                            Ok(ChunkAnswer {
                                chunk_id: id,
                                rows: n,
                                results,
                            })
                        }
                        Err(e) => Err(StreamEnd::Error(e)),
                    };
                    tx.send(answer).await.ok();
                    drop(permit);
                });
            };
            // Every chunk already taken is answered before the stream ends with its error.
            while chunks.join_next().await.is_some() {}
            if let Some(end) = ended {
                tx.send(Err(end)).await.ok();
            }
        });
        Ok(rx)
    }
}

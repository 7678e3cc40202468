//! `segment-connections rows submit`: a JSON Lines file (or standard input) streamed over
//! StreamRows, a chunk at a time, with at most [`WINDOW`] chunks sent and not yet answered: the
//! memory it takes does not grow with the file. The answers (which may come in any order) are
//! put back in the file's order; a broken stream is opened again and the chunks it did not
//! answer are sent again, the rows as they were (so with the same messageIds); on Ctrl-C the
//! chunks sent are answered before it stops. However it stops, it says up to which line every
//! row is confirmed, where `--from-line` resumes.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use super::client::{self, ClientArgs, Failure};
use super::jsonl::JsonLines;
use super::progress::{Progress, rate};
use super::syncs::MAX_LISTED;
use crate::delivery::{Counts, RowResult, RowStatus};
use crate::grpc::convert;
use crate::grpc::proto;
use crate::grpc::proto::stream_rows_request::Message as Req;
use crate::mapping::Row;

/// Chunks sent and not yet answered, at most: with [`CHUNK_BYTES`], what bounds the rows in
/// memory (a broken stream's unanswered chunks are sent again, so they are kept until answered).
pub const WINDOW: usize = 8;
/// Bytes of rows per chunk, about; a larger row is sent alone.
const CHUNK_BYTES: usize = 1 << 20;
/// The wait before the first retry; it doubles each time, up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// The longest wait a server's retry delay gets.
const MAX_SERVER_DELAY: Duration = Duration::from_secs(60);

/// `rows submit`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    /// The destination's id.
    #[arg(long, env = "SEGMENT_CONNECTIONS_DESTINATION")]
    destination: String,
    /// The rows' model.
    #[arg(long, env = "SEGMENT_CONNECTIONS_MODEL")]
    model: String,
    /// A JSON Lines file: one row per line (`{"id", "op", "columns", "message_id"}`); `-` for
    /// standard input (read once: a bad line there stops the run at that line).
    #[arg(short = 'f', long = "file", env = "SEGMENT_CONNECTIONS_FILE")]
    file: PathBuf,
    /// Rows per chunk (at most the server's --max-submit-rows); a chunk also stops at about
    /// 1 MiB of rows.
    #[arg(long, env = "SEGMENT_CONNECTIONS_BATCH_SIZE", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Also list the DELIVERED results, each with its messageId: with --json under
    /// `delivered_ids` (`[{"line", "row_index", "row_id", "mapping_id", "message_id"}]`),
    /// in text as a line per result (kept in memory until the end).
    #[arg(long, env = "SEGMENT_CONNECTIONS_DELIVERED_IDS")]
    delivered_ids: bool,
    /// Start at this line of the file (1-based, as a run that stopped early prints it): the
    /// lines before it are skipped, not sent; results keep the file's line numbers.
    #[arg(long, env = "SEGMENT_CONNECTIONS_FROM_LINE", default_value_t = 1,
          value_parser = line_number, allow_hyphen_values = true)]
    from_line: u64,
    /// Retries in a row after UNAVAILABLE, RESOURCE_EXHAUSTED with a retry delay, or a broken
    /// connection, at most; each waits twice as long as the one before (0.2 s up to 10 s), at
    /// least as long as the server asked. The chunks not answered are sent again.
    #[arg(long, env = "SEGMENT_CONNECTIONS_RETRIES", default_value_t = 10)]
    retries: u32,
}

/// `--from-line`'s value: a line number, from 1.
fn line_number(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => {
            Err("expected a line number (1 or more), as a run that stopped early prints it".into())
        }
    }
}

/// Rows of the file, read ahead of the stream a chunk at a time.
#[derive(Default)]
struct Chunk {
    rows: Vec<proto::Row>,
    /// Each row's line in the file.
    lines: Vec<usize>,
    /// No row follows (the rows may then be none).
    last: bool,
}

/// Reads `path` (from line `from`) into chunks of at most `batch` rows and about
/// [`CHUNK_BYTES`], each given to `emit` (which returns false to stop reading). A bad line, or a
/// `from` past the file's end, is a usage error naming it.
fn read_chunks(
    path: &Path,
    batch: usize,
    from: u64,
    mut emit: impl FnMut(Chunk) -> bool,
) -> Result<(), Failure> {
    let mut file = JsonLines::open(path)?;
    let mut chunk = Chunk::default();
    let mut bytes = 0;
    while let Some((n, line)) = file.next()? {
        if (n as u64) < from {
            continue;
        }
        let row = Row::from_json(line).map(|r| convert::to_proto_row(&r));
        let row = row.map_err(|e| file.error_at(n, format!("not a row: {e}")))?;
        let size = row.id.len()
            + row.columns_json.len()
            + row.message_id.as_ref().map_or(0, String::len)
            + 16;
        // Sent once the next row is read: a chunk not `last` has a row after it.
        if !chunk.rows.is_empty() && (chunk.rows.len() >= batch || bytes + size > CHUNK_BYTES) {
            if !emit(std::mem::take(&mut chunk)) {
                return Ok(());
            }
            bytes = 0;
        }
        bytes += size;
        chunk.rows.push(row);
        chunk.lines.push(n);
    }
    if from > 1 && from > file.lines() as u64 {
        return Err(file.error(format!(
            "--from-line {from} is past the end: the file has {} lines",
            file.lines()
        )));
    }
    chunk.last = true;
    emit(chunk);
    Ok(())
}

/// [`read_chunks`] on a thread of its own (standard input may keep it waiting), one chunk ahead
/// of the stream; then a usage error, if the file has a bad line.
fn spawn_reader(path: PathBuf, batch: usize, from: u64) -> mpsc::Receiver<Result<Chunk, Failure>> {
    let (tx, rx) = mpsc::channel(1);
    std::thread::spawn(move || {
        let read = read_chunks(&path, batch, from, |c| tx.blocking_send(Ok(c)).is_ok());
        if let Err(f) = read {
            tx.blocking_send(Err(f)).ok();
        }
    });
    rx
}

/// A chunk sent, until it is answered and every chunk before it is too.
struct Pending {
    id: u64,
    /// The row_index of its first row (rows are counted from 0 over the run).
    first: u32,
    lines: Vec<usize>,
    /// The rows, kept to be sent again if the stream breaks first; empty once answered.
    rows: Vec<proto::Row>,
    answer: Option<proto::StreamRowsResponse>,
}

/// How one stream ended.
enum Stop {
    /// Every row was answered.
    Done,
    /// Ctrl-C (after the chunks sent were answered, or at once on a second one).
    Interrupted,
    /// A bad line (of standard input), after the chunks before it were answered.
    BadLine(Failure),
    /// The call failed; `connected` once the connection was made.
    Failed { failure: Failure, connected: bool },
}

/// A run of `rows submit`: the chunks in flight and what their answers said.
struct Run {
    args: ClientArgs,
    a: SubmitArgs,
    source: mpsc::Receiver<Result<Chunk, Failure>>,
    interrupts: Signal,
    progress: Progress,
    window: VecDeque<Pending>,
    next_id: u64,
    next_index: u32,
    /// The line after the last row taken from the file.
    next_line: usize,
    /// The last chunk was taken.
    read_all: bool,
    counts: Counts,
    /// Rows sent, and rows answered.
    sent: u64,
    confirmed: u64,
    /// Results not DELIVERED (the first [`MAX_LISTED`]) and, with --delivered-ids, DELIVERED
    /// ones, each with its row's line.
    shown: Vec<(RowResult, Option<usize>)>,
    delivered: Vec<(RowResult, Option<usize>)>,
    /// Results not DELIVERED, and DELIVERED ones with --delivered-ids, not listed.
    unlisted: u64,
    delivered_unlisted: u64,
}

pub(crate) async fn submit(args: ClientArgs, a: SubmitArgs) -> Result<ExitCode, Failure> {
    let interrupts = signal(SignalKind::interrupt())
        .map_err(|e| Failure::Usage(format!("listening for Ctrl-C: {e}")))?;
    let batch = a.batch_size as usize;
    // A file is read once first: a bad line is named before anything is sent. Standard input
    // cannot be read twice.
    if a.file != Path::new("-") {
        read_chunks(&a.file, batch, a.from_line, |_| true)?;
    }
    let source = spawn_reader(a.file.clone(), batch, a.from_line);
    let mut run = Run {
        progress: Progress::new(args.json),
        next_line: a.from_line as usize,
        args,
        a,
        source,
        interrupts,
        window: VecDeque::new(),
        next_id: 0,
        next_index: 0,
        read_all: false,
        counts: Counts::default(),
        sent: 0,
        confirmed: 0,
        shown: Vec::new(),
        delivered: Vec::new(),
        unlisted: 0,
        delivered_unlisted: 0,
    };
    let mut attempt = 0;
    let stop = loop {
        let (stop, answered) = run.stream().await;
        let Stop::Failed { failure, connected } = stop else {
            break stop;
        };
        // Retries in a row: an answer starts the count again.
        attempt = if answered { 1 } else { attempt + 1 };
        let delay = match client::retry_delay(&run.args, &failure, !connected).await {
            Some(asked) if attempt <= run.a.retries => backoff(attempt, asked),
            _ => break Stop::Failed { failure, connected },
        };
        run.note(&format!(
            "{}; retry {attempt} of {} in {:.1} s",
            brief(&failure),
            run.a.retries,
            delay.as_secs_f64()
        ));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = run.interrupts.recv() => break Stop::Interrupted,
        }
    };
    run.progress.clear();
    run.report(stop)
}

/// The wait before retry `attempt` (1-based): exponential from [`BACKOFF_BASE`] to
/// [`BACKOFF_CAP`], between half of that and all of it (so that callers do not retry in step),
/// and never less than the server asked for (up to [`MAX_SERVER_DELAY`]).
fn backoff(attempt: u32, asked: Duration) -> Duration {
    use std::hash::BuildHasher as _;
    let exp = BACKOFF_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
    let jittered = exp.mul_f64(0.5 + (random % 1000) as f64 / 2000.0);
    jittered.max(asked.min(MAX_SERVER_DELAY))
}

/// A failure in a few words, for a retry's note.
fn brief(failure: &Failure) -> String {
    match failure {
        Failure::Server(s) => format!("{}: {}", client::code_name(s.code()), s.message()),
        Failure::Transport(m) | Failure::Unreachable(m) | Failure::Usage(m) => m.clone(),
        Failure::Interrupted(m) => m.clone(),
    }
}

impl Run {
    /// One stream: opens it, sends again the chunks not answered, then sends the file's chunks
    /// while reading the answers, until every row is answered or the stream stops. Also whether
    /// any answer came.
    async fn stream(&mut self) -> (Stop, bool) {
        let connected = tokio::select! {
            c = client::connect(&self.args) => c,
            _ = self.interrupts.recv() => return (Stop::Interrupted, false),
        };
        let mut c = match connected {
            Ok(c) => c,
            Err(failure) => {
                let connected = false;
                return (Stop::Failed { failure, connected }, false);
            }
        };
        let failed = |s: tonic::Status| Stop::Failed {
            failure: Failure::from(s),
            connected: true,
        };
        // The header, the chunks to send again and the window's new ones always fit.
        let (tx, rx) = mpsc::channel(WINDOW + 1);
        let results = match self.a.delivered_ids {
            // Only what is printed: the counts cover the rest.
            true => proto::ResultFilter::All,
            false => proto::ResultFilter::NotDelivered,
        };
        let header = proto::StreamHeader {
            destination_id: self.a.destination.clone(),
            model: self.a.model.clone(),
            results: results.into(),
        };
        tx.try_send(proto::StreamRowsRequest {
            message: Some(Req::Header(header)),
        })
        .ok();
        for p in self.window.iter().filter(|p| p.answer.is_none()) {
            tx.try_send(request(p.id, p.rows.clone())).ok();
        }
        // Dropped (the stream half-closed) once nothing more is to be sent.
        let mut tx = (!self.read_all).then_some(tx);
        let call = c.stream_rows(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut answers = tokio::select! {
            r = call => match r {
                Ok(r) => r.into_inner(),
                Err(s) => return (failed(s), false),
            },
            _ = self.interrupts.recv() => return (Stop::Interrupted, false),
        };
        let mut answered = false;
        // Why the run stops once the chunks sent are answered (Ctrl-C, a bad line).
        let mut stopping: Option<Stop> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            let reading = tx.is_some() && self.window.len() < WINDOW;
            tokio::select! {
                m = answers.message() => match m {
                    Ok(Some(answer)) => {
                        if let Err(failure) = self.answered(answer) {
                            return (Stop::Failed { failure, connected: true }, answered);
                        }
                        answered = true;
                        self.show();
                    }
                    Ok(None) if tx.is_none() && self.unconfirmed() == 0 => {
                        return (stopping.unwrap_or(Stop::Done), answered);
                    }
                    Ok(None) => {
                        let failure = Failure::Transport(
                            "the server ended the stream before answering every chunk".into(),
                        );
                        return (Stop::Failed { failure, connected: true }, answered);
                    }
                    Err(s) => return (failed(s), answered),
                },
                next = self.source.recv(), if reading => match next {
                    Some(Ok(chunk)) => {
                        let last = chunk.last;
                        if let (Some(req), Some(tx)) = (self.take(chunk), &tx) {
                            // A stream that ended drops this: its answers say why.
                            tx.send(req).await.ok();
                        }
                        if last {
                            self.read_all = true;
                            tx = None;
                        }
                    }
                    Some(Err(bad)) => {
                        stopping = Some(Stop::BadLine(bad));
                        tx = None;
                    }
                    None => {
                        let bad = Failure::Usage("reading the file stopped".into());
                        stopping = Some(Stop::BadLine(bad));
                        tx = None;
                    }
                },
                _ = self.interrupts.recv() => {
                    if matches!(stopping, Some(Stop::Interrupted)) {
                        return (Stop::Interrupted, answered);
                    }
                    stopping = Some(Stop::Interrupted);
                    tx = None;
                    let n = self.unconfirmed();
                    if n > 0 {
                        self.note(&format!(
                            "interrupted: waiting for the answers to the {n} rows sent \
                             (Ctrl-C again to stop at once)"
                        ));
                    }
                }
                _ = tick.tick() => self.show(),
            }
        }
    }

    /// Takes a chunk from the file into the window: the request that sends it (none for an empty
    /// last chunk).
    fn take(&mut self, chunk: Chunk) -> Option<proto::StreamRowsRequest> {
        let Chunk { rows, lines, .. } = chunk;
        let &last_line = lines.last()?;
        self.next_id += 1;
        self.sent += rows.len() as u64;
        let req = request(self.next_id, rows.clone());
        self.window.push_back(Pending {
            id: self.next_id,
            first: self.next_index,
            lines,
            rows,
            answer: None,
        });
        self.next_index += self.window.back().map_or(0, |p| p.rows.len() as u32);
        self.next_line = last_line + 1;
        Some(req)
    }

    /// An answer: its counts are added at once; its results are listed once every chunk before
    /// it is answered too (so the listing keeps the file's order).
    fn answered(&mut self, answer: proto::StreamRowsResponse) -> Result<(), Failure> {
        let Some(p) = self
            .window
            .iter_mut()
            .find(|p| p.id == answer.chunk_id && p.answer.is_none())
        else {
            return Err(Failure::Unreachable(format!(
                "the server answered chunk {}, which is not waiting for an answer",
                answer.chunk_id
            )));
        };
        let n = answer.counts.unwrap_or_default();
        self.counts.delivered += n.delivered;
        self.counts.rejected += n.rejected;
        self.counts.failed += n.failed;
        self.counts.skipped += n.skipped;
        self.confirmed += p.lines.len() as u64;
        p.rows = Vec::new();
        p.answer = Some(answer);
        while self.window.front().is_some_and(|p| p.answer.is_some()) {
            if let Some(p) = self.window.pop_front() {
                self.list(p)?;
            }
        }
        Ok(())
    }

    /// Lists an answered chunk's results, each with its row's line and its row_index over the
    /// run.
    fn list(&mut self, p: Pending) -> Result<(), Failure> {
        let Some(answer) = p.answer else {
            return Ok(());
        };
        let n = answer.counts.unwrap_or_default();
        let (mut listed, mut listed_delivered) = (0u32, 0u32);
        for r in answer.results {
            let Some(mut r) = convert::row_result_from_proto(r) else {
                return Err(Failure::Usage(
                    "the server answered a result status this build does not know".into(),
                ));
            };
            let line = p.lines.get(r.row_index as usize).copied();
            r.row_index += p.first;
            if r.status != RowStatus::Delivered {
                listed += 1;
                match self.shown.len() < MAX_LISTED {
                    true => self.shown.push((r, line)),
                    false => self.unlisted += 1,
                }
            } else if self.a.delivered_ids {
                listed_delivered += 1;
                self.delivered.push((r, line));
            }
        }
        self.unlisted += u64::from((n.rejected + n.failed + n.skipped).saturating_sub(listed));
        if self.a.delivered_ids {
            self.delivered_unlisted += u64::from(n.delivered.saturating_sub(listed_delivered));
        }
        Ok(())
    }

    /// Rows sent and not answered.
    fn unconfirmed(&self) -> u64 {
        self.window
            .iter()
            .filter(|p| p.answer.is_none())
            .map(|p| p.lines.len() as u64)
            .sum()
    }

    /// The first line whose row is not answered: every row before it is.
    fn first_unconfirmed_line(&self) -> usize {
        self.window
            .iter()
            .find(|p| p.answer.is_none())
            .and_then(|p| p.lines.first().copied())
            .unwrap_or(self.next_line)
    }

    fn show(&mut self) {
        let (confirmed, c) = (self.confirmed, &self.counts);
        self.progress.show(|t| {
            format!(
                "{confirmed} rows answered ({:.0} rows/s): delivered {}, rejected {}, failed {}, \
                 skipped {}",
                rate(confirmed, t),
                c.delivered,
                c.rejected,
                c.failed,
                c.skipped
            )
        });
    }

    /// A line on stderr in text mode (the progress line erased first).
    fn note(&mut self, line: &str) {
        if !self.args.json {
            self.progress.clear();
            eprintln!("{line}");
        }
    }

    /// Prints what was answered (and, when the run stopped early, the first line not confirmed);
    /// the exit code, or the failure to report after it. A run that failed before sending a row
    /// (the call refused) prints only its failure.
    fn report(mut self, stop: Stop) -> Result<ExitCode, Failure> {
        let first = self.first_unconfirmed_line();
        let unconfirmed = self.unconfirmed();
        // The chunks answered after one that was not, in order.
        for p in std::mem::take(&mut self.window) {
            self.list(p)?;
        }
        let failed = match stop {
            Stop::Done => None,
            Stop::Interrupted => Some(Failure::Interrupted("interrupted".into())),
            Stop::BadLine(failure) | Stop::Failed { failure, .. } => Some(failure),
        };
        let complete =
            self.read_all && unconfirmed == 0 && !matches!(failed, Some(Failure::Usage(_)));
        if let Some(failure) = failed.filter(|_| !complete) {
            if self.sent > 0 || matches!(failure, Failure::Interrupted(_)) {
                self.print(Some((first, unconfirmed)));
            }
            return Err(failure);
        }
        self.print(None);
        Ok(if self.counts.rejected == 0 && self.counts.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }

    /// The counts and the results listed, as text or JSON; `stopped`: the first line not
    /// confirmed and the rows sent without an answer, when the run stopped before the end.
    fn print(&self, stopped: Option<(usize, u64)>) {
        let Counts {
            delivered,
            rejected,
            failed,
            skipped,
        } = self.counts;
        if self.args.json {
            let results: Vec<_> = self
                .shown
                .iter()
                .map(|(r, line)| {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("line".into(), json!(line));
                    }
                    v
                })
                .collect();
            let mut doc = json!({
                "delivered": delivered,
                "rejected": rejected,
                "failed": failed,
                "skipped": skipped,
                "results": results,
                "unlisted": self.unlisted,
                "complete": stopped.is_none(),
            });
            if let Some((line, unconfirmed)) = stopped {
                doc["first_unconfirmed_line"] = json!(line);
                doc["unconfirmed_rows"] = json!(unconfirmed);
            }
            if self.a.delivered_ids {
                doc["delivered_ids"] = self
                    .delivered
                    .iter()
                    .map(|(r, line)| {
                        json!({
                            "line": line,
                            "row_index": r.row_index,
                            "row_id": r.row_id,
                            "mapping_id": r.mapping_id,
                            "message_id": r.message_id,
                        })
                    })
                    .collect();
                doc["delivered_unlisted"] = json!(self.delivered_unlisted);
            }
            client::print_json(&doc);
            return;
        }
        println!("delivered {delivered}, rejected {rejected}, failed {failed}, skipped {skipped}");
        for (r, line) in self.delivered.iter().chain(&self.shown) {
            println!("{}", describe(r, *line));
        }
        if self.delivered_unlisted > 0 {
            println!(
                "{} more delivered results are not listed (the server's response size limit); \
                 the counts include them",
                self.delivered_unlisted
            );
        }
        if self.unlisted > 0 {
            println!(
                "{} more results not delivered are not listed (past the first {MAX_LISTED}, or \
                 the server's response size limit); the counts include them",
                self.unlisted
            );
        }
        if let Some((line, unconfirmed)) = stopped {
            println!(
                "stopped before the end: every row before line {line} is answered, from there \
                 not{}; resume with --from-line {line}",
                match unconfirmed {
                    0 => String::new(),
                    n => format!(" ({n} rows sent got no answer)"),
                }
            );
        }
    }
}

fn request(chunk_id: u64, rows: Vec<proto::Row>) -> proto::StreamRowsRequest {
    proto::StreamRowsRequest {
        message: Some(Req::Chunk(proto::RowChunk { chunk_id, rows })),
    }
}

/// One result as a line: `line N (id ...) mapping ...: STATUS ...`, N the row's line in the
/// file (the 0-based row index when the server named a row the file does not have).
fn describe(r: &RowResult, line: Option<usize>) -> String {
    let status = match r.status {
        RowStatus::Delivered => "DELIVERED",
        RowStatus::Rejected => "REJECTED",
        RowStatus::Failed | RowStatus::Pending => "FAILED",
        RowStatus::Skipped => "SKIPPED",
    };
    let mut line = match line {
        Some(n) => format!("line {n} (id {:?})", r.row_id),
        None => format!("row_index {} (id {:?})", r.row_index, r.row_id),
    };
    if !r.mapping_id.is_empty() {
        line.push_str(&format!(" mapping {}", r.mapping_id));
    }
    line.push_str(&format!(": {status}"));
    if let Some(id) = &r.message_id {
        line.push_str(&format!(" messageId {id}"));
    }
    if r.status == RowStatus::Failed {
        if let Some(s) = r.upstream_status {
            line.push_str(&format!(" status {s}"));
        }
        line.push_str(&format!(
            " attempts {}{}",
            r.attempts,
            if r.retryable { " (retryable)" } else { "" }
        ));
    }
    for i in &r.issues {
        line.push_str(&format!("\n  {} {:?}: {}", i.code, i.pointer, i.message));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_honours_the_server() {
        for attempt in 1..=30 {
            let exp = BACKOFF_BASE
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(BACKOFF_CAP);
            let d = backoff(attempt, Duration::ZERO);
            assert!(d >= exp / 2 && d <= exp, "{attempt}: {d:?}");
        }
        assert!(backoff(30, Duration::ZERO) <= BACKOFF_CAP);
        assert_eq!(backoff(1, Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(backoff(1, Duration::from_secs(600)), MAX_SERVER_DELAY);
    }

    #[test]
    fn chunks_are_bounded_and_keep_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let row = |i: usize| format!(r#"{{"id": "r-{i}", "op": "added", "columns": {{}}}}"#);
        let text: Vec<String> = (1..=7).map(row).collect();
        // Line 4 is blank; rows are on lines 1-3 and 5-8.
        let content = format!("{}\n\n{}\n", text[..3].join("\n"), text[3..].join("\n"));
        std::fs::write(&path, content).unwrap();
        let read = |from: u64| {
            let mut chunks = Vec::new();
            read_chunks(&path, 3, from, |c| {
                chunks.push((c.lines, c.last));
                true
            })
            .map(|()| chunks)
        };
        assert_eq!(
            read(1).unwrap(),
            [
                (vec![1, 2, 3], false),
                (vec![5, 6, 7], false),
                (vec![8], true)
            ]
        );
        assert_eq!(read(4).unwrap(), [(vec![5, 6, 7], false), (vec![8], true)]);
        assert_eq!(read(8).unwrap(), [(vec![8], true)]);
        match read(9) {
            Err(Failure::Usage(m)) => assert!(m.contains("--from-line 9 is past the end"), "{m}"),
            _ => panic!("past the end"),
        }
        // A bad line is named, even past --from-line's start.
        std::fs::write(&path, format!("{}\nnope\n", row(1))).unwrap();
        match read(1) {
            Err(Failure::Usage(m)) => assert!(m.contains("rows.jsonl:2: not a row"), "{m}"),
            _ => panic!("a bad line"),
        }
        assert!(read(2).is_err());
    }

    #[test]
    fn from_line_values() {
        assert_eq!(line_number("1"), Ok(1));
        assert_eq!(line_number("16001"), Ok(16001));
        for bad in ["0", "-1", "x", "", "1.5", " 2"] {
            assert!(line_number(bad).is_err(), "{bad:?}");
        }
    }
}

//! `segment-connections rows sync` (records from a JSON Lines file or a PostgreSQL query, sent
//! over the Sync stream in chunks while its answers are read) and `syncs list|get|reset` (the
//! history RPCs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::client::{self, ClientArgs, Failure};
use super::jsonl::JsonLines;
use super::pg_source::PgSource;
use super::progress::{Progress, rate};
use crate::grpc::proto;
use crate::grpc::proto::sync_request::Message as Req;
use crate::grpc::proto::sync_response::Message as Ans;

/// `rows sync`'s flags.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "from_postgres"])))]
pub struct SyncArgs {
    /// The destination's id.
    #[arg(long, env = "SEGMENT_CONNECTIONS_DESTINATION")]
    destination: String,
    /// The records' model.
    #[arg(long, env = "SEGMENT_CONNECTIONS_MODEL")]
    model: String,
    /// A JSON Lines file: one record per line, `{"id": "..." or a number, "columns": {...}}`;
    /// `-` for standard input (read once: a bad line there ends the sync without its commit).
    #[arg(short = 'f', long = "file", env = "SEGMENT_CONNECTIONS_FILE")]
    file: Option<PathBuf>,
    /// A PostgreSQL URL to read the records from, with --query and --id-column.
    #[arg(long, env = "SEGMENT_CONNECTIONS_FROM_POSTGRES", hide_env_values = true,
          requires_all = ["query", "id_column"], conflicts_with = "file")]
    from_postgres: Option<String>,
    /// The query whose rows are the records (a SELECT; every column becomes a column).
    #[arg(long, env = "SEGMENT_CONNECTIONS_QUERY", requires = "from_postgres")]
    query: Option<String>,
    /// The query's column holding each record's unique id.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_ID_COLUMN",
        requires = "from_postgres"
    )]
    id_column: Option<String>,
    /// The records are some of the model's: nothing is deleted (without it, records synced
    /// before and missing now are sent as deleted).
    #[arg(long, env = "SEGMENT_CONNECTIONS_INCREMENTAL")]
    incremental: bool,
    /// Work out and render the changes, send nothing, change nothing.
    #[arg(long, env = "SEGMENT_CONNECTIONS_DRY_RUN")]
    dry_run: bool,
    /// Records per chunk (at most the server's --max-submit-rows).
    #[arg(long, env = "SEGMENT_CONNECTIONS_CHUNK_SIZE", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    chunk_size: u32,
    /// Bytes of records per chunk, about (keep it under the server's --max-request-bytes); a
    /// record larger than this is sent alone.
    #[arg(long, env = "SEGMENT_CONNECTIONS_CHUNK_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    chunk_bytes: u32,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SyncsCommand {
    /// The destination's syncs, newest first (every page).
    List {
        /// The destination's id.
        #[arg(long, env = "SEGMENT_CONNECTIONS_DESTINATION")]
        destination: String,
        /// Only this model's syncs.
        #[arg(long, env = "SEGMENT_CONNECTIONS_MODEL")]
        model: Option<String>,
    },
    /// One sync: its status and counts per mapping.
    Get {
        /// The sync's id.
        sync_id: String,
        /// Also list every failure of the sync (rejected, failed, gave up).
        #[arg(long)]
        failures: bool,
    },
    /// Forget what was synced of a model (its ledger): the next sync sends every record as
    /// added. Prints how many ledger entries were forgotten.
    Reset {
        /// The destination's id.
        #[arg(long, env = "SEGMENT_CONNECTIONS_DESTINATION")]
        destination: String,
        /// The model.
        #[arg(long, env = "SEGMENT_CONNECTIONS_MODEL")]
        model: String,
        /// Only this mapping's ledger.
        #[arg(long)]
        mapping: Option<String>,
    },
}

pub fn run(args: ClientArgs, command: SyncsCommand) -> ExitCode {
    client::run(&args.clone(), history(args, command))
}

// === rows sync ===

/// A record source: the next record, `None` at the end.
enum Source {
    File(FileSource),
    Postgres(Box<PgSource>),
}

impl Source {
    async fn next(&mut self) -> Result<Option<proto::SyncRecord>, Failure> {
        match self {
            Source::File(f) => f.next(),
            Source::Postgres(p) => p.next().await,
        }
    }
}

/// A JSON Lines file of records.
struct FileSource(JsonLines);

/// One line of the file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRecord<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow)]
    columns: &'a RawValue,
}

impl FileSource {
    /// The file at `path`, or standard input for `-`.
    fn open(path: &Path) -> Result<FileSource, Failure> {
        JsonLines::open(path).map(FileSource)
    }

    /// The next non-blank line as a record; a bad line is a usage error naming its line
    /// (1-based, blank lines counted).
    fn next(&mut self) -> Result<Option<proto::SyncRecord>, Failure> {
        let Some((n, line)) = self.0.next()? else {
            return Ok(None);
        };
        let record = parse_line(line);
        record.map(Some).map_err(|e| self.0.error_at(n, e))
    }
}

/// A file line as a record: `id` a non-empty string or a number, `columns` an object (kept as
/// written, numbers' digits included).
fn parse_line(line: &[u8]) -> Result<proto::SyncRecord, String> {
    let r: FileRecord<'_> = serde_json::from_slice(line)
        .map_err(|e| format!("not a record ({{\"id\", \"columns\"}}): {e}"))?;
    let raw = r.id.get();
    let id = match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw).map_err(|e| format!("id: {e}"))?,
        Some(b'-' | b'0'..=b'9') => raw.to_owned(),
        _ => return Err(format!("id: expected a string or a number, got {raw}")),
    };
    if id.is_empty() {
        return Err("id: must not be empty".into());
    }
    if !r.columns.get().starts_with('{') {
        return Err(format!(
            "columns: expected an object, got {}",
            truncate(r.columns.get(), 40)
        ));
    }
    Ok(proto::SyncRecord {
        id,
        columns_json: r.columns.get().as_bytes().to_vec(),
    })
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// Reads the whole file once without keeping it: the first bad line's error, before anything
/// is sent.
fn check_file(path: &Path) -> Result<(), Failure> {
    let mut f = FileSource::open(path)?;
    while f.next()?.is_some() {}
    Ok(())
}

/// Failures listed after a sync's summary (and results not delivered after `rows submit`'s), at
/// most (`syncs get --failures` lists them all).
pub(crate) const MAX_LISTED: usize = 1_000;

/// Whether a result needs attention: REJECTED, FAILED or GAVE_UP (not SKIPPED, WOULD_SEND).
fn is_failure(status: i32) -> bool {
    use proto::SyncResultStatus as S;
    [S::Rejected, S::Failed, S::GaveUp]
        .iter()
        .any(|s| *s as i32 == status)
}

/// What the answers said.
#[derive(Default)]
struct Answers {
    sync_id: String,
    /// The failures, in order (up to each answer's bound and [`MAX_LISTED`]).
    results: Vec<proto::SyncResult>,
    truncated: bool,
    summary: Option<proto::SyncInfo>,
    error: Option<tonic::Status>,
}

pub(crate) async fn sync(args: ClientArgs, a: SyncArgs) -> Result<ExitCode, Failure> {
    let mut source = match (&a.file, &a.from_postgres) {
        (Some(path), _) => {
            // Standard input cannot be read twice: a bad line there ends the sync uncommitted.
            if path != Path::new("-") {
                check_file(path)?;
            }
            Source::File(FileSource::open(path)?)
        }
        (None, Some(url)) => {
            let (Some(query), Some(id_column)) = (&a.query, &a.id_column) else {
                return Err(Failure::Usage(
                    "--from-postgres needs --query and --id-column".into(),
                ));
            };
            Source::Postgres(Box::new(PgSource::open(url, query, id_column).await?))
        }
        (None, None) => {
            return Err(Failure::Usage(
                "give the records: -f FILE or --from-postgres URL".into(),
            ));
        }
    };
    let mut c = client::connect(&args).await?;
    let (tx, rx) = mpsc::channel::<proto::SyncRequest>(2);
    let header = proto::SyncHeader {
        destination_id: a.destination.clone(),
        model: a.model.clone(),
        mode: if a.incremental {
            proto::SyncMode::Incremental
        } else {
            proto::SyncMode::Full
        }
        .into(),
        dry_run: a.dry_run,
    };
    tx.send(proto::SyncRequest {
        message: Some(Req::Header(header)),
    })
    .await
    .ok();
    let mut stream = c
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();

    // Answers are read while chunks are sent, so neither side waits on the other.
    let reader = async move {
        let mut got = Answers::default();
        loop {
            match stream.message().await {
                Ok(Some(proto::SyncResponse { message: Some(m) })) => match m {
                    Ans::Started(s) => got.sync_id = s.sync_id,
                    Ans::Chunk(c) | Ans::Committed(c) => {
                        got.truncated |= c.truncated;
                        for r in c.results {
                            if !is_failure(r.status) {
                                continue;
                            }
                            if got.results.len() < MAX_LISTED {
                                got.results.push(r);
                            } else {
                                got.truncated = true;
                            }
                        }
                    }
                    Ans::Summary(s) => got.summary = Some(s),
                },
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(status) => {
                    got.error = Some(status);
                    break;
                }
            }
        }
        got
    };
    let max_records = a.chunk_size as usize;
    let max_bytes = a.chunk_bytes as usize;
    let json = args.json;
    let writer = async move {
        let mut progress = Progress::new(json);
        let mut chunk_id = 0u64;
        let mut sent = 0u64;
        let mut records: Vec<proto::SyncRecord> = Vec::new();
        let mut bytes = 0usize;
        let outcome: Result<(), Failure> = loop {
            let next = match source.next().await {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            let size = next
                .as_ref()
                .map_or(0, |r| r.id.len() + r.columns_json.len() + 16);
            let full = next.is_none()
                || records.len() >= max_records
                || (!records.is_empty() && bytes + size > max_bytes);
            if full && !records.is_empty() {
                chunk_id += 1;
                sent += records.len() as u64;
                let chunk = proto::SyncChunk {
                    chunk_id,
                    records: std::mem::take(&mut records),
                };
                bytes = 0;
                if tx
                    .send(proto::SyncRequest {
                        message: Some(Req::Chunk(chunk)),
                    })
                    .await
                    .is_err()
                {
                    // The server ended the stream: its answers say why.
                    break Ok(());
                }
                progress.show(|t| format!("sent {sent} records ({:.0} records/s)", rate(sent, t)));
            }
            match next {
                Some(r) => {
                    bytes += size;
                    records.push(r);
                }
                None => {
                    tx.send(proto::SyncRequest {
                        message: Some(Req::Commit(proto::SyncCommit {})),
                    })
                    .await
                    .ok();
                    break Ok(());
                }
            }
        };
        progress.clear();
        // Dropping the sender half-closes the stream: without the commit nothing is deleted.
        drop(tx);
        outcome
    };
    let (got, written) = tokio::join!(reader, writer);
    // A bad record found while sending: the sync ended without commit.
    written?;
    report_sync(&got, args.json)
}

/// Counts summed over a summary's mappings (`rejected` with the records rejected before any).
fn totals(s: &proto::SyncInfo) -> Value {
    let mut t = proto::SyncMappingCounts::default();
    for m in &s.mappings {
        t.added += m.added;
        t.updated += m.updated;
        t.deleted += m.deleted;
        t.unchanged += m.unchanged;
        t.delivered += m.delivered;
        t.rejected += m.rejected;
        t.failed += m.failed;
        t.skipped += m.skipped;
        t.retried += m.retried;
        t.gave_up += m.gave_up;
        t.would_send += m.would_send;
    }
    json!({
        "sync_id": s.id,
        "status": status_name(s.status),
        "received": s.received,
        "added": t.added,
        "updated": t.updated,
        "deleted": t.deleted,
        "unchanged": t.unchanged,
        "delivered": t.delivered,
        "rejected": t.rejected + s.rejected_records,
        "failed": t.failed,
        "skipped": t.skipped,
        "retried": t.retried,
        "gave_up": t.gave_up,
        "would_send": t.would_send,
    })
}

fn status_name(status: i32) -> String {
    proto::SyncStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("SYNC_STATUS_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("UNKNOWN({status})"))
}

fn result_status_name(status: i32) -> String {
    proto::SyncResultStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("SYNC_RESULT_STATUS_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("UNKNOWN({status})"))
}

fn issue_line(i: &proto::Issue) -> String {
    let code = proto::IssueCode::try_from(i.code)
        .map(|c| c.as_str_name().trim_start_matches("ISSUE_CODE_").to_owned())
        .unwrap_or_else(|_| i.code.to_string());
    format!("{code} {:?}: {}", i.pointer, i.message)
}

/// The summary as text, or as one JSON object; an error status after it (or instead of it) is
/// reported on stderr.
fn report_sync(got: &Answers, json: bool) -> Result<ExitCode, Failure> {
    let Some(summary) = &got.summary else {
        return Err(match &got.error {
            Some(status) => Failure::from(status.clone()),
            None => {
                Failure::Unreachable(format!("the sync {} ended without a summary", got.sync_id))
            }
        });
    };
    let mut t = totals(summary);
    let ok = summary.status == proto::SyncStatus::Completed as i32
        && t["rejected"] == 0
        && t["failed"] == 0;
    if json {
        if let Some(o) = t.as_object_mut() {
            o.remove("would_send");
        }
        println!("{t}");
    } else {
        print_summary(summary, &t);
        for r in &got.results {
            let change = proto::SyncChange::try_from(r.change)
                .map(|c| {
                    c.as_str_name()
                        .trim_start_matches("SYNC_CHANGE_")
                        .to_owned()
                })
                .unwrap_or_default();
            let mut line = format!("record {:?}", r.record_id);
            if !r.mapping_id.is_empty() {
                line.push_str(&format!(" mapping {}", r.mapping_id));
            }
            line.push_str(&format!(": {change} {}", result_status_name(r.status)));
            if r.retried {
                line.push_str(" (retry)");
            }
            for i in &r.issues {
                line.push_str(&format!("\n  {}", issue_line(i)));
            }
            println!("{line}");
        }
        if got.truncated {
            println!(
                "more failures are not listed; `syncs get {} --failures` lists every one",
                summary.id
            );
        }
    }
    if let Some(status) = &got.error {
        return Err(Failure::from(status.clone()));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_summary(s: &proto::SyncInfo, t: &Value) {
    let mode = if s.mode == proto::SyncMode::Incremental as i32 {
        "incremental"
    } else {
        "full"
    };
    println!(
        "sync {} ({} {mode}{}): {}",
        s.id,
        s.model,
        if s.dry_run { ", dry run" } else { "" },
        t["status"].as_str().unwrap_or_default()
    );
    println!(
        "  received {}, added {}, updated {}, deleted {}, unchanged {}",
        t["received"], t["added"], t["updated"], t["deleted"], t["unchanged"]
    );
    if s.dry_run {
        println!("  would send {}, skipped {}", t["would_send"], t["skipped"]);
    } else {
        println!(
            "  delivered {}, rejected {}, failed {}, skipped {}, retried {}, gave up {}",
            t["delivered"], t["rejected"], t["failed"], t["skipped"], t["retried"], t["gave_up"]
        );
    }
    if !s.message.is_empty() {
        println!("  {}", s.message);
    }
}

// === syncs list|get|reset ===

/// A sync as the CLI prints it with --json.
fn sync_json(s: &proto::SyncInfo) -> Value {
    let mut v = totals(s);
    if let Some(o) = v.as_object_mut() {
        o.insert("destination_id".into(), json!(s.destination_id));
        o.insert("model".into(), json!(s.model));
        o.insert(
            "mode".into(),
            json!(if s.mode == proto::SyncMode::Incremental as i32 {
                "INCREMENTAL"
            } else {
                "FULL"
            }),
        );
        o.insert("dry_run".into(), json!(s.dry_run));
        o.insert("started_at_ms".into(), json!(s.started_at_ms));
        o.insert("ended_at_ms".into(), json!(s.ended_at_ms));
        o.insert("message".into(), json!(s.message));
        o.insert("rejected_records".into(), json!(s.rejected_records));
        let mappings: Vec<Value> = s
            .mappings
            .iter()
            .map(|m| {
                json!({
                    "mapping_id": m.mapping_id, "added": m.added, "updated": m.updated,
                    "deleted": m.deleted, "unchanged": m.unchanged, "delivered": m.delivered,
                    "rejected": m.rejected, "failed": m.failed, "skipped": m.skipped,
                    "retried": m.retried, "gave_up": m.gave_up, "would_send": m.would_send,
                })
            })
            .collect();
        o.insert("mappings".into(), Value::Array(mappings));
    }
    v
}

async fn history(args: ClientArgs, command: SyncsCommand) -> Result<ExitCode, Failure> {
    let mut c = client::connect(&args).await?;
    match command {
        SyncsCommand::List { destination, model } => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = c
                    .list_syncs(proto::ListSyncsRequest {
                        destination_id: destination.clone(),
                        model: model.clone().unwrap_or_default(),
                        page_size: 500,
                        page_token,
                    })
                    .await?
                    .into_inner();
                all.extend(page.syncs);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if args.json {
                client::print_json(&all.iter().map(sync_json).collect::<Vec<_>>());
            } else if all.is_empty() {
                println!("no syncs");
            } else {
                for s in &all {
                    let t = totals(s);
                    println!(
                        "{}  {}  {}  received {} added {} updated {} deleted {} rejected {} failed {}",
                        s.id,
                        s.model,
                        t["status"].as_str().unwrap_or_default(),
                        t["received"],
                        t["added"],
                        t["updated"],
                        t["deleted"],
                        t["rejected"],
                        t["failed"],
                    );
                }
            }
        }
        SyncsCommand::Get { sync_id, failures } => {
            let s = c
                .get_sync(proto::GetSyncRequest {
                    sync_id: sync_id.clone(),
                })
                .await?
                .into_inner()
                .sync
                .unwrap_or_default();
            let mut listed = Vec::new();
            if failures {
                let mut page_token = String::new();
                loop {
                    let page = c
                        .list_sync_failures(proto::ListSyncFailuresRequest {
                            sync_id: sync_id.clone(),
                            page_size: 500,
                            page_token,
                        })
                        .await?
                        .into_inner();
                    listed.extend(page.failures);
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    page_token = page.next_page_token;
                }
            }
            if args.json {
                let mut v = sync_json(&s);
                if failures {
                    v["failures"] = listed
                        .iter()
                        .map(|f| {
                            json!({
                                "record_id": f.record_id,
                                "mapping_id": f.mapping_id,
                                "status": result_status_name(f.status),
                                "issue": f.issue.as_ref().map(|i| json!({
                                    "code": proto::IssueCode::try_from(i.code)
                                        .map(|c| c.as_str_name()).unwrap_or_default(),
                                    "pointer": i.pointer,
                                    "message": i.message,
                                })),
                                "message_id": f.message_id,
                            })
                        })
                        .collect();
                }
                client::print_json(&v);
            } else {
                let t = totals(&s);
                print_summary(&s, &t);
                for m in &s.mappings {
                    println!(
                        "  mapping {}: added {} updated {} deleted {} unchanged {} delivered {} \
                         rejected {} failed {} skipped {} retried {} gave up {}",
                        m.mapping_id,
                        m.added,
                        m.updated,
                        m.deleted,
                        m.unchanged,
                        m.delivered,
                        m.rejected,
                        m.failed,
                        m.skipped,
                        m.retried,
                        m.gave_up
                    );
                }
                if failures {
                    if listed.is_empty() {
                        println!("no failures");
                    }
                    for f in &listed {
                        let mut line = format!("record {:?}", f.record_id);
                        if !f.mapping_id.is_empty() {
                            line.push_str(&format!(" mapping {}", f.mapping_id));
                        }
                        line.push_str(&format!(": {}", result_status_name(f.status)));
                        if let Some(i) = &f.issue {
                            line.push_str(&format!("\n  {}", issue_line(i)));
                        }
                        println!("{line}");
                    }
                }
            }
        }
        SyncsCommand::Reset {
            destination,
            model,
            mapping,
        } => {
            let r = c
                .reset_sync(proto::ResetSyncRequest {
                    destination_id: destination,
                    model,
                    mapping_id: mapping.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if args.json {
                client::print_json(&json!({"forgotten": r.forgotten}));
            } else {
                println!("forgot {} ledger entries", r.forgotten);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn file_lines() {
        let r = parse_line(br#"{"id": 7, "columns": {"n": 1.10}}"#).unwrap();
        assert_eq!(r.id, "7");
        assert_eq!(r.columns_json, br#"{"n": 1.10}"#);
        let r = parse_line(br#"{"columns": {}, "id": "a\"b"}"#).unwrap();
        assert_eq!(r.id, "a\"b");
        for (bad, says) in [
            (
                &br#"{"id": "", "columns": {}}"#[..],
                "id: must not be empty",
            ),
            (br#"{"id": true, "columns": {}}"#, "id: expected a string"),
            (
                br#"{"id": "a", "columns": [1]}"#,
                "columns: expected an object",
            ),
            (br#"{"id": "a"}"#, "missing field `columns`"),
            (
                br#"{"id": "a", "columns": {}, "op": "added"}"#,
                "unknown field `op`",
            ),
            (b"{nope", "not a record"),
        ] {
            let e = parse_line(bad).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}

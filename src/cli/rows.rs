//! `segment-connections rows submit`: rows from a JSON Lines file, sent with SubmitRows in
//! requests of `--batch-size` rows.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use super::client::{self, ClientArgs, Failure};
use crate::delivery::{Counts, RowResult, RowStatus};
use crate::grpc::convert;
use crate::grpc::proto;
use crate::mapping::Row;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum RowsCommand {
    /// Deliver rows through the destination's enabled mappings of the model. Prints the counts
    /// and every result that is not DELIVERED (as many as the server's responses hold), each
    /// with its row's line in the file (1-based, blank lines counted; `--json` has it as
    /// `line`, beside the API's 0-based `row_index`). Exit 0 when nothing was rejected or
    /// failed, 1 otherwise, 2 on a usage or file error.
    Submit {
        /// The destination's id.
        #[arg(long, env = "SEGMENT_CONNECTIONS_DESTINATION")]
        destination: String,
        /// The rows' model.
        #[arg(long, env = "SEGMENT_CONNECTIONS_MODEL")]
        model: String,
        /// A JSON Lines file: one row per line (`{"id", "op", "columns", "message_id"}`).
        #[arg(short = 'f', long = "file", env = "SEGMENT_CONNECTIONS_FILE")]
        file: PathBuf,
        /// Rows per request.
        #[arg(long, env = "SEGMENT_CONNECTIONS_BATCH_SIZE", default_value_t = 1_000,
              value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        /// Also list the DELIVERED results, each with its messageId: with --json under
        /// `delivered_ids` (`[{"line", "row_index", "row_id", "mapping_id", "message_id"}]`),
        /// in text as a line per result.
        #[arg(long, env = "SEGMENT_CONNECTIONS_DELIVERED_IDS")]
        delivered_ids: bool,
    },
    /// Sync the model's records (from a JSON Lines file or a PostgreSQL query): the server
    /// works out what was added, updated and (unless --incremental) deleted since the last
    /// sync and sends only that. Prints the summary and the failures (rejected, failed, gave
    /// up; `--json`: one object of the counts summed over the mappings). Exit 0 when the sync COMPLETED with nothing rejected or failed, 1
    /// otherwise, 2 on a usage, file or query error (a bad line is named before anything is
    /// sent).
    Sync(super::syncs::SyncArgs),
}

pub fn run(args: ClientArgs, command: RowsCommand) -> ExitCode {
    client::run(&args.clone(), execute(args, command))
}

async fn execute(args: ClientArgs, command: RowsCommand) -> Result<ExitCode, Failure> {
    let (destination, model, file, batch_size, delivered_ids) = match command {
        RowsCommand::Submit {
            destination,
            model,
            file,
            batch_size,
            delivered_ids,
        } => (destination, model, file, batch_size, delivered_ids),
        RowsCommand::Sync(sync) => return super::syncs::sync(args, sync).await,
    };
    let (rows, lines) = read_rows(&file)?;
    let line_of = |r: &RowResult| lines.get(r.row_index as usize).copied();
    let mut c = client::connect(&args).await?;
    let mut counts = Counts::default();
    let mut shown: Vec<RowResult> = Vec::new();
    let mut delivered_list: Vec<RowResult> = Vec::new();
    // Results not DELIVERED that the server's response size limit left out.
    let mut unlisted = 0u32;
    // DELIVERED results it left out (with --delivered-ids).
    let mut delivered_unlisted = 0u32;
    let mut offset = 0u32;
    for chunk in rows.chunks(batch_size as usize) {
        let resp = c
            .submit_rows(proto::SubmitRowsRequest {
                destination_id: destination.clone(),
                model: model.clone(),
                rows: chunk.to_vec(),
                // Only what is printed: the counts cover the rest.
                results: if delivered_ids {
                    proto::ResultFilter::All.into()
                } else {
                    proto::ResultFilter::NotDelivered.into()
                },
            })
            .await?
            .into_inner();
        let n = resp.counts.unwrap_or_default();
        counts.delivered += n.delivered;
        counts.rejected += n.rejected;
        counts.failed += n.failed;
        counts.skipped += n.skipped;
        let (mut listed, mut listed_delivered) = (0u32, 0u32);
        for r in resp.results {
            let Some(mut r) = convert::row_result_from_proto(r) else {
                return Err(Failure::Usage(
                    "the server answered a result status this build does not know".into(),
                ));
            };
            r.row_index += offset;
            if r.status != RowStatus::Delivered {
                listed += 1;
                shown.push(r);
            } else if delivered_ids {
                listed_delivered += 1;
                delivered_list.push(r);
            }
        }
        unlisted += (n.rejected + n.failed + n.skipped).saturating_sub(listed);
        if delivered_ids {
            delivered_unlisted += n.delivered.saturating_sub(listed_delivered);
        }
        offset += chunk.len() as u32;
    }
    if args.json {
        let Counts {
            delivered,
            rejected,
            failed,
            skipped,
        } = counts;
        let results: Vec<_> = shown
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("line".into(), json!(line_of(r)));
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
            "unlisted": unlisted,
        });
        if delivered_ids {
            doc["delivered_ids"] = delivered_list
                .iter()
                .map(|r| {
                    json!({
                        "line": line_of(r),
                        "row_index": r.row_index,
                        "row_id": r.row_id,
                        "mapping_id": r.mapping_id,
                        "message_id": r.message_id,
                    })
                })
                .collect();
            doc["delivered_unlisted"] = json!(delivered_unlisted);
        }
        client::print_json(&doc);
    } else {
        println!(
            "delivered {}, rejected {}, failed {}, skipped {}",
            counts.delivered, counts.rejected, counts.failed, counts.skipped
        );
        for r in &delivered_list {
            println!("{}", describe(r, line_of(r)));
        }
        for r in &shown {
            println!("{}", describe(r, line_of(r)));
        }
        if delivered_unlisted > 0 {
            println!(
                "{delivered_unlisted} more delivered results are not listed (the server's \
                 response size limit); the counts include them"
            );
        }
        if unlisted > 0 {
            println!(
                "{unlisted} more results not delivered are not listed (the server's response size \
                 limit); the counts include them"
            );
        }
    }
    Ok(if counts.rejected == 0 && counts.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Every non-blank line as a row, and each row's line number (1-based, as editors count, blank
/// lines included); a bad line is a file error naming its line.
fn read_rows(path: &std::path::Path) -> Result<(Vec<proto::Row>, Vec<usize>), Failure> {
    let bytes = client::read_file(path)?;
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row = Row::from_json(line)
            .map_err(|e| Failure::Usage(format!("{}:{}: not a row: {e}", path.display(), n + 1)))?;
        rows.push(convert::to_proto_row(&row));
        lines.push(n + 1);
    }
    Ok((rows, lines))
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

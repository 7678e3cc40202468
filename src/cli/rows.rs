//! `segment-connections rows submit|sync`: the flags and the dispatch (the commands themselves
//! are in `submit.rs` and `syncs.rs`).

use std::process::ExitCode;

use super::client::{self, ClientArgs, Failure};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum RowsCommand {
    /// Deliver rows through the destination's enabled mappings of the model, streamed from the
    /// file a chunk at a time (memory does not grow with the file; progress on stderr when it is
    /// a terminal). Prints the counts and every result that is not DELIVERED (the first 1,000),
    /// each with its row's line in the file (1-based, blank lines counted; `--json` has it as
    /// `line`, beside the API's 0-based `row_index`). UNAVAILABLE and a broken connection are
    /// retried (see --retries). Stopped early (an error, Ctrl-C) it prints the counts so far and
    /// the first line not confirmed, where --from-line resumes. Exit 0 when nothing was rejected
    /// or failed, 1 otherwise or on a server error, 2 on a usage or file error, 130 on Ctrl-C.
    Submit(super::submit::SubmitArgs),
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
    match command {
        RowsCommand::Submit(submit) => super::submit::submit(args, submit).await,
        RowsCommand::Sync(sync) => super::syncs::sync(args, sync).await,
    }
}

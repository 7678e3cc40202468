//! The `segment-connections` binary: command-line parsing and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use segment_connections::cli::test_mapping;

#[derive(Parser)]
#[command(
    name = "segment-connections",
    version,
    about = "Warehouse rows to Segment's Tracking API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render one row through one mapping offline and say whether the Tracking API would accept
    /// the event. Sends nothing. Exit 0 accepted or skipped, 1 rejected, 2 usage or file error.
    TestMapping {
        /// The mapping JSON file.
        #[arg(long, env = "SEGMENT_CONNECTIONS_MAPPING")]
        mapping: PathBuf,
        /// The row JSON file.
        #[arg(long, env = "SEGMENT_CONNECTIONS_ROW")]
        row: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::TestMapping { mapping, row } => match test_mapping::run(&mapping, &row) {
            Ok(result) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                );
                if result.accepted || result.skipped {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

//! The `segment-connections` binary: command-line parsing and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use segment_connections::cli::client::ClientArgs;
use segment_connections::cli::destinations::{self, DestinationsCommand};
use segment_connections::cli::mappings::{self, MappingsCommand};
use segment_connections::cli::rows::{self, RowsCommand};
use segment_connections::cli::test_mapping;
use segment_connections::config::{LogFormat, ServeArgs, Settings};

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
    /// Run the gRPC service until SIGTERM or SIGINT.
    Serve(ServeArgs),
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
    /// Manage destinations on a running server.
    Destinations {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: DestinationsCommand,
    },
    /// Manage mappings on a running server, and test them there.
    Mappings {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: MappingsCommand,
    },
    /// Deliver rows through a running server.
    Rows {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: RowsCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Destinations { client, command } => destinations::run(client, command),
        Command::Mappings { client, command } => mappings::run(client, command),
        Command::Rows { client, command } => rows::run(client, command),
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

fn serve(args: ServeArgs) -> ExitCode {
    let settings = match Settings::try_from(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(settings.log_format);
    let run = || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(segment_connections::app::serve(settings))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "serve failed");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

//! The `segment-connections` binary: command-line parsing and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use segment_connections::cli::client::ClientArgs;
use segment_connections::cli::destinations::{self, DestinationsCommand};
use segment_connections::cli::keys::{self, KeysCommand};
use segment_connections::cli::mappings::{self, MappingsCommand};
use segment_connections::cli::rows::{self, RowsCommand};
use segment_connections::cli::syncs::{self, SyncsCommand};
use segment_connections::cli::test_mapping;
use segment_connections::config::{LogFormat, ServeArgs, Settings};

/// mimalloc: the row path allocates many small strings; glibc's malloc was a fifth of its cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// The write-key encryption keys: generate one; re-encrypt stored write keys under the
    /// newest (on the store directly).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Deliver rows through a running server.
    Rows {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: RowsCommand,
    },
    /// The history of syncs (`rows sync`) on a running server; forget what was synced.
    Syncs {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: SyncsCommand,
    },
    /// Print a shell completion script, e.g. `segment-connections completions bash >
    /// ~/.local/share/bash-completion/completions/segment-connections`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Ask a running server's gRPC health whether a service is SERVING (the chart's `helm test`).
    /// Exit 0 SERVING, 1 not serving or unreachable, 2 usage or file error.
    Health(segment_connections::cli::health::HealthArgs),
}

/// Whether NO_COLOR asks for no colour: set to anything but the empty string (no-color.org).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The command line, coloured only where clap's own detection says so, and never with NO_COLOR.
fn command() -> clap::Command {
    let command = Cli::command();
    if no_color() {
        command.color(clap::ColorChoice::Never)
    } else {
        command
    }
}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut command()).exit(),
    };
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut command(),
                "segment-connections",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve(args),
        Command::Destinations { client, command } => destinations::run(client, command),
        Command::Mappings { client, command } => mappings::run(client, command),
        Command::Keys { command } => keys::run(command),
        Command::Rows { client, command } => rows::run(client, command),
        Command::Syncs { client, command } => syncs::run(client, command),
        Command::Health(args) => segment_connections::cli::health::run(args),
        Command::TestMapping { mapping, row } => match test_mapping::run(&mapping, &row) {
            Ok(result) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                );
                test_mapping::print_warnings(&result);
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter (tonic) needs the runtime.
    let traces = {
        let _runtime = runtime.enter();
        match init_logs(settings.log_format, settings.otlp_endpoint.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        }
    };
    let result = runtime.block_on(segment_connections::app::serve(settings));
    // Export the spans still buffered.
    traces.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "serve failed");
            ExitCode::FAILURE
        }
    }
}

/// Logs (plain or JSON on stderr, level from RUST_LOG) and, with an endpoint, OTLP traces. A
/// line logged inside a traced span carries its `trace_id` and `span_id`
/// (`telemetry::TraceIds`).
fn init_logs(
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<segment_connections::telemetry::Tracing> {
    use segment_connections::telemetry::{self, TraceIds};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // The OTLP layer's type names the subscriber under it: one per format.
    let traces = match format {
        LogFormat::Plain => {
            // The ids go in after the plain formatter has written its line: it keeps the colours.
            let subscriber = builder
                .map_event_format(|f| TraceIds::text(f.with_ansi(ansi)))
                .finish();
            let (otlp, traces) = telemetry::otlp_layer(otlp_endpoint)?;
            subscriber.with(otlp).init();
            traces
        }
        LogFormat::Json => {
            let subscriber = builder.json().map_event_format(TraceIds::json).finish();
            let (otlp, traces) = telemetry::otlp_layer(otlp_endpoint)?;
            subscriber.with(otlp).init();
            traces
        }
    };
    Ok(traces)
}

/// The command tree (named `cli` so that the CLI's test filter, `test(/cli::/)`, selects it).
#[cfg(test)]
mod cli {
    use clap::CommandFactory as _;

    /// Every subcommand has an about and every argument a help text (clap's own `help` and
    /// `version` aside), at every depth.
    #[test]
    fn every_subcommand_and_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in command.get_subcommands() {
                let name = sub.get_name();
                if name == "help" {
                    continue;
                }
                let path = format!("{path} {name}");
                if sub.get_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let command = super::Cli::command();
        command.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&command, command.get_name(), &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}

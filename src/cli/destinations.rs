//! `segment-connections destinations create|update|list|get|delete`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use super::client::{self, ClientArgs, Failure};
use crate::grpc::proto;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DestinationsCommand {
    /// Create a destination; prints it (the write key only as its fingerprint).
    Create {
        /// A unique name.
        #[arg(long, env = "SEGMENT_CONNECTIONS_NAME")]
        name: String,
        /// `us`, `eu` (any case), or an http(s) base URL of the Tracking API (its host must be
        /// in the server's --allowed-upstreams).
        #[arg(long, env = "SEGMENT_CONNECTIONS_REGION", value_parser = region)]
        region: String,
        /// A file holding the source's write key (surrounding whitespace is ignored).
        #[arg(
            long,
            env = "SEGMENT_CONNECTIONS_WRITE_KEY_FILE",
            required_unless_present = "write_key",
            conflicts_with = "write_key"
        )]
        write_key_file: Option<PathBuf>,
        /// The source's write key (prefer --write-key-file: arguments show in `ps`).
        #[arg(long, env = "SEGMENT_CONNECTIONS_WRITE_KEY", hide_env_values = true)]
        write_key: Option<String>,
        /// Create it disabled.
        #[arg(long, env = "SEGMENT_CONNECTIONS_DISABLED")]
        disabled: bool,
        /// The most events per second each replica sends it (at most 100000); 0 or absent:
        /// unlimited.
        #[arg(
            long,
            env = "SEGMENT_CONNECTIONS_RATE_LIMIT",
            value_name = "EVENTS_PER_SECOND"
        )]
        rate_limit: Option<u32>,
    },
    /// Change a destination: only the fields given change.
    Update {
        /// The destination's id.
        id: String,
        /// The version read (stale: the server refuses). Default: the current version.
        #[arg(long, env = "SEGMENT_CONNECTIONS_VERSION")]
        version: Option<u64>,
        /// A new unique name.
        #[arg(long, env = "SEGMENT_CONNECTIONS_NAME")]
        name: Option<String>,
        /// A new region: `us`, `eu` (any case), or an http(s) base URL (its host in the
        /// server's --allowed-upstreams).
        #[arg(long, env = "SEGMENT_CONNECTIONS_REGION", value_parser = region)]
        region: Option<String>,
        /// A file holding the new write key.
        #[arg(
            long,
            env = "SEGMENT_CONNECTIONS_WRITE_KEY_FILE",
            conflicts_with = "write_key"
        )]
        write_key_file: Option<PathBuf>,
        /// The new write key (prefer --write-key-file).
        #[arg(long, env = "SEGMENT_CONNECTIONS_WRITE_KEY", hide_env_values = true)]
        write_key: Option<String>,
        /// Enable or disable it.
        #[arg(long, env = "SEGMENT_CONNECTIONS_ENABLED")]
        enabled: Option<bool>,
        /// A new limit: the most events per second each replica sends it (at most 100000);
        /// 0 removes the limit.
        #[arg(
            long,
            env = "SEGMENT_CONNECTIONS_RATE_LIMIT",
            value_name = "EVENTS_PER_SECOND"
        )]
        rate_limit: Option<u32>,
    },
    /// List destinations by name.
    List,
    /// Print one destination.
    Get {
        /// The destination's id.
        id: String,
    },
    /// Delete a destination and its mappings.
    Delete {
        /// The destination's id.
        id: String,
    },
    /// A destination's usage in one calendar month (UTC): Tracking API calls (events
    /// delivered), batches, bytes, and distinct users (the MTU estimate, ±0.8 %).
    Usage {
        /// The destination's id.
        id: String,
        /// The month, as YYYY-MM (e.g. 2026-12). Default: this month.
        #[arg(long, env = "SEGMENT_CONNECTIONS_MONTH", value_parser = month)]
        month: Option<String>,
    },
}

/// `--month`: YYYY-MM.
fn month(s: &str) -> Result<String, String> {
    crate::usage::Month::parse(s).map(|m| m.to_string())
}

/// `--region`: `us` and `eu` in any case become `us` and `eu`; anything else (a base URL) is
/// passed on unchanged for the server to check.
fn region(s: &str) -> Result<String, std::convert::Infallible> {
    Ok(match s {
        _ if s.eq_ignore_ascii_case("us") => "us".to_owned(),
        _ if s.eq_ignore_ascii_case("eu") => "eu".to_owned(),
        _ => s.to_owned(),
    })
}

pub fn run(args: ClientArgs, command: DestinationsCommand) -> ExitCode {
    client::run(&args.clone(), execute(args, command))
}

async fn execute(args: ClientArgs, command: DestinationsCommand) -> Result<ExitCode, Failure> {
    match command {
        DestinationsCommand::Create {
            name,
            region,
            write_key_file,
            write_key,
            disabled,
            rate_limit,
        } => {
            let write_key = match (write_key, write_key_file) {
                (Some(k), _) => k,
                (None, Some(path)) => read_write_key(&path)?,
                (None, None) => {
                    return Err(Failure::Usage(
                        "give --write-key-file FILE or --write-key KEY".into(),
                    ));
                }
            };
            let mut c = client::connect(&args).await?;
            let d = c
                .create_destination(proto::CreateDestinationRequest {
                    name,
                    region,
                    write_key,
                    enabled: Some(!disabled),
                    rate_limit,
                })
                .await?
                .into_inner()
                .destination
                .unwrap_or_default();
            print_one(&d, args.json, Some("created"));
        }
        DestinationsCommand::Update {
            id,
            version,
            name,
            region,
            write_key_file,
            write_key,
            enabled,
            rate_limit,
        } => {
            let write_key = match (write_key, write_key_file) {
                (Some(k), _) => Some(k),
                (None, Some(path)) => Some(read_write_key(&path)?),
                (None, None) => None,
            };
            let mut c = client::connect(&args).await?;
            let version = match version {
                Some(v) => v,
                None => {
                    c.get_destination(proto::GetDestinationRequest { id: id.clone() })
                        .await?
                        .into_inner()
                        .destination
                        .unwrap_or_default()
                        .version
                }
            };
            let d = c
                .update_destination(proto::UpdateDestinationRequest {
                    id,
                    version,
                    name,
                    region,
                    write_key,
                    enabled,
                    rate_limit,
                })
                .await?
                .into_inner()
                .destination
                .unwrap_or_default();
            print_one(&d, args.json, Some("updated"));
        }
        DestinationsCommand::List => {
            let mut c = client::connect(&args).await?;
            let all = c
                .list_destinations(proto::ListDestinationsRequest {})
                .await?
                .into_inner()
                .destinations;
            if args.json {
                client::print_json(&all.iter().map(destination_json).collect::<Vec<_>>());
            } else if all.is_empty() {
                println!("no destinations");
            } else {
                println!(
                    "{:<26} {:<24} {:<8} {:<8} {:<8} {:<10} REGION",
                    "ID", "NAME", "ENABLED", "VERSION", "KEY", "RATE"
                );
                for d in &all {
                    println!(
                        "{:<26} {:<24} {:<8} {:<8} {:<8} {:<10} {}",
                        d.id,
                        d.name,
                        d.enabled,
                        d.version,
                        d.write_key_fingerprint,
                        rate(d.rate_limit),
                        d.region
                    );
                }
            }
        }
        DestinationsCommand::Get { id } => {
            let mut c = client::connect(&args).await?;
            let d = c
                .get_destination(proto::GetDestinationRequest { id })
                .await?
                .into_inner()
                .destination
                .unwrap_or_default();
            print_one(&d, args.json, None);
        }
        DestinationsCommand::Delete { id } => {
            let mut c = client::connect(&args).await?;
            c.delete_destination(proto::DeleteDestinationRequest { id: id.clone() })
                .await?;
            if args.json {
                client::print_json(&serde_json::json!({"id": id, "deleted": true}));
            } else {
                println!("deleted destination {id}");
            }
        }
        DestinationsCommand::Usage { id, month } => {
            let mut c = client::connect(&args).await?;
            let u = c
                .get_usage(proto::GetUsageRequest {
                    destination_id: id,
                    month,
                })
                .await?
                .into_inner();
            let doc = serde_json::json!({
                "month": u.month,
                "calls": u.calls,
                "batches": u.batches,
                "bytes": u.bytes,
                "users": u.users,
            });
            if args.json {
                client::print_json(&doc);
            } else {
                for (key, what) in [
                    ("month", "calendar month, UTC"),
                    ("calls", "Tracking API calls: events delivered"),
                    ("batches", "batch requests"),
                    ("bytes", "batch bytes, before compression"),
                    ("users", "distinct users (MTU estimate, about ±0.8 %)"),
                ] {
                    let value = match &doc[key] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    println!("{:<10} {value:<12} {what}", format!("{key}:"));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A write key from a file, surrounding whitespace (the trailing newline) removed.
fn read_write_key(path: &std::path::Path) -> Result<String, Failure> {
    let bytes = client::read_file(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::Usage(format!("{}: not UTF-8 text", path.display())))?;
    Ok(text.trim().to_owned())
}

/// A destination as the CLI prints it: never a write key, only its fingerprint; `rate_limit`
/// in events per second, 0 for unlimited.
fn destination_json(d: &proto::Destination) -> Value {
    let proto::Destination {
        id,
        name,
        region,
        write_key_fingerprint,
        enabled,
        version,
        rate_limit,
    } = d;
    serde_json::json!({
        "id": id,
        "name": name,
        "region": region,
        "enabled": enabled,
        "version": version,
        "write_key_fingerprint": write_key_fingerprint,
        "rate_limit": rate_limit,
    })
}

/// A rate limit as the text output shows it.
fn rate(per_second: u32) -> String {
    match per_second {
        0 => "unlimited".into(),
        n => format!("{n}/s"),
    }
}

fn print_one(d: &proto::Destination, json: bool, what: Option<&str>) {
    if json {
        client::print_json(&destination_json(d));
        return;
    }
    if let Some(what) = what {
        println!("{what} destination {}", d.id);
    }
    let doc = destination_json(d);
    for key in [
        "id",
        "name",
        "region",
        "enabled",
        "version",
        "write_key_fingerprint",
    ] {
        let value = match &doc[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("{:<22} {value}", format!("{key}:"));
    }
    println!("{:<22} {}", "rate_limit:", rate(d.rate_limit));
}

#[cfg(test)]
mod tests {
    #[test]
    fn region_names_in_any_case_and_urls_unchanged() {
        for (given, sent) in [
            ("us", "us"),
            ("US", "us"),
            ("Us", "us"),
            ("eu", "eu"),
            ("EU", "eu"),
            ("eU", "eu"),
            ("http://127.0.0.1:8089/V1/", "http://127.0.0.1:8089/V1/"),
            ("HTTPS://Proxy.Example/x", "HTTPS://Proxy.Example/x"),
            ("mars", "mars"),
        ] {
            assert_eq!(super::region(given).unwrap(), sent, "{given}");
        }
    }
}

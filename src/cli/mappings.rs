//! `segment-connections mappings apply|list|get|delete|test`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::client::{self, ClientArgs, Failure};
use crate::grpc::convert;
use crate::grpc::proto;
use crate::mapping::{MappingDoc, Row, TestResult};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum MappingsCommand {
    /// Register a mapping file: creates it, or updates the destination's mapping of the same
    /// name.
    Apply {
        /// The destination's id.
        #[arg(long, env = "SEGMENT_CONNECTIONS_DESTINATION")]
        destination: String,
        /// The mapping JSON file (its `name` and `model` are required).
        #[arg(short = 'f', long = "file", env = "SEGMENT_CONNECTIONS_FILE")]
        file: PathBuf,
    },
    /// List a destination's mappings by name.
    List {
        /// The destination's id.
        #[arg(long, env = "SEGMENT_CONNECTIONS_DESTINATION")]
        destination: String,
    },
    /// Print one mapping.
    Get {
        /// The mapping's id.
        id: String,
    },
    /// Delete one mapping.
    Delete {
        /// The mapping's id.
        id: String,
    },
    /// Render rows through a registered mapping (ID) or a mapping file (-f) on the server and
    /// print, per row, what `test-mapping` prints. Sends nothing, writes nothing. Exit 0 when
    /// every row is accepted or skipped, 1 otherwise.
    Test {
        /// A registered mapping's id.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        id: Option<String>,
        /// A mapping JSON file, tested inline.
        #[arg(short = 'f', long = "file", env = "SEGMENT_CONNECTIONS_FILE")]
        file: Option<PathBuf>,
        /// A row JSON file; repeat for several rows.
        #[arg(long = "row", env = "SEGMENT_CONNECTIONS_ROW", required = true)]
        rows: Vec<PathBuf>,
        /// The destination (optional; checked against a registered mapping's).
        #[arg(long, env = "SEGMENT_CONNECTIONS_DESTINATION")]
        destination: Option<String>,
    },
}

pub fn run(args: ClientArgs, command: MappingsCommand) -> ExitCode {
    client::run(&args.clone(), execute(args, command))
}

async fn execute(args: ClientArgs, command: MappingsCommand) -> Result<ExitCode, Failure> {
    match command {
        MappingsCommand::Apply { destination, file } => {
            let text = mapping_file(&file)?;
            let name = MappingDoc::parse(text.as_bytes())
                .map_err(|v| Failure::Usage(format!("{}: {}", file.display(), v.message)))?
                .name;
            let mut c = client::connect(&args).await?;
            let existing = c
                .list_mappings(proto::ListMappingsRequest {
                    destination_id: destination.clone(),
                })
                .await?
                .into_inner()
                .mappings
                .into_iter()
                .find(|m| Some(&m.name) == name.as_ref());
            let (m, what) = match existing {
                Some(old) => {
                    let m = c
                        .update_mapping(proto::UpdateMappingRequest {
                            id: old.id,
                            version: old.version,
                            mapping_json: text,
                        })
                        .await?
                        .into_inner()
                        .mapping
                        .unwrap_or_default();
                    // The same mapping again changes nothing, its version included.
                    let what = match m.version == old.version {
                        true => "unchanged",
                        false => "updated",
                    };
                    (m, what)
                }
                None => {
                    let m = c
                        .create_mapping(proto::CreateMappingRequest {
                            destination_id: destination,
                            mapping_json: text,
                        })
                        .await?
                        .into_inner()
                        .mapping
                        .unwrap_or_default();
                    (m, "created")
                }
            };
            print_one(&m, args.json, Some(what));
        }
        MappingsCommand::List { destination } => {
            let mut c = client::connect(&args).await?;
            let all = c
                .list_mappings(proto::ListMappingsRequest {
                    destination_id: destination,
                })
                .await?
                .into_inner()
                .mappings;
            if args.json {
                client::print_json(&all.iter().map(client::mapping_json).collect::<Vec<_>>());
            } else if all.is_empty() {
                println!("no mappings");
            } else {
                println!(
                    "{:<26} {:<24} {:<20} {:<8} VERSION",
                    "ID", "NAME", "MODEL", "ENABLED"
                );
                for m in &all {
                    println!(
                        "{:<26} {:<24} {:<20} {:<8} {}",
                        m.id, m.name, m.model, m.enabled, m.version
                    );
                }
            }
        }
        MappingsCommand::Get { id } => {
            let mut c = client::connect(&args).await?;
            let m = c
                .get_mapping(proto::GetMappingRequest { id })
                .await?
                .into_inner()
                .mapping
                .unwrap_or_default();
            print_one(&m, args.json, None);
        }
        MappingsCommand::Delete { id } => {
            let mut c = client::connect(&args).await?;
            c.delete_mapping(proto::DeleteMappingRequest { id: id.clone() })
                .await?;
            if args.json {
                client::print_json(&serde_json::json!({"id": id, "deleted": true}));
            } else {
                println!("deleted mapping {id}");
            }
        }
        MappingsCommand::Test {
            id,
            file,
            rows,
            destination,
        } => {
            use proto::test_mapping_request::Mapping as Subject;
            let subject = match (id, file) {
                (Some(id), _) => Subject::MappingId(id),
                (None, Some(path)) => Subject::MappingJson(mapping_file(&path)?),
                (None, None) => {
                    return Err(Failure::Usage("give a mapping id or -f FILE".into()));
                }
            };
            let rows = rows
                .iter()
                .map(|path| {
                    let row = Row::from_json(&client::read_file(path)?).map_err(|e| {
                        Failure::Usage(format!("{}: not a row file: {e}", path.display()))
                    })?;
                    Ok(convert::to_proto_row(&row))
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            let mut c = client::connect(&args).await?;
            let answer = c
                .test_mapping(proto::TestMappingRequest {
                    mapping: Some(subject),
                    destination_id: destination,
                    rows,
                })
                .await?
                .into_inner();
            let estimate = answer.estimated_calls.zip(answer.estimated_new_users);
            let results: Vec<TestResult> = answer
                .results
                .into_iter()
                .map(convert::test_result_from_proto)
                .collect();
            if args.json {
                client::print_json(&results);
            } else {
                for r in &results {
                    client::print_json(r);
                    crate::cli::test_mapping::print_warnings(r);
                }
                // On stderr: stdout stays one result per line.
                if let Some((calls, users)) = estimate {
                    eprintln!(
                        "would make {calls} Tracking API call(s); ~{users} new user(s) (MTUs) \
                         this month"
                    );
                }
            }
            if !results.iter().all(|r| r.accepted || r.skipped) {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn mapping_file(path: &std::path::Path) -> Result<String, Failure> {
    String::from_utf8(client::read_file(path)?)
        .map_err(|_| Failure::Usage(format!("{}: not UTF-8 text", path.display())))
}

fn print_one(m: &proto::Mapping, json: bool, what: Option<&str>) {
    if json {
        client::print_json(&client::mapping_json(m));
        return;
    }
    if let Some(what) = what {
        println!("{what} mapping {} (version {})", m.id, m.version);
    }
    println!("{:<16} {}", "id:", m.id);
    println!("{:<16} {}", "destination_id:", m.destination_id);
    println!("{:<16} {}", "name:", m.name);
    println!("{:<16} {}", "model:", m.model);
    println!("{:<16} {}", "enabled:", m.enabled);
    println!("{:<16} {}", "version:", m.version);
    if what.is_none() {
        let doc = client::mapping_json(m);
        println!(
            "mapping:\n{}",
            serde_json::to_string_pretty(&doc["mapping"]).unwrap_or_default()
        );
    }
}

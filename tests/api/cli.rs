//! The client commands end to end: the real binary against a server on 127.0.0.1:0; and the
//! `serve` binary itself (key file, SIGTERM).

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::app::{TestApp, track_mapping};

use crate::common::bin::{BIN, cli, text};

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn the_tour_create_a_destination_apply_a_mapping_test_it() {
    let app = TestApp::spawn().await;
    let url = app.url();
    let files = tempfile::tempdir().unwrap();
    let secret = "wk_cli_SECRET_0042";
    let key_file = write(files.path(), "wk.txt", &format!("{secret}\n"));
    let server = ["--server", url.as_str()];

    let create = cli(
        &[
            &["destinations", "create", "--name", "prod", "--region", "eu"][..],
            &["--write-key-file", &key_file, "--json"],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    let d = stdout_json(&create);
    let id = d["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("dst_"));
    assert_eq!(d["region"], "eu");
    assert_eq!(d["version"], 1);
    assert_eq!(d["write_key_fingerprint"].as_str().unwrap().len(), 8);

    // Text output too; the write key is never printed.
    let get_text = cli(&[&["destinations", "get", &id][..], &server].concat(), &[]).await;
    assert!(get_text.status.success());
    assert!(text(&get_text.stdout).contains("prod"));
    let list = cli(
        &[&["destinations", "list", "--json"][..], &server].concat(),
        &[],
    )
    .await;
    let list = stdout_json(&list);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    for out in [&create, &get_text] {
        assert!(!text(&out.stdout).contains(secret) && !text(&out.stderr).contains(secret));
    }

    // Apply creates, then updates the mapping of the same name.
    let mapping_file = write(files.path(), "orders.json", &track_mapping("orders"));
    let applied = stdout_json(
        &cli(
            &[
                &[
                    "mappings",
                    "apply",
                    "--destination",
                    &id,
                    "-f",
                    &mapping_file,
                    "--json",
                ][..],
                &server,
            ]
            .concat(),
            &[],
        )
        .await,
    );
    let mapping_id = applied["id"].as_str().unwrap().to_owned();
    assert!(mapping_id.starts_with("map_"));
    assert_eq!(applied["version"], 1);
    assert_eq!(applied["mapping"]["action"], "track");
    let mut doc: Value = serde_json::from_str(&track_mapping("orders")).unwrap();
    doc["enabled"] = false.into();
    let mapping_file = write(files.path(), "orders.json", &doc.to_string());
    let reapplied = stdout_json(
        &cli(
            &[
                &[
                    "mappings",
                    "apply",
                    "--destination",
                    &id,
                    "-f",
                    &mapping_file,
                    "--json",
                ][..],
                &server,
            ]
            .concat(),
            &[],
        )
        .await,
    );
    assert_eq!(reapplied["id"], mapping_id.as_str());
    assert_eq!(reapplied["version"], 2);
    assert_eq!(reapplied["enabled"], false);

    let listed = stdout_json(
        &cli(
            &[
                &["mappings", "list", "--destination", &id, "--json"][..],
                &server,
            ]
            .concat(),
            &[],
        )
        .await,
    );
    assert_eq!(listed[0]["id"], mapping_id.as_str());
    let got = stdout_json(
        &cli(
            &[&["mappings", "get", &mapping_id, "--json"][..], &server].concat(),
            &[],
        )
        .await,
    );
    assert_eq!(got["name"], "orders");

    // Test it on the server: per row, what test-mapping prints.
    let row = write(
        files.path(),
        "row.json",
        r#"{"id": "o-1", "op": "added", "columns": {"user_id": "u-1", "order_id": "o-1", "revenue": 5}}"#,
    );
    let tested = cli(
        &[
            &["mappings", "test", &mapping_id, "--row", &row][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(tested.status.success(), "{}", text(&tested.stderr));
    let result: Value = serde_json::from_slice(&tested.stdout).unwrap();
    assert_eq!(result["accepted"], true);
    assert!(result["message_id"].as_str().unwrap().starts_with("sc2-"));
    // Inline, compared with the offline command byte for byte.
    let inline = cli(
        &[
            &["mappings", "test", "-f", &mapping_file, "--row", &row][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    let offline = cli(
        &["test-mapping", "--mapping", &mapping_file, "--row", &row],
        &[],
    )
    .await;
    assert!(offline.status.success(), "{}", text(&offline.stderr));
    assert_eq!(text(&inline.stdout), text(&offline.stdout));
    // --json gives one array entry per row.
    let many = stdout_json(
        &cli(
            &[
                &[
                    "mappings",
                    "test",
                    &mapping_id,
                    "--row",
                    &row,
                    "--row",
                    &row,
                    "--json",
                ][..],
                &server,
            ]
            .concat(),
            &[],
        )
        .await,
    );
    assert_eq!(many.as_array().unwrap().len(), 2);

    // Delete both, with the flags as environment variables this time.
    let env = [
        ("SEGMENT_CONNECTIONS_SERVER", url.as_str()),
        ("SEGMENT_CONNECTIONS_JSON", "true"),
    ];
    let deleted = stdout_json(&cli(&["mappings", "delete", &mapping_id], &env).await);
    assert_eq!(deleted["id"], mapping_id.as_str());
    let deleted = stdout_json(&cli(&["destinations", "delete", &id], &env).await);
    assert_eq!(deleted["id"], id.as_str());
    let empty = stdout_json(&cli(&["destinations", "list"], &env).await);
    assert_eq!(empty, serde_json::json!([]));
}

#[tokio::test]
async fn exit_codes_one_for_server_errors_two_for_usage() {
    let app = TestApp::spawn().await;
    let url = app.url();
    let server = ["--server", url.as_str()];
    let files = tempfile::tempdir().unwrap();

    let out = cli(
        &[&["destinations", "get", "dst_nope"][..], &server].concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("NOT_FOUND"),
        "{}",
        text(&out.stderr)
    );

    let out = cli(
        &[&["destinations", "create", "--name", "x", "--region", "mars"][..]]
            .concat()
            .into_iter()
            .chain(["--write-key", "k1", "--json"])
            .chain(server)
            .collect::<Vec<_>>(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "INVALID_ARGUMENT");
    assert_eq!(err["error"]["violations"][0]["field"], "region");

    // An invalid mapping: every violation, with its pointer.
    let d = app.create_destination("prod").await;
    let bad = write(
        files.path(),
        "bad.json",
        r#"{"name": "x", "action": "fly"}"#,
    );
    let out = cli(
        &[
            &["mappings", "apply", "--destination", &d.id, "-f", &bad][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for pointer in ["/action", "/fields", "/model"] {
        assert!(stderr.contains(pointer), "{pointer}: {stderr}");
    }

    // Usage and file errors.
    for args in [
        vec!["destinations"],
        vec!["destinations", "create", "--name", "x", "--region", "us"],
        vec![
            "mappings",
            "apply",
            "--destination",
            "d",
            "-f",
            "/nonexistent/m.json",
        ],
        vec![
            "mappings",
            "apply",
            "--destination",
            "d",
            "-f",
            &bad,
            "--server",
            "not a url",
        ],
        vec!["mappings", "test", "map_x"],
    ] {
        let out = cli(&args, &[]).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let not_json = write(files.path(), "nope.json", "{");
    let out = cli(
        &[
            &["mappings", "apply", "--destination", &d.id, "-f", &not_json][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // Nobody listening.
    let out = cli(
        &["destinations", "list", "--server", "http://127.0.0.1:1"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

/// A `serve` process of its own in `dir` (fresh store and key, JSON logs on stderr), started
/// with `flags` and waited for until it logs "serving".
pub(crate) struct Serve {
    pub child: std::process::Child,
    /// The log lines up to "serving".
    pub log: Vec<String>,
    /// The log lines after it, as they come.
    pub lines: std::sync::mpsc::Receiver<String>,
    pub addr: String,
}

pub(crate) fn serve(dir: &Path, flags: &[&str]) -> Serve {
    serve_with(Command::new(BIN), dir, flags)
}

/// As [`serve`], with `command` the program run (the binary, or a wrapper given it as its first
/// argument, such as `prlimit`). On 127.0.0.1:0 unless `flags` give a `--listen`.
pub(crate) fn serve_with(mut command: Command, dir: &Path, flags: &[&str]) -> Serve {
    command.args(["serve", "--log-format", "json"]);
    if !flags.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = command
        .args(flags)
        .current_dir(dir)
        .env_remove("SEGMENT_CONNECTIONS_ENCRYPTION_KEY")
        .env_remove("SEGMENT_CONNECTIONS_ENCRYPTION_KEY_FILE")
        .env_remove("SEGMENT_CONNECTIONS_STORE")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}: {log:?}"));
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        log.push(line);
        if v["fields"]["message"] == "serving" {
            break v["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };
    Serve {
        child,
        log,
        lines,
        addr,
    }
}

pub(crate) fn sigterm(child: &std::process::Child) {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

/// How `child` exits; it must within 30 s (else it is killed and the test fails).
pub(crate) async fn exit_status(mut child: std::process::Child) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                child.kill().ok();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap()
    .expect("serve stops within 30 s of SIGTERM")
}

/// `serve` in an empty directory: creates ./data/master.key (0600) and the store, answers, and
/// stops cleanly on SIGTERM.
#[tokio::test]
async fn serve_creates_its_key_and_store_and_stops_on_sigterm() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    // Not the default metrics port: tests run in parallel.
    let Serve {
        child,
        log,
        lines,
        addr,
    } = serve(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    assert!(
        log.iter()
            .any(|l| l.contains("WARN") && l.contains("master.key")),
        "{log:?}"
    );
    let key = dir.path().join("data/master.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(dir.path().join("data/connections.db").exists());

    let out = cli(
        &[
            "destinations",
            "list",
            "--json",
            "--server",
            &format!("http://{addr}"),
        ],
        &[],
    )
    .await;
    assert_eq!(stdout_json(&out), serde_json::json!([]));

    sigterm(&child);
    let status = exit_status(child).await;
    assert!(status.success(), "{status:?}");
    // Every line up to the end of its stderr (the reader may still be forwarding them).
    let rest: Vec<String> =
        std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(10)).ok()).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[tokio::test]
async fn destinations_update_changes_only_what_is_given() {
    let app = TestApp::spawn().await;
    let url = app.url();
    let server = ["--server", url.as_str()];
    let files = tempfile::tempdir().unwrap();
    let d = app.create_destination("prod").await;
    let new_key = "wk_NEW_rotated_77";
    let key_file = write(files.path(), "wk.txt", &format!("{new_key}\n"));

    let out = cli(
        &[
            &["destinations", "update", &d.id, "--name", "production"][..],
            &[
                "--write-key-file",
                &key_file,
                "--enabled",
                "false",
                "--rate-limit",
                "50",
                "--json",
            ],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(!text(&out.stdout).contains(new_key));
    let updated = stdout_json(&out);
    assert_eq!(updated["name"], "production");
    assert_eq!(updated["region"], "us");
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["rate_limit"], 50);
    // get and list show it; 0 shows as unlimited.
    let out = cli(
        &[&["destinations", "get", &d.id][..], &server].concat(),
        &[],
    )
    .await;
    assert!(
        text(&out.stdout).contains("rate_limit:            50/s"),
        "{}",
        text(&out.stdout)
    );
    let out = cli(
        &[
            &["destinations", "update", &d.id, "--rate-limit", "0"][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(
        text(&out.stdout).contains("unlimited"),
        "{}",
        text(&out.stdout)
    );
    let out = cli(&[&["destinations", "list"][..], &server].concat(), &[]).await;
    assert!(text(&out.stdout).contains("RATE"), "{}", text(&out.stdout));
    // Over the bound: the server names the field.
    let out = cli(
        &[
            &["destinations", "update", &d.id, "--rate-limit", "100001"][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("rate_limit"),
        "{}",
        text(&out.stderr)
    );
    assert_ne!(
        updated["write_key_fingerprint"].as_str().unwrap(),
        d.write_key_fingerprint
    );

    // An explicit stale version is refused.
    let out = cli(
        &[
            &[
                "destinations",
                "update",
                &d.id,
                "--version",
                "1",
                "--region",
                "eu",
            ][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("ABORTED"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn rows_submit_delivers_a_jsonl_file_and_reports_what_was_not_delivered() {
    let fake = crate::common::fake_segment::FakeSegment::start("wk-cli-0123456789").await;
    let app = TestApp::spawn().await;
    let d = app
        .create_destination_at("cli", &fake.url(), "wk-cli-0123456789")
        .await;
    app.create_mapping(&d.id, &track_mapping("orders")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for i in 0..5 {
        lines.push(format!(
            r#"{{"id": {i}, "op": "added", "columns": {{"user_id": "u-{i}", "order_id": "o-{i}", "revenue": 1.5}}}}"#
        ));
    }
    // No identity: rejected.
    lines.push(r#"{"id": "anon", "op": "added", "columns": {"order_id": "x"}}"#.into());
    // Deleted: no mapping's trigger matches.
    lines.push(r#"{"id": "gone", "op": "deleted", "columns": {"user_id": "u"}}"#.into());
    // A blank line after the third row: from there a row's line is its index plus 2.
    let text_rows = format!("{}\n\n{}\n\n", lines[..3].join("\n"), lines[3..].join("\n"));
    let file = write(dir.path(), "rows.jsonl", &text_rows);
    let server = app.url();
    let args = [
        "rows",
        "submit",
        "--server",
        &server,
        "--destination",
        &d.id,
        "--model",
        "orders",
        "-f",
        &file,
        "--batch-size",
        "2",
    ];
    let out = cli(&args, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("delivered 5, rejected 1, failed 0, skipped 1\n"),
        "{stdout}"
    );
    // Rows are named by their line in the file (1-based, the blank line counted).
    assert!(stdout.contains("line 7 (id \"anon\")"), "{stdout}");
    assert!(stdout.contains("MISSING_IDENTITY"), "{stdout}");
    assert!(stdout.contains("line 8 (id \"gone\"): SKIPPED"), "{stdout}");
    assert!(!stdout.contains("DELIVERED"), "{stdout}");
    assert_eq!(fake.accepted().len(), 5);

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = cli(&json_args, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["delivered"].as_u64(),
            v["rejected"].as_u64(),
            v["failed"].as_u64(),
            v["skipped"].as_u64()
        ),
        (Some(5), Some(1), Some(0), Some(1))
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    // The API's 0-based row_index, and the file's line.
    assert_eq!(results[0]["row_index"], 5);
    assert_eq!(results[0]["line"], 7);
    assert_eq!(results[0]["status"], "REJECTED");
    assert_eq!(results[0]["issues"][0]["code"], "MISSING_IDENTITY");
    assert_eq!(results[1]["status"], "SKIPPED");
    assert_eq!(
        (
            results[1]["row_index"].as_u64(),
            results[1]["line"].as_u64()
        ),
        (Some(6), Some(8))
    );
    assert!(v.get("delivered_ids").is_none(), "{v}");

    // --delivered-ids lists the DELIVERED results with their messageIds: those the API got.
    json_args.push("--delivered-ids");
    let out = cli(&json_args, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["delivered"], 5);
    assert_eq!(v["results"].as_array().unwrap().len(), 2, "{v}");
    let ids = v["delivered_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 5, "{v}");
    assert_eq!(v["delivered_unlisted"], 0);
    let accepted: std::collections::BTreeSet<String> = fake.accepted().into_iter().collect();
    let listed: std::collections::BTreeSet<String> = ids
        .iter()
        .map(|d| d["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, accepted);
    let lines_of: Vec<(u64, u64)> = ids
        .iter()
        .map(|d| {
            (
                d["row_index"].as_u64().unwrap(),
                d["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lines_of, [(0, 1), (1, 2), (2, 3), (3, 5), (4, 6)]);
    assert_eq!(ids[3]["row_id"], "3");
    assert!(ids[3]["mapping_id"].as_str().unwrap().starts_with("map_"));
    // In text, a line per delivered result.
    let mut text_args = args.to_vec();
    text_args.push("--delivered-ids");
    let out = cli(&text_args, &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.matches(": DELIVERED messageId sc2-").count(),
        5,
        "{stdout}"
    );
    assert!(
        stdout.contains("line 5 (id \"3\") mapping map_"),
        "{stdout}"
    );

    // Only deliverable rows: exit 0.
    let ok = write(dir.path(), "ok.jsonl", &lines[..5].join("\n"));
    let out = cli(
        &[
            "rows",
            "submit",
            "--server",
            &server,
            "--destination",
            &d.id,
            "--model",
            "orders",
            "-f",
            &ok,
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "delivered 5, rejected 0, failed 0, skipped 0\n"
    );

    // A bad line is a file error naming the line: exit 2.
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "\n{\"op\": \"added\", \"columns\": {}}\n\nnope\n",
    );
    let out = cli(
        &[
            "rows",
            "submit",
            "--server",
            &server,
            "--destination",
            &d.id,
            "--model",
            "orders",
            "-f",
            &bad,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.jsonl:4:"),
        "{}",
        text(&out.stderr)
    );
}

/// SIGTERM in the middle of a SubmitRows whose batch the Tracking API holds: health turns
/// NOT_SERVING, new calls (on the open connection and on a new one) get UNAVAILABLE, the call in
/// flight still answers within the grace period, every row with its result (FAILED,
/// SHUTTING_DOWN, retryable), and the process exits 0.
#[tokio::test]
async fn sigterm_mid_submit_rows_answers_every_row() {
    use crate::common::fake_segment::{FakeSegment, Fault};
    use segment_connections::grpc::proto::{self, ConnectionsClient};

    let dir = tempfile::tempdir().unwrap();
    // The log stays read (its receiver alive) until the end, as the server keeps writing.
    let Serve {
        child,
        addr,
        lines: _lines,
        ..
    } = serve(
        dir.path(),
        &[
            "--metrics-listen",
            "off",
            "--shutdown-grace-seconds",
            "2",
            "--allowed-upstreams",
            "127.0.0.1",
        ],
    );
    let fake = FakeSegment::start("wk-sigterm-0123").await;
    // The Tracking API holds the batch far longer than the grace period.
    fake.script([Fault::Slow(Duration::from_secs(60))]);
    let mut client = ConnectionsClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let d = client
        .create_destination(proto::CreateDestinationRequest {
            name: "prod".into(),
            region: fake.url(),
            write_key: "wk-sigterm-0123".into(),
            enabled: None,
            rate_limit: None,
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    client
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: track_mapping("orders"),
        })
        .await
        .unwrap();
    let rows = (0..3)
        .map(|i| crate::common::app::order_row(&format!("o-{i}"), "u-1"))
        .collect();
    let mut submitter = client.clone();
    let call = tokio::spawn(async move {
        submitter
            .submit_rows(proto::SubmitRowsRequest {
                destination_id: d.id.clone(),
                model: "orders".into(),
                rows,
                ..Default::default()
            })
            .await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fake.max_in_progress() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never reached the fake"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    sigterm(&child);

    // Shutdown has begun once readiness says so (liveness, the "" service, stays SERVING); the
    // listener still answers meanwhile.
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: proto::SERVICE_NAME.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == tonic_health::pb::health_check_response::ServingStatus::NotServing as i32 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "health never turned");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut fresh = ConnectionsClient::connect(format!("http://{addr}"))
        .await
        .expect("the listener stays open while calls drain");
    for (which, c) in [
        ("open connection", &mut client),
        ("new connection", &mut fresh),
    ] {
        let refused = c
            .list_destinations(proto::ListDestinationsRequest {})
            .await
            .expect_err("a new call during shutdown is refused");
        assert_eq!(
            refused.code(),
            tonic::Code::Unavailable,
            "{which}: {refused:?}"
        );
        assert!(
            refused.message().contains("shutting down"),
            "{which}: {refused:?}"
        );
    }
    assert!(!call.is_finished(), "the call in flight is still running");

    let response = call.await.unwrap().expect("the call answers").into_inner();
    assert_eq!(response.results.len(), 3, "{response:?}");
    for r in &response.results {
        assert_eq!(r.status, proto::ResultStatus::Failed as i32, "{r:?}");
        assert!(r.retryable, "{r:?}");
        let codes: Vec<i32> = r.issues.iter().map(|i| i.code).collect();
        assert_eq!(codes, [proto::IssueCode::ShuttingDown as i32], "{r:?}");
    }
    let status = exit_status(child).await;
    assert!(status.success(), "{status:?}");
}

fn tls_fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A server serving TLS with the test certificate (for `localhost` and 127.0.0.1).
async fn tls_app() -> TestApp {
    TestApp::spawn_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), |s| {
        s.tls = Some(segment_connections::config::TlsFiles {
            cert: tls_fixture("server.pem").into(),
            key: tls_fixture("server.key").into(),
            client_ca: None,
        });
    })
    .await
}

/// A failed connection: exit 1, one line on stderr holding every `needle`.
fn assert_unreachable(out: &Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("transport error\n"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

#[tokio::test]
async fn server_without_a_scheme_connects_and_a_bad_value_says_what_is_expected() {
    let app = TestApp::spawn().await;
    let bare = app.addr.to_string();
    assert!(!bare.contains("://"));
    let out = cli(&["destinations", "list", "--json", "--server", &bare], &[]).await;
    assert_eq!(stdout_json(&out), serde_json::json!([]));
    // From the environment too.
    let out = cli(
        &["destinations", "list", "--json"],
        &[("SEGMENT_CONNECTIONS_SERVER", bare.as_str())],
    )
    .await;
    assert_eq!(stdout_json(&out), serde_json::json!([]));

    // With TLS files, HOST:PORT means https.
    let tls = tls_app().await;
    let bare = tls.addr.to_string();
    let ca = tls_fixture("ca.pem");
    let out = cli(
        &[
            "destinations",
            "list",
            "--json",
            "--server",
            &bare,
            "--ca-file",
            &ca,
        ],
        &[],
    )
    .await;
    assert_eq!(stdout_json(&out), serde_json::json!([]));

    for bad in [
        "not a url",
        "ftp://127.0.0.1:50051",
        "127.0.0.1:50051/some/path",
        "http://user@127.0.0.1:50051",
        "",
    ] {
        let out = cli(&["destinations", "list", "--server", bad], &[]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(
            stderr.contains("expected HOST:PORT, http://HOST:PORT or https://HOST:PORT"),
            "{bad:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn connection_failures_name_their_cause() {
    // Refused: a port nobody listens on any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = format!("127.0.0.1:{port}");
    let out = cli(&["destinations", "list", "--server", &server], &[]).await;
    assert_unreachable(
        &out,
        &["connection refused", "nothing listens on", "--server"],
    );
    let out = cli(
        &["destinations", "list", "--json", "--server", &server],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "UNAVAILABLE");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{err}"
    );

    // TLS to a plaintext server.
    let plain = TestApp::spawn().await;
    let ca = tls_fixture("ca.pem");
    let server = format!("https://{}", plain.addr);
    let out = cli(
        &[
            "destinations",
            "list",
            "--server",
            &server,
            "--ca-file",
            &ca,
        ],
        &[],
    )
    .await;
    assert_unreachable(
        &out,
        &[
            "TLS mismatch",
            "does not use TLS",
            &format!("--server http://{}", plain.addr),
        ],
    );

    // Plaintext to a TLS server.
    let tls = tls_app().await;
    for server in [format!("http://{}", tls.addr), tls.addr.to_string()] {
        let out = cli(&["destinations", "list", "--server", &server], &[]).await;
        assert_unreachable(
            &out,
            &[
                "TLS mismatch",
                "uses TLS",
                &format!("--server https://{}", tls.addr),
            ],
        );
    }

    // An HTTP/1 server.
    let http1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http1_addr = http1.local_addr().unwrap();
    let answering = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // Bounded: a few connections, then it stops.
        for _ in 0..8 {
            let Ok((mut s, _)) = http1.accept().await else {
                return;
            };
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    let out = cli(
        &["destinations", "list", "--server", &http1_addr.to_string()],
        &[],
    )
    .await;
    assert_unreachable(&out, &["answers HTTP/1, not gRPC", "--listen"]);
    answering.abort();
}

#[tokio::test]
async fn region_names_are_taken_in_any_case() {
    let app = TestApp::spawn().await;
    let url = app.url();
    let out = cli(
        &[
            "destinations",
            "create",
            "--name",
            "eu-prod",
            "--region",
            "EU",
            "--write-key",
            "wk-region-0001",
            "--json",
            "--server",
            &url,
        ],
        &[],
    )
    .await;
    let d = stdout_json(&out);
    assert_eq!(d["region"], "eu");
    let id = d["id"].as_str().unwrap();
    let out = cli(
        &[
            "destinations",
            "update",
            id,
            "--region",
            "Us",
            "--write-key",
            "wk-region-0001",
            "--json",
            "--server",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(stdout_json(&out)["region"], "us");
    // From the environment too.
    let out = cli(
        &["destinations", "update", id, "--json", "--server", &url],
        &[
            ("SEGMENT_CONNECTIONS_REGION", "eU"),
            ("SEGMENT_CONNECTIONS_WRITE_KEY", "wk-region-0001"),
        ],
    )
    .await;
    assert_eq!(stdout_json(&out)["region"], "eu");
    // A base URL is passed on as given (the server strips a trailing `/v1/`).
    let out = cli(
        &[
            "destinations",
            "update",
            id,
            "--region",
            "http://127.0.0.1:9/v1/",
            "--write-key",
            "wk-region-0001",
            "--json",
            "--server",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(stdout_json(&out)["region"], "http://127.0.0.1:9");
}

// === health (the chart's `helm test`) ===

#[tokio::test]
async fn health_exits_0_when_the_service_is_serving() {
    let app = TestApp::spawn().await;
    let url = app.url();
    let out = cli(&["health", "--server", &url], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("segment_connections.v1.Connections at {url} is SERVING\n")
    );
    // The server as a whole, and the server from the environment.
    let out = cli(
        &["health", "--service", ""],
        &[("SEGMENT_CONNECTIONS_SERVER", &url)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("the server at {url} is SERVING\n")
    );
    // A service the server does not know.
    let out = cli(
        &["health", "--server", &url, "--service", "nope.v1.Nope"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: NOT_FOUND: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn health_exits_1_when_nothing_listens() {
    // A port just freed: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = cli(&["health", "--server", &url], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("error: cannot reach the server at {url}: ")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A malformed --server is a usage error.
    let out = cli(&["health", "--server", "not a url"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[tokio::test]
async fn health_exits_1_when_the_server_does_not_answer_in_time() {
    // Connections are accepted (by the kernel) but never answered.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let started = std::time::Instant::now();
    let out = cli(&["health", "--server", &url, "--timeout-seconds", "1"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("error: {url} did not answer a health check within 1 s\n")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);
}

#[tokio::test]
async fn health_exits_1_when_the_service_is_not_serving() {
    use tonic_health::ServingStatus;
    // A health server whose Connections service is NOT_SERVING (as during shutdown).
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(
            segment_connections::grpc::proto::SERVICE_NAME,
            ServingStatus::NotServing,
        )
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let out = cli(&["health", "--server", &url], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("error: segment_connections.v1.Connections at {url} is NOT_SERVING\n")
    );
    server.abort();
}

/// `mappings test` prints TestMapping's warnings: in the JSON, and as text lines on stderr
/// unless `--json`; the row is still accepted (exit 0).
#[tokio::test]
async fn mappings_test_prints_the_warnings() {
    let app = TestApp::spawn().await;
    let url = app.url();
    let server = ["--server", url.as_str()];
    let files = tempfile::tempdir().unwrap();
    let mapping = write(
        files.path(),
        "m.json",
        r#"{"name": "w", "action": "track", "fields": {"event_name": "E",
            "user_id": {"@path": "$.properties.user_id"},
            "properties": {"revenue": {"@path": "$.properties.revnue"}}}}"#,
    );
    let row = write(
        files.path(),
        "row.json",
        r#"{"id": "o-1", "op": "added", "columns": {"user_id": "u-1", "revenue": 5}}"#,
    );
    let message =
        "$.properties.revnue resolved to nothing in this row; did you mean $.properties.revenue?";
    let out = cli(
        &[
            &["mappings", "test", "-f", &mapping, "--row", &row][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    let printed = stdout_json(&out);
    assert_eq!(printed["accepted"], true);
    assert_eq!(printed["warnings"][0]["code"], "PATH_UNRESOLVED");
    assert_eq!(printed["warnings"][0]["message"], message);
    assert_eq!(
        text(&out.stderr),
        format!("warning: /fields/properties/revenue/@path: {message}\n")
    );
    let out = cli(
        &[
            &["mappings", "test", "-f", &mapping, "--row", &row, "--json"][..],
            &server,
        ]
        .concat(),
        &[],
    )
    .await;
    let printed = stdout_json(&out);
    assert_eq!(printed[0]["warnings"][0]["message"], message);
    assert_eq!(text(&out.stderr), "");
}

// === rows sync, syncs list|get|reset ===

/// A track mapping of `orders` for syncs: the change and the total; `user_id` from the columns
/// (a record without one cannot be sent: rejected), a deletion's `anonymous_id` its id.
fn sync_mapping(name: &str, trigger: &str) -> String {
    // A deleted record's event has no columns: its id is its identity.
    let identity = if trigger == "deleted" {
        ("anonymous_id", "$.__segment_id")
    } else {
        ("user_id", "$.properties.user")
    };
    serde_json::json!({
        "name": name,
        "model": "orders",
        "action": "track",
        "trigger": trigger,
        "fields": {
            "event_name": {"@literal": "Order"},
            identity.0: {"@path": identity.1},
            "properties": {
                "change": {"@path": "$.event"},
                "total": {"@path": "$.properties.total"}
            }
        }
    })
    .to_string()
}

const SYNC_KEYS: [&str; 13] = [
    "sync_id",
    "status",
    "received",
    "added",
    "updated",
    "deleted",
    "unchanged",
    "delivered",
    "rejected",
    "failed",
    "skipped",
    "retried",
    "gave_up",
];

/// `rows sync` of `orders` from `file` with `extra` flags: the exit code and the JSON summary
/// (its keys checked).
async fn rows_sync(
    url: &str,
    dest: &str,
    file: &str,
    extra: &[&str],
) -> (Option<i32>, Value, Output) {
    let out = cli(
        &[
            &[
                "rows",
                "sync",
                "--server",
                url,
                "--destination",
                dest,
                "--model",
                "orders",
            ][..],
            &["-f", file, "--json"],
            extra,
        ]
        .concat(),
        &[],
    )
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if let Some(o) = v.as_object() {
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = SYNC_KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "{v}");
    }
    (out.status.code(), v, out)
}

fn counts(v: &Value, keys: &[&str]) -> Vec<u64> {
    keys.iter()
        .map(|k| v[*k].as_u64().unwrap_or(u64::MAX))
        .collect()
}

#[tokio::test]
async fn rows_sync_from_a_file_then_only_the_changes_and_the_history() {
    let (app, fake, dest) = crate::submit_rows::setup().await;
    // Added and updated records through one mapping, deleted ones through the other: the
    // summary sums over both (each record is added to both ledgers, skipped by one).
    let m = app
        .create_mapping(&dest, &sync_mapping("orders", "added_or_updated"))
        .await;
    app.create_mapping(&dest, &sync_mapping("gone", "deleted"))
        .await;
    let url = app.url();
    let files = tempfile::tempdir().unwrap();
    let first = write(
        files.path(),
        "first.jsonl",
        "{\"id\": \"r1\", \"columns\": {\"user\": \"u1\", \"total\": 1}}\n\n\
         {\"id\": 2, \"columns\": {\"user\": \"u2\", \"total\": 2}}\n\
         {\"id\": \"r3\", \"columns\": {\"user\": \"u3\", \"total\": 3}}\n",
    );
    let (code, v, out) = rows_sync(&url, &dest, &first, &[]).await;
    assert_eq!(code, Some(0), "{}", text(&out.stderr));
    assert_eq!(v["status"], "COMPLETED");
    assert!(v["sync_id"].as_str().unwrap().len() > 4);
    let keys = [
        "received",
        "added",
        "updated",
        "deleted",
        "unchanged",
        "delivered",
        "rejected",
        "skipped",
    ];
    assert_eq!(counts(&v, &keys), [3, 6, 0, 0, 0, 3, 0, 3]);
    assert_eq!(fake.accepted().len(), 3);
    // --json: stdout is that one object, stderr is silent (no progress when not a terminal).
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let first_id = v["sync_id"].as_str().unwrap().to_owned();

    // r2 changed, r3 gone: exactly those two are sent (in text this time).
    let second = write(
        files.path(),
        "second.jsonl",
        "{\"id\": \"r1\", \"columns\": {\"user\": \"u1\", \"total\": 1}}\n\
         {\"id\": 2, \"columns\": {\"user\": \"u2\", \"total\": 20}}\n",
    );
    let out = cli(
        &[
            "rows",
            "sync",
            "--server",
            &url,
            "--destination",
            &dest,
            "--model",
            "orders",
            "-f",
            &second,
        ],
        &[],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let shown = text(&out.stdout);
    assert!(shown.contains(": COMPLETED"), "{shown}");
    assert!(
        shown.contains("received 2, added 0, updated 2, deleted 2, unchanged 2"),
        "{shown}"
    );
    assert!(
        shown.contains("delivered 2, rejected 0, failed 0, skipped 2"),
        "{shown}"
    );
    // Only failures are listed, not the results a mapping's trigger skipped.
    assert!(!shown.contains("record "), "{shown}");
    assert_eq!(fake.accepted().len(), 5);
    let body = fake.last_body();
    assert!(
        body.contains("\"total\":20") || body.contains("deleted"),
        "{body}"
    );

    // The history: both syncs, newest first; one by id with its mapping.
    let list = cli(
        &[
            "syncs",
            "list",
            "--server",
            &url,
            "--destination",
            &dest,
            "--json",
        ],
        &[],
    )
    .await;
    let list = stdout_json(&list);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[1]["sync_id"], first_id.as_str());
    assert_eq!(list[0]["updated"], 2);
    let other = cli(
        &[
            "syncs",
            "list",
            "--server",
            &url,
            "--destination",
            &dest,
            "--model",
            "other",
            "--json",
        ],
        &[],
    )
    .await;
    assert_eq!(stdout_json(&other), serde_json::json!([]));
    let got = stdout_json(
        &cli(
            &["syncs", "get", &first_id, "--server", &url, "--json"],
            &[],
        )
        .await,
    );
    assert_eq!(got["status"], "COMPLETED");
    assert_eq!(got["mode"], "FULL");
    let mappings = got["mappings"].as_array().unwrap();
    assert_eq!(mappings.len(), 2, "{got}");
    let orders = mappings
        .iter()
        .find(|x| x["mapping_id"] == m.id.as_str())
        .unwrap();
    assert_eq!(
        (&orders["added"], &orders["delivered"]),
        (&json!(3), &json!(3))
    );
    let missing = cli(&["syncs", "get", "syn_nope", "--server", &url], &[]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("NOT_FOUND"),
        "{}",
        text(&missing.stderr)
    );

    // A record that cannot be sent: exit 1, listed in text and by `syncs get --failures`.
    let third = write(
        files.path(),
        "third.jsonl",
        "{\"id\": \"r1\", \"columns\": {\"user\": \"u1\", \"total\": 1}}\n\
         {\"id\": 2, \"columns\": {\"user\": \"u2\", \"total\": 20}}\n\
         {\"id\": \"r4\", \"columns\": {\"total\": 4}}\n",
    );
    let (code, v, _) = rows_sync(&url, &dest, &third, &["--incremental"]).await;
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(
        counts(&v, &["received", "added", "rejected", "deleted"]),
        [3, 2, 1, 0]
    );
    let third_id = v["sync_id"].as_str().unwrap().to_owned();
    let failures = stdout_json(
        &cli(
            &[
                "syncs",
                "get",
                &third_id,
                "--failures",
                "--server",
                &url,
                "--json",
            ],
            &[],
        )
        .await,
    );
    assert_eq!(failures["mode"], "INCREMENTAL");
    let listed = failures["failures"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{failures}");
    assert_eq!(listed[0]["record_id"], "r4");
    assert_eq!(listed[0]["status"], "REJECTED");
    let failures_text = cli(
        &["syncs", "get", &third_id, "--failures", "--server", &url],
        &[],
    )
    .await;
    assert!(failures_text.status.success());
    assert!(
        text(&failures_text.stdout).contains("record \"r4\""),
        "{}",
        text(&failures_text.stdout)
    );

    // In text, the failure is listed with its issue.
    let fifth = write(
        files.path(),
        "fifth.jsonl",
        "{\"id\": \"r5\", \"columns\": {\"total\": 5}}\n",
    );
    let out = cli(
        &[
            "rows",
            "sync",
            "--server",
            &url,
            "--destination",
            &dest,
            "--model",
            "orders",
            "-f",
            &fifth,
            "--incremental",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(shown.contains(": COMPLETED_WITH_FAILURES"), "{shown}");
    assert!(
        shown.contains(&format!(
            "record \"r5\" mapping {}: ADDED REJECTED\n  MISSING_IDENTITY",
            m.id
        )),
        "{shown}"
    );

    // Reset forgets the ledger: the next sync adds everything again.
    let reset = cli(
        &[
            "syncs",
            "reset",
            "--server",
            &url,
            "--destination",
            &dest,
            "--model",
            "orders",
        ],
        &[],
    )
    .await;
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    let said = text(&reset.stdout);
    assert!(
        said.starts_with("forgot ") && said.contains(" ledger entries"),
        "{said}"
    );
    assert_ne!(said.trim(), "forgot 0 ledger entries");
    let (code, v, _) = rows_sync(&url, &dest, &second, &[]).await;
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(counts(&v, &["added", "updated", "unchanged"]), [4, 0, 0]);
}

#[tokio::test]
async fn rows_sync_a_bad_line_is_named_and_nothing_is_sent_or_deleted() {
    let (app, fake, dest) = crate::submit_rows::setup().await;
    app.create_mapping(&dest, &sync_mapping("orders", "added_or_updated"))
        .await;
    let url = app.url();
    let files = tempfile::tempdir().unwrap();
    let good = write(
        files.path(),
        "good.jsonl",
        "{\"id\": \"r1\", \"columns\": {\"user\": \"u1\", \"total\": 1}}\n\
         {\"id\": \"r2\", \"columns\": {\"user\": \"u2\", \"total\": 2}}\n",
    );
    let (code, _, _) = rows_sync(&url, &dest, &good, &[]).await;
    assert_eq!(code, Some(0));
    assert_eq!(fake.accepted().len(), 2);

    for (content, says) in [
        (
            "{\"id\": \"r1\", \"columns\": {\"user\": \"u1\", \"total\": 1}}\n\n{\"id\": \"r2\"",
            ":3: not a record",
        ),
        (
            "{\"id\": \"r1\", \"columns\": {}}\n{\"id\": null, \"columns\": {}}\n",
            ":2: id: expected a string or a number",
        ),
        (
            "{\"id\": \"r1\", \"columns\": [1]}\n",
            ":1: columns: expected an object",
        ),
    ] {
        let bad = write(files.path(), "bad.jsonl", content);
        let (code, _, out) = rows_sync(&url, &dest, &bad, &[]).await;
        assert_eq!(code, Some(2), "{}", text(&out.stderr));
        let err: Value = serde_json::from_slice(&out.stderr).unwrap();
        assert_eq!(err["error"]["code"], "USAGE");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("bad.jsonl{says}")), "{message}");
        // Text too.
        let out = cli(
            &[
                "rows",
                "sync",
                "--server",
                &url,
                "--destination",
                &dest,
                "--model",
                "orders",
                "-f",
                &bad,
            ],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
    // Nothing sent, nothing deleted, no sync even started.
    assert_eq!(fake.accepted().len(), 2);
    let list = stdout_json(
        &cli(
            &[
                "syncs",
                "list",
                "--server",
                &url,
                "--destination",
                &dest,
                "--json",
            ],
            &[],
        )
        .await,
    );
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let missing = cli(
        &[
            "rows",
            "sync",
            "--server",
            &url,
            "--destination",
            &dest,
            "--model",
            "orders",
            "-f",
            "/nonexistent/x.jsonl",
        ],
        &[],
    )
    .await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("/nonexistent/x.jsonl"),
        "{}",
        text(&missing.stderr)
    );
    let unknown = cli(
        &[
            "rows",
            "sync",
            "--server",
            &url,
            "--destination",
            "dst_nope",
            "--model",
            "orders",
            "-f",
            &good,
        ],
        &[],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("NOT_FOUND"),
        "{}",
        text(&unknown.stderr)
    );
}

#[tokio::test]
async fn rows_sync_dry_run_sends_nothing_and_changes_nothing() {
    let (app, fake, dest) = crate::submit_rows::setup().await;
    app.create_mapping(&dest, &sync_mapping("orders", "added_or_updated"))
        .await;
    let url = app.url();
    let files = tempfile::tempdir().unwrap();
    let file = write(
        files.path(),
        "records.jsonl",
        "{\"id\": \"r1\", \"columns\": {\"user\": \"u1\", \"total\": 1}}\n",
    );
    let (code, v, out) = rows_sync(&url, &dest, &file, &["--dry-run"]).await;
    assert_eq!(code, Some(0), "{}", text(&out.stderr));
    assert_eq!(counts(&v, &["received", "added", "delivered"]), [1, 1, 0]);
    let out = cli(
        &[
            "rows",
            "sync",
            "--server",
            &url,
            "--destination",
            &dest,
            "--model",
            "orders",
            "-f",
            &file,
            "--dry-run",
        ],
        &[],
    )
    .await;
    assert!(
        text(&out.stdout).contains("dry run"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("would send 1"),
        "{}",
        text(&out.stdout)
    );
    assert!(fake.accepted().is_empty());
    // The ledger is unchanged: a real sync still adds the record.
    let (code, v, _) = rows_sync(&url, &dest, &file, &[]).await;
    assert_eq!(code, Some(0));
    assert_eq!(counts(&v, &["added", "delivered"]), [1, 1]);
}

#[tokio::test]
async fn rows_sync_sends_chunks_bounded_by_records_and_bytes() {
    let (app, fake, dest) = crate::submit_rows::setup().await;
    app.create_mapping(&dest, &sync_mapping("orders", "added_or_updated"))
        .await;
    let url = app.url();
    let files = tempfile::tempdir().unwrap();
    let mut content = String::new();
    for i in 0..2_500 {
        content.push_str(&format!(
            "{{\"id\": {i}, \"columns\": {{\"user\": \"u{i}\", \"total\": {i}, \"pad\": \"{}\"}}}}\n",
            "x".repeat(200)
        ));
    }
    let file = write(files.path(), "many.jsonl", &content);
    // About 240 records per 64 KiB chunk, then at most 100 per chunk.
    for extra in [
        &["--chunk-bytes", "65536"][..],
        &["--chunk-size", "100", "--dry-run"],
    ] {
        let (code, v, out) = rows_sync(&url, &dest, &file, extra).await;
        assert_eq!(code, Some(0), "{}", text(&out.stderr));
        assert_eq!(v["received"], 2_500, "{v}");
    }
    assert_eq!(fake.accepted().len(), 2_500);

    // A chunk past the server's --max-submit-rows (10,000 in tests): the server ends the sync
    // (INCOMPLETE, nothing deleted) and the stream with an error after the summary: both are
    // reported, exit 1.
    let mut content = String::new();
    for i in 0..10_001 {
        content.push_str(&format!(
            "{{\"id\": {i}, \"columns\": {{\"user\": \"u\"}}}}\n"
        ));
    }
    let file = write(files.path(), "too_many.jsonl", &content);
    let (code, v, out) = rows_sync(&url, &dest, &file, &["--chunk-size", "20000"]).await;
    assert_eq!(code, Some(1), "{}", text(&out.stderr));
    assert_eq!(v["status"], "INCOMPLETE", "{v}");
    assert_eq!(v["deleted"], 0, "{v}");
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "INVALID_ARGUMENT", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-submit-rows"),
        "{err}"
    );
    assert_eq!(fake.accepted().len(), 2_500);
}

#[tokio::test]
async fn rows_sync_from_stdin_a_bad_line_mid_stream_ends_the_sync_without_commit() {
    let (app, fake, dest) = crate::submit_rows::setup().await;
    app.create_mapping(&dest, &sync_mapping("orders", "added_or_updated"))
        .await;
    // A commit would send r3's deletion through this one.
    app.create_mapping(&dest, &sync_mapping("gone", "deleted"))
        .await;
    let url = app.url();
    let files = tempfile::tempdir().unwrap();
    let lines = "{\"id\": \"r1\", \"columns\": {\"user\": \"u1\"}}\n\
                 {\"id\": \"r2\", \"columns\": {\"user\": \"u2\"}}\n";
    let all = write(
        files.path(),
        "all.jsonl",
        &format!("{lines}{{\"id\": \"r3\", \"columns\": {{\"user\": \"u3\"}}}}\n"),
    );
    let (code, _, _) = rows_sync(&url, &dest, &all, &[]).await;
    assert_eq!(code, Some(0));
    assert_eq!(fake.accepted().len(), 3);

    let run = |input: String| {
        let url = url.clone();
        let dest = dest.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut cmd = Command::new(BIN);
            cmd.args(["rows", "sync", "--server", &url, "--destination", &dest])
                .args([
                    "--model",
                    "orders",
                    "-f",
                    "-",
                    "--chunk-size",
                    "1",
                    "--json",
                ]);
            crate::common::bin::clean_env(&mut cmd);
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        })
    };
    // r1 is sent (a chunk of its own) before the bad line is read; r2, still in the next
    // chunk, is not.
    let out = run(format!("{lines}{{\"id\": \"r3\"\n")).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("stdin:3: not a record"),
        "{}",
        text(&out.stderr)
    );
    let list = stdout_json(
        &cli(
            &[
                "syncs",
                "list",
                "--server",
                &url,
                "--destination",
                &dest,
                "--json",
            ],
            &[],
        )
        .await,
    );
    assert_eq!(list[0]["status"], "INCOMPLETE", "{list}");
    assert_eq!(list[0]["received"], 1, "{list}");
    assert_eq!(fake.accepted().len(), 3);

    // Good input from stdin: committed, r3 deleted.
    let out = run(lines.to_owned()).await.unwrap();
    let v = stdout_json(&out);
    assert_eq!(
        (&v["deleted"], &v["delivered"]),
        (&json!(2), &json!(1)),
        "{v}"
    );
    assert_eq!(fake.accepted().len(), 4);
}

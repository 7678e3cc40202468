//! The built binary's `test-mapping` subcommand: the JSON it prints and its exit codes (0 accepted
//! or skipped, 1 rejected or invalid mapping, 2 usage or file error), plus the README example.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use tempfile::TempDir;

#[path = "common/terminal.rs"]
mod terminal;
use terminal::in_terminal;

const BIN: &str = env!("CARGO_BIN_EXE_segment-connections");

/// Writes `contents` to `name` in `dir` and returns its path.
fn file(dir: &TempDir, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn command() -> Command {
    let mut cmd = Command::new(BIN);
    // The flags also read these: make sure only the arguments given count.
    cmd.env_remove("SEGMENT_CONNECTIONS_MAPPING")
        .env_remove("SEGMENT_CONNECTIONS_ROW")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn run_files(mapping: &Path, row: &Path) -> Output {
    command()
        .arg("test-mapping")
        .arg("--mapping")
        .arg(mapping)
        .arg("--row")
        .arg(row)
        .output()
        .expect("the binary runs")
}

/// Writes both files (raw text) and runs `test-mapping` on them.
fn run_text(mapping: &str, row: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let m = file(&dir, "mapping.json", mapping);
    let r = file(&dir, "row.json", row);
    run_files(&m, &r)
}

fn run(mapping: Value, row: Value) -> Output {
    run_text(&mapping.to_string(), &row.to_string())
}

/// The exit code and the JSON object printed on stdout.
fn printed(out: &Output) -> (i32, Value) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(v.is_object(), "{v}");
    (out.status.code().expect("exited"), v)
}

/// A file error: exit 2, nothing on stdout, the reason on stderr.
fn assert_file_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
}

fn track_mapping() -> Value {
    json!({
        "name": "cli",
        "action": "track",
        "trigger": "added",
        "fields": {
            "event_name": "Signed Up",
            "user_id": {"@path": "$.properties.uid"},
            "message_id": {"@path": "$.messageId"},
            "properties": {"plan": {"@path": "$.properties.plan"}},
        }
    })
}

fn row(op: &str, columns: Value) -> Value {
    json!({"id": 1, "op": op, "columns": columns, "message_id": "msg-1"})
}

#[test]
fn accepted_exits_0_with_the_event() {
    let out = run(
        track_mapping(),
        row("added", json!({"uid": 7, "plan": "pro"})),
    );
    let (code, v) = printed(&out);
    assert_eq!(code, 0);
    let event = json!({
        "userId": "7",
        "event": "Signed Up",
        "messageId": "msg-1",
        "context": {"traits": {}, "consent": {}},
        "properties": {"plan": "pro"},
        "type": "track",
    });
    let size = serde_json::to_string(&event).unwrap().len();
    assert_eq!(
        v,
        json!({
            "accepted": true,
            "skipped": false,
            "event": event,
            "message_id": "msg-1",
            "size_bytes": size,
            "issues": [],
            "warnings": [{
                "code": "COERCED",
                "pointer": "/fields/user_id",
                "message": "User ID is a string: the number 7 was sent as \"7\"",
            }],
        })
    );
    // And as a line of text on stderr.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "warning: /fields/user_id: User ID is a string: the number 7 was sent as \"7\"\n"
    );
}

/// Warnings: a path that resolved to nothing, with the row's nearest column; a field dropped as
/// empty; a warehouse timestamp normalised. The row is still accepted (exit 0).
#[test]
fn warnings_beside_issues_keep_the_row_accepted() {
    let mapping = json!({
        "name": "w",
        "action": "track",
        "fields": {
            "event_name": "Order",
            "user_id": {"@path": "$.properties.uid"},
            "anonymous_id": {"@path": "$.properties.anon"},
            "timestamp": {"@path": "$.properties.created_at"},
            "properties": {"revenue": {"@path": "$.properties.revnue"}},
        }
    });
    let out = run(
        mapping,
        row(
            "added",
            json!({"uid": "u-1", "anon": "", "created_at": "2024-05-01 12:00:00", "revenue": 5}),
        ),
    );
    let (code, v) = printed(&out);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["accepted"], true);
    assert_eq!(v["issues"], json!([]));
    assert_eq!(v["event"]["timestamp"], "2024-05-01T12:00:00Z");
    assert_eq!(
        v["warnings"],
        json!([
            {
                "code": "PATH_UNRESOLVED",
                "pointer": "/fields/properties/revenue/@path",
                "message": "$.properties.revnue resolved to nothing in this row; did you mean $.properties.revenue?",
            },
            {
                "code": "DROPPED_EMPTY",
                "pointer": "/fields/anonymous_id",
                "message": "anonymous_id resolved to an empty string, so the event has no Anonymous ID",
            },
            {
                "code": "COERCED",
                "pointer": "/fields/timestamp",
                "message": "timestamp \"2024-05-01 12:00:00\" was sent as \"2024-05-01T12:00:00Z\" (RFC 3339, D8)",
            },
        ])
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    assert!(
        stderr.starts_with("warning: /fields/properties/revenue/@path: $.properties.revnue"),
        "{stderr}"
    );
}

#[test]
fn skipped_exits_0_with_no_event() {
    let out = run(track_mapping(), row("updated", json!({"uid": 7})));
    let (code, v) = printed(&out);
    assert_eq!(code, 0);
    assert_eq!(
        v,
        json!({
            "accepted": false,
            "skipped": true,
            "event": null,
            "message_id": null,
            "size_bytes": null,
            "issues": [],
            "warnings": [],
        })
    );
}

#[test]
fn rejected_exits_1_with_the_issue() {
    let out = run(track_mapping(), row("added", json!({"uid": {"id": 7}})));
    let (code, v) = printed(&out);
    assert_eq!(code, 1);
    assert_eq!(
        v,
        json!({
            "accepted": false,
            "skipped": false,
            "event": null,
            "message_id": "msg-1",
            "size_bytes": null,
            "issues": [{
                "code": "TYPE_MISMATCH",
                "pointer": "/user_id",
                "message": "User ID must be a string but it was an object.",
            }],
            "warnings": [{
                "code": "PATH_UNRESOLVED",
                "pointer": "/fields/properties/plan/@path",
                "message": "$.properties.plan resolved to nothing in this row",
            }],
        })
    );
}

#[test]
fn invalid_mapping_exits_1_listing_every_violation() {
    let mapping = json!({
        "action": "track",
        "fields": {
            "user_id": {"@replace": {"pattern": "abcdefghijkl", "value": "v"}},
            "traits": {"x": {"@nope": 1}},
        }
    });
    let out = run(mapping, row("added", json!({})));
    let (code, v) = printed(&out);
    assert_eq!(code, 1);
    assert_eq!(
        v,
        json!({
            "accepted": false,
            "skipped": false,
            "event": null,
            "message_id": null,
            "size_bytes": null,
            "issues": [
                {
                    "code": "INVALID_MAPPING",
                    "pointer": "/fields/user_id/@replace/pattern",
                    "message": "should be a string of length 10 or less",
                },
                {
                    "code": "INVALID_MAPPING",
                    "pointer": "/fields/traits/x",
                    "message": "has an invalid directive: @nope",
                },
                {
                    "code": "INVALID_MAPPING",
                    "pointer": "/fields/event_name",
                    "message": "is required for track but not mapped",
                },
            ],
            "warnings": [],
        })
    );
}

#[test]
fn oversize_exits_1_and_shows_the_event() {
    let pad = "x".repeat(40_000);
    let out = run(
        track_mapping(),
        row("added", json!({"uid": "u", "plan": pad})),
    );
    let (code, v) = printed(&out);
    assert_eq!(code, 1);
    assert_eq!(v["accepted"], false);
    assert_eq!(v["event"]["properties"]["plan"], pad);
    let size = v["size_bytes"].as_u64().unwrap() as usize;
    assert_eq!(size, serde_json::to_string(&v["event"]).unwrap().len());
    assert!(size > 32_768);
    assert_eq!(
        v["issues"],
        json!([{
            "code": "EVENT_TOO_LARGE",
            "pointer": "",
            "message": format!("the event is {size} bytes; the Tracking API accepts at most 32768"),
        }])
    );
}

#[test]
fn missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let row = file(&dir, "row.json", row("added", json!({})).to_string());
    let missing = dir.path().join("no-such-mapping.json");
    let out = run_files(&missing, &row);
    assert_file_error(&out, "no-such-mapping.json");
    let mapping = file(&dir, "mapping.json", track_mapping().to_string());
    let out = run_files(&mapping, &dir.path().join("no-such-row.json"));
    assert_file_error(&out, "no-such-row.json");
}

#[test]
fn bad_json_exits_2() {
    let row_text = row("added", json!({})).to_string();
    let out = run_text("{\"action\": \"track\",", &row_text);
    assert_file_error(&out, "not a mapping document");
    let out = run_text(
        &track_mapping().to_string(),
        "{\"op\": \"added\", \"columns\": {}",
    );
    assert_file_error(&out, "not a row file");
    let out = run_text("", &row_text);
    assert_file_error(&out, "not a mapping document");
}

#[test]
fn unknown_op_exits_2() {
    let out = run(track_mapping(), json!({"op": "inserted", "columns": {}}));
    assert_file_error(&out, "unknown variant `inserted`");
}

#[test]
fn columns_not_an_object_exits_2() {
    for columns in [json!([1, 2]), json!("a"), json!(null)] {
        let out = run(track_mapping(), json!({"op": "added", "columns": columns}));
        assert_file_error(&out, "not a row file");
    }
    let out = run(track_mapping(), json!({"op": "added"}));
    assert_file_error(&out, "missing field `columns`");
}

#[test]
fn unknown_top_level_keys_exit_2() {
    let mut mapping = track_mapping();
    mapping["mappings"] = json!({});
    let out = run(mapping, row("added", json!({})));
    assert_file_error(&out, "unknown field `mappings`");
    let mut r = row("added", json!({}));
    r["colums"] = json!({});
    let out = run(track_mapping(), r);
    assert_file_error(&out, "unknown field `colums`");
}

#[test]
fn missing_required_flag_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = file(&dir, "mapping.json", track_mapping().to_string());
    let out = command()
        .args(["test-mapping", "--mapping"])
        .arg(&mapping)
        .output()
        .unwrap();
    assert_file_error(&out, "--row");
    let out = command().arg("test-mapping").output().unwrap();
    assert_file_error(&out, "--mapping");
}

/// The README's command, run from the repository root on the shipped examples.
#[test]
fn readme_example_is_accepted() {
    let out = command()
        .args([
            "test-mapping",
            "--mapping",
            "examples/track.mapping.json",
            "--row",
            "examples/track.row.json",
        ])
        .output()
        .unwrap();
    let (code, v) = printed(&out);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["accepted"], true);
    assert_eq!(v["issues"], json!([]));
    let mut event = v["event"].clone();
    // No message_id in the row: the derived id (offline identity), shown in both places.
    let id = event["messageId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sc2-") && id.len() == 36, "{id}");
    assert_eq!(v["message_id"], id);
    event.as_object_mut().unwrap().remove("messageId");
    assert_eq!(
        event,
        json!({
            "userId": "98765",
            "timestamp": "2024-05-01T12:00:00.000Z",
            "event": "Order Completed",
            "context": {
                "traits": {"email": "ada@example.com"},
                "consent": {},
                "ip": "192.0.2.10",
            },
            "properties": {
                "order_id": "ord-1001",
                "revenue": 59.9,
                "currency": "EUR",
                "products": [
                    {"product_id": "SKU-1", "quantity": 2, "price": 19.95},
                    {"product_id": "SKU-2", "quantity": 1, "price": 20},
                ],
            },
            "type": "track",
        })
    );
    // The same files give the same messageId every time.
    let again = command()
        .args([
            "test-mapping",
            "--mapping",
            "examples/track.mapping.json",
            "--row",
            "examples/track.row.json",
        ])
        .output()
        .unwrap();
    assert_eq!(printed(&again).1["message_id"], id);
}

/// Mappings that would build gigabytes from a small row (`@json` encode nested 28 deep around
/// `"`, a 300 KB column repeated 3,000 times by `@template` in a document within the 64 KiB every
/// mapping is held to, `@replace` nested ten deep), run under a
/// 768 MiB address-space cap: each stops at the render budget with `RENDER_LIMIT` naming the
/// field and the limit, far below the cap (without the budget the process dies allocating).
#[test]
fn render_bombs_stop_at_the_budget_in_bounded_memory() {
    let mut json_bomb = json!({"@path": "$.properties.q"});
    for _ in 0..28 {
        json_bomb = json!({"@json": {"mode": "encode", "value": json_bomb}});
    }
    let mut replace_bomb = json!({"@path": "$.properties.q"});
    for _ in 0..10 {
        replace_bomb = json!({"@replace": {
            "value": replace_bomb, "pattern": "\"", "replacement": "\"\"\"\"\"\"\"\"\"\""
        }});
    }
    let template_bomb = json!({"@template": "{{properties.big}}".repeat(3_000)});
    let columns = json!({"user_id": "u-1", "q": "\"", "big": "x".repeat(300_000)});
    for (name, bomb) in [
        ("@json encode", json_bomb),
        ("@template", template_bomb),
        ("@replace", replace_bomb),
    ] {
        let mapping = json!({"action": "track", "fields": {
            "event_name": {"@literal": "Bomb"},
            "user_id": {"@path": "$.properties.user_id"},
            "properties": {"x": bomb},
        }});
        let dir = tempfile::tempdir().unwrap();
        let m = file(&dir, "mapping.json", mapping.to_string());
        let r = file(&dir, "row.json", row("added", columns.clone()).to_string());
        let out = Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 786432 && exec \"$0\" \"$@\"")
            .arg(BIN)
            .arg("test-mapping")
            .arg("--mapping")
            .arg(&m)
            .arg("--row")
            .arg(&r)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("sh runs");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let (_, v) = printed(&out);
        assert_eq!(v["accepted"], false);
        let issues = v["issues"].as_array().unwrap();
        assert_eq!(issues.len(), 1, "{name}: {v}");
        assert_eq!(issues[0]["code"], "RENDER_LIMIT", "{name}: {v}");
        assert_eq!(issues[0]["pointer"], "/properties", "{name}: {v}");
        let message = issues[0]["message"].as_str().unwrap();
        assert!(message.contains(name), "{message}");
        assert!(message.contains("4194304 bytes"), "{message}");
    }
}

// === The rest of the command line ===

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, needle) in [
        ("bash", "complete -F _segment__connections"),
        ("zsh", "#compdef segment-connections"),
        ("fish", "complete -c segment-connections"),
    ] {
        let out = command().args(["completions", shell]).output().unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(script.contains(needle), "{shell}: {script}");
        // Subcommands and their flags are in it.
        for word in ["destinations", "rows", "delivered-ids", "server"] {
            assert!(script.contains(word), "{shell}: {word}");
        }
    }
    let out = command().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

const ESC: &str = "\u{1b}[";

/// `--help`, a usage error and a short `serve` (stopped by SIGTERM after it logs "serving").
fn colour_cases(dir: &Path) -> [(&'static str, String); 3] {
    [
        ("--help", format!("'{BIN}' --help")),
        ("error", format!("'{BIN}' destinations create --name x")),
        (
            "serve",
            format!(
                "cd '{}' && timeout -s TERM 4 '{BIN}' serve --listen 127.0.0.1:0",
                dir.display()
            ),
        ),
    ]
}

/// NO_COLOR (any non-empty value) takes every escape out of a terminal's output: clap's help and
/// errors and `serve`'s log; without it the terminal gets colour (so the check means something).
#[test]
fn no_color_is_honoured_in_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    for (name, shell_command) in colour_cases(dir.path()) {
        let Some(plain) = in_terminal(&shell_command, Some("1")) else {
            return;
        };
        assert!(!plain.contains(ESC), "{name} with NO_COLOR: {plain:?}");
        assert!(plain.len() > 20, "{name}: {plain:?}");
        if name == "serve" {
            assert!(plain.contains("serving"), "{plain:?}");
        }
        let coloured = in_terminal(&shell_command, None).unwrap();
        assert!(
            coloured.contains(ESC),
            "{name} without NO_COLOR: {coloured:?}"
        );
        // An empty NO_COLOR is no request.
        let empty = in_terminal(&shell_command, Some("")).unwrap();
        assert!(empty.contains(ESC), "{name} with NO_COLOR=\"\": {empty:?}");
    }
}

/// Not a terminal (a pipe): no escapes with or without NO_COLOR, and the same text.
#[test]
fn no_escapes_into_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    for no_color in [Some("1"), None] {
        let run = |args: &[&str]| {
            let mut cmd = command();
            cmd.args(args).current_dir(dir.path());
            match no_color {
                Some(v) => cmd.env("NO_COLOR", v),
                None => cmd.env_remove("NO_COLOR"),
            };
            cmd.output().unwrap()
        };
        let help = run(&["--help"]);
        let error = run(&["destinations", "create", "--name", "x"]);
        assert_eq!(error.status.code(), Some(2));
        for out in [&help, &error] {
            let all = [&out.stdout[..], &out.stderr[..]].concat();
            assert!(!String::from_utf8_lossy(&all).contains(ESC), "{no_color:?}");
        }
        assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: segment-connections"));
    }
    // serve's log on a pipe.
    let mut child = command()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ])
        .env_remove("NO_COLOR")
        .env_remove("SEGMENT_CONNECTIONS_STORE")
        .env_remove("SEGMENT_CONNECTIONS_ENCRYPTION_KEY")
        .env_remove("SEGMENT_CONNECTIONS_ENCRYPTION_KEY_FILE")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    while !log.contains("serving") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            break;
        }
        log.push_str(&line);
    }
    child.kill().ok();
    child.wait().ok();
    assert!(log.contains("serving"), "{log}");
    assert!(!log.contains(ESC), "{log:?}");
}

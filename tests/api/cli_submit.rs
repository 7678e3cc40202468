//! `rows submit` for big files, end to end: the real binary streaming a file to a server (in
//! process, or a `serve` process that is stopped and started again) that delivers to the fake
//! Tracking API. In order, a result per line; progress only on a terminal; Ctrl-C, then
//! `--from-line`; a server down, or killed mid-file, retried; bad `--from-line` values.

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{Serve, serve};
use crate::common::app::{TestApp, track_mapping};
use crate::common::bin::{BIN, clean_env, cli, text};
use crate::common::fake_segment::{FakeSegment, Fault};
use segment_connections::cli::submit::WINDOW;
use segment_connections::grpc::proto::{self, ConnectionsClient};

const KEY: &str = "wk-submit-0123456789";

/// `n` rows of the orders model, one a line (1-based line i holds row `r-i`); with `blanks`, a
/// blank line after every seventh. Every tenth row has no user: rejected. Also the lines of the
/// rows delivered and of those rejected.
fn rows(n: usize, blanks: bool) -> (String, Vec<usize>, Vec<usize>) {
    let (mut text, mut delivered, mut rejected) = (String::new(), Vec::new(), Vec::new());
    let mut line = 0;
    for i in 1..=n {
        line += 1;
        let user = if i % 10 == 0 {
            rejected.push(line);
            String::new()
        } else {
            delivered.push(line);
            format!(r#""user_id": "u-{i}", "#)
        };
        text.push_str(&format!(
            r#"{{"id": "r-{i}", "op": "added", "columns": {{{user}"order_id": "o-{i}", "revenue": 1.5}}}}"#
        ));
        text.push('\n');
        if blanks && i % 7 == 0 {
            text.push('\n');
            line += 1;
        }
    }
    (text, delivered, rejected)
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_string_lossy().into_owned()
}

/// `rows submit` of `file` to `destination`, in chunks of two rows, with `extra` flags.
fn submit_args(server: &str, destination: &str, file: &str, extra: &[&str]) -> Vec<String> {
    [
        "rows",
        "submit",
        "--server",
        server,
        "--destination",
        destination,
        "--model",
        "orders",
        "-f",
        file,
        "--batch-size",
        "2",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The CLI started with `args`, its output piped (and `stdin` as its input, if given).
fn spawn_cli(args: &[String], stdin: Option<&str>) -> Child {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(match stdin {
            Some(path) => Stdio::from(std::fs::File::open(path).unwrap()),
            None => Stdio::null(),
        });
    cmd.spawn().unwrap()
}

/// The child's output once it exits (within 60 s, else it is killed and the test fails).
async fn finish(child: Child) -> Output {
    let id = child.id();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    match tokio::time::timeout(Duration::from_secs(60), waiting).await {
        Ok(out) => out.unwrap(),
        Err(_) => {
            Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status()
                .ok();
            panic!("the CLI did not finish within 60 s");
        }
    }
}

/// Waits (at most 30 s) until `ready`, polling without blocking the runtime the fake runs on.
async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// The DELIVERED lines of a text listing: (line, messageId) in the order printed.
fn delivered_lines(stdout: &str) -> Vec<(usize, String)> {
    stdout
        .lines()
        .filter(|l| l.contains(": DELIVERED messageId "))
        .map(|l| {
            let n = l["line ".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (n, l.rsplit(' ').next().unwrap().to_owned())
        })
        .collect()
}

/// The line a stopped run says to resume from.
fn resume_line(stdout: &str) -> usize {
    let (_, rest) = stdout
        .split_once("resume with --from-line ")
        .unwrap_or_else(|| panic!("no resume line: {stdout}"));
    rest.trim().parse().unwrap()
}

/// `--json --delivered-ids`: each delivered result's (line, messageId), in order.
fn delivered_ids(v: &Value) -> Vec<(usize, String)> {
    v["delivered_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["line"].as_u64().unwrap() as usize,
                d["message_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)))
}

async fn app_with_fake() -> (TestApp, FakeSegment, String) {
    let fake = FakeSegment::start(KEY).await;
    let app = TestApp::spawn().await;
    let d = app.create_destination_at("submit", &fake.url(), KEY).await;
    app.create_mapping(&d.id, &track_mapping("orders")).await;
    (app, fake, d.id)
}

/// 61 chunks, many times the window: every row answered, the listing in the file's order (also
/// when the first chunk's batch is answered last), each result with its line, each delivered
/// messageId the one the Tracking API got; standard input gives the same.
#[tokio::test]
async fn a_file_bigger_than_the_window_is_delivered_in_order_with_a_result_per_line() {
    let (app, fake, destination) = app_with_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (content, delivered, rejected) = rows(121, true);
    const { assert!(121 / 2 > 4 * WINDOW) };
    let file = write(dir.path(), "rows.jsonl", &content);
    let args = submit_args(
        &app.url(),
        &destination,
        &file,
        &["--json", "--delivered-ids"],
    );
    // The first batch is held: the chunks after it are answered before it.
    fake.script([Fault::Slow(Duration::from_millis(300))]);
    let out = cli(&strs(&args), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["delivered"].as_u64(), Some(delivered.len() as u64), "{v}");
    assert_eq!(v["rejected"].as_u64(), Some(rejected.len() as u64), "{v}");
    assert_eq!(v["complete"], true);
    let ids = delivered_ids(&v);
    assert_eq!(ids.iter().map(|(l, _)| *l).collect::<Vec<_>>(), delivered);
    let row_indexes: Vec<u64> = v["delivered_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["row_index"].as_u64().unwrap())
        .collect();
    assert!(
        row_indexes.windows(2).all(|w| w[0] < w[1]),
        "{row_indexes:?}"
    );
    let listed: Vec<usize> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(listed, rejected);
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["issues"][0]["code"], "MISSING_IDENTITY", "{r}");
    }
    // Each row once at the Tracking API, with the messageId listed.
    let accepted = fake.accepted();
    assert_eq!(accepted.len(), delivered.len());
    let got: BTreeSet<String> = accepted.into_iter().collect();
    let listed: BTreeSet<String> = ids.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(got, listed);

    // From standard input: the same results, the same messageIds.
    let stdin_args = submit_args(
        &app.url(),
        &destination,
        "-",
        &["--json", "--delivered-ids"],
    );
    let args = stdin_args;
    let out = finish(spawn_cli(&args, Some(&file))).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let again = json_of(&out);
    assert_eq!(delivered_ids(&again), ids);
    assert_eq!(again["results"], v["results"]);
}

/// Progress (rows/s, delivered and failed so far) is drawn on a terminal's stderr and erased;
/// never with --json, never into a pipe.
#[tokio::test]
async fn progress_shows_on_a_terminal_only_and_never_with_json() {
    let (app, fake, destination) = app_with_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let (content, delivered, rejected) = rows(20, false);
    let file = write(dir.path(), "rows.jsonl", &content);
    let args = submit_args(&app.url(), &destination, &file, &[]);
    let shell = |args: &[String]| {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        format!("'{BIN}' {}", quoted.join(" "))
    };
    let summary = format!(
        "delivered {}, rejected {}, failed 0, skipped 0",
        delivered.len(),
        rejected.len()
    );
    // Each run waits on a held batch long enough for the line to be drawn.
    let hold = || fake.script([Fault::Slow(Duration::from_millis(1500))]);

    hold();
    let command = shell(&args);
    let Some(shown) =
        tokio::task::spawn_blocking(move || crate::common::terminal::in_terminal(&command, None))
            .await
            .unwrap()
    else {
        return;
    };
    assert!(shown.contains("rows answered ("), "{shown:?}");
    assert!(shown.contains(" rows/s): delivered "), "{shown:?}");
    assert!(shown.contains(", failed "), "{shown:?}");
    // Erased before the summary.
    assert!(shown.contains("\r\u{1b}[K"), "{shown:?}");
    assert!(shown.contains(&summary), "{shown:?}");

    hold();
    let mut json_args = args.clone();
    json_args.push("--json".into());
    let command = shell(&json_args);
    let shown = tokio::task::spawn_blocking(move || {
        crate::common::terminal::in_terminal(&command, None).unwrap()
    })
    .await
    .unwrap();
    assert!(!shown.contains("rows/s"), "{shown:?}");
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(shown.contains("\"complete\": true"), "{shown:?}");

    hold();
    let out = cli(&strs(&args), &[]).await;
    assert_eq!(text(&out.stderr), "");
    assert_eq!(text(&out.stdout).lines().next(), Some(summary.as_str()));
}

/// Ctrl-C mid-file: the chunks sent are answered, then the counts so far and the first line not
/// confirmed are printed (exit 130); `--from-line` there sends the rest: every row reaches the
/// Tracking API exactly once.
#[tokio::test]
async fn ctrl_c_prints_the_first_unconfirmed_line_and_from_line_completes_exactly_once() {
    let (app, fake, destination) = app_with_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let n = 60;
    let content: String = (1..=n)
        .map(|i| {
            format!(
                "{{\"id\": \"r-{i}\", \"op\": \"added\", \"columns\": {{\"user_id\": \"u-{i}\"}}}}\n"
            )
        })
        .collect();
    let file = write(dir.path(), "rows.jsonl", &content);
    // Held for less than the server's attempt timeout (tests/common/app.rs): not sent twice.
    fake.script([Fault::Slow(Duration::from_secs(1))]);
    let args = submit_args(&app.url(), &destination, &file, &["--delivered-ids"]);
    let child = spawn_cli(&args, None);
    until("a batch held at the Tracking API", || {
        fake.in_progress() > 0
    })
    .await;
    signal(&child, "INT");
    let out = finish(child).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(stderr.ends_with("error: interrupted\n"), "{stderr}");
    let first = resume_line(&stdout);
    // Nothing sent was left without an answer: every line before `first` is delivered, none
    // after it.
    assert!(!stdout.contains("got no answer"), "{stdout}");
    let before = delivered_lines(&stdout);
    assert!(first > 1 && first <= n, "{stdout}");
    assert_eq!(
        before.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        (1..first).collect::<Vec<_>>()
    );
    assert!(
        stdout.starts_with(&format!(
            "delivered {}, rejected 0, failed 0, skipped 0\n",
            first - 1
        )),
        "{stdout}"
    );
    assert_eq!(fake.accepted().len(), first - 1);

    let from = first.to_string();
    let resume = submit_args(
        &app.url(),
        &destination,
        &file,
        &["--from-line", &from, "--json", "--delivered-ids"],
    );
    let out = cli(&strs(&resume), &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["complete"], true);
    let after = delivered_ids(&v);
    // The lines keep the file's numbers.
    assert_eq!(
        after.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        (first..=n).collect::<Vec<_>>()
    );
    let accepted = fake.accepted();
    let distinct: BTreeSet<&String> = accepted.iter().collect();
    assert_eq!(
        (accepted.len(), distinct.len()),
        (n, n),
        "no duplicate, none missing"
    );
    let listed: BTreeSet<&String> = before.iter().chain(&after).map(|(_, id)| id).collect();
    assert_eq!(listed, distinct);
}

/// `serve` on `listen` over `dir`'s store, started off the runtime.
async fn serve_on(dir: &Path, listen: &str) -> Serve {
    let (dir, listen): (PathBuf, String) = (dir.into(), listen.into());
    tokio::task::spawn_blocking(move || {
        serve(
            &dir,
            &[
                "--listen",
                &listen,
                "--metrics-listen",
                "off",
                "--allowed-upstreams",
                "127.0.0.1",
            ],
        )
    })
    .await
    .unwrap()
}

/// Kills `serve` at once (no graceful stop: the stream just breaks) and waits for it.
async fn kill(mut server: Serve) {
    tokio::task::spawn_blocking(move || {
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    })
    .await
    .unwrap();
}

/// A free loopback port, and a `serve` on it with a destination (to `fake`) and a mapping.
async fn served_destination(dir: &Path, fake: &FakeSegment) -> (String, Serve, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = serve_on(dir, &listen).await;
    let mut client = ConnectionsClient::connect(format!("http://{listen}"))
        .await
        .unwrap();
    let d = client
        .create_destination(proto::CreateDestinationRequest {
            name: "submit".into(),
            region: fake.url(),
            write_key: KEY.into(),
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
    (listen, server, d.id)
}

/// Forwards the child's stderr lines (as they come) to a channel.
fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a stderr line for which `wanted` holds (the lines before it are passed over).
async fn line_where(
    lines: &std::sync::mpsc::Receiver<String>,
    what: &str,
    wanted: impl Fn(&str) -> bool,
) {
    let mut found = false;
    until(what, || {
        while !found && let Ok(l) = lines.try_recv() {
            found = wanted(&l);
        }
        found
    })
    .await;
}

/// The server is down when the run starts (the connection refused: retried), then killed while
/// the Tracking API holds a batch (the stream breaks: the chunks it did not answer are sent
/// again to the server started in its place). The run completes: every row delivered, in order,
/// and what reached the Tracking API twice (the held batch, which landed after all) carried the
/// same messageIds.
#[tokio::test]
async fn a_server_down_at_first_then_killed_mid_file_is_retried_and_the_run_completes() {
    let fake = FakeSegment::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let (listen, server, destination) = served_destination(dir.path(), &fake).await;
    kill(server).await;
    let n = 40;
    let content: String = (1..=n)
        .map(|i| {
            format!(
                "{{\"id\": \"r-{i}\", \"op\": \"added\", \"columns\": {{\"user_id\": \"u-{i}\"}}}}\n"
            )
        })
        .collect();
    let files = tempfile::tempdir().unwrap();
    let file = write(files.path(), "rows.jsonl", &content);
    fake.script([Fault::Slow(Duration::from_secs(2))]);
    let args = submit_args(
        &listen,
        &destination,
        &file,
        &["--delivered-ids", "--retries", "40"],
    );
    let mut child = spawn_cli(&args, None);
    let lines = stderr_lines(&mut child);
    line_where(&lines, "a refused connection retried", |l| {
        l.contains("Connection refused") && l.contains("retry 1 of 40")
    })
    .await;

    let server = serve_on(dir.path(), &listen).await;
    until("a batch held at the Tracking API", || {
        fake.in_progress() > 0
    })
    .await;
    kill(server).await;
    // The broken stream's retry (the refused ones before it passed over).
    line_where(&lines, "the broken stream retried", |l| {
        l.contains(" retry ") && !l.contains("Connection refused")
    })
    .await;
    let server = serve_on(dir.path(), &listen).await;

    let out = finish(child).await;
    kill(server).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with(&format!("delivered {n}, rejected 0, failed 0, skipped 0\n")),
        "{stdout}"
    );
    assert!(!stdout.contains("stopped before the end"), "{stdout}");
    let listed = delivered_lines(&stdout);
    assert_eq!(
        listed.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let ids: BTreeSet<&String> = listed.iter().map(|(_, id)| id).collect();
    let accepted = fake.accepted();
    let distinct: BTreeSet<&String> = accepted.iter().collect();
    assert_eq!(distinct, ids, "no event the run did not list, none missing");
}

/// A server at its limit of row streams refuses the run's with RESOURCE_EXHAUSTED and a retry
/// delay: the run waits as asked, tries again once a place is free, and completes.
#[tokio::test]
async fn resource_exhausted_with_a_retry_delay_is_retried_as_the_server_asks() {
    let fake = FakeSegment::start(KEY).await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::spawn_with(dir, |s| s.max_row_streams = 1).await;
    let d = app.create_destination_at("submit", &fake.url(), KEY).await;
    app.create_mapping(&d.id, &track_mapping("orders")).await;
    // The one stream allowed, held open.
    let (held_tx, held_rx) = tokio::sync::mpsc::channel(1);
    held_tx
        .send(proto::StreamRowsRequest {
            message: Some(proto::stream_rows_request::Message::Header(
                proto::StreamHeader {
                    destination_id: d.id.clone(),
                    model: "orders".into(),
                    results: 0,
                },
            )),
        })
        .await
        .unwrap();
    let held = app
        .client
        .clone()
        .stream_rows(tokio_stream::wrappers::ReceiverStream::new(held_rx))
        .await
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    let (content, delivered, _) = rows(30, false);
    let file = write(files.path(), "rows.jsonl", &content);
    let args = submit_args(&app.url(), &d.id, &file, &[]);
    let mut child = spawn_cli(&args, None);
    let lines = stderr_lines(&mut child);
    // The server asks for a second (RETRY_BUSY): the first wait is that, not 0.2 s.
    line_where(&lines, "the refusal retried", |l| {
        l.starts_with("RESOURCE_EXHAUSTED: ") && l.ends_with("; retry 1 of 10 in 1.0 s")
    })
    .await;
    drop((held_tx, held));
    let out = finish(child).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with(&format!("delivered {}, rejected 3,", delivered.len())),
        "{stdout}"
    );
    assert_eq!(fake.accepted().len(), delivered.len());
}

/// Without retries, a server killed mid-file: the counts so far, the rows sent without an
/// answer, and the first line not confirmed (every line before it delivered), then the error
/// naming the cause; exit 1.
#[tokio::test]
async fn a_stream_broken_mid_file_without_retries_reports_the_first_unconfirmed_line() {
    let fake = FakeSegment::start(KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let (listen, server, destination) = served_destination(dir.path(), &fake).await;
    let (content, _, _) = rows(40, false);
    let file = write(dir.path(), "rows.jsonl", &content);
    // The first batch is answered, the second held until the server is gone.
    fake.script([
        Fault::Slow(Duration::ZERO),
        Fault::Slow(Duration::from_secs(30)),
    ]);
    let args = submit_args(
        &listen,
        &destination,
        &file,
        &["--delivered-ids", "--retries", "0"],
    );
    let child = spawn_cli(&args, None);
    until("a batch held at the Tracking API", || {
        !fake.accepted().is_empty() && fake.in_progress() > 0
    })
    .await;
    kill(server).await;
    let out = finish(child).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // Refused, or the stream broken by the kill: which one depends on timing.
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
    let first = resume_line(&stdout);
    assert!(stdout.contains(" rows sent got no answer)"), "{stdout}");
    let delivered: BTreeSet<usize> = delivered_lines(&stdout)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert!(!delivered.contains(&first), "{stdout}");
    // Line 10 and every tenth are rejected.
    let expected: BTreeSet<usize> = (1..first).filter(|l| l % 10 != 0).collect();
    assert!(expected.is_subset(&delivered), "{stdout}");
}

/// `--from-line` must be a line number of the file: 0, negative, not a number or past the end
/// is a usage error (exit 2), before any connection.
#[tokio::test]
async fn bad_from_line_values_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (content, _, _) = rows(5, false);
    let file = write(dir.path(), "rows.jsonl", &content);
    // Nothing listens there: a usage error comes first.
    let server = "127.0.0.1:9";
    for bad in ["0", "-3", "x", "1.5", ""] {
        let flag = format!("--from-line={bad}");
        let args = submit_args(server, "dst_1", &file, &[&flag]);
        let out = cli(&strs(&args), &[]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("--from-line"), "{bad:?}: {stderr}");
    }
    let args = submit_args(server, "dst_1", &file, &["--from-line", "6"]);
    let out = cli(&strs(&args), &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--from-line 6 is past the end: the file has 5 lines"),
        "{stderr}"
    );
}

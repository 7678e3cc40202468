//! The built binary run as a child process: its path, an environment of the test's own, and the
//! client commands run off the async runtime.

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_segment-connections");

/// Nothing from the caller's environment leaks into a child.
pub fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("SEGMENT_CONNECTIONS_") {
            cmd.env_remove(k);
        }
    }
    // Servers run side by side: none may take the default metrics port.
    cmd.env("SEGMENT_CONNECTIONS_METRICS_LISTEN", "off");
}

/// Runs the binary with `args` and `envs` (off the runtime: a server may share it).
pub async fn cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    cli_in(None, args, envs).await
}

/// [`cli`] in the working directory `dir`.
pub async fn cli_in(dir: Option<&Path>, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let dir = dir.map(Path::to_path_buf);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.args(&args);
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        clean_env(&mut cmd);
        cmd.envs(envs);
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

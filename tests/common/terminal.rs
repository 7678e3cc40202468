//! A command run in a pseudo-terminal, as a person at a terminal runs it.

use std::process::Command;

/// `shell_command` run by sh in a pseudo-terminal (util-linux's `script`), with NO_COLOR set
/// or removed; what the terminal showed. None without `script`.
pub fn in_terminal(shell_command: &str, no_color: Option<&str>) -> Option<String> {
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", shell_command, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("TERM", "xterm-256color")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .env_remove("SEGMENT_CONNECTIONS_STORE")
        .env_remove("SEGMENT_CONNECTIONS_ENCRYPTION_KEY")
        .env_remove("SEGMENT_CONNECTIONS_ENCRYPTION_KEY_FILE")
        .env("SEGMENT_CONNECTIONS_METRICS_LISTEN", "off")
        .stdin(std::process::Stdio::null());
    match no_color {
        Some(v) => cmd.env("NO_COLOR", v),
        None => cmd.env_remove("NO_COLOR"),
    };
    match cmd.output() {
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Err(e) => {
            eprintln!("skipped: no `script` to make a pseudo-terminal ({e})");
            None
        }
    }
}

//! A command's progress line on stderr, for a person watching a terminal: never with --json,
//! never into a pipe or a file. Redrawn at most four times a second, erased at the end (and
//! before anything else is written to stderr).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

/// How often the line is redrawn, at most.
const EVERY: Duration = Duration::from_millis(250);

pub(crate) struct Progress {
    on: bool,
    start: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    /// On when stderr is a terminal and the output is not JSON.
    pub(crate) fn new(json: bool) -> Progress {
        let now = Instant::now();
        Progress {
            on: !json && std::io::stderr().is_terminal(),
            start: now,
            last: now,
            shown: false,
        }
    }

    /// Redraws the line as `line` writes it (given the time since the start), unless it was
    /// drawn less than 250 ms ago.
    pub(crate) fn show(&mut self, line: impl FnOnce(Duration) -> String) {
        if !self.on || self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        eprint!("\r\x1b[K{}", line(self.start.elapsed()));
        self.shown = true;
    }

    /// Erases the line, if drawn (it is drawn again on the next [`Progress::show`]).
    pub(crate) fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

/// `n` per second over `elapsed`.
pub(crate) fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(0.001)
}

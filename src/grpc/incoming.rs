//! The connections a listener accepts. tonic's own accept loop logs a failed accept only at
//! trace level and tries again at once, so a process out of file descriptors (EMFILE, ENFILE)
//! or kernel memory spins a core and says nothing. Here such a failure is logged as a warning
//! naming the cause and the fix (at most every [`REPEAT`] while it lasts, with the count), and
//! accepting pauses for [`PAUSE`] so the connections being served can finish and free some.

use std::io;
use std::time::Duration;

use futures_util::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How long accepting pauses after a failure that is not the peer's.
const PAUSE: Duration = Duration::from_millis(100);
/// How often a failure that lasts is logged again.
const REPEAT: Duration = Duration::from_secs(10);

/// The streams `listener` accepts, with TCP_NODELAY set; never ends, never yields an error.
pub(crate) fn incoming(listener: TcpListener) -> impl Stream<Item = io::Result<TcpStream>> {
    let state = (listener, Failures::default());
    futures_util::stream::unfold(state, |(listener, mut failures)| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    failures.recovered();
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY");
                    }
                    return Some((Ok(stream), (listener, failures)));
                }
                // The peer went away before its connection was accepted: nothing to say.
                Err(e) if peer_gone(&e) => continue,
                Err(e) => {
                    failures.failed(&e);
                    tokio::time::sleep(PAUSE).await;
                }
            }
        }
    })
}

fn peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// What a failed accept means, for the log line: the cause and what to do about it.
fn cause(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(24) => {
            "the process is out of file descriptors (EMFILE): raise its limit (ulimit -n, \
                     LimitNOFILE) or lower --max-concurrent-calls"
        }
        Some(23) => "the system is out of file descriptors (ENFILE): raise fs.file-max",
        Some(105 | 12) => "the kernel is out of memory for sockets (ENOBUFS, ENOMEM)",
        _ => "accepting connections failed",
    }
}

/// Failed accepts since the last one that succeeded.
#[derive(Default)]
struct Failures {
    count: u64,
    logged: Option<Instant>,
}

impl Failures {
    fn failed(&mut self, e: &io::Error) {
        self.count += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= REPEAT) {
            self.logged = Some(Instant::now());
            tracing::warn!(
                error = %e,
                failures = self.count,
                "cannot accept connections: {}; retrying every {PAUSE:?}",
                cause(e)
            );
        }
    }

    fn recovered(&mut self) {
        if self.count > 0 {
            tracing::info!(failures = self.count, "accepting connections again");
            *self = Failures::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_names_the_fix() {
        assert!(cause(&io::Error::from_raw_os_error(24)).contains("ulimit -n"));
        assert!(cause(&io::Error::from_raw_os_error(23)).contains("ENFILE"));
        assert!(!peer_gone(&io::Error::from_raw_os_error(24)));
        assert!(peer_gone(&io::ErrorKind::ConnectionAborted.into()));
    }
}

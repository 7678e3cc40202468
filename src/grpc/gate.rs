//! The gate every call but health passes: it counts the calls in flight, refuses a call beyond
//! `--max-concurrent-calls` (RESOURCE_EXHAUSTED, naming the limit), refuses a row stream beyond
//! `--max-row-streams` (so long-lived streams never take the slots unary calls need) and, once
//! shutdown has begun draining, refuses new calls (UNAVAILABLE) while shutdown waits for the
//! admitted ones to end.
//!
//! Refusing, rather than closing the listener at once, gives callers still routed to this
//! replica a status they can act on (retry elsewhere) instead of a dropped connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use tokio::sync::Notify;

use crate::error::Error;

/// Shared by the server's call layer (which admits calls) and shutdown (which begins the drain
/// and waits for it).
#[derive(Debug, Clone)]
pub(crate) struct Gate(Arc<State>);

#[derive(Debug)]
struct State {
    limit: usize,
    stream_limit: usize,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    streams: AtomicUsize,
    idle: Notify,
}

/// An admitted call; it counts as in flight (and, for a row stream, as a stream) until dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    gate: Gate,
    stream: bool,
}

/// What kind of call asks to be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// A call that ends when its request is answered.
    Unary,
    /// A row stream, which may last as long as its caller sends.
    RowStream,
}

impl Gate {
    /// A gate admitting at most `limit` calls at once, of which at most `stream_limit` row
    /// streams.
    pub(crate) fn new(limit: usize, stream_limit: usize) -> Gate {
        Gate(Arc::new(State {
            limit,
            stream_limit,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            idle: Notify::new(),
        }))
    }

    /// From now on [`Gate::admit`] refuses every call.
    pub(crate) fn begin_drain(&self) {
        self.0.draining.store(true, SeqCst);
    }

    /// A ticket for a new call, or why it is refused.
    pub(crate) fn admit(&self, kind: CallKind) -> Result<Ticket, Error> {
        // Counted first, checked second: a call either sees the drain begun (and backs out) or
        // is seen by `idle` (both orders are sequentially consistent).
        let stream = kind == CallKind::RowStream;
        let n = self.0.in_flight.fetch_add(1, SeqCst) + 1;
        let streams = match stream {
            true => self.0.streams.fetch_add(1, SeqCst) + 1,
            false => 0,
        };
        let ticket = Ticket {
            gate: self.clone(),
            stream,
        };
        if self.0.draining.load(SeqCst) {
            return Err(Error::ShuttingDown);
        }
        if n > self.0.limit {
            return Err(Error::TooManyCalls {
                limit: self.0.limit,
            });
        }
        if streams > self.0.stream_limit {
            return Err(Error::TooManyStreams {
                limit: self.0.stream_limit,
            });
        }
        Ok(ticket)
    }

    /// Calls admitted and not yet ended (and, for an instant, ones being refused).
    pub(crate) fn in_flight(&self) -> usize {
        self.0.in_flight.load(SeqCst)
    }

    /// Resolves when no admitted call is left.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let state = &self.gate.0;
        if self.stream {
            state.streams.fetch_sub(1, SeqCst);
        }
        if state.in_flight.fetch_sub(1, SeqCst) == 1 {
            state.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn admits_until_the_drain_begins_then_waits_for_the_admitted() {
        let gate = Gate::new(10, 5);
        let a = gate
            .admit(CallKind::Unary)
            .expect("admitted before the drain");
        let b = gate
            .admit(CallKind::Unary)
            .expect("admitted before the drain");
        gate.begin_drain();
        assert!(matches!(
            gate.admit(CallKind::Unary),
            Err(Error::ShuttingDown)
        ));
        assert_eq!(gate.in_flight(), 2, "a refusal leaves no count behind");

        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.idle().await }
        });
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one call is still in flight");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("idle once the last call ends")
            .unwrap();
    }

    #[tokio::test]
    async fn idle_at_once_when_nothing_is_in_flight() {
        let gate = Gate::new(1, 1);
        gate.begin_drain();
        tokio::time::timeout(Duration::from_secs(5), gate.idle())
            .await
            .unwrap();
    }

    #[test]
    fn refuses_beyond_the_limit_and_admits_again_when_a_call_ends() {
        let gate = Gate::new(2, 1);
        let a = gate.admit(CallKind::Unary).unwrap();
        let _b = gate.admit(CallKind::Unary).unwrap();
        assert!(matches!(
            gate.admit(CallKind::Unary),
            Err(Error::TooManyCalls { limit: 2 })
        ));
        assert_eq!(gate.in_flight(), 2);
        drop(a);
        assert!(gate.admit(CallKind::Unary).is_ok());
    }

    #[test]
    fn streams_leave_room_for_unary_calls() {
        let gate = Gate::new(3, 2);
        let s1 = gate.admit(CallKind::RowStream).unwrap();
        let _s2 = gate.admit(CallKind::RowStream).unwrap();
        assert!(matches!(
            gate.admit(CallKind::RowStream),
            Err(Error::TooManyStreams { limit: 2 })
        ));
        // The refused stream left no count behind: the third slot is still a unary call's.
        let _u = gate.admit(CallKind::Unary).unwrap();
        assert!(matches!(
            gate.admit(CallKind::Unary),
            Err(Error::TooManyCalls { limit: 3 })
        ));
        drop(s1);
        assert!(gate.admit(CallKind::RowStream).is_ok());
    }
}

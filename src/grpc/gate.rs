//! The gate every call but health passes: it counts the calls in flight, refuses a call beyond
//! `--max-concurrent-calls` (RESOURCE_EXHAUSTED, naming the limit) and, once shutdown has begun
//! draining, refuses new calls (UNAVAILABLE) while shutdown waits for the admitted ones to end.
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
pub struct Gate(Arc<State>);

#[derive(Debug)]
struct State {
    limit: usize,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// An admitted call; it counts as in flight until dropped.
#[derive(Debug)]
pub struct Ticket(Gate);

impl Gate {
    /// A gate admitting at most `limit` calls at once.
    pub fn new(limit: usize) -> Gate {
        Gate(Arc::new(State {
            limit,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        }))
    }

    /// From now on [`Gate::admit`] refuses every call.
    pub fn begin_drain(&self) {
        self.0.draining.store(true, SeqCst);
    }

    /// A ticket for a new call, or why it is refused.
    pub fn admit(&self) -> Result<Ticket, Error> {
        // Counted first, checked second: a call either sees the drain begun (and backs out) or
        // is seen by `idle` (both orders are sequentially consistent).
        let n = self.0.in_flight.fetch_add(1, SeqCst) + 1;
        let ticket = Ticket(self.clone());
        if self.0.draining.load(SeqCst) {
            return Err(Error::ShuttingDown);
        }
        if n > self.0.limit {
            return Err(Error::TooManyCalls {
                limit: self.0.limit,
            });
        }
        Ok(ticket)
    }

    /// Calls admitted and not yet ended (and, for an instant, ones being refused).
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(SeqCst)
    }

    /// Resolves when no admitted call is left.
    pub async fn idle(&self) {
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
        if self.0.0.in_flight.fetch_sub(1, SeqCst) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn admits_until_the_drain_begins_then_waits_for_the_admitted() {
        let gate = Gate::new(10);
        let a = gate.admit().expect("admitted before the drain");
        let b = gate.admit().expect("admitted before the drain");
        gate.begin_drain();
        assert!(matches!(gate.admit(), Err(Error::ShuttingDown)));
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
        let gate = Gate::new(1);
        gate.begin_drain();
        tokio::time::timeout(Duration::from_secs(5), gate.idle())
            .await
            .unwrap();
    }

    #[test]
    fn refuses_beyond_the_limit_and_admits_again_when_a_call_ends() {
        let gate = Gate::new(2);
        let a = gate.admit().unwrap();
        let _b = gate.admit().unwrap();
        assert!(matches!(
            gate.admit(),
            Err(Error::TooManyCalls { limit: 2 })
        ));
        assert_eq!(gate.in_flight(), 2);
        drop(a);
        assert!(gate.admit().is_ok());
    }
}

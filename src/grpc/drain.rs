//! Shutdown's drain. Once it has begun, new calls are refused with UNAVAILABLE (health aside:
//! probes keep asking and hear NOT_SERVING), while the calls already in flight are counted down;
//! the server closes its connections when the last one has ended (or the grace period has).
//!
//! Refusing, rather than closing the listener at once, gives callers that still reach this
//! replica a status they can act on (retry elsewhere) instead of a dropped connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use tokio::sync::Notify;

/// Shared by the server's call layer (which admits calls) and shutdown (which begins the drain
/// and waits for it).
#[derive(Debug, Clone, Default)]
pub struct Drain(Arc<State>);

#[derive(Debug, Default)]
struct State {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// A call admitted before the drain began; it counts as in flight until dropped.
#[derive(Debug)]
pub struct Ticket(Drain);

impl Drain {
    /// From now on [`Drain::admit`] refuses.
    pub fn begin(&self) {
        self.0.draining.store(true, SeqCst);
    }

    /// A ticket for a new call, or `None` once the drain has begun.
    pub fn admit(&self) -> Option<Ticket> {
        // Counted first, checked second: a call either sees the drain begun (and backs out)
        // or is seen by `idle` (both orders are sequentially consistent).
        self.0.in_flight.fetch_add(1, SeqCst);
        let ticket = Ticket(self.clone());
        (!self.0.draining.load(SeqCst)).then_some(ticket)
    }

    /// Calls admitted and not yet ended.
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
        let drain = Drain::default();
        let a = drain.admit().expect("admitted before the drain");
        let b = drain.admit().expect("admitted before the drain");
        drain.begin();
        assert!(drain.admit().is_none(), "refused once draining");
        assert_eq!(drain.in_flight(), 2, "a refusal leaves no count behind");

        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.idle().await }
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
        let drain = Drain::default();
        drain.begin();
        tokio::time::timeout(Duration::from_secs(5), drain.idle())
            .await
            .unwrap();
    }
}

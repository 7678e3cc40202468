//! Following the store's change versions: a task that calls back on each new one, for a cache
//! to reload on. Uses the backend's change feed, or polls when it has none.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::Store;

/// Spawns a task calling `on_change(version)` for new change versions, increasing, possibly
/// skipping some (only the newest matters: reload everything, or drop what is cached). With a
/// backend that has no feed, polls [`Store::catalog_version`] every `poll_every`. Ends when the
/// feed does (the store closed) or when aborted. Every change committed after this returns is
/// reported (with a feed; polling reports changes after its first reading).
pub fn watch_changes<S, F>(store: Arc<S>, poll_every: Duration, on_change: F) -> JoinHandle<()>
where
    S: Store,
    F: Fn(u64) + Send + 'static,
{
    // Subscribed before returning: no change made after this call is missed.
    let feed = store.subscribe_changes();
    tokio::spawn(async move {
        match feed {
            Some(mut changes) => loop {
                match changes.recv().await {
                    Ok(version) => on_change(version),
                    // Missed some: the next one received is newer still.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            },
            None => {
                let mut last: Option<u64> = None;
                let mut tick = tokio::time::interval(poll_every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    // Unreachable store: try again next tick.
                    let Ok(version) = store.catalog_version().await else {
                        continue;
                    };
                    match last {
                        Some(l) if version > l => on_change(version),
                        Some(_) => continue,
                        // The first reading is the baseline.
                        None => {}
                    }
                    last = Some(version);
                }
            }
        }
    })
}

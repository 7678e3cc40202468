//! The messageIds a call (or a stream) has already sent: a later event with one of them is
//! rejected rather than sent for Segment to drop silently.

use std::sync::Mutex;

/// The messageIds a call has already sent (or is about to), so a later event with the same id
/// is rejected instead of dropped silently by Segment. Each id is kept as a 128-bit keyed hash
/// (16 bytes, two independent random seeds: a false match needs a collision of both), at most
/// `window` of them: past that the oldest are forgotten, so a stream's memory stays bounded
/// while a call within the window is checked exactly.
#[derive(Debug)]
pub(crate) struct SeenIds {
    window: usize,
    keys: (foldhash::fast::RandomState, foldhash::fast::RandomState),
    inner: Mutex<SeenInner>,
}

#[derive(Debug, Default)]
struct SeenInner {
    set: std::collections::HashSet<u128, foldhash::fast::RandomState>,
    order: std::collections::VecDeque<u128>,
}

impl SeenIds {
    /// Remembers the latest `window` messageIds (at least one).
    pub(crate) fn window(window: usize) -> SeenIds {
        SeenIds {
            window: window.max(1),
            keys: Default::default(),
            inner: Mutex::default(),
        }
    }

    /// Remembers every messageId (one request: bounded by its size).
    pub(crate) fn all() -> SeenIds {
        SeenIds::window(usize::MAX)
    }

    fn key(&self, id: &str) -> u128 {
        use std::hash::BuildHasher as _;
        (u128::from(self.keys.0.hash_one(id)) << 64) | u128::from(self.keys.1.hash_one(id))
    }

    /// For each id in order: whether it is new (and now remembered).
    pub(super) fn first_sightings<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Vec<bool> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let SeenInner { set, order } = &mut *inner;
        ids.map(|id| {
            let k = self.key(id);
            if !set.insert(k) {
                return false;
            }
            if self.window != usize::MAX {
                order.push_back(k);
                if order.len() > self.window
                    && let Some(old) = order.pop_front()
                {
                    set.remove(&old);
                }
            }
            true
        })
        .collect()
    }
}

//! Usage and cost, as Segment bills them: per destination and calendar month (UTC), the
//! Tracking API calls made (each event delivered is one call), the batches and bytes sent, and
//! the distinct users (the MTU estimate: each event's userId, or its anonymousId when it has no
//! userId), counted in a mergeable [`Sketch`].
//!
//! Pure and in memory: the row path records into the [`Meter`]; the store persists and merges
//! what it flushes ([`Delta`]); [`new_users`] estimates what rows would add before they are sent.
//!
//! Inside the folder: mod → sketch.

mod sketch;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

pub use sketch::{Sketch, SketchError, hash};

/// A calendar month, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    year: u16,
    month: u8,
}

impl Month {
    /// The month of `unix_seconds` (UTC).
    pub fn of_unix(unix_seconds: u64) -> Month {
        // Howard Hinnant's civil_from_days.
        let days = (unix_seconds / 86_400) as i64;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Month {
            year: year.clamp(0, 9999) as u16,
            month: month as u8,
        }
    }

    /// This month, by the system clock.
    pub fn now() -> Month {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Month::of_unix(secs)
    }

    /// `YYYY-MM`, e.g. `2026-12`.
    pub fn parse(s: &str) -> Result<Month, String> {
        let bad = || format!("{s:?} is not a month as YYYY-MM (e.g. 2026-12)");
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let year: u16 = s[..4].parse().map_err(|_| bad())?;
        let month: u8 = s[5..].parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || year == 0 {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The counters of a destination's month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Tracking API calls: events delivered.
    pub calls: u64,
    /// Batch requests that delivered them.
    pub batches: u64,
    /// Bytes of those batch bodies (before compression).
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.calls += o.calls;
        self.batches += o.batches;
        self.bytes += o.bytes;
    }

    fn sub(&mut self, o: Counts) {
        self.calls = self.calls.saturating_sub(o.calls);
        self.batches = self.batches.saturating_sub(o.batches);
        self.bytes = self.bytes.saturating_sub(o.bytes);
    }

    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// A destination's month: the counters and the sketch of its users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub counts: Counts,
    pub users: Sketch,
}

impl Usage {
    /// Adds `other` (another replica's part, or what is not yet flushed).
    pub fn merge(&mut self, other: &Usage) {
        self.counts.add(other.counts);
        self.users.merge(&other.users);
    }
}

/// What one flush adds to a destination's month in the store: counters to add, and the sketch
/// to merge in (`None`: unchanged since the last flush).
#[derive(Debug, Clone)]
pub struct Delta {
    pub destination_id: String,
    pub month: Month,
    pub counts: Counts,
    pub users: Option<Sketch>,
    /// The meter's generation of the entry when taken.
    generation: u64,
}

/// The hash of the user an event counts for (its userId, or its anonymousId when it has none),
/// read from the rendered event, whose first keys are `userId` then `anonymousId` when present
/// (`spec::event`'s key order). `None` for an event with neither. The id is hashed as written
/// (its JSON string, escapes included: one id always renders the same), and anonymousIds apart
/// from userIds, as Segment counts them.
pub fn user_hash(event: &[u8]) -> Option<u64> {
    let rest = event.strip_prefix(b"{")?;
    let (rest, user) = match rest.strip_prefix(b"\"userId\":") {
        Some(r) => {
            let (s, rest) = json_string(r)?;
            (rest.strip_prefix(b",").unwrap_or(rest), Some(s))
        }
        None => (rest, None),
    };
    if let Some(u) = user.filter(|u| u.len() > 2) {
        return Some(hash(u));
    }
    let r = rest.strip_prefix(b"\"anonymousId\":")?;
    let (a, _) = json_string(r)?;
    (a.len() > 2).then(|| sketch_anonymous(hash(a)))
}

/// AnonymousIds hash apart from userIds of the same text.
fn sketch_anonymous(h: u64) -> u64 {
    hash(&(h ^ 0x5bd1_e995_a5a5_a5a5).to_le_bytes())
}

/// The JSON string at the start of `b` (quotes included) and what follows it.
fn json_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some((&b[..=i], &b[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// How many of `users` (by [`user_hash`]) would be new to a month whose users are `month`: the
/// union's estimate minus the month's. 0 when every one is already counted.
pub fn new_users(month: &Sketch, users: impl IntoIterator<Item = u64>) -> u64 {
    let mut union = month.clone();
    let mut changed = false;
    for h in users {
        if union.would_change(h) {
            union.insert_hash(h);
            changed = true;
        }
    }
    if !changed {
        return 0;
    }
    // A register moved: at least one user is new.
    union.estimate().saturating_sub(month.estimate()).max(1)
}

/// What one slice of a call delivered to one destination (built without a lock).
#[derive(Debug, Default)]
pub struct Tally {
    pub counts: Counts,
    pub users: Vec<u64>,
}

/// This process's usage not yet in the store, per destination and month. Recording takes one
/// short lock per delivered slice; [`Meter::pending`] and [`Meter::flushed`] bracket a flush.
#[derive(Debug, Default)]
pub struct Meter {
    entries: Mutex<HashMap<(String, Month), Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    /// Not yet flushed.
    counts: Counts,
    /// Every user this process saw this month (re-merging flushed registers is harmless).
    users: Sketch,
    /// Bumped by every record; a flush clears `dirty` only if none came since it read.
    generation: u64,
    dirty: bool,
    /// `users` gained a register since the last flush (else a flush sends no sketch).
    users_dirty: bool,
}

impl Meter {
    pub fn new() -> Meter {
        Meter::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Month), Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, destination_id: &str, month: Month, tally: &Tally) {
        if tally.counts.is_zero() && tally.users.is_empty() {
            return;
        }
        let mut entries = self.lock();
        let key = (destination_id.to_owned(), month);
        let e = entries.entry(key).or_default();
        e.counts.add(tally.counts);
        let mut changed = false;
        for &h in &tally.users {
            if e.users.would_change(h) {
                e.users.insert_hash(h);
                changed = true;
            }
        }
        e.generation += 1;
        e.dirty |= changed || !tally.counts.is_zero();
        e.users_dirty |= changed;
    }

    /// What a flush should write: every entry recorded into since the last flush.
    pub fn pending(&self) -> Vec<Delta> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.dirty)
            .map(|((d, m), e)| Delta {
                destination_id: d.clone(),
                month: *m,
                counts: e.counts,
                users: e.users_dirty.then(|| e.users.clone()),
                generation: e.generation,
            })
            .collect()
    }

    /// `deltas` are in the store: their counts are no longer pending. Entries of past months
    /// with nothing left to flush are dropped.
    pub fn flushed(&self, deltas: &[Delta]) {
        let mut entries = self.lock();
        for d in deltas {
            let key = (d.destination_id.clone(), d.month);
            if let Some(e) = entries.get_mut(&key) {
                e.counts.sub(d.counts);
                if e.generation == d.generation {
                    e.dirty = false;
                    e.users_dirty = false;
                }
            }
        }
        let now = Month::now();
        entries.retain(|(_, m), e| e.dirty || *m >= now);
    }

    /// This process's part of a destination's month not yet in the store: the counts not
    /// flushed, and every user it saw.
    pub fn local(&self, destination_id: &str, month: Month) -> Option<Usage> {
        let entries = self.lock();
        let e = entries.get(&(destination_id.to_owned(), month))?;
        Some(Usage {
            counts: e.counts,
            users: e.users.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_of_unix_times() {
        assert_eq!(Month::of_unix(0).to_string(), "1970-01");
        // 2026-12-01T00:00:00Z and the second before it.
        assert_eq!(Month::of_unix(1_796_083_200).to_string(), "2026-12");
        assert_eq!(Month::of_unix(1_796_083_199).to_string(), "2026-11");
        // 2024-02-29T12:00:00Z (leap day).
        assert_eq!(Month::of_unix(1_709_208_000).to_string(), "2024-02");
        assert_eq!(Month::of_unix(1_709_251_200).to_string(), "2024-03");
    }

    #[test]
    fn months_parse_and_print() {
        let m = Month::parse("2026-12").unwrap();
        assert_eq!(m.to_string(), "2026-12");
        assert!(Month::parse("2026-01").unwrap() < m);
        for bad in [
            "",
            "2026-13",
            "2026-00",
            "2026-1",
            "26-12",
            "2026/12",
            "２026-12",
            "0000-01",
        ] {
            let e = Month::parse(bad).unwrap_err();
            assert!(e.contains("YYYY-MM"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_user_is_the_user_id_else_the_anonymous_id() {
        let u = user_hash(br#"{"userId":"u1","anonymousId":"a1","event":"x"}"#);
        assert_eq!(u, Some(hash(br#""u1""#)));
        assert_eq!(u, user_hash(br#"{"userId":"u1","event":"y"}"#));
        let a = user_hash(br#"{"anonymousId":"a1","event":"x"}"#).unwrap();
        assert_ne!(
            Some(a),
            user_hash(br#"{"userId":"a1"}"#),
            "apart from userIds"
        );
        // An empty userId counts the anonymousId.
        assert_eq!(user_hash(br#"{"userId":"","anonymousId":"a1"}"#), Some(a));
        // Escapes are read past.
        assert_eq!(
            user_hash(br#"{"userId":"a\"b\\","messageId":"m"}"#),
            Some(hash(br#""a\"b\\""#))
        );
        for none in [
            &b""[..],
            b"{",
            br#"{"messageId":"m"}"#,
            br#"{"userId":"unterminated"#,
            br#"{"userId":"","messageId":"m"}"#,
            br#"{"userId":1}"#,
        ] {
            assert_eq!(user_hash(none), None, "{}", String::from_utf8_lossy(none));
        }
    }

    /// `user_hash` reads the event as `spec::event` writes it, for every action: the userId,
    /// else the anonymousId (a test may use any layer).
    #[test]
    fn the_user_of_every_action_as_rendered() {
        use crate::mapping::{Mapping, Row};
        for action in ["track", "identify", "page", "screen", "group"] {
            let mut fields = serde_json::json!({
                "user_id": {"@path": "$.properties.u"},
                "anonymous_id": {"@path": "$.properties.a"},
                "timestamp": {"@literal": "2026-12-01T00:00:00Z"}
            });
            match action {
                "track" => fields["event_name"] = serde_json::json!({"@literal": "E"}),
                "group" => fields["group_id"] = serde_json::json!({"@literal": "g"}),
                _ => {}
            }
            let doc = serde_json::json!({
                "name": "m", "model": "m", "action": action, "fields": fields
            });
            let m = Mapping::from_json(doc.to_string().as_bytes(), None).unwrap();
            let render = |columns: serde_json::Value| {
                let row = serde_json::json!({"id": "r", "op": "added", "columns": columns});
                let row = Row::from_json(row.to_string().as_bytes()).unwrap();
                let mut out = Vec::new();
                assert!(m.render(&row, &mut out).accepted(), "{action}");
                user_hash(&out)
            };
            let user = render(serde_json::json!({"u": "x\"1", "a": "anon-1"}));
            assert_eq!(user, Some(hash(br#""x\"1""#)), "{action}");
            let anon = render(serde_json::json!({"a": "anon-1"}));
            assert!(anon.is_some() && anon != user, "{action}");
            assert_eq!(
                anon,
                render(serde_json::json!({"u": "", "a": "anon-1"})),
                "{action}"
            );
        }
    }

    #[test]
    fn new_users_is_the_union_minus_the_month() {
        let ids = |r: std::ops::Range<u32>| r.map(|i| hash(format!("\"u{i}\"").as_bytes()));
        let mut month = Sketch::new();
        ids(0..10_000).for_each(|h| month.insert_hash(h));
        assert_eq!(new_users(&month, ids(0..10_000)), 0, "all already counted");
        assert_eq!(new_users(&month, ids(0..500)), 0);
        let n = new_users(&month, ids(5_000..15_000));
        assert!((4_800..=5_200).contains(&n), "{n}");
        assert_eq!(new_users(&Sketch::new(), ids(0..3)), 3);
        assert_eq!(new_users(&Sketch::new(), std::iter::empty()), 0);
    }

    #[test]
    fn the_meter_keeps_what_a_flush_has_not_written() {
        let meter = Meter::new();
        let m = Month::parse("2999-01").unwrap();
        let tally = |calls, users: &[u64]| Tally {
            counts: Counts {
                calls,
                batches: 1,
                bytes: calls * 100,
            },
            users: users.to_vec(),
        };
        meter.record("dst_a", m, &tally(3, &[1 << 60, 2 << 60]));
        let first = meter.pending();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].counts.calls, 3);
        // Recorded while the flush runs: still pending after it.
        meter.record("dst_a", m, &tally(2, &[]));
        meter.flushed(&first);
        let local = meter.local("dst_a", m).unwrap();
        assert_eq!(local.counts.calls, 2);
        assert_eq!(local.users.estimate(), 2, "the users stay for reads");
        let second = meter.pending();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].counts.calls, 2);
        meter.flushed(&second);
        assert!(meter.pending().is_empty());
        assert_eq!(meter.local("dst_a", m).unwrap().counts, Counts::default());
        // Calls of users already flushed: counts to add, no sketch to send.
        meter.record("dst_a", m, &tally(1, &[1 << 60]));
        let third = meter.pending();
        assert_eq!(third[0].counts.calls, 1);
        assert!(
            third[0].users.is_none(),
            "no new register since the last flush"
        );
    }
}

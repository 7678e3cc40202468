//! Packing serialised events into `/v1/batch` bodies within the API's limits. Events are
//! already JSON bytes (rendered once into one arena); a body is `{"batch":[` + the events
//! joined by `,` + `]}`, copied once, never re-serialised.

use std::ops::Range;

use bytes::Bytes;

/// The most bytes one body may have: under the API's 500 KB, as Segment's SDKs do.
pub(crate) const MAX_BATCH_BYTES: usize = 475_000;
/// The most events one body may carry.
pub(crate) const MAX_BATCH_EVENTS: usize = 2_500;

const OPEN: &[u8] = b"{\"batch\":[";
const CLOSE: &[u8] = b"]}";

/// The limits one body is packed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_bytes: usize,
    pub max_events: usize,
}

impl Default for BatchLimits {
    fn default() -> BatchLimits {
        BatchLimits {
            max_bytes: MAX_BATCH_BYTES,
            max_events: MAX_BATCH_EVENTS,
        }
    }
}

/// Where one event's bytes lie in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    pub(crate) fn range(self) -> Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// The size of a body holding events of these lengths.
pub(crate) fn body_len(spans: &[Span]) -> usize {
    let events: usize = spans.iter().map(|s| s.len as usize).sum();
    OPEN.len() + CLOSE.len() + events + spans.len().saturating_sub(1)
}

/// Splits `spans` (in order) into consecutive groups, each fitting one body. An event that
/// could not fit even alone gets a group of its own (the caller rejects such events before).
pub(crate) fn pack(spans: &[Span], limits: BatchLimits) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut size = OPEN.len() + CLOSE.len();
    for (i, s) in spans.iter().enumerate() {
        let add = s.len as usize + usize::from(i > start);
        if i > start && (size + add > limits.max_bytes || i - start >= limits.max_events) {
            groups.push(start..i);
            start = i;
            size = OPEN.len() + CLOSE.len() + s.len as usize;
        } else {
            size += add;
        }
    }
    if start < spans.len() {
        groups.push(start..spans.len());
    }
    groups
}

/// The body for `spans`, copying each event once from `arena`.
pub(crate) fn body(arena: &[u8], spans: &[Span]) -> Bytes {
    let mut out = Vec::with_capacity(body_len(spans));
    out.extend_from_slice(OPEN);
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&arena[s.range()]);
    }
    out.extend_from_slice(CLOSE);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena_of(events: &[String]) -> (Vec<u8>, Vec<Span>) {
        let mut arena = Vec::new();
        let mut spans = Vec::new();
        for e in events {
            spans.push(Span {
                start: arena.len() as u32,
                len: e.len() as u32,
            });
            arena.extend_from_slice(e.as_bytes());
        }
        (arena, spans)
    }

    fn event(i: usize, pad: usize) -> String {
        format!(
            r#"{{"type":"track","messageId":"m{i}","p":"{}"}}"#,
            "x".repeat(pad)
        )
    }

    #[test]
    fn body_is_valid_json_in_order() {
        let events: Vec<String> = (0..3).map(|i| event(i, 1)).collect();
        let (arena, spans) = arena_of(&events);
        let b = body(&arena, &spans);
        assert_eq!(b.len(), body_len(&spans));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let ids: Vec<&str> = v["batch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["messageId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["m0", "m1", "m2"]);
        assert_eq!(&body(&arena, &[])[..], b"{\"batch\":[]}");
    }

    #[test]
    fn at_most_2500_events() {
        let events: Vec<String> = (0..5_001).map(|i| event(i, 0)).collect();
        let (_, spans) = arena_of(&events);
        let groups = pack(&spans, BatchLimits::default());
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(lens, [2_500, 2_500, 1]);
    }

    #[test]
    fn bytes_limit_is_exact() {
        let limits = BatchLimits {
            max_bytes: 100,
            max_events: 1_000,
        };
        // 12 bytes of frame; events of 43 bytes: two take 12 + 43 + 1 + 43 = 99.
        let spans = vec![Span { start: 0, len: 43 }; 5];
        assert_eq!(body_len(&spans[..2]), 99);
        assert_eq!(pack(&spans, limits), vec![0..2, 2..4, 4..5]);
        // 44 bytes: two take 101, over the limit.
        let spans = vec![Span { start: 0, len: 44 }; 3];
        assert_eq!(pack(&spans, limits), vec![0..1, 1..2, 2..3]);
        // Exactly at the limit fits: 12 + 44 + 1 + 43 = 100.
        let spans = [Span { start: 0, len: 44 }, Span { start: 0, len: 43 }];
        assert_eq!(pack(&spans, limits), vec![0..2]);
    }

    #[test]
    fn real_limits_hold_for_32k_events() {
        // Events just under 32 KiB: 14 fit in 475,000 bytes.
        let events: Vec<String> = (0..30).map(|i| event(i, 32_000)).collect();
        let (arena, spans) = arena_of(&events);
        let groups = pack(&spans, BatchLimits::default());
        for g in &groups {
            let b = body(&arena, &spans[g.clone()]);
            assert!(b.len() <= MAX_BATCH_BYTES, "{}", b.len());
        }
        assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), 30);
        assert_eq!(groups[0].len(), 14);
        assert!(pack(&[], BatchLimits::default()).is_empty());
    }
}

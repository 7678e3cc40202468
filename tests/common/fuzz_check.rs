//! The invariants every (mapping, row) input keeps: compiling and rendering never panic, an
//! event that is produced is valid JSON, and it is at most 32,768 bytes or carries an
//! `EVENT_TOO_LARGE` issue. One check shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/compile_render.rs`, which includes this file with `#[path]`), the corpus
//! replay (`tests/engine/fuzz_corpus.rs`) and the proptest (`tests/engine/never_panics.rs`).

use serde_json::Value;

use segment_connections::issue::IssueCode;
use segment_connections::mapping::{Identity, Mapping, MappingDoc, Row};
use segment_connections::spec::accept::MAX_EVENT_BYTES;

/// How far an input got, so a corpus can be checked for what it exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The mapping bytes are not a mapping document.
    NotAMapping,
    /// The row bytes are not a row.
    NotARow,
    /// The mapping does not compile.
    InvalidMapping,
    /// The trigger did not match.
    Skipped,
    /// No event could be built (type mismatch, missing field, a directive failing on the row).
    NoEvent,
    /// An event was built but fails an acceptance check.
    Rejected,
    /// An event was built and would be accepted.
    Accepted,
}

/// A fuzz input: the mapping JSON, a 0 byte, the row JSON (no 0 byte: all of it is the mapping).
pub fn check_input(data: &[u8]) -> Outcome {
    match data.iter().position(|&b| b == 0) {
        Some(i) => check(&data[..i], &data[i + 1..]),
        None => check(data, b""),
    }
}

/// Compiles `mapping` and renders `row` through it, asserting the invariants.
pub fn check(mapping: &[u8], row: &[u8]) -> Outcome {
    let Ok(doc) = MappingDoc::parse(mapping) else {
        return Outcome::NotAMapping;
    };
    let Ok(row) = Row::from_json(row) else {
        return Outcome::NotARow;
    };
    let identity = Identity::offline(doc.name.as_deref().unwrap_or_default());
    let m = match Mapping::compile(&doc, identity) {
        Ok(m) => m,
        Err(violations) => {
            assert!(!violations.is_empty(), "a failed compile names a violation");
            for v in &violations {
                assert!(v.pointer.starts_with('/'), "pointer {:?}", v.pointer);
            }
            return Outcome::InvalidMapping;
        }
    };

    // Render after some bytes already in the buffer: the event is appended, nothing else.
    const PREFIX: &[u8] = b"[prefix]";
    let mut out = PREFIX.to_vec();
    let r = m.render(&row, &mut out);
    assert!(out.starts_with(PREFIX), "render only appends");
    let issues = &r.built.issues;
    let too_large = issues.iter().any(|i| i.code == IssueCode::EventTooLarge);
    let outcome = match r.built.size {
        Some(size) => {
            assert!(!r.skipped);
            assert_eq!(
                out.len(),
                PREFIX.len() + size,
                "size is the appended length"
            );
            let bytes = &out[PREFIX.len()..];
            let event: Value = match serde_json::from_slice(bytes) {
                Ok(v) => v,
                Err(e) => panic!(
                    "event is not JSON ({e}): {}",
                    String::from_utf8_lossy(bytes)
                ),
            };
            assert!(event.is_object(), "{event}");
            assert!(event["type"].is_string(), "{event}");
            assert_eq!(
                event["messageId"].as_str(),
                r.built.message_id.as_deref(),
                "the messageId reported is the event's"
            );
            assert_eq!(
                size > MAX_EVENT_BYTES,
                too_large,
                "{size} bytes and issues {issues:?}"
            );
            if r.accepted() {
                Outcome::Accepted
            } else {
                assert!(!issues.is_empty());
                Outcome::Rejected
            }
        }
        None => {
            assert_eq!(out.len(), PREFIX.len(), "no event, no bytes");
            assert!(!too_large);
            if r.skipped {
                assert!(issues.is_empty());
                Outcome::Skipped
            } else {
                assert!(!issues.is_empty(), "no event and no reason");
                Outcome::NoEvent
            }
        }
    };

    // TestMapping reports the same render, and rendering again gives the same bytes.
    let t = m.test(&row);
    assert_eq!(t.accepted, r.accepted());
    assert_eq!(t.skipped, r.skipped);
    assert_eq!(t.size_bytes, r.built.size);
    assert_eq!(t.message_id, r.built.message_id);
    assert_eq!(&t.issues, issues);
    assert_eq!(t.event.is_some(), r.built.size.is_some());
    let mut again = Vec::new();
    m.render(&row, &mut again);
    assert_eq!(again, &out[PREFIX.len()..], "rendering is deterministic");
    outcome
}

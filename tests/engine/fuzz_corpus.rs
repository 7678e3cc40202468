//! Replays the fuzz seed corpus (and any regression input added to it) through the fuzz target's
//! own check, on stable, so the fuzz logic does not rot while CI never builds `fuzz/`.

use std::collections::BTreeMap;

use crate::common::fuzz_check::{self, Outcome};

#[test]
fn corpus_replays_clean() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/compile_render");
    let mut seen: BTreeMap<Outcome, Vec<String>> = BTreeMap::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in &entries {
        let data = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = fuzz_check::check_input(&data);
        seen.entry(outcome).or_default().push(name);
    }
    assert!(
        entries.len() >= 10,
        "the seed corpus has {} files",
        entries.len()
    );
    // Every seed is a mapping and a row; together they reach every stage of the render.
    for outcome in [
        Outcome::InvalidMapping,
        Outcome::Skipped,
        Outcome::NoEvent,
        Outcome::Rejected,
        Outcome::Accepted,
    ] {
        assert!(
            seen.contains_key(&outcome),
            "{outcome:?} not reached: {seen:?}"
        );
    }
    for bad in [Outcome::NotAMapping, Outcome::NotARow] {
        let names = seen.get(&bad).cloned().unwrap_or_default();
        // Regression inputs from the fuzzer may be anything; the seeds must parse.
        assert!(
            names.iter().all(|n| n.starts_with("regression-")),
            "{bad:?}: {names:?}"
        );
    }
}

#[test]
fn input_splits_at_the_first_zero_byte() {
    let mapping = br#"{"action":"track","fields":{"event_name":"E","user_id":"u"}}"#;
    let row = br#"{"op":"added","columns":{"a":"x\u0000y"}}"#;
    let mut data = mapping.to_vec();
    data.push(0);
    data.extend_from_slice(row);
    assert_eq!(fuzz_check::check_input(&data), Outcome::Accepted);
    // No 0 byte: all of it is the mapping and the row is empty (not a row).
    assert_eq!(fuzz_check::check_input(mapping), Outcome::NotARow);
    assert_eq!(fuzz_check::check_input(b"\0"), Outcome::NotAMapping);
    assert_eq!(fuzz_check::check_input(b""), Outcome::NotAMapping);
}

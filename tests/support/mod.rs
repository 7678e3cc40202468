//! Helpers shared by the integration tests: build a mapping and a row from JSON, render through
//! the public API (`MappingDoc` → `Mapping::compile` → `Mapping::test`), and read the outcome.
#![allow(dead_code)] // each test crate uses a different subset

use serde_json::{Value, json};

use segment_connections::issue::IssueCode;
use segment_connections::mapping::{Identity, Mapping, MappingDoc, Row, TestResult};

/// A mapping document from its JSON.
pub fn doc(mapping: Value) -> MappingDoc {
    serde_json::from_value(mapping).expect("a mapping document")
}

/// A row from docs/DESIGN.md's row JSON.
pub fn row(row: Value) -> Row {
    Row::from_json(&serde_json::to_vec(&row).unwrap()).expect("a row")
}

/// An `added` row with these columns and no id.
pub fn added(columns: Value) -> Row {
    row(json!({"op": "added", "columns": columns}))
}

/// Compiles `mapping` (it must be valid) with the offline identity `t`.
pub fn compile(mapping: Value) -> Mapping {
    match Mapping::compile(&doc(mapping), Identity::offline("t")) {
        Ok(m) => m,
        Err(v) => panic!("the mapping should compile: {v:?}"),
    }
}

/// Compiles `mapping` and renders `row` as TestMapping does.
pub fn test(mapping: Value, row: &Row) -> TestResult {
    compile(mapping).test(row)
}

/// The violations of a mapping that must not compile, as (pointer, message) pairs in order.
pub fn violations(mapping: Value) -> Vec<(String, String)> {
    match Mapping::compile(&doc(mapping), Identity::offline("t")) {
        Ok(m) => panic!("the mapping should not compile: {m:?}"),
        Err(v) => v.into_iter().map(|v| (v.pointer, v.message)).collect(),
    }
}

/// The pointers of [`violations`], in order.
pub fn pointers(mapping: Value) -> Vec<String> {
    violations(mapping).into_iter().map(|(p, _)| p).collect()
}

/// A track mapping with a fixed user, event and messageId and `properties` mapped as given.
pub fn track_with_properties(properties: Value) -> Value {
    json!({
        "action": "track",
        "fields": {
            "event_name": "E",
            "user_id": "u",
            "message_id": "m-1",
            "properties": properties,
        }
    })
}

/// The event `track_with_properties(properties)` must render to when `properties` resolves to
/// `expected` (free-form, so a directive's output shows there unchanged).
pub fn track_event(expected_properties: Value) -> Value {
    json!({
        "userId": "u",
        "event": "E",
        "messageId": "m-1",
        "context": {"traits": {}, "consent": {}},
        "properties": expected_properties,
        "type": "track",
    })
}

/// Renders `properties` (a mapping value) against an added row of `columns`, asserts the event
/// is accepted and returns it whole.
pub fn render_properties(properties: Value, columns: Value) -> Value {
    let got = test(track_with_properties(properties), &added(columns));
    assert!(got.accepted, "not accepted: {got:?}");
    assert!(got.issues.is_empty(), "{got:?}");
    got.event.expect("an accepted result shows its event")
}

/// The codes and pointers of a result's issues, in order.
pub fn codes(result: &TestResult) -> Vec<(IssueCode, &str)> {
    result
        .issues
        .iter()
        .map(|i| (i.code, i.pointer.as_str()))
        .collect()
}

/// A unique scratch directory under the system temp dir (removed by the returned guard).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "segment-connections-{tag}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `contents` to `name` in the directory and returns its path.
    pub fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

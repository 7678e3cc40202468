//! The engine suites' builders and checks (tests/engine): a mapping and a row from JSON,
//! rendered through the public API (`MappingDoc` → `Mapping::compile` → `Mapping::test`), and
//! the outcome read back.

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

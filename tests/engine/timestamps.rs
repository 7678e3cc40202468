//! D8: timestamps as warehouses write them are normalised to RFC 3339 in the event's `timestamp`;
//! anything else stays `INVALID_TIMESTAMP`. Each case is a row through a track mapping, checked
//! against the whole event (so nothing else moves), through both the planned and the general
//! writer (a flat mapping, and the same mapping behind a directive that computes).

use serde_json::{Value, json};

use crate::common::engine::{added, codes, test};
use segment_connections::issue::IssueCode;

/// A track mapping reading the timestamp from column `ts`: flat (`planned`) or through `@if`,
/// which the plan does not take.
fn mapping(planned: bool) -> Value {
    let ts = if planned {
        json!({"@path": "$.properties.ts"})
    } else {
        json!({"@if": {"exists": {"@path": "$.properties.ts"}, "then": {"@path": "$.properties.ts"}}})
    };
    json!({"action": "track", "fields": {
        "event_name": "E", "user_id": "u", "message_id": "m-1", "timestamp": ts,
    }})
}

fn event(timestamp: &str) -> Value {
    json!({
        "userId": "u",
        "timestamp": timestamp,
        "event": "E",
        "messageId": "m-1",
        "context": {"traits": {}, "consent": {}},
        "properties": {},
        "type": "track",
    })
}

/// (column value, the event's timestamp)
fn normalised() -> Vec<(Value, &'static str)> {
    vec![
        // Already RFC 3339: unchanged.
        (json!("2024-05-01T12:00:00Z"), "2024-05-01T12:00:00Z"),
        (
            json!("2024-05-01T12:00:00.123+02:00"),
            "2024-05-01T12:00:00.123+02:00",
        ),
        (json!("2024-05-01 12:00:00Z"), "2024-05-01 12:00:00Z"),
        // Snowflake, BigQuery, Redshift, PostgreSQL, Databricks as text.
        (json!("2024-05-01 12:00:00"), "2024-05-01T12:00:00Z"),
        (json!("2024-05-01T12:00:00"), "2024-05-01T12:00:00Z"),
        (json!("2024-05-01 12:00:00.123"), "2024-05-01T12:00:00.123Z"),
        (
            json!("2024-05-01 12:00:00.123456 UTC"),
            "2024-05-01T12:00:00.123456Z",
        ),
        (json!("2024-05-01 12:00:00 UTC"), "2024-05-01T12:00:00Z"),
        (
            json!("2024-05-01 12:00:00+0000"),
            "2024-05-01T12:00:00+00:00",
        ),
        (
            json!("2024-05-01 12:00:00 -0700"),
            "2024-05-01T12:00:00-07:00",
        ),
        (json!("2024-05-01 12:00:00+00"), "2024-05-01T12:00:00+00:00"),
        (
            json!("2024-05-01T12:00:00.5+0530"),
            "2024-05-01T12:00:00.5+05:30",
        ),
        (json!("2024-05-01"), "2024-05-01T00:00:00Z"),
        // Epoch seconds and milliseconds, when the mapped value is a number.
        (json!(1714564800), "2024-05-01T12:00:00Z"),
        (json!(1714564800.25), "2024-05-01T12:00:00.250Z"),
        (json!(1714564800123_i64), "2024-05-01T12:00:00.123Z"),
        (json!(0), "1970-01-01T00:00:00Z"),
        (json!([1714564800]), "2024-05-01T12:00:00Z"),
        (json!(["2024-05-01"]), "2024-05-01T00:00:00Z"),
    ]
}

#[test]
fn warehouse_timestamps_become_rfc3339() {
    for planned in [true, false] {
        for (ts, want) in normalised() {
            let got = test(mapping(planned), &added(json!({ "ts": ts })));
            assert!(got.accepted, "{ts} (planned {planned}): {got:?}");
            assert_eq!(got.event.unwrap(), event(want), "{ts} (planned {planned})");
        }
    }
}

#[test]
fn other_timestamps_stay_invalid() {
    for planned in [true, false] {
        for ts in [
            json!("1714564800"),
            json!("2024-05-01 12:00"),
            json!("05/01/2024 12:00:00"),
            json!("2024-05-01 12:00:00 PST"),
            json!("2024-05-01 12:00:00+2"),
            json!("2024-02-30"),
            json!("2024-05-01 25:00:00"),
            json!("yesterday"),
            json!(1e20),
            json!(-1e20),
            json!(false),
        ] {
            let got = test(mapping(planned), &added(json!({ "ts": ts })));
            assert!(!got.accepted, "{ts}");
            assert_eq!(
                codes(&got),
                [(IssueCode::InvalidTimestamp, "/timestamp")],
                "{ts}"
            );
            assert!(
                got.issues[0]
                    .message
                    .contains("nor a warehouse form of one"),
                "{}",
                got.issues[0].message
            );
        }
    }
}

/// A timestamp normalised from a warehouse form sits in the event as RFC 3339; its size counts
/// the normalised text.
#[test]
fn the_size_counts_the_normalised_timestamp() {
    let a = test(mapping(true), &added(json!({"ts": "2024-05-01 12:00:00"})));
    let b = test(mapping(true), &added(json!({"ts": "2024-05-01T12:00:00Z"})));
    assert_eq!(a.size_bytes, b.size_bytes);
    assert_eq!(a.event_json, b.event_json);
}

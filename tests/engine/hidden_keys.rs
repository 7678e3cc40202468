//! Keys of a mapping copied out of Segment that are not fields of the event: the root directive
//! `__segment_internal_directive` (the other fields are resolved against its result) and
//! "Batch Data to Segment", `enable_batching` (accepted, changes nothing). Expected events come
//! from Segment's code (the oracle: `node oracle.js stdin` on the same mapping and row), as do
//! the recorded cases 31 and 32 in tests/fixtures/conformance.

use serde_json::{Value, json};

use segment_connections::issue::IssueCode;

use crate::common::engine::{added, codes, compile, test, violations};

const ROOT: &str = "__segment_internal_directive";

/// The fields every action needs, plus a user and a messageId: a minimal accepted mapping.
fn minimal(action: &str) -> Value {
    let mut fields = json!({
        "user_id": {"@path": "$.properties.user_id"},
        "message_id": "m-1",
        "timestamp": {"@path": "$.properties.ts"},
    });
    match action {
        "track" => fields["event_name"] = json!("E"),
        "group" => fields["group_id"] = json!({"@path": "$.properties.group"}),
        _ => {}
    }
    json!({"action": action, "fields": fields})
}

/// `(pointer, message)` pairs, as `violations` returns them.
fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
        .collect()
}

// === enable_batching ===

/// Every action takes `enable_batching` as a raw boolean or a directive, and the event is the
/// same bytes as without it: nothing of it reaches the event (flat mappings, written by the
/// plan, and mappings with directives alike).
#[test]
fn enable_batching_is_accepted_and_changes_nothing() {
    let row = added(
        json!({"user_id": "u-1", "ts": "2024-05-01T12:00:00Z", "group": "g-1",
                           "flag": "yes"}),
    );
    for action in ["track", "page", "screen", "identify", "group"] {
        for with_directive in [false, true] {
            let mut without = minimal(action);
            if with_directive {
                without["fields"]["user_id"] = json!({"@case": {"operator": "upper", "value": {"@path": "$.properties.user_id"}}});
            }
            let base = test(without.clone(), &row);
            assert!(base.accepted, "{action}: {base:?}");
            for value in [
                json!(true),
                json!(false),
                json!({"@literal": true}),
                // Not evaluated, so a value that is no boolean on this row changes nothing either.
                json!({"@path": "$.properties.flag"}),
            ] {
                let mut with = without.clone();
                with["fields"]["enable_batching"] = value.clone();
                let got = test(with, &row);
                assert!(got.accepted, "{action} {value}: {got:?}");
                assert_eq!(got.event_json, base.event_json, "{action} {value}");
                assert_eq!(got.message_id, base.message_id, "{action} {value}");
                assert_eq!(got.size_bytes, base.size_bytes, "{action} {value}");
            }
        }
    }
}

/// Anything but a raw boolean or a directive is a violation at `/fields/enable_batching` (where
/// Segment's code, having no such field, would drop it unseen); a directive is checked as any
/// mapping value.
#[test]
fn enable_batching_must_be_a_boolean() {
    let with = |value: Value| {
        let mut doc = minimal("track");
        doc["fields"]["enable_batching"] = value;
        violations(doc)
    };
    let why =
        "(Batch Data to Segment changes nothing here: events always go out through /v1/batch)";
    for (value, type_name) in [
        (json!("yes"), "a string"),
        (json!("true"), "a string"),
        (json!(1), "a number"),
        (json!(null), "a null"),
        (json!([true]), "an array"),
        (json!({"enabled": true}), "an object"),
    ] {
        assert_eq!(
            with(value.clone()),
            owned(&[(
                "/fields/enable_batching",
                &format!(
                    "should be a boolean (true or false) or a directive but it is {type_name} {why}"
                ),
            )]),
            "{value}"
        );
    }
    assert_eq!(
        with(json!({"@case": {"operator": "sideways", "value": "x"}})),
        owned(&[(
            "/fields/enable_batching/@case/operator",
            "should be one of lower, upper but it is \"sideways\""
        )])
    );
}

// === __segment_internal_directive ===

/// The fields are resolved against the root directive's result, not the row: flat-looking
/// fields (paths only) included, which therefore do not take the plan that reads the row. A
/// `mapping` written in the root `@transform` is ignored: Segment's code overwrites it with the
/// other fields before looking at it. Expected from the oracle.
#[test]
fn fields_are_resolved_against_the_root_directive() {
    let doc = json!({"action": "track", "fields": {
        ROOT: {"@transform": {"apply": {"p": {"@path": "$.properties"}}, "mapping": 5}},
        "event_name": "E",
        "user_id": {"@path": "$.p.user_id"},
        "message_id": "m-1",
        "properties": {"@path": "$.p.a"},
    }});
    let row = added(json!({"user_id": "u", "a": {"b": "deep"}}));
    let got = test(doc, &row);
    assert!(got.accepted, "{got:?}");
    assert_eq!(
        got.event.unwrap(),
        json!({"userId": "u", "event": "E", "messageId": "m-1",
               "context": {"traits": {}, "consent": {}}, "properties": {"b": "deep"},
               "type": "track"})
    );

    // The row's columns are not there any more: `$.properties.user_id` finds nothing.
    let doc = json!({"action": "track", "fields": {
        ROOT: {"@transform": {"apply": {"p": {"@path": "$.properties"}}}},
        "event_name": "E",
        "user_id": {"@path": "$.properties.user_id"},
    }});
    let got = test(doc, &row);
    assert_eq!(codes(&got), [(IssueCode::MissingIdentity, "/user_id")]);

    // The result may be any value: a string has a `length` (Segment answers "1" here).
    let doc = json!({"action": "track", "fields": {
        ROOT: {"@transform": {"apply": {"@path": "$.properties.user_id"}}},
        "event_name": "E",
        "user_id": {"@path": "$.length"},
        "message_id": "m-1",
    }});
    let got = test(doc, &added(json!({"user_id": "u"})));
    assert_eq!(got.event.unwrap()["userId"], "1");

    // Nothing at all: every path of the fields is undefined.
    let doc = json!({"action": "track", "fields": {
        ROOT: {"@transform": {"apply": {"@path": "$.nope"}}},
        "event_name": "E",
        "user_id": "u",
        "message_id": "m-1",
        "properties": {"p": {"@path": "$.x"}},
    }});
    let got = test(doc, &row);
    assert_eq!(got.event.unwrap()["properties"], json!({}));
}

/// mapping-kit runs a `@transform`'s `apply` through `transform()` too, so a root directive
/// may stand in it (with a `mapping`, which the validation of the whole mapping requires and
/// the run overwrites). Expected from the oracle.
#[test]
fn a_root_directive_inside_apply() {
    let doc = json!({"action": "track", "fields": {
        ROOT: {"@transform": {"apply": {
            ROOT: {"@transform": {"apply": {"@path": "$.properties"}, "mapping": {}}},
            "uid": {"@path": "$.user_id"},
            "inner": {"@path": "$.a"},
        }}},
        "event_name": {"@path": "$.inner.b"},
        "user_id": {"@path": "$.uid"},
        "message_id": "m-1",
    }});
    let got = test(doc, &added(json!({"user_id": "u", "a": {"b": "deep"}})));
    assert!(got.accepted, "{got:?}");
    assert_eq!(
        got.event.unwrap(),
        json!({"userId": "u", "event": "deep", "messageId": "m-1",
               "context": {"traits": {}, "consent": {}}, "properties": {}, "type": "track"})
    );
    // The same in a field's own @transform.
    let doc = json!({"action": "track", "fields": {
        "event_name": "E",
        "user_id": "u",
        "message_id": "m-1",
        "properties": {"t": {"@transform": {
            "apply": {
                ROOT: {"@transform": {"apply": {"@path": "$.properties"}, "mapping": {}}},
                "x": {"@path": "$.a.b"},
            },
            "mapping": {"y": {"@path": "$.x"}},
        }}},
    }});
    let got = test(doc, &added(json!({"a": {"b": "deep"}})));
    assert_eq!(
        got.event.unwrap()["properties"],
        json!({"t": {"y": "deep"}})
    );
    // Without that `mapping`, Segment's validation refuses it, and so do we.
    assert_eq!(
        violations(json!({"action": "track", "fields": {
            ROOT: {"@transform": {"apply": {
                ROOT: {"@transform": {"apply": {"@path": "$.properties"}}},
            }}},
            "event_name": "E",
        }})),
        owned(&[(
            "/fields/__segment_internal_directive/@transform/apply/__segment_internal_directive/@transform",
            "should have field \"mapping\" but it doesn't"
        )])
    );
}

/// A directive that cannot run on the row, inside the root directive, is an `INVALID_MAPPING`
/// issue at `/__segment_internal_directive` (field-key space, as a field's own would be at its
/// key), with Segment's message; one in a field still points at the field.
#[test]
fn render_errors_point_at_the_root_directive() {
    let doc = json!({"action": "track", "fields": {
        ROOT: {"@transform": {"apply": {"x": {"@path": {"@path": "$.properties"}}}}},
        "event_name": "E",
        "user_id": "u",
    }});
    let got = test(doc, &added(json!({"a": 1})));
    assert!(!got.accepted && got.event.is_none(), "{got:?}");
    assert_eq!(
        got.issues
            .iter()
            .map(|i| (i.code, i.pointer.as_str(), i.message.as_str()))
            .collect::<Vec<_>>(),
        [(
            IssueCode::InvalidMapping,
            "/__segment_internal_directive",
            "@path: expected string, got object"
        )]
    );
    // A field's @transform over a payload that is no object: Segment's "data must be an object".
    let doc = json!({"action": "track", "fields": {
        ROOT: {"@transform": {"apply": {"@path": "$.properties.user_id"}}},
        "event_name": "E",
        "user_id": "u",
        "properties": {"t": {"@transform": {"apply": {}, "mapping": {}}}},
    }});
    let got = test(doc, &added(json!({"user_id": "u"})));
    assert_eq!(
        got.issues
            .iter()
            .map(|i| (i.code, i.pointer.as_str(), i.message.as_str()))
            .collect::<Vec<_>>(),
        [(
            IssueCode::InvalidMapping,
            "/properties",
            "data must be an object, got string"
        )]
    );
}

/// What mapping-kit refuses in a root directive, and what it would run but we refuse (any
/// directive other than `@transform` throws the other fields away), each at its pointer; the
/// other fields are checked as ever.
#[test]
fn malformed_root_directives() {
    let with = |root: Value| {
        violations(json!({"action": "track", "fields": {ROOT: root, "event_name": "E"}}))
    };
    let at = "/fields/__segment_internal_directive";
    let shape = r#"{"@transform": {"apply": ...}}"#;
    assert_eq!(
        with(json!("x")),
        owned(&[(
            at,
            &format!("should be a single directive object, {shape}, but it is a string")
        )])
    );
    // Segment: "The root mapping must only have a single directive object".
    assert_eq!(
        with(json!({"@transform": {"apply": {}}, "_metadata": {}})),
        owned(&[(
            at,
            &format!("should be a single directive object, {shape}, but it has 2 keys")
        )])
    );
    assert_eq!(
        with(json!({})),
        owned(&[(
            at,
            &format!("should be a single directive object, {shape}, but it has 0 keys")
        )])
    );
    // Segment runs it and sends the merge's result, every other field ignored.
    assert_eq!(
        with(json!({"@merge": {"direction": "right", "objects": [{"event_name": "M"}]}})),
        owned(&[(
            at,
            &format!(
                "should be a @transform directive ({shape}), the one directive that resolves the \
                 other fields against its result, but it is \"@merge\""
            )
        )])
    );
    // Segment's validation messages, at the same places.
    assert_eq!(
        with(json!({"@transform": {"mapping": {}}})),
        owned(&[(
            "/fields/__segment_internal_directive/@transform",
            "should have field \"apply\" but it doesn't"
        )])
    );
    assert_eq!(
        with(json!({"@transform": {"apply": [1]}})),
        owned(&[(
            "/fields/__segment_internal_directive/@transform/apply",
            "should be a object or a mapping directive but it is an array"
        )])
    );
    assert_eq!(
        with(json!({"@transform": [1]})),
        owned(&[(
            "/fields/__segment_internal_directive/@transform",
            "should be an object but it is an array"
        )])
    );
    assert_eq!(
        with(
            json!({"@transform": {"apply": {"x": {"@case": {"operator": "sideways", "value": "v"}}}}})
        ),
        owned(&[(
            "/fields/__segment_internal_directive/@transform/apply/x/@case/operator",
            "should be one of lower, upper but it is \"sideways\""
        )])
    );
    // Beside a root directive, the fields are checked as ever.
    assert_eq!(
        violations(json!({"action": "track", "fields": {
            ROOT: {"@transform": {"apply": {}}},
            "not_a_field": 1,
        }})),
        owned(&[
            ("/fields/not_a_field", "is not a field key"),
            ("/fields/event_name", "is required for track but not mapped"),
        ])
    );
}

/// The root `@transform` is one level of directives: its `apply` may nest 31 more, not 32.
#[test]
fn the_root_directive_counts_toward_the_depth_limit() {
    let nested = |levels: usize| {
        let mut v = json!({"@path": "$.properties.q"});
        for _ in 1..levels {
            v = json!({"@case": {"operator": "upper", "value": v}});
        }
        v
    };
    let doc = |levels| {
        json!({"action": "track", "fields": {
            ROOT: {"@transform": {"apply": {"x": nested(levels)}}},
            "event_name": "E",
            "user_id": {"@path": "$.x"},
            "message_id": "m-1",
        }})
    };
    let got = compile(doc(31)).test(&added(json!({"q": "q"})));
    assert_eq!(got.event.unwrap()["userId"], "Q");
    let deepest = "/fields/__segment_internal_directive/@transform/apply/x".to_owned()
        + &"/@case/value".repeat(31);
    assert_eq!(
        violations(doc(32)),
        [(
            deepest,
            "nests directives more than 32 deep (the limit)".to_owned()
        )]
    );
}

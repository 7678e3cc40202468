//! Cleaning and coercion per target type (docs/SEGMENT_SPEC.md §3.1 steps 4–5, expectations from
//! Segment's code), the messageId (docs/DESIGN.md, D5), the Tracking API acceptance checks (D6) and
//! triggers against every op.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::engine::{added, codes, compile, doc, row, test};
use segment_connections::issue::IssueCode;
use segment_connections::mapping::{Identity, Mapping, TestResult};

/// A track mapping with the fixed user, event and messageId plus `extra` fields.
fn track(extra: Value) -> Value {
    let mut fields = json!({"event_name": "E", "user_id": "u", "message_id": "m-1"});
    for (k, v) in extra.as_object().unwrap() {
        fields[k] = v.clone();
    }
    json!({"action": "track", "fields": fields})
}

/// The event of `track(extra)` with `context` entries `ctx` added.
fn track_event(ctx: Value, properties: Value) -> Value {
    let mut context = json!({"traits": {}, "consent": {}});
    for (k, v) in ctx.as_object().unwrap() {
        context[k] = v.clone();
    }
    json!({
        "userId": "u",
        "event": "E",
        "messageId": "m-1",
        "context": context,
        "properties": properties,
        "type": "track",
    })
}

/// What a value becomes in its target field.
enum Want {
    /// Coerced to this value.
    Is(Value),
    /// Removed as empty.
    Removed,
    /// Rejected: TYPE_MISMATCH with this message.
    Mismatch(&'static str),
}
use Want::{Is, Mismatch, Removed};

/// Renders `field` mapped from column `v` (= `value`) and checks the outcome: the whole event
/// when accepted (the coerced value in `context.<ctx_key>`, or inside it at `sub`), the issue
/// when not.
fn check(field: Value, ctx_key: &str, sub: Option<&str>, value: Value, want: Want, pointer: &str) {
    let got = test(track(field.clone()), &added(json!({"v": value})));
    let case = format!("{field} with v = {value}");
    match want {
        Is(v) => {
            let ctx = match sub {
                None => json!({ ctx_key: v }),
                Some(sub) => json!({ ctx_key: { sub: v } }),
            };
            assert!(got.accepted, "{case}: {got:?}");
            assert_eq!(got.event.unwrap(), track_event(ctx, json!({})), "{case}");
        }
        Removed => {
            let ctx = match sub {
                None => json!({}),
                // An object left empty stays as `{}`.
                Some(_) => json!({ ctx_key: {} }),
            };
            assert!(got.accepted, "{case}: {got:?}");
            assert_eq!(got.event.unwrap(), track_event(ctx, json!({})), "{case}");
        }
        Mismatch(message) => {
            assert!(!got.accepted && got.event.is_none(), "{case}: {got:?}");
            assert_eq!(codes(&got), [(IssueCode::TypeMismatch, pointer)], "{case}");
            assert_eq!(got.issues[0].message, message, "{case}");
        }
    }
}

#[test]
fn string_fields() {
    let field = json!({"locale": {"@path": "$.properties.v"}});
    let table = [
        (json!(98765), Is(json!("98765"))),
        (json!(1e21), Is(json!("1e+21"))),
        (json!(1.5), Is(json!("1.5"))),
        (json!(-0.0), Is(json!("0"))),
        (json!(false), Is(json!("false"))),
        (json!(true), Is(json!("true"))),
        (json!(["a-9"]), Is(json!("a-9"))),
        (json!([1]), Is(json!("1"))),
        // A one-element array holding null is coerced after empty-value removal: "".
        (json!([null]), Is(json!(""))),
        (json!(" "), Is(json!(" "))),
        // Exact digits: columns travel as JSON text so ids above 2^53 survive (docs/DESIGN.md);
        // Segment's JavaScript would print 12345678901234567000.
        (
            json!(12345678901234567890u64),
            Is(json!("12345678901234567890")),
        ),
        (json!(null), Removed),
        (json!(""), Removed),
        (
            json!([]),
            Mismatch("Locale must be a string but it was an array."),
        ),
        (
            json!(["a", "b"]),
            Mismatch("Locale must be a string but it was an array."),
        ),
        (
            json!([[1]]),
            Mismatch("Locale must be a string but it was an array."),
        ),
        (
            json!({"a": 1}),
            Mismatch("Locale must be a string but it was an object."),
        ),
        (
            json!([{"a": 1}]),
            Mismatch("Locale must be a string but it was an object."),
        ),
    ];
    for (value, want) in table {
        check(field.clone(), "locale", None, value, want, "/locale");
    }
}

#[test]
fn string_sub_fields() {
    // `page.title` is a string sub-field: `""` is kept there (only the root removes it).
    let field = json!({"page": {"title": {"@path": "$.properties.v"}}});
    let table = [
        (json!(7), Is(json!("7"))),
        (json!(false), Is(json!("false"))),
        (json!(["t"]), Is(json!("t"))),
        (json!(""), Is(json!(""))),
        (json!(null), Removed),
        (
            json!({"a": 1}),
            Mismatch("Title must be a string but it was an object."),
        ),
        (
            json!([1, 2]),
            Mismatch("Title must be a string but it was an array."),
        ),
    ];
    for (value, want) in table {
        check(
            field.clone(),
            "page",
            Some("title"),
            value,
            want,
            "/page/title",
        );
    }
}

#[test]
fn number_sub_fields() {
    let field = json!({"location": {"latitude": {"@path": "$.properties.v"}}});
    let table = [
        (json!("48.85"), Is(json!(48.85))),
        (json!("0"), Is(json!(0))),
        (json!(" 12 "), Is(json!(12))),
        (json!("0x1F"), Is(json!(31))),
        (json!("1e3"), Is(json!(1000))),
        (json!(" "), Is(json!(0))),
        (json!(true), Is(json!(1))),
        (json!(false), Is(json!(0))),
        (json!(1e21), Is(json!(1e21))),
        (json!(-2.5), Is(json!(-2.5))),
        (json!([5]), Is(json!(5))),
        (json!(["7"]), Is(json!(7))),
        (json!([null]), Is(json!(0))),
        // Not a string sub-field: `""` is removed like null.
        (json!(""), Removed),
        (json!(null), Removed),
        (
            json!("north"),
            Mismatch("Latitude must be a number but it was a string."),
        ),
        (
            json!([]),
            Mismatch("Latitude must be a number but it was an array."),
        ),
        (
            json!({"a": 1}),
            Mismatch("Latitude must be a number but it was an object."),
        ),
    ];
    for (value, want) in table {
        check(
            field.clone(),
            "location",
            Some("latitude"),
            value,
            want,
            "/location/latitude",
        );
    }
}

#[test]
fn boolean_sub_fields() {
    let field = json!({"network": {"wifi": {"@path": "$.properties.v"}}});
    let table = [
        (json!("true"), Is(json!(true))),
        (json!("false"), Is(json!(false))),
        (json!(1), Is(json!(true))),
        (json!(0), Is(json!(false))),
        (json!(1.0), Is(json!(true))),
        (json!(true), Is(json!(true))),
        (json!([true]), Is(json!(true))),
        (json!(["false"]), Is(json!(false))),
        (json!([null]), Is(json!(false))),
        (json!(""), Removed),
        (json!(null), Removed),
        (
            json!("yes"),
            Mismatch("WiFi must be a boolean but it was a string."),
        ),
        (
            json!("TRUE"),
            Mismatch("WiFi must be a boolean but it was a string."),
        ),
        (
            json!(2),
            Mismatch("WiFi must be a boolean but it was a number."),
        ),
        (
            json!([]),
            Mismatch("WiFi must be a boolean but it was an array."),
        ),
    ];
    for (value, want) in table {
        check(
            field.clone(),
            "network",
            Some("wifi"),
            value,
            want,
            "/network/wifi",
        );
    }
}

#[test]
fn object_fields() {
    for (field, ctx_key, label) in [
        ("location", Some("location"), "Location"),
        ("properties", None, "Properties"),
        ("traits", None, "Traits"),
        ("consent", None, "Consent"),
    ] {
        let mapping = track(json!({ field: {"@path": "$.properties.v"} }));
        for (value, found) in [
            (json!("x"), "a string"),
            (json!(5), "a number"),
            (json!([]), "an array"),
            (json!([{"city": "c"}]), "an array"),
        ] {
            let got = test(mapping.clone(), &added(json!({"v": value})));
            let ptr = format!("/{field}");
            assert_eq!(
                codes(&got),
                [(IssueCode::TypeMismatch, ptr.as_str())],
                "{field}"
            );
            assert_eq!(
                got.issues[0].message,
                format!("{label} must be an object but it was {found}.")
            );
        }
        // Null and "" at the root are removed: the always-present objects stay `{}`.
        for empty in [json!(null), json!("")] {
            let got = test(mapping.clone(), &added(json!({"v": empty})));
            assert_eq!(
                got.event.unwrap(),
                track_event(json!({}), json!({})),
                "{field}"
            );
        }
        if let Some(key) = ctx_key {
            let got = test(mapping.clone(), &added(json!({"v": {}})));
            assert_eq!(
                got.event.unwrap(),
                track_event(json!({ key: {} }), json!({}))
            );
        }
    }
}

#[test]
fn several_mismatches_are_all_reported() {
    let got = test(
        track(json!({
            "network": {
                "wifi": {"@path": "$.properties.v"},
                "carrier": {"@path": "$.properties.v"},
            },
            "anonymous_id": {"@path": "$.properties.o"},
        })),
        &added(json!({"v": [], "o": {"a": 1}})),
    );
    let mut got = codes(&got);
    got.sort_by_key(|(_, p)| *p);
    assert_eq!(
        got,
        [
            (IssueCode::TypeMismatch, "/anonymous_id"),
            (IssueCode::TypeMismatch, "/network/carrier"),
            (IssueCode::TypeMismatch, "/network/wifi"),
        ]
    );
}

#[test]
fn empty_value_removal() {
    let got = test(
        json!({"action": "track", "fields": {
            "event_name": "E",
            "user_id": "u",
            "message_id": "m-1",
            // Root "" and null are removed, whatever the field's type.
            "anonymous_id": "",
            "timestamp": null,
            "ip_address": {"@path": "$.properties.missing"},
            "user_agent": {"@path": "$.properties.nul"},
            // Declared sub-fields: null removed; "" removed unless the sub-field is a string;
            // unknown sub-keys removed.
            "location": {
                "city": "", "country": null, "latitude": "", "longitude": 2, "color": "red",
            },
            "device": {"id": "", "adTracking_Enabled": "", "color": "blue"},
            // Free-form objects are untouched.
            "properties": {"a": null, "b": "", "c": {"d": null, "e": ""}, "f": [null, ""]},
            "traits": {"t": null, "u": ""},
        }}),
        &added(json!({"nul": null})),
    );
    assert!(got.accepted, "{got:?}");
    assert_eq!(
        got.event.unwrap(),
        json!({
            "userId": "u",
            "event": "E",
            "messageId": "m-1",
            "context": {
                "traits": {"t": null, "u": ""},
                "consent": {},
                "device": {"id": ""},
                "location": {"city": "", "longitude": 2},
            },
            "properties": {"a": null, "b": "", "c": {"d": null, "e": ""}, "f": [null, ""]},
            "type": "track",
        })
    );
}

#[test]
fn empty_required_and_identity_fields() {
    // An empty event name is removed, then missing (Segment's case 06).
    let got = test(
        json!({"action": "track", "fields": {"event_name": "", "user_id": "u"}}),
        &added(json!({})),
    );
    assert_eq!(codes(&got), [(IssueCode::RequiredField, "/event_name")]);
    assert_eq!(
        got.issues[0].message,
        "The root value is missing the required field 'event_name'."
    );
    // Empty ids are removed, then neither is there.
    let got = test(
        json!({"action": "track", "fields": {
            "event_name": "E", "user_id": null, "anonymous_id": "",
        }}),
        &added(json!({})),
    );
    assert_eq!(codes(&got), [(IssueCode::MissingIdentity, "/user_id")]);
    // A number id is coerced and counts.
    let got = test(
        json!({"action": "group", "fields": {
            "group_id": {"@path": "$.properties.g"},
            "user_id": {"@path": "$.properties.u"},
            "message_id": "m",
        }}),
        &added(json!({"u": 0, "g": 12})),
    );
    assert!(got.accepted, "{got:?}");
    assert_eq!(
        got.event.unwrap(),
        json!({
            "userId": "0",
            "groupId": "12",
            "messageId": "m",
            "context": {"consent": {}},
            "traits": {},
            "type": "group",
        })
    );
}

// === messageId ===

fn message_id_of(result: &TestResult) -> &str {
    let id = result.event.as_ref().unwrap()["messageId"]
        .as_str()
        .unwrap();
    assert_eq!(result.message_id.as_deref(), Some(id));
    id
}

fn track_mapping(message_id: Option<Value>) -> Value {
    let mut fields = json!({"event_name": "E", "user_id": "u"});
    if let Some(m) = message_id {
        fields["message_id"] = m;
    }
    json!({"action": "track", "fields": fields})
}

/// `v` with every object's keys sorted (serde_json keeps insertion order).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The mapping's content part: 32 hex digits of SHA-256 over its document as canonical JSON,
/// without `name`, `enabled` and null keys.
fn content(mapping: &Value) -> String {
    let mut doc = mapping.as_object().unwrap().clone();
    doc.retain(|k, v| k != "name" && k != "enabled" && !v.is_null());
    let canonical = serde_json::to_string(&sorted(&Value::Object(doc))).unwrap();
    let digest = Sha256::digest(canonical.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// docs/DESIGN.md's recipe, computed here independently: `sc2-` + 32 hex digits of SHA-256 over the
/// length-prefixed parts.
fn recipe(
    destination: &str,
    mapping_id: &str,
    mapping: &Value,
    row_id: &str,
    op: &str,
    cols: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [destination, mapping_id, &content(mapping), row_id, op, cols] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sc2-{hex}")
}

#[test]
fn message_id_mapped() {
    let r = row(json!({
        "id": 1,
        "op": "added",
        "columns": {"mid": "from-column", "n": 123},
        "message_id": "caller-1",
    }));
    let got = test(
        track_mapping(Some(json!({"@path": "$.properties.mid"}))),
        &r,
    );
    assert_eq!(message_id_of(&got), "from-column");
    // Coerced like any string field.
    let got = test(track_mapping(Some(json!({"@path": "$.properties.n"}))), &r);
    assert_eq!(message_id_of(&got), "123");
    // The envelope's id is the caller's.
    let got = test(track_mapping(Some(json!({"@path": "$.messageId"}))), &r);
    assert_eq!(message_id_of(&got), "caller-1");
}

#[test]
fn message_id_derived_when_nothing_is_mapped_d5() {
    let columns = json!({"b": 2, "a": "x"});
    let r = row(json!({"id": "r-7", "op": "updated", "columns": columns}));
    let cols = r#"{"a":"x","b":2}"#;
    let unmapped = track_mapping(None);
    let want = recipe("offline", "t", &unmapped, "r-7", "updated", cols);
    // The golden value pins the recipe: a change here breaks dedupe of re-submitted rows.
    assert_eq!(want, "sc2-84747a6b6ec3adde78404bfe7026689d");
    assert_eq!(message_id_of(&test(unmapped.clone(), &r)), want);
    // Mapped but resolving to nothing (missing, null, "") is that mapping's derived id.
    for m in [
        json!({"@path": "$.properties.missing"}),
        json!({"@path": "$.properties.nul"}),
        json!(""),
        json!(null),
    ] {
        let mapping = track_mapping(Some(m.clone()));
        let got = test(mapping.clone(), &r);
        assert_eq!(
            message_id_of(&got),
            recipe("offline", "t", &mapping, "r-7", "updated", cols),
            "{m}"
        );
    }
    // `$.messageId` without a caller id is the derived id too.
    let mapping = track_mapping(Some(json!({"@path": "$.messageId"})));
    assert_eq!(
        message_id_of(&test(mapping.clone(), &r)),
        recipe("offline", "t", &mapping, "r-7", "updated", cols)
    );
    // A caller id does not replace the derived id unless the mapping maps `$.messageId`.
    let with_caller =
        row(json!({"id": "r-7", "op": "updated", "columns": columns, "message_id": "caller-1"}));
    assert_eq!(message_id_of(&test(unmapped, &with_caller)), want);
}

#[test]
fn message_id_derived_is_stable_and_changes_with_the_row() {
    let base = json!({"id": "r-1", "op": "added", "columns": {"a": 1, "b": [1, {"y": 2, "x": 1}]}});
    let cols = r#"{"a":1,"b":[1,{"x":1,"y":2}]}"#;
    let id = |r: Value| {
        let m = compile(track_mapping(None));
        message_id_of(&m.test(&row(r))).to_owned()
    };
    let first = id(base.clone());
    assert_eq!(
        first,
        recipe("offline", "t", &track_mapping(None), "r-1", "added", cols)
    );
    // Stable: compiled again, rendered again, columns in another order.
    assert_eq!(id(base.clone()), first);
    assert_eq!(
        id(json!({"id": "r-1", "op": "added", "columns": {"b": [1, {"x": 1, "y": 2}], "a": 1}})),
        first
    );
    // Different for a changed row: a column value, the id, the op.
    let mut changed = Vec::new();
    for r in [
        json!({"id": "r-1", "op": "added", "columns": {"a": 2, "b": [1, {"y": 2, "x": 1}]}}),
        json!({"id": "r-1", "op": "added", "columns": {"a": 1, "b": [{"y": 2, "x": 1}, 1]}}),
        json!({"id": "r-1", "op": "added", "columns": {"a": 1}}),
        json!({"id": "r-2", "op": "added", "columns": {"a": 1, "b": [1, {"y": 2, "x": 1}]}}),
        json!({"id": "r-1", "op": "updated", "columns": {"a": 1, "b": [1, {"y": 2, "x": 1}]}}),
    ] {
        let other = id(r.clone());
        assert_ne!(other, first, "{r}");
        assert!(!changed.contains(&other), "{r}");
        changed.push(other);
    }
    // In the service: the real ids, and what the mapping does.
    let r = row(base);
    let ident = Identity {
        destination_id: "d-1".into(),
        mapping_id: "m-1".into(),
    };
    let in_service = |mapping: Value| {
        let m = Mapping::compile(&doc(mapping), ident.clone()).unwrap();
        message_id_of(&m.test(&r)).to_owned()
    };
    let registered = json!({"name": "orders", "model": "orders", "enabled": true,
        "action": "track", "fields": {"event_name": "E", "user_id": "u"}});
    let got = in_service(registered.clone());
    assert_eq!(got, recipe("d-1", "m-1", &registered, "r-1", "added", cols));
    // Its name and whether it is enabled do not change the event, nor the id...
    let mut renamed = registered.clone();
    renamed["name"] = json!("orders-v2");
    renamed["enabled"] = json!(false);
    assert_eq!(in_service(renamed), got);
    // ...its fields, action, trigger and model do.
    for (key, value) in [
        ("fields", json!({"event_name": "F", "user_id": "u"})),
        ("trigger", json!("added")),
        ("model", json!("users")),
        ("action", json!("identify")),
    ] {
        let mut other = registered.clone();
        other[key] = value;
        if key == "action" {
            other["fields"] = json!({"user_id": "u"});
        }
        assert_ne!(in_service(other), got, "{key}");
    }
    // Another mapping id with the same content gets another id.
    let m = Mapping::compile(
        &doc(registered),
        Identity {
            mapping_id: "m-2".into(),
            ..ident.clone()
        },
    )
    .unwrap();
    assert_ne!(message_id_of(&m.test(&r)), got);
}

// === acceptance checks (D6) ===

/// A track event whose `properties.pad` is `n` characters of `x`.
fn padded(n: usize) -> TestResult {
    test(
        track(json!({"properties": {"pad": {"@path": "$.properties.pad"}}})),
        &added(json!({"pad": "x".repeat(n)})),
    )
}

#[test]
fn event_size_limit_is_32_kib_exactly() {
    let base = padded(0).size_bytes.unwrap();
    let fits = 32_768 - base;
    let at_limit = padded(fits);
    assert_eq!(at_limit.size_bytes, Some(32_768));
    assert!(
        at_limit.accepted && at_limit.issues.is_empty(),
        "{at_limit:?}"
    );
    // The reported size is the event's serialised size.
    let text = serde_json::to_string(at_limit.event.as_ref().unwrap()).unwrap();
    assert_eq!(text.len(), 32_768);

    let over = padded(fits + 1);
    assert_eq!(over.size_bytes, Some(32_769));
    assert!(!over.accepted && !over.skipped);
    assert_eq!(codes(&over), [(IssueCode::EventTooLarge, "")]);
    assert_eq!(
        over.issues[0].message,
        "the event is 32769 bytes; the Tracking API accepts at most 32768"
    );
    // The event is shown so the caller can see what is too big.
    let event = over.event.unwrap();
    assert_eq!(event["properties"]["pad"].as_str().unwrap().len(), fits + 1);
    assert_eq!(over.message_id.as_deref(), Some("m-1"));
}

#[test]
fn event_size_counts_bytes_not_characters() {
    // "é" is 2 bytes in UTF-8, 1 character: the limit is in bytes.
    let base = padded(0).size_bytes.unwrap();
    let got = test(
        track(json!({"properties": {"pad": {"@path": "$.properties.pad"}}})),
        &added(json!({"pad": "é".repeat((32_768 - base) / 2 + 1)})),
    );
    assert_eq!(codes(&got), [(IssueCode::EventTooLarge, "")]);
}

#[test]
fn message_id_limit_is_100_characters() {
    let with_id = |id: String| {
        test(
            track(json!({"message_id": {"@path": "$.properties.mid"}})),
            &added(json!({ "mid": id })),
        )
    };
    let ok = with_id("m".repeat(100));
    assert!(ok.accepted, "{ok:?}");
    // Characters, not bytes: 100 × "é" is 200 bytes.
    let ok = with_id("é".repeat(100));
    assert!(ok.accepted, "{ok:?}");

    let long = with_id("m".repeat(101));
    assert!(!long.accepted);
    assert_eq!(codes(&long), [(IssueCode::MessageIdTooLong, "/message_id")]);
    assert_eq!(
        long.issues[0].message,
        "the messageId has 101 characters; the Tracking API keeps at most 100"
    );
    assert_eq!(long.event.unwrap()["messageId"], "m".repeat(101));
    assert_eq!(long.message_id, Some("m".repeat(101)));
}

#[test]
fn timestamps_must_be_rfc3339() {
    let with_ts = |ts: Value| {
        test(
            track(json!({"timestamp": {"@path": "$.properties.ts"}})),
            &added(json!({ "ts": ts })),
        )
    };
    for ok in [
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00.123+02:00",
        "2024-05-01T12:00:00.000Z",
        "2024-02-29T23:59:59-05:30",
    ] {
        let got = with_ts(json!(ok));
        assert!(got.accepted, "{ok}: {got:?}");
        assert_eq!(got.event.unwrap()["timestamp"], ok);
    }
    // Warehouse forms (a date alone, a naive date-time, epoch numbers) are normalised (D8: see
    // tests/engine/timestamps.rs); what is none of them stays rejected.
    for bad in [
        json!("2024-05-01 12:00"),
        json!("not a date"),
        json!("2023-02-29T00:00:00Z"),
        json!("2023-02-29"),
        json!(true),
    ] {
        let got = with_ts(bad.clone());
        assert!(!got.accepted, "{bad}");
        assert_eq!(
            codes(&got),
            [(IssueCode::InvalidTimestamp, "/timestamp")],
            "{bad}"
        );
        // The event is shown with the timestamp as coerced.
        let shown = got.event.unwrap();
        let want = match &bad {
            Value::Bool(b) => Value::String(b.to_string()),
            other => other.clone(),
        };
        assert_eq!(shown["timestamp"], want);
    }
    // No timestamp mapped: nothing to check.
    let got = with_ts(json!(null));
    assert!(got.accepted && got.event.unwrap().get("timestamp").is_none());
}

#[test]
fn all_acceptance_issues_are_reported_together() {
    let base = padded(0).size_bytes.unwrap();
    let got = test(
        track(json!({
            "message_id": {"@path": "$.properties.mid"},
            "timestamp": {"@path": "$.properties.when"},
            "properties": {"pad": {"@path": "$.properties.pad"}},
        })),
        &added(
            json!({"mid": "m".repeat(101), "when": "yesterday", "pad": "x".repeat(32_768 - base)}),
        ),
    );
    assert_eq!(
        codes(&got),
        [
            (IssueCode::InvalidTimestamp, "/timestamp"),
            (IssueCode::EventTooLarge, ""),
            (IssueCode::MessageIdTooLong, "/message_id"),
        ]
    );
    assert!(got.event.is_some());
}

// === triggers ===

#[test]
fn named_triggers_against_each_op() {
    let ops = ["added", "updated", "deleted"];
    let table = [
        ("added", [true, false, false]),
        ("updated", [false, true, false]),
        ("added_or_updated", [true, true, false]),
        ("deleted", [false, false, true]),
    ];
    for (trigger, fires) in table {
        let m = compile(json!({
            "action": "track",
            "trigger": trigger,
            "fields": {"event_name": {"@path": "$.event"}, "user_id": "u", "message_id": "m"},
        }));
        for (op, fires) in ops.into_iter().zip(fires) {
            let got = m.test(&row(json!({"op": op, "columns": {"a": 1}})));
            if fires {
                assert!(got.accepted && !got.skipped, "{trigger}/{op}: {got:?}");
                let event = got.event.unwrap();
                let envelope_event = match op {
                    "added" => "new",
                    other => other,
                };
                assert_eq!(event["event"], envelope_event);
            } else {
                let skipped = TestResult {
                    accepted: false,
                    skipped: true,
                    event: None,
                    event_json: None,
                    message_id: None,
                    size_bytes: None,
                    issues: vec![],
                    warnings: vec![],
                };
                assert_eq!(got, skipped, "{trigger}/{op}");
            }
        }
    }
    // No trigger: added_or_updated.
    let m = compile(json!({"action": "track", "fields": {"event_name": "E", "user_id": "u"}}));
    let fired: Vec<bool> = ops
        .iter()
        .map(|op| !m.test(&row(json!({"op": op, "columns": {}}))).skipped)
        .collect();
    assert_eq!(fired, [true, true, false]);
}

#[test]
fn fql_trigger_on_a_column() {
    let m = compile(json!({
        "action": "track",
        "trigger": {"fql": "properties.plan = \"pro\" and event != \"deleted\""},
        "fields": {"event_name": "Upgraded", "user_id": "u", "message_id": "m"},
    }));
    let fires =
        |op: &str, columns: Value| !m.test(&row(json!({"op": op, "columns": columns}))).skipped;
    assert!(fires("added", json!({"plan": "pro"})));
    assert!(fires("updated", json!({"plan": "pro", "seats": 3})));
    assert!(!fires("deleted", json!({"plan": "pro"})));
    assert!(!fires("added", json!({"plan": "free"})));
    assert!(!fires("added", json!({"plan": "Pro"})), "case-sensitive");
    assert!(!fires("added", json!({})));
    assert!(!fires("added", json!({"plan": null})));

    // A missing column equals only null; strings never equal numbers.
    let m = compile(json!({
        "action": "track",
        "trigger": {"fql": "properties.churned = null or properties.seats = 3"},
        "fields": {"event_name": "E", "user_id": "u"},
    }));
    let fires = |columns: Value| {
        !m.test(&row(json!({"op": "updated", "columns": columns})))
            .skipped
    };
    assert!(fires(json!({})));
    assert!(fires(json!({"churned": null})));
    assert!(fires(json!({"churned": true, "seats": 3})));
    assert!(!fires(json!({"churned": true, "seats": "3"})));
    assert!(!fires(json!({"churned": false, "seats": 4})));
}

//! Each mapping-kit directive through the public API, with the expected events taken from
//! Segment's code (the oracle) unless a deviation (docs/SEGMENT_SPEC.md D1–D7) says otherwise;
//! then mapping validation: every violation listed with its pointer into the mapping document.

use serde_json::{Value, json};

use crate::common::engine::{
    added, pointers, render_properties, row, test, track_event, track_with_properties, violations,
};

/// `properties` mapped as given, rendered against `columns`: the whole event must be exactly the
/// fixed track event with `expected` as its properties.
fn check(properties: Value, columns: Value, expected: Value) {
    assert_eq!(
        render_properties(properties, columns),
        track_event(expected)
    );
}

/// The compact JSON text of the rendered `properties[key]`, to see key order.
fn text_of(properties: Value, columns: Value, key: &str) -> String {
    let event = render_properties(properties, columns);
    serde_json::to_string(&event["properties"][key]).unwrap()
}

#[test]
fn path() {
    check(
        json!({
            "nested": {"@path": "$.properties.a.b[1].c"},
            "index": {"@path": "$.properties.a.b[0]"},
            "dq": {"@path": "$.properties[\"my key\"]"},
            "sq": {"@path": "$.properties['my key']"},
            // Falsy values part-way answer themselves (`prev && prev[key]`).
            "zero": {"@path": "$.properties.zero.x"},
            "false": {"@path": "$.properties.f.x"},
            "empty": {"@path": "$.properties.e.x"},
            "null": {"@path": "$.properties.n.x"},
            // A truthy scalar has no such key, nor has a missing column: undefined, omitted.
            "true": {"@path": "$.properties.t.x"},
            "missing": {"@path": "$.properties.missing.x"},
            "out_of_range": {"@path": "$.properties.a.b[5]"},
            "length": {"@path": "$.properties.s.length"},
            "char": {"@path": "$.properties.s[1]"},
            "event": {"@path": "$.event"},
            "type": {"@path": "$.type"},
            // The path itself computed by a directive.
            "dynamic": {"@path": {"@template": "$.properties.{{properties.which}}"}},
            // Keys with dots cannot be reached (as in Segment's code).
            "dotted": {"@path": "$.properties['k.x']"},
        }),
        json!({
            "a": {"b": [{"c": 1}, {"c": "two"}]},
            "my key": "spaced",
            "zero": 0,
            "f": false,
            "e": "",
            "n": null,
            "t": true,
            "s": "héllo",
            "which": "zero",
            "k.x": "unreachable",
        }),
        json!({
            "nested": "two",
            "index": {"c": 1},
            "dq": "spaced",
            "sq": "spaced",
            "zero": 0,
            "false": false,
            "empty": "",
            "null": null,
            "length": 5,
            "char": "é",
            "event": "new",
            "type": "track",
            "dynamic": 0,
        }),
    );
}

#[test]
fn path_sees_the_envelope_ids() {
    let mapping = track_with_properties(json!({
        "segment_id": {"@path": "$.__segment_id"},
        "message_id": {"@path": "$.messageId"},
        "event": {"@path": "$.event"},
    }));
    let got = test(
        mapping.clone(),
        &row(json!({"id": 42, "op": "updated", "columns": {}, "message_id": "caller-1"})),
    );
    assert_eq!(
        got.event.unwrap(),
        track_event(json!({"segment_id": "42", "message_id": "caller-1", "event": "updated"}))
    );
    // Without a caller id, `$.messageId` is the derived id (D5); without a row id there is no
    // `$.__segment_id`.
    let got = test(mapping, &row(json!({"op": "added", "columns": {}})));
    let props = &got.event.as_ref().unwrap()["properties"];
    let derived = props["message_id"].as_str().unwrap();
    assert!(
        derived.starts_with("sc2-") && derived.len() == 36,
        "{derived}"
    );
    assert_eq!(props.get("segment_id"), None);
    assert_eq!(props["event"], "new");
}

#[test]
fn path_to_the_whole_envelope() {
    let got = test(
        track_with_properties(json!({"env": {"@path": "$."}})),
        &row(json!({"id": "r-1", "op": "updated", "columns": {"a": 1}, "message_id": "x"})),
    );
    assert_eq!(
        got.event.unwrap()["properties"]["env"],
        json!({
            "type": "track",
            "event": "updated",
            "messageId": "x",
            "properties": {"a": 1},
            "__segment_id": "r-1",
        })
    );
}

#[test]
fn template() {
    check(
        json!({
            "mixed": {"@template": concat!(
                "{{properties.name}} has {{ properties.n }} items, ",
                "{{properties.missing}}|{{properties.nul}}|{{properties.b}}"
            )},
            "triple": {"@template": "{{{properties.name}}}"},
            "plain": {"@template": "no placeholders"},
            "big": {"@template": "{{properties.big}}"},
            // Placeholders are `get` paths: no `$.` removal.
            "dollar": {"@template": "{{$.properties.name}}"},
            "unclosed": {"@template": "{{properties.name"},
        }),
        json!({"name": "Ann", "n": 1.50, "nul": null, "b": true, "big": 1e21}),
        json!({
            "mixed": "Ann has 1.5 items, ||true",
            "triple": "Ann",
            "plain": "no placeholders",
            "big": "1e+21",
            "dollar": "",
            "unclosed": "{{properties.name",
        }),
    );
}

/// D4 + D7: objects and arrays render as their compact JSON text, keys in their original order
/// (Segment's code gives `[object Object]` and `1,x`).
#[test]
fn template_renders_objects_and_arrays_as_json_text_d4() {
    check(
        json!({
            "o": {"@template": "o={{properties.obj}} a={{properties.arr}}"},
            "whole": {"@template": "{{properties}}"},
        }),
        json!({"obj": {"k": "v", "z": [1, 2.0], "a": null}, "arr": [1, "x"]}),
        json!({
            "o": r#"o={"k":"v","z":[1,2],"a":null} a=[1,"x"]"#,
            "whole": r#"{"obj":{"k":"v","z":[1,2],"a":null},"arr":[1,"x"]}"#,
        }),
    );
}

#[test]
fn literal() {
    check(
        json!({
            "nested": {"@literal": {
                "k": {"@path": "$.properties.name"},
                "arr": [1, {"@path": "$.properties.n"}, {"@path": "$.properties.missing"}],
                "gone": {"@path": "$.properties.missing"},
            }},
            "plain": {"@literal": "plain"},
            "null": {"@literal": null},
            "false": {"@literal": false},
            "raw_object": {"a": [{"@literal": 1}], "b": {"@path": "$.properties.n"}},
        }),
        json!({"name": "Ann", "n": 2}),
        json!({
            // An undefined array item is `null` (as `JSON.stringify([undefined])`).
            "nested": {"k": "Ann", "arr": [1, 2, null]},
            "plain": "plain",
            "null": null,
            "false": false,
            "raw_object": {"a": [1], "b": 2},
        }),
    );
}

#[test]
fn if_() {
    let exists = |col: &str, then: Value, otherwise: Option<Value>| {
        let mut args = json!({"exists": {"@path": format!("$.properties.{col}")}, "then": then});
        if let Some(o) = otherwise {
            args["else"] = o;
        }
        json!({ "@if": args })
    };
    let blank = |col: &str| {
        let test = json!({"@path": format!("$.properties.{col}")});
        json!({"@if": {"blank": test, "then": "yes", "else": "no"}})
    };
    check(
        json!({
            "e_value": exists("name", json!("yes"), Some(json!("no"))),
            "e_missing": exists("missing", json!("yes"), Some(json!("no"))),
            "e_null": exists("nul", json!("yes"), Some(json!("no"))),
            "e_empty": exists("empty", json!("yes"), Some(json!("no"))),
            "e_zero": exists("zero", json!("yes"), Some(json!("no"))),
            "b_empty": blank("empty"),
            "b_zero": blank("zero"),
            "b_false": blank("f"),
            "b_value": blank("name"),
            "b_space": blank("sp"),
            "b_empty_array": blank("emptyarr"),
            "b_null": blank("nul"),
            // A falsy `else` omits the key.
            "else_false": exists("missing", json!("yes"), Some(json!(false))),
            "else_zero": exists("missing", json!("yes"), Some(json!(0))),
            "else_empty": exists("missing", json!("yes"), Some(json!(""))),
            "no_else": exists("missing", json!("yes"), None),
            "no_then": {"@if": {"exists": {"@path": "$.properties.name"}, "else": "no"}},
            "then_directive": exists("name", json!({"@path": "$.properties.n"}), None),
            // A falsy `then` is still used.
            "then_false": exists("name", json!(false), None),
            "else_directive":
                exists("missing", json!("yes"), Some(json!({"@path": "$.properties.name"}))),
        }),
        json!({
            "name": "Ann", "n": 2, "nul": null, "empty": "", "zero": 0, "f": false, "sp": " ",
            "emptyarr": [],
        }),
        json!({
            "e_value": "yes",
            "e_missing": "no",
            "e_null": "no",
            "e_empty": "yes",
            "e_zero": "yes",
            "b_empty": "no",
            "b_zero": "no",
            "b_false": "no",
            "b_value": "yes",
            "b_space": "yes",
            "b_empty_array": "no",
            "b_null": "no",
            "then_directive": 2,
            "then_false": false,
            "else_directive": "Ann",
        }),
    );
}

#[test]
fn case() {
    check(
        json!({
            "upper": {"@case": {"operator": "upper", "value": {"@path": "$.properties.name"}}},
            "lower": {"@case": {"operator": "lower", "value": "MiXeD"}},
            "number": {"@case": {"operator": "upper", "value": {"@path": "$.properties.n"}}},
            "object": {"@case": {"operator": "lower", "value": {"@path": "$.properties.obj"}}},
            "missing": {"@case": {"operator": "upper", "value": {"@path": "$.properties.missing"}}},
            "falsy_value": {"@case": {"operator": "upper", "value": ""}},
            "unicode": {"@case": {"operator": "upper", "value": "straße"}},
        }),
        json!({"name": "Ann", "n": 2, "obj": {"A": 1}}),
        json!({
            "upper": "ANN",
            "lower": "mixed",
            "number": 2,
            "object": {"A": 1},
            "unicode": "STRASSE",
        }),
    );
}

#[test]
fn replace() {
    /// `@replace` of `pattern` by `replacement` in `value`, with more options from `extra`.
    fn rep(pattern: &str, replacement: &str, value: Value, extra: Value) -> Value {
        let mut args = json!({"pattern": pattern, "replacement": replacement, "value": value});
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        json!({ "@replace": args })
    }
    let col = |name: &str| json!({"@path": format!("$.properties.{name}")});
    let none = || json!({});
    check(
        json!({
            "global_default": rep("-", "_", col("sku"), none()),
            "first_only": rep("-", "_", col("sku"), json!({"global": false})),
            "ignorecase": rep("ab", "X", json!("aB-ab-AB"), json!({"ignorecase": true})),
            "case_sensitive": rep("ab", "X", json!("aB-ab-AB"), none()),
            "two_passes": rep("-", "_", col("sku"), json!({"pattern2": "A", "replacement2": "a"})),
            "match_ref": rep("B", "[$&]", col("sku"), none()),
            "dollar_forms": rep("B", "$$|$`|'$'", json!("ABC"), none()),
            // The pattern is literal, not a regular expression.
            "literal_dot": rep(".", "!", json!("a.b.c"), none()),
            "no_replacement": {"@replace": {"pattern": "-", "value": col("sku")}},
            // Numbers and booleans are stringified first (JavaScript formatting).
            "number": rep("5", "0", col("n"), none()),
            "big_number": rep("1", "2", col("big"), none()),
            "boolean": rep("rue", "RUE", col("t"), none()),
            // Anything else (a missing value, an object) gives "".
            "missing": rep("x", "y", col("missing"), none()),
            "object": rep("x", "y", col("obj"), none()),
        }),
        json!({"sku": "A-B-C", "n": 1.5, "big": 1e21, "t": true, "obj": {"x": 1}}),
        json!({
            "global_default": "A_B_C",
            "first_only": "A_B-C",
            "ignorecase": "X-X-X",
            "case_sensitive": "aB-X-AB",
            "two_passes": "a_B_C",
            "match_ref": "A-[B]-C",
            "dollar_forms": "A$|A|'CC",
            "literal_dot": "a!b!c",
            "no_replacement": "ABC",
            "number": "1.0",
            "big_number": "2e+22",
            "boolean": "tRUE",
            "missing": "",
            "object": "",
        }),
    );
}

#[test]
fn array_path() {
    check(
        json!({
            "no_shape": {"@arrayPath": ["$.properties.items"]},
            "shape": {"@arrayPath": ["$.properties.items",
                {"sku": {"@path": "$.id"}, "qty": {"@path": "$.n"}, "k": "const"}]},
            // An object root is wrapped into a one-item array.
            "object_root": {"@arrayPath": ["$.properties.one", {"sku": {"@path": "$.id"}}]},
            // A scalar root passes through; a missing one is undefined.
            "scalar_root": {"@arrayPath": ["$.properties.s", {"sku": {"@path": "$.id"}}]},
            "missing_root": {"@arrayPath": ["$.properties.missing", {"sku": {"@path": "$.id"}}]},
            // An empty shape does not shape.
            "empty_shape": {"@arrayPath": ["$.properties.items", {}]},
            "directive_root":
                {"@arrayPath": [{"@path": "$.properties.items"}, {"sku": {"@path": "id"}}]},
            "mixed_items": {"@arrayPath": ["$.properties.mixed", {"v": {"@path": "$.id"}}]},
        }),
        json!({
            "items": [{"id": "a", "n": 1}, {"id": "b"}],
            "one": {"id": "solo"},
            "s": "str",
            "mixed": [{"id": 1}, 5, null],
        }),
        json!({
            "no_shape": [{"id": "a", "n": 1}, {"id": "b"}],
            "shape": [{"sku": "a", "qty": 1, "k": "const"}, {"sku": "b", "k": "const"}],
            "object_root": [{"sku": "solo"}],
            "scalar_root": "str",
            "empty_shape": [{"id": "a", "n": 1}, {"id": "b"}],
            "directive_root": [{"sku": "a"}, {"sku": "b"}],
            "mixed_items": [{"v": 1}, {}, {"v": null}],
        }),
    );
}

#[test]
fn json() {
    let columns = json!({
        "obj": {"z": 1.0, "a": [1e21, 0.1, -0.0, "é\n"], "m": {"y": null, "b": true}},
        "s": "q\"x",
        "n": 2.50,
        "js": "{\"b\":1,\"a\":[true,null]}",
        "bad": "{not json",
        "nul": null,
    });
    let enc = |col: &str| {
        let path = format!("$.properties.{col}");
        json!({"@json": {"mode": "encode", "value": {"@path": path}}})
    };
    let dec = |value: Value| json!({"@json": {"mode": "decode", "value": value}});
    check(
        json!({
            "encode_object": enc("obj"),
            "encode_string": enc("s"),
            "encode_number": enc("n"),
            "encode_null": enc("nul"),
            "encode_missing": enc("missing"),
            "decode": dec(json!({"@path": "$.properties.js"})),
            "decode_invalid": dec(json!({"@path": "$.properties.bad"})),
            "decode_number": dec(json!({"@path": "$.properties.n"})),
            "decode_literal": dec(json!("123")),
            // Validation is case-insensitive, the runtime is not: nothing comes out.
            "capitalised": {"@json": {"mode": "Encode", "value": {"@path": "$.properties.obj"}}},
        }),
        columns,
        json!({
            // Key order kept, numbers as JavaScript prints them.
            "encode_object": r#"{"z":1,"a":[1e+21,0.1,0,"é\n"],"m":{"y":null,"b":true}}"#,
            "encode_string": r#""q\"x""#,
            "encode_number": "2.5",
            "encode_null": "null",
            "decode": {"b": 1, "a": [true, null]},
            "decode_invalid": "{not json",
            "decode_number": 2.5,
            "decode_literal": 123,
        }),
    );
}

#[test]
fn json_decode_keeps_key_order() {
    let text = text_of(
        json!({"d": {"@json": {"mode": "decode", "value": {"@path": "$.properties.js"}}}}),
        json!({"js": "{\"z\":1,\"a\":2,\"m\":3}"}),
        "d",
    );
    assert_eq!(text, r#"{"z":1,"a":2,"m":3}"#);
}

#[test]
fn flatten() {
    let nested = json!({"@path": "$.properties.nested"});
    check(
        json!({
            "dot": {"@flatten": {"value": nested, "separator": "."}},
            "omit_arrays": {"@flatten": {"value": nested, "separator": "__", "omitArrays": true}},
            "string": {"@flatten": {"value": {"@path": "$.properties.s"}, "separator": "."}},
            "missing": {"@flatten": {"value": {"@path": "$.properties.missing"}, "separator": "."}},
            "array": {"@flatten": {"value": {"@path": "$.properties.arr"}, "separator": "-"}},
        }),
        json!({
            "nested": {"p": {"q": 1, "r": {"s": "deep"}}, "arr": [5, {"k": 6}], "e": {}},
            "s": "str",
            "arr": [1, [2, 3]],
        }),
        json!({
            "dot": {"p.q": 1, "p.r.s": "deep", "arr.0": 5, "arr.1.k": 6},
            "omit_arrays": {"p__q": 1, "p__r__s": "deep", "arr": [5, {"k": 6}]},
            "string": {"": "str"},
            "missing": {},
            "array": {"0": 1, "1-0": 2, "1-1": 3},
        }),
    );
    // Keys come out in the input's order.
    let text = text_of(
        json!({"f": {"@flatten": {"value": {"@path": "$.properties.o"}, "separator": "."}}}),
        json!({"o": {"z": {"b": 1, "a": 2}, "m": 3}}),
        "f",
    );
    assert_eq!(text, r#"{"z.b":1,"z.a":2,"m":3}"#);
}

#[test]
fn merge() {
    let objects = json!([{"a": 1, "b": 1}, {"@path": "$.properties.o"}]);
    check(
        json!({
            "right": {"@merge": {"direction": "right", "objects": objects}},
            "left": {"@merge": {"direction": "left", "objects": objects}},
            "skips_missing": {"@merge": {"direction": "right", "objects": [
                {"@path": "$.properties.o"},
                {"@path": "$.properties.missing"},
                {"z": {"@path": "$.properties.s"}},
            ]}},
        }),
        json!({"o": {"b": 2, "c": 3}, "s": "str"}),
        json!({
            "right": {"a": 1, "b": 2, "c": 3},
            "left": {"b": 1, "c": 3, "a": 1},
            "skips_missing": {"b": 2, "c": 3, "z": "str"},
        }),
    );
    // `left` assigns in reverse: the first object's values win, keys in assignment order.
    let text = text_of(
        json!({"m": {"@merge": {"direction": "left", "objects": objects}}}),
        json!({"o": {"b": 2, "c": 3}}),
        "m",
    );
    assert_eq!(text, r#"{"b":1,"c":3,"a":1}"#);
}

#[test]
fn transform() {
    check(
        json!({
            "t": {"@transform": {
                "apply": {"name": {"@path": "$.properties.s"}, "n": {"@path": "$.properties.o.b"}},
                "mapping": {"label": {"@template": "{{name}}#{{n}}"}, "raw": {"@path": "$.n"},
                            "gone": {"@path": "$.properties.s"}},
            }},
        }),
        json!({"s": "str", "o": {"b": 2}}),
        // Paths in `mapping` are relative to `apply`'s result: `$.properties` is not there.
        json!({"t": {"label": "str#2", "raw": 2}}),
    );
}

/// `@liquid` (the recorded Liquid cases are in src/mapping/liquid.rs); expected from the oracle.
#[test]
fn liquid() {
    check(
        json!({
            "greeting": {"@liquid": "{% if properties.vip %}Dear {{ properties.first | capitalize }}\
                {% else %}Hi {{ properties.first }}{% endif %} ({{ event }})"},
            "missing": {"@liquid": "[{{ properties.nope }}]"},
            "math": {"@liquid": "{{ properties.n | plus: 1 }}"},
        }),
        json!({"first": "ada", "vip": true, "n": "41"}),
        json!({"greeting": "Dear Ada (new)", "missing": "[]", "math": "42"}),
    );
    // A disabled tag is a mapping violation at the directive.
    assert_eq!(
        violations(track_with_properties(
            json!({"x": {"@liquid": "{% for i in a %}{% endfor %}"}})
        )),
        [(
            "/fields/properties/x/@liquid".to_owned(),
            "tag \"for\" is disabled".to_owned()
        )]
    );
}

/// Segment's output for the Liquid filters and tags on a warehouse row
/// (tests/fixtures/liquid_filter_cases.json, recorded by liquid_filter_record.js), through a
/// whole mapping: the row's columns as `properties`, the template in a field.
#[test]
fn liquid_filters_on_a_warehouse_row_match_segment() {
    const CASES: &str = include_str!("../fixtures/liquid_filter_cases.json");
    let cases: Vec<Value> = serde_json::from_str(CASES).unwrap();
    let mut checked = 0;
    for case in &cases {
        let template = case["template"].as_str().unwrap();
        let Some(expected) = case["expected"].as_str() else {
            continue;
        };
        // An empty result drops the field; a template on other roots needs the event.
        if expected.is_empty()
            || template.contains("{{ event")
            // A root-level column (a counter's start) is not part of this envelope.
            || case["payload"].as_object().is_some_and(|p| p.len() > 4)
        {
            continue;
        }
        let event = render_properties(
            json!({"x": {"@liquid": template}}),
            case["payload"]["properties"].clone(),
        );
        assert_eq!(event["properties"]["x"], expected, "{template}");
        checked += 1;
    }
    assert!(checked >= 140, "only {checked} cases");
}

#[test]
fn exclude_when_null() {
    check(
        json!({
            "null": {"@excludeWhenNull": {"@path": "$.properties.nul"}},
            // Null keys removed recursively in objects, not inside arrays.
            "object": {"@excludeWhenNull": {"@path": "$.properties.withnull"}},
            "value": {"@excludeWhenNull": {"@path": "$.properties.s"}},
            "raw_object": {"@excludeWhenNull": {
                "keep": {"@path": "$.properties.s"},
                "drop": {"@path": "$.properties.nul"},
            }},
        }),
        json!({
            "s": "str",
            "nul": null,
            "withnull": {"a": null, "b": {"c": null, "d": 1}, "l": [null, {"x": null}]},
        }),
        json!({
            "object": {"b": {"d": 1}, "l": [null, {"x": null}]},
            "value": "str",
            "raw_object": {"keep": "str"},
        }),
    );
}

#[test]
fn directives_feed_root_fields() {
    // A directive's result is then cleaned and coerced per the field like any value.
    let got = test(
        json!({"action": "track", "fields": {
            "event_name": {"@template": "{{properties.kind}} {{properties.verb}}"},
            "user_id": {"@case": {"operator": "lower", "value": {"@path": "$.properties.uid"}}},
            "anonymous_id": {"@replace":
                {"pattern": "x", "replacement": "y", "value": {"@path": "$.properties.nope"}}},
            "message_id": {"@json": {"mode": "encode", "value": {"@path": "$.properties.n"}}},
            "properties": {"@merge": {"direction": "right", "objects": [{"a": 1}]}},
        }}),
        &added(json!({"kind": "Order", "verb": "Shipped", "uid": "USER-1", "n": 7})),
    );
    assert!(got.accepted, "{got:?}");
    assert_eq!(
        got.event.unwrap(),
        json!({
            "userId": "user-1",
            "event": "Order Shipped",
            "messageId": "7",
            "context": {"traits": {}, "consent": {}},
            "properties": {"a": 1},
            "type": "track",
        })
    );
}

// === found by differential runs against Segment's code; expectations from it ===

/// Segment's `@merge` is `Object.assign`: a later object's key that resolves to `undefined` is
/// copied as `undefined` and so removes an earlier value (for `left`, the first object is the
/// later one).
#[test]
fn merge_undefined_in_a_later_object_removes_the_key() {
    let missing = json!({"@path": "$.properties.missing"});
    check(
        json!({
            "right": {"@merge": {"direction": "right", "objects": [
                {"k": "first", "j": 1},
                {"k": missing},
            ]}},
            "left": {"@merge": {"direction": "left", "objects": [
                {"k": missing},
                {"k": "second"},
            ]}},
        }),
        json!({}),
        json!({"right": {"j": 1}, "left": {}}),
    );
}

/// In Segment a raw array keeps an `undefined` item as `undefined` until the event is
/// serialised (where it becomes `null`), so `@flatten` and `@merge` (`Object.assign`) of that
/// array omit the item's key.
#[test]
fn undefined_array_items_are_omitted_by_flatten_and_merge() {
    let arr = json!([1, {"@path": "$.properties.missing"}]);
    check(
        json!({
            "flat": {"@flatten": {"value": {"@literal": {"y": arr}}, "separator": "_"}},
            "merged": {"@merge": {"direction": "right", "objects": [{"@literal": arr}]}},
            // Unaffected: serialised, the item is null, in the event and in JSON text.
            "raw": arr,
            "encoded": {"@json": {"mode": "encode", "value": arr}},
        }),
        json!({}),
        json!({
            "flat": {"y_0": 1},
            "merged": {"0": 1},
            "raw": [1, null],
            "encoded": "[1,null]",
        }),
    );
}

/// Segment's `validate` does not look inside raw arrays, nor inside raw objects given as a
/// directive's argument, and its runtime then runs whatever it finds there. We validate every
/// directive wherever it stands (a deliberate difference, README "Deviations"): such a mapping
/// is rejected with the offending argument's pointer instead of rendering differently by place.
#[test]
fn directives_are_validated_wherever_they_stand() {
    assert_eq!(
        pointers(track_with_properties(json!({
            "a": [{"@replace": {"pattern": "a", "value": 5}}],
            "l": {"@literal": {"k": {"@case": {"operator": "upper", "value": ["a"]}}}},
        }))),
        [
            "/fields/properties/a/0/@replace/value",
            "/fields/properties/l/@literal/k/@case/value",
        ]
    );
}

// === mapping validation ===

fn track(fields: Value) -> Value {
    json!({"action": "track", "fields": fields})
}

#[test]
fn invalid_action() {
    assert_eq!(
        violations(json!({"action": "alias", "fields": {}})),
        [(
            "/action".to_owned(),
            "\"alias\" is not an action (track, page, screen, identify or group)".to_owned()
        )]
    );
    // Without an action, the field keys cannot be checked against one; the action and the
    // missing fields are still both reported.
    assert_eq!(
        violations(json!({"fields": {"user_id": "u"}})),
        [(
            "/action".to_owned(),
            "is required (track, page, screen, identify or group)".to_owned()
        )]
    );
    assert_eq!(
        pointers(json!({"action": "track"})),
        ["/fields"],
        "fields is required"
    );
}

#[test]
fn field_keys_per_action() {
    let v = violations(json!({"action": "identify", "fields": {
        "user_id": "u",
        "event_name": "E",
        "properties": {},
        "page_name": "p",
        "not_a_field": 1,
        // Only a @transform may be the root directive (tests/engine/hidden_keys.rs).
        "__segment_internal_directive": {"@path": "$."},
        // Accepted and ignored (Segment's runtime strips them).
        "__segment_internal_sync_mode": "upsert",
        "__segment_internal_matching_key": "id",
    }}));
    assert_eq!(
        v,
        [
            ("/fields/event_name", "is not a field of identify"),
            ("/fields/properties", "is not a field of identify"),
            ("/fields/page_name", "is not a field of identify"),
            ("/fields/not_a_field", "is not a field key"),
            (
                "/fields/__segment_internal_directive",
                "should be a @transform directive ({\"@transform\": {\"apply\": ...}}), the one \
                 directive that resolves the other fields against its result, but it is \"@path\""
            ),
        ]
        .map(|(p, m)| (p.to_owned(), m.to_owned()))
    );
    // Every action's own keys are accepted.
    for (action, key) in [
        ("track", "event_name"),
        ("page", "page_name"),
        ("page", "page_category"),
        ("screen", "screen_name"),
        ("identify", "address"),
        ("group", "traits"),
        ("page", "properties"),
    ] {
        let mut fields = json!({"user_id": "u", key: {"@path": "$.properties.x"}});
        if action == "track" {
            fields["event_name"] = json!("E");
        }
        if action == "group" {
            fields["group_id"] = json!("g");
        }
        let m = json!({"action": action, "fields": fields});
        assert!(
            segment_connections::mapping::Mapping::compile(
                &crate::common::engine::doc(m),
                segment_connections::mapping::Identity::offline("t")
            )
            .is_ok(),
            "{action}/{key}"
        );
    }
    // A pointer escapes `/` and `~` (RFC 6901).
    assert_eq!(
        pointers(track(json!({"event_name": "E", "a/b~c": 1}))),
        ["/fields/a~1b~0c"]
    );
}

#[test]
fn malformed_directives() {
    let v = violations(track(json!({
        "event_name": "E",
        "user_id": {"@replace": {"pattern": "abcdefghijkl", "replacement": "x", "value": "v"}},
        "anonymous_id": {"@path": "a", "@template": "b"},
        "properties": {
            "mixed": {"@path": "x", "k": 1},
            "unknown": {"@nope": 1},
            "json_mode": {"@json": {"mode": "bogus", "value": "x"}},
            "merge_direction": {"@merge": {"direction": "up", "objects": []}},
            "if_neither": {"@if": {"then": "x"}},
            "long_replacement":
                {"@replace": {"pattern": "a", "replacement": "abcdefghijk", "value": "v"}},
            "empty_pattern": {"@replace": {"pattern": "", "value": "v"}},
            "no_pattern": {"@replace": {"value": "v"}},
            "path_type": {"@path": 5},
            "nested": {"@literal": {"deep": [{"@case": {"operator": "title", "value": "x"}}]}},
            // `_metadata` beside the directive is allowed.
            "metadata_ok": {"@path": "$.properties.a", "_metadata": {"label": "A"}},
        },
    })));
    let expected = [
        (
            "/fields/user_id/@replace/pattern",
            "should be a string of length 10 or less",
        ),
        (
            "/fields/anonymous_id",
            "should only have one @-prefixed key but it has 2 keys",
        ),
        (
            "/fields/properties/mixed",
            "should only have one @-prefixed key but it has 2 keys",
        ),
        (
            "/fields/properties/unknown",
            "has an invalid directive: @nope",
        ),
        (
            "/fields/properties/json_mode/@json/mode",
            "should be one of encode, decode but it is \"bogus\"",
        ),
        (
            "/fields/properties/merge_direction/@merge/direction",
            "should be one of left, right but it is \"up\"",
        ),
        (
            "/fields/properties/if_neither/@if",
            "should have an \"exists\" key or a \"blank\" key but it has neither",
        ),
        (
            "/fields/properties/long_replacement/@replace/replacement",
            "should be a string of length 10 or less",
        ),
        (
            "/fields/properties/empty_pattern/@replace/pattern",
            "should be a string of length 1 or greater",
        ),
        (
            "/fields/properties/no_pattern/@replace",
            "should have field \"pattern\" but it doesn't",
        ),
        (
            "/fields/properties/path_type/@path",
            "should be a string or a mapping directive but it is a number",
        ),
        (
            "/fields/properties/nested/@literal/deep/0/@case/operator",
            "should be one of lower, upper but it is \"title\"",
        ),
    ]
    .map(|(p, m)| (p.to_owned(), m.to_owned()));
    assert_eq!(v, expected);
}

#[test]
fn required_fields_must_be_mapped() {
    assert_eq!(
        violations(track(json!({"user_id": "u"}))),
        [(
            "/fields/event_name".to_owned(),
            "is required for track but not mapped".to_owned()
        )]
    );
    assert_eq!(
        violations(json!({"action": "group", "fields": {"user_id": "u"}})),
        [(
            "/fields/group_id".to_owned(),
            "is required for group but not mapped".to_owned()
        )]
    );
    // Page, screen and identify require none.
    for action in ["page", "screen", "identify"] {
        crate::common::engine::compile(json!({"action": action, "fields": {"user_id": "u"}}));
    }
}

#[test]
fn triggers() {
    let v = violations(
        json!({"action": "track", "trigger": "inserted", "fields": {"event_name": "E"}}),
    );
    assert_eq!(
        v,
        [(
            "/trigger".to_owned(),
            concat!(
                "\"inserted\" is not a trigger ",
                "(added, updated, added_or_updated, deleted or {\"fql\": ...})"
            )
            .to_owned()
        )]
    );
    let v = violations(
        json!({"action": "track", "trigger": {"fql": "event = "}, "fields": {"event_name": "E"}}),
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].0, "/trigger/fql");
    assert!(
        v[0].1.starts_with("is not a valid subscription: "),
        "{}",
        v[0].1
    );
    // Every named trigger and a valid FQL compile.
    for t in [
        json!("added"),
        json!("updated"),
        json!("added_or_updated"),
        json!("deleted"),
        json!({"fql": "event = \"new\" and properties.plan != null"}),
    ] {
        crate::common::engine::compile(
            json!({"action": "track", "trigger": t, "fields": {"event_name": "E"}}),
        );
    }
}

#[test]
fn every_violation_is_listed_at_once() {
    let v = pointers(json!({
        "action": "group",
        "trigger": "sometimes",
        "fields": {
            "user_id": {"@json": {"mode": "encode"}},
            "event_name": "E",
            "traits": {"x": {"@flatten": {"value": "v", "separator": ""}}},
        }
    }));
    assert_eq!(
        v,
        [
            "/trigger",
            "/fields/user_id/@json",
            "/fields/event_name",
            "/fields/traits/x/@flatten/separator",
            "/fields/group_id",
        ]
    );
}

/// Directives nest at most 32 deep: the 33rd level is a violation at its own pointer, naming
/// the limit; 32 levels compile and render.
#[test]
fn directives_nest_at_most_32_deep() {
    let nested = |levels: usize| {
        let mut v = json!({"@path": "$.properties.q"});
        for _ in 1..levels {
            v = json!({"@case": {"operator": "upper", "value": v}});
        }
        v
    };
    let deepest = "/fields/properties/x".to_owned() + &"/@case/value".repeat(32);
    assert_eq!(
        violations(track_with_properties(json!({"x": nested(33)}))),
        [(
            deepest,
            "nests directives more than 32 deep (the limit)".to_owned()
        )]
    );
    // Side by side, directives do not add up.
    let wide: serde_json::Map<String, Value> =
        (0..40).map(|i| (format!("k{i}"), nested(32))).collect();
    let got = render_properties(Value::Object(wide), json!({"q": "q"}));
    assert_eq!(got["properties"]["k39"], "Q");
}

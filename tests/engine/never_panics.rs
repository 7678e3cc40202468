//! Random mapping documents (valid and junk field keys, nested directives from the whole set with
//! random arguments, raw JSON) against random rows (unicode, nulls, big numbers, nesting):
//! compiling and rendering never panic, and every event produced keeps the invariants of
//! `tests/common/fuzz_check.rs`.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value, json};

use crate::common::fuzz_check::{self, Outcome};

const FIELD_KEYS: &[&str] = &[
    "user_id",
    "anonymous_id",
    "timestamp",
    "event_name",
    "page_name",
    "page_category",
    "screen_name",
    "group_id",
    "application",
    "campaign_parameters",
    "device",
    "ip_address",
    "locale",
    "location",
    "network",
    "operating_system",
    "page",
    "screen",
    "user_agent",
    "timezone",
    "properties",
    "traits",
    "address",
    "message_id",
    "consent",
    // junk and Segment's hidden keys
    "not_a_field",
    "",
    "__segment_internal_directive",
    "__segment_internal_sync_mode",
    "enable_batching",
];

/// Sub-keys of declared objects, so object fields get some of their own keys.
const SUB_KEYS: &[&str] = &[
    "name",
    "version",
    "id",
    "advertising_id",
    "advertisingId",
    "adTracking_Enabled",
    "adTrackingEnabled",
    "latitude",
    "city",
    "wifi",
    "carrier",
    "title",
    "density",
    "postalCode",
    "categoryPreferences",
    "address",
];

const COLUMNS: &[&str] = &["a", "b", "c", "uid", "ts", "my key", "k.x", "é"];

const DIRECTIVES: &[&str] = &[
    "@path",
    "@template",
    "@literal",
    "@if",
    "@case",
    "@replace",
    "@arrayPath",
    "@json",
    "@flatten",
    "@merge",
    "@transform",
    "@excludeWhenNull",
    "@liquid",
    "@nope",
    "@",
];

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(vec![
            "", " ", "0", "1", "-0", "true", "false", "48.85", " 12 ", "0x1F", "1e3", "1e400",
            "Infinity", "north", "2024-05-01T12:00:00Z", "2024-05-01", "{\"a\":[1,{\"b\":null}]}",
            "{not json", "[1,2]", "null", "{{properties.a}}", "{{{properties.b}}}",
            "$.properties.a",
            "é😀\u{0}\u{1f}\"\\", "a-b-c", "ABC", "straße", "\u{2028}", "x"
        ])
        .prop_map(str::to_owned),
        2 => "\\PC{0,16}",
        1 => any::<String>(),
    ]
    .boxed()
}

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        select(vec![
            0.0,
            -0.0,
            1.0,
            1.5,
            0.1,
            1e21,
            1.5e-7,
            9_007_199_254_740_993.0,
            1e308,
            -1e-308
        ])
        .prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        select(vec![0i64, 1, 2, -1, 12, 98765]).prop_map(Value::from),
    ]
    .boxed()
}

fn key(pool: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(pool).prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

/// Any JSON: scalars, unicode, big numbers, nested arrays and objects.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(COLUMNS), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

fn path() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(vec![
            "$.properties.a", "$.properties.b", "$.properties.c", "$.properties.a.b",
            "$.properties.a[0]", "$.properties.a[0].b", "$.properties['my key']",
            "$.properties[\"k.x\"]", "$.properties.c.length", "$.properties", "$.event",
            "$.messageId", "$.__segment_id", "$.type", "$.", "", "a", "b.c", "$.properties.é",
            "$.properties.big",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

fn template() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(vec![
            "{{properties.a}}", "{{{properties.b}}}-{{properties.c}}", "x{{ properties.a }}y",
            "{{}}", "{{properties}}", "{{ }}", "{{{a}}}", "{{properties.a", "{{$.event}}",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

fn obj(entries: Vec<(&str, Value)>) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// Puts `v` under `key` only when present (random optional arguments).
fn with(mut o: Value, key: &str, v: Option<Value>) -> Value {
    if let Some(v) = v {
        o[key] = v;
    }
    o
}

/// A well-formed mapping value: raw JSON or directives nested in each other, each with arguments
/// that compile (the values they meet at render time are still random).
fn mapping_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        2 => json_value(),
        4 => path().prop_map(|p| json!({"@path": p})),
        2 => template().prop_map(|t| json!({"@template": t})),
    ];
    leaf.prop_recursive(4, 64, 4, |inner| {
        let opt = || prop::option::of(inner.clone());
        let opt_bool = || prop::option::of(any::<bool>().prop_map(Value::from));
        let truthy = prop_oneof![
            path().prop_map(|p| json!({"@path": p})),
            Just(json!("x")),
            Just(json!(1)),
        ];
        // `@case` and `@replace` take a string or a directive.
        let string_or_directive = prop_oneof![
            2 => path().prop_map(|p| json!({"@path": p})),
            1 => template().prop_map(|t| json!({"@template": t})),
            1 => text().prop_map(Value::from),
        ];
        prop_oneof![
            inner.clone().prop_map(|v| json!({"@literal": v})),
            inner.clone().prop_map(|v| json!({"@excludeWhenNull": v})),
            path().prop_map(|p| json!({"@path": {"@template": p}})),
            (
                select(vec!["exists", "blank"]),
                truthy.clone(),
                opt(),
                opt()
            )
                .prop_map(|(cond, test, then, otherwise)| {
                    let o = obj(vec![(cond, test)]);
                    json!({"@if": with(with(o, "then", then), "else", otherwise)})
                }),
            (select(vec!["lower", "upper"]), string_or_directive.clone())
                .prop_map(|(op, v)| json!({"@case": {"operator": op, "value": v}})),
            (
                "[-a-zA-Z.é$&]{1,10}",
                prop::option::of("[-_a-zA-Z$&'`]{0,10}"),
                string_or_directive,
                opt_bool(),
                opt_bool(),
                prop::option::of(("[-a-z]{1,3}", "[_A-Z$&]{0,3}")),
            )
                .prop_map(
                    |(pattern, replacement, value, global, ignorecase, second)| {
                        let o = json!({"pattern": pattern, "value": value});
                        let o = with(o, "replacement", replacement.map(Value::from));
                        let o = with(o, "global", global);
                        let o = with(o, "ignorecase", ignorecase);
                        let o = match second {
                            Some((p, r)) => with(
                                with(o, "pattern2", Some(p.into())),
                                "replacement2",
                                Some(r.into()),
                            ),
                            None => o,
                        };
                        json!({"@replace": o})
                    }
                ),
            (
                path(),
                prop::option::of(prop::collection::vec((key(COLUMNS), inner.clone()), 0..3)),
            )
                .prop_map(|(root, shape)| {
                    let mut args = vec![Value::from(root)];
                    args.extend(shape.map(|kv| Value::Object(kv.into_iter().collect())));
                    json!({"@arrayPath": args})
                }),
            (select(vec!["encode", "decode", "Encode"]), truthy)
                .prop_map(|(mode, v)| json!({"@json": {"mode": mode, "value": v}})),
            (select(vec![".", "__", "-", "é"]), inner.clone(), opt_bool()).prop_map(
                |(sep, v, omit)| {
                    let o = json!({"separator": sep, "value": v});
                    json!({"@flatten": with(o, "omitArrays", omit)})
                }
            ),
            (
                select(vec!["left", "right"]),
                prop::collection::vec(
                    prop_oneof![
                        path().prop_map(|p| json!({"@path": p})),
                        prop::collection::vec((key(COLUMNS), inner.clone()), 0..3)
                            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                    ],
                    0..4
                ),
            )
                .prop_map(|(d, objects)| json!({"@merge": {"direction": d, "objects": objects}})),
            (
                prop::collection::vec((key(COLUMNS), inner.clone()), 0..3),
                prop::collection::vec((key(COLUMNS), inner.clone()), 0..3),
            )
                .prop_map(|(apply, mapping)| {
                    let apply: Map<String, Value> = apply.into_iter().collect();
                    let mapping: Map<String, Value> = mapping.into_iter().collect();
                    json!({"@transform": {"apply": apply, "mapping": mapping}})
                }),
            // Raw objects and arrays with directives inside.
            prop::collection::vec((key(SUB_KEYS), inner.clone()), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            prop::collection::vec(inner, 0..4).prop_map(Value::Array),
        ]
    })
    .boxed()
}

/// Any mapping value: directives from the whole set nested in each other with random
/// arguments, malformed ones included (they must only be violations).
fn junk_value() -> BoxedStrategy<Value> {
    mapping_value()
        .prop_recursive(3, 32, 3, |inner| {
            let opt = || prop::option::of(inner.clone());
            prop_oneof![
                // Any directive name with any argument.
                (select(DIRECTIVES), inner.clone()).prop_map(|(d, arg)| obj(vec![(d, arg)])),
                // Two @ keys, or an @ key among plain keys.
                (
                    select(DIRECTIVES),
                    select(DIRECTIVES),
                    inner.clone(),
                    key(COLUMNS)
                )
                    .prop_map(|(d1, d2, arg, plain)| {
                        let mut o = obj(vec![(d1, arg.clone()), (d2, arg.clone())]);
                        o[plain] = arg;
                        o
                    }),
                (
                    select(vec!["exists", "blank", "then"]),
                    inner.clone(),
                    opt(),
                    opt()
                )
                    .prop_map(|(cond, test, then, otherwise)| {
                        let o = obj(vec![(cond, test)]);
                        json!({"@if": with(with(o, "then", then), "else", otherwise)})
                    }),
                (select(vec!["lower", "upper", "title"]), inner.clone())
                    .prop_map(|(op, v)| json!({"@case": {"operator": op, "value": v}})),
                ("[-a-zA-Z.é$&]{0,12}", "[-_a-zA-Z$&'`]{0,12}", inner.clone()).prop_map(
                    |(pattern, replacement, value)| {
                        let args = json!({"pattern": pattern, "replacement": replacement});
                        json!({"@replace": with(args, "value", Some(value))})
                    }
                ),
                (inner.clone(), opt()).prop_map(|(root, shape)| {
                    let mut args = vec![root];
                    args.extend(shape);
                    json!({"@arrayPath": args})
                }),
                (
                    select(vec!["encode", "decode", "DECODE", "bogus"]),
                    inner.clone()
                )
                    .prop_map(|(mode, v)| json!({"@json": {"mode": mode, "value": v}})),
                (select(vec![".", ""]), inner.clone())
                    .prop_map(|(sep, v)| json!({"@flatten": {"separator": sep, "value": v}})),
                (
                    select(vec!["left", "up"]),
                    prop::collection::vec(inner.clone(), 0..4)
                )
                    .prop_map(
                        |(d, objects)| json!({"@merge": {"direction": d, "objects": objects}})
                    ),
                (inner.clone(), inner.clone()).prop_map(
                    |(apply, mapping)| json!({"@transform": {"apply": apply, "mapping": mapping}})
                ),
                text().prop_map(|t| json!({"@liquid": t})),
                prop::collection::vec((key(SUB_KEYS), inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// The field keys an action has (docs/SEGMENT_SPEC.md §2).
fn keys_of(action: &str) -> Vec<&'static str> {
    let own: &[&str] = match action {
        "track" => &["event_name", "properties", "traits"],
        "page" => &["page_name", "page_category", "properties"],
        "screen" => &["screen_name", "properties"],
        "identify" => &["traits", "address"],
        "group" => &["traits"],
        _ => &[],
    };
    FIELD_KEYS[..25]
        .iter()
        .copied()
        .filter(|k| {
            !matches!(
                *k,
                "event_name"
                    | "page_name"
                    | "page_category"
                    | "screen_name"
                    | "properties"
                    | "traits"
                    | "address"
            ) || own.contains(k)
        })
        .collect()
}

/// A mapping document that compiles: an action, its own field keys, well-formed values, the
/// required fields mapped.
fn valid_doc() -> BoxedStrategy<Value> {
    select(vec!["track", "page", "screen", "identify", "group"])
        .prop_flat_map(|action| {
            let trigger = prop::option::of(prop_oneof![
                select(vec!["added", "updated", "added_or_updated", "deleted"])
                    .prop_map(Value::from),
                select(vec![
                    "event = \"new\"",
                    "properties.a = null or event != \"deleted\"",
                    "contains(properties.b, \"x\") or not (properties.c > 3)",
                    "match(properties.a, \"*\") or type = \"track\"",
                ])
                .prop_map(|f| json!({ "fql": f })),
            ]);
            let id_path = prop::option::weighted(
                0.9,
                select(vec![
                    "$.properties.uid",
                    "$.properties.uid",
                    "$.properties.uid",
                    "$.properties.a",
                    "$.__segment_id",
                    "$.messageId",
                ]),
            );
            let fields = prop::collection::vec((select(keys_of(action)), mapping_value()), 0..4);
            let required = prop_oneof![
                2 => template().prop_map(|t| json!({"@template": t})),
                1 => text().prop_map(Value::from),
                1 => mapping_value(),
            ];
            // Sometimes a root directive: the payload merged with a value, or a value alone
            // (the fields then see what it built); sometimes "Batch Data to Segment".
            let root = prop::option::weighted(
                0.15,
                (any::<bool>(), mapping_value()).prop_map(|(merged, v)| {
                    let apply = if merged {
                        json!({"@merge": {"direction": "right",
                                          "objects": [{"@path": "$."}, {"extra": v}]}})
                    } else {
                        json!({"properties": v, "uid": {"@path": "$.properties.uid"}})
                    };
                    json!({"@transform": {"apply": apply}})
                }),
            );
            let batching = prop::option::weighted(0.1, any::<bool>());
            (
                Just(action),
                trigger,
                id_path,
                required,
                fields,
                prop::option::of(text()),
                root,
                batching,
            )
        })
        .prop_map(
            |(action, trigger, id, required, fields, name, root, batching)| {
                let mut f = Map::new();
                if let Some(root) = root {
                    f.insert("__segment_internal_directive".into(), root);
                }
                if let Some(b) = batching {
                    f.insert("enable_batching".into(), b.into());
                }
                if let Some(id) = id {
                    f.insert("user_id".into(), json!({"@path": id}));
                }
                for (k, v) in fields {
                    f.insert(k.to_owned(), v);
                }
                match action {
                    "track" => f.insert("event_name".into(), required),
                    "group" => f.insert("group_id".into(), required),
                    _ => None,
                };
                let d = json!({"action": action, "fields": f});
                let d = with(d, "trigger", trigger);
                with(d, "name", name.map(Value::from))
            },
        )
        .boxed()
}

/// Any mapping document of docs/DESIGN.md's shape: junk actions, triggers, field keys and values.
fn junk_doc() -> BoxedStrategy<Value> {
    let action = prop::option::of(select(vec![
        "track", "page", "screen", "identify", "group", "alias",
    ]));
    let trigger = prop::option::of(prop_oneof![
        select(vec!["added", "deleted", "sometimes"]).prop_map(Value::from),
        select(vec!["event = ", "properties.a = \"x"]).prop_map(|f| json!({ "fql": f })),
        text().prop_map(|f| json!({ "fql": f })),
    ]);
    let fields = prop::collection::vec((select(FIELD_KEYS), junk_value()), 0..6);
    (action, trigger, fields)
        .prop_map(|(action, trigger, fields)| {
            let f: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let d = json!({"fields": f});
            let d = with(d, "action", action.map(Value::from));
            with(d, "trigger", trigger)
        })
        .boxed()
}

fn mapping_doc() -> BoxedStrategy<Value> {
    prop_oneof![3 => valid_doc(), 1 => junk_doc()].boxed()
}

fn row() -> BoxedStrategy<Value> {
    let id = prop::option::of(prop_oneof![text().prop_map(Value::from), number()]);
    let op = select(vec!["added", "updated", "deleted"]);
    let columns = prop::collection::vec((key(COLUMNS), json_value()), 0..8);
    // Most rows carry a usable user id, so most renders get past the identity check.
    let uid = prop::option::weighted(0.8, "[a-z0-9-]{1,12}");
    // Now and then a column big enough to make the event too large.
    let big = prop::option::weighted(0.05, 30_000..40_000usize);
    let message_id = prop::option::of(text());
    (id, op, columns, uid, big, message_id)
        .prop_map(|(id, op, columns, uid, big, message_id)| {
            let mut columns: Map<String, Value> = columns.into_iter().collect();
            if let Some(uid) = uid {
                columns.insert("uid".into(), uid.into());
            }
            if let Some(n) = big {
                columns.insert("big".into(), "x".repeat(n).into());
            }
            let r = json!({"op": op, "columns": columns});
            let r = with(r, "id", id);
            with(r, "message_id", message_id.map(Value::from))
        })
        .boxed()
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compile_and_render_never_panic(doc in mapping_doc(), row in row()) {
        let outcome = fuzz_check::check(&bytes(&doc), &bytes(&row));
        // The generators only make mapping documents and rows.
        prop_assert!(!matches!(outcome, Outcome::NotAMapping | Outcome::NotARow), "{outcome:?}");
    }

    #[test]
    fn arbitrary_json_as_either_file_never_panics(a in json_value(), b in json_value()) {
        fuzz_check::check(&bytes(&a), &bytes(&b));
        fuzz_check::check(&bytes(&json!({"action": "track", "fields": a})), &bytes(&b));
    }
}

/// The generators reach every outcome, so the properties above are not vacuous.
#[test]
fn generators_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;

    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<Outcome, usize> = BTreeMap::new();
    let strategy = (mapping_doc(), row());
    for _ in 0..400 {
        let (doc, row) = strategy.new_tree(&mut runner).unwrap().current();
        *seen
            .entry(fuzz_check::check(&bytes(&doc), &bytes(&row)))
            .or_default() += 1;
    }
    for outcome in [
        Outcome::InvalidMapping,
        Outcome::Skipped,
        Outcome::NoEvent,
        Outcome::Rejected,
        Outcome::Accepted,
    ] {
        assert!(
            seen.contains_key(&outcome),
            "{outcome:?} never reached: {seen:?}"
        );
    }
}

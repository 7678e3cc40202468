use super::ranges::MAX_RANGE_ITEMS;
use super::*;
use serde_json::json;

/// Segment's own output for each case, recorded by `tests/fixtures/liquid_record.js`.
const CASES: &str = include_str!("../../../tests/fixtures/liquid_cases.json");

/// Cases where the `liquid` crate cannot be made to behave like LiquidJS.
const KNOWN_DIFFERENCES: [(&str, &str); 3] = [
    (
        "{% if false %}{{ properties.tags | sort }}{% endif %}",
        "a disabled filter is rejected when the template is parsed; LiquidJS only fails \
         when the filter runs",
    ),
    (
        "{{ properties.nested }}",
        "an object prints its keys and values where LiquidJS prints [object Object]",
    ),
    (
        "{{ big }}",
        "floats print without an exponent (1000000000000000000000, not 1e+21)",
    ),
];

fn evaluate(template: &str, payload: &Json) -> Result<String, LiquidError> {
    LiquidTemplate::parse(template)?.render(payload)
}

#[test]
fn matches_segment_on_recorded_cases() {
    check_recorded(CASES, 60, &KNOWN_DIFFERENCES);
}

/// LiquidJS's output for the filters of `filters/`, recorded by
/// `tests/fixtures/liquid_filter_record.js`.
const FILTER_CASES: &str = include_str!("../../../tests/fixtures/liquid_filter_cases.json");

#[test]
fn matches_segment_on_recorded_filter_cases() {
    check_recorded(FILTER_CASES, 140, &KNOWN_FILTER_DIFFERENCES);
}

/// Recorded filter cases the port does not match yet.
const KNOWN_FILTER_DIFFERENCES: [(&str, &str); 0] = [];

/// Renders every recorded case and compares with Segment's output; `known` lists the cases
/// expected to differ.
fn check_recorded(cases: &str, at_least: usize, known: &[(&str, &str)]) {
    let cases: Vec<Json> = serde_json::from_str(cases).unwrap();
    assert!(cases.len() >= at_least, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let template = case["template"].as_str().unwrap();
        let actual = evaluate(template, &case["payload"]);
        let matches = match &case["expected"] {
            Json::String(expected) => actual.as_ref() == Ok(expected),
            _ => actual.is_err(),
        };
        let known = known.iter().any(|(t, _)| *t == template);
        if matches == known {
            failures.push(format!(
                "{template:?}: expected {}, got {actual:?}{}",
                case["expected"],
                if known {
                    " (listed as a known difference)"
                } else {
                    ""
                }
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn known_differences_are_recorded_cases() {
    let cases: Vec<Json> = serde_json::from_str(CASES).unwrap();
    for (template, _) in KNOWN_DIFFERENCES {
        assert!(
            cases.iter().any(|c| c["template"] == template),
            "{template}"
        );
    }
}

#[test]
fn template_length_counts_utf16_units() {
    let payload = json!({});
    assert_eq!(evaluate(&"x".repeat(1000), &payload).unwrap().len(), 1000);
    let err = LiquidTemplate::parse(&"x".repeat(1001)).unwrap_err();
    assert_eq!(
        err.0,
        "liquid template values are limited to 1000 characters"
    );
    // An astral character is two UTF-16 units, as in JavaScript.
    assert!(LiquidTemplate::parse(&"😀".repeat(500)).is_ok());
    assert!(LiquidTemplate::parse(&"😀".repeat(501)).is_err());
    assert!(LiquidTemplate::parse(&"é".repeat(1000)).is_ok());
    assert_eq!(evaluate("", &payload).unwrap(), "");
}

#[test]
fn disabled_tags_and_filters_are_named() {
    for tag in DISABLED_TAGS {
        let err = LiquidTemplate::parse(&format!("{{% {tag} x %}}")).unwrap_err();
        assert_eq!(err.0, format!("tag \"{tag}\" is disabled"));
    }
    for filter in DISABLED_FILTERS {
        let err = LiquidTemplate::parse(&format!("{{{{ x | {filter} }}}}")).unwrap_err();
        assert_eq!(err.0, format!("filter \"{filter}\" is disabled"));
    }
    // Inside a comment or a raw block they are text, as in LiquidJS.
    let payload = json!({});
    assert_eq!(
        evaluate("{% comment %}{% for %}{% endcomment %}a", &payload).unwrap(),
        "a"
    );
    assert_eq!(
        evaluate("{% raw %}{% for %}{% endraw %}", &payload).unwrap(),
        "{% for %}"
    );
}

#[test]
fn unsupported_filters_are_errors_and_unknown_filters_are_ignored() {
    // Every LiquidJS filter Segment allows is implemented now.
    assert!(UNSUPPORTED_FILTERS.is_empty());
    let drawn = evaluate("{{ x | sample }}", &json!({"x": ["a", "b"]})).unwrap();
    assert!(drawn == "a" || drawn == "b", "{drawn}");
    assert_eq!(
        evaluate("{{ x | frobnicate: 1 }}", &json!({"x": "a"})).unwrap(),
        "a"
    );
}

#[test]
fn every_engine_filter_is_a_liquidjs_filter() {
    // The LiquidJS 10 filter set; anything the engine has beyond it would change meaning.
    const LIQUIDJS: &str = "escape xml_escape escape_once newline_to_br strip_html abs \
        at_least at_most ceil divided_by floor minus plus modulo times round url_decode \
        url_encode cgi_escape uri_escape slugify join last first reverse sort sort_natural \
        size map sum compact concat push unshift pop shift slice where reject where_exp \
        reject_exp group_by group_by_exp has has_exp find_index find_index_exp find find_exp \
        uniq sample date date_to_xmlschema date_to_rfc822 date_to_string date_to_long_string \
        append prepend lstrip downcase upcase remove remove_first remove_last rstrip split \
        strip strip_newlines squish capitalize replace replace_first replace_last truncate \
        truncatewords normalize_whitespace number_of_words array_to_sentence_string \
        base64_encode base64_decode sha256 hmac_sha256 default raw jsonify to_integer json \
        inspect";
    let liquidjs: Vec<&str> = LIQUIDJS.split_whitespace().collect();
    for name in engine().unwrap().filters.keys() {
        // The translation's own filters (a range's evaluation), which templates cannot call.
        if name.starts_with("__lq") {
            continue;
        }
        assert!(liquidjs.contains(&name.as_str()), "{name}");
    }
    for name in UNSUPPORTED_FILTERS {
        assert!(liquidjs.contains(&name), "{name}");
    }
}

#[test]
fn output_over_the_limit_is_an_error() {
    let payload = json!({"s": "x".repeat(40 * 1024)});
    assert_eq!(evaluate("{{ s }}", &payload).unwrap().len(), 40 * 1024);
    let err = evaluate("{{ s }}{{ s }}", &payload).unwrap_err();
    assert_eq!(err.0, "liquid output is larger than 65536 bytes");
}

#[test]
fn runaway_growth_is_refused_before_rendering() {
    let doubling = r#"{% assign s = s | append: s %}"#.repeat(30) + "{{ s | size }}";
    let err = evaluate(&doubling, &json!({"s": "ab"})).unwrap_err();
    assert_eq!(err.0, "liquid template may use too much memory");
    let replacing = format!("{{{{ s{} }}}}", r#" | replace: "", "xx""#.repeat(20));
    assert!(evaluate(&replacing, &json!({"s": "ab"})).is_err());
    let capturing = "{% capture c %}{{ c }}{{ c }}{% endcapture %}".repeat(24);
    assert!(
        evaluate(
            &format!("{capturing}{{{{ c | size }}}}"),
            &json!({"c": "x"})
        )
        .is_err()
    );
    // Ordinary growth is fine.
    let modest = r#"{{ s | append: s | replace: "a", "aa" | upcase }}"#;
    assert_eq!(evaluate(modest, &json!({"s": "ab"})).unwrap(), "AABAAB");
}

#[test]
fn templates_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LiquidTemplate>();
    let template = LiquidTemplate::parse("{{ n | plus: 1 }}").unwrap();
    std::thread::scope(|scope| {
        for n in 0..4 {
            let template = &template;
            scope.spawn(move || {
                let out = template.render(&json!({ "n": n })).unwrap();
                assert_eq!(out, (n + 1).to_string());
            });
        }
    });
    assert!(format!("{template:?}").contains("n | plus: 1"));
}

#[test]
fn payload_values_convert_faithfully() {
    let payload = json!({
        "big": i64::MAX,
        "neg": i64::MIN,
        "whole": 3.0,
        "frac": 0.1,
        "yes": true,
        "none": null,
        "list": [1, "two", [3.5, null], false],
        "obj": {"z": 1, "a": 2},
        "huge": u64::MAX,
    });
    let out = |t: &str| evaluate(t, &payload).unwrap();
    assert_eq!(
        out("{{ big }}|{{ neg }}"),
        "9223372036854775807|-9223372036854775808"
    );
    assert_eq!(
        out("{{ whole }}|{{ frac }}|{{ yes }}|{{ none }}|"),
        "3|0.1|true||"
    );
    assert_eq!(
        out("{{ list }}|{{ list.size }}|{{ list[2][0] }}"),
        "1two3.5false|4|3.5"
    );
    assert_eq!(out("{{ obj.z }}{{ obj.a }}{{ obj.size }}"), "122");
    // Integer arithmetic never overflows: like JavaScript it is done on doubles.
    assert_eq!(out("{{ big | plus: 1 }}"), "9223372036854776000");
    assert_eq!(out("{{ neg | abs }}"), "9223372036854776000");
    assert_eq!(out("{{ huge }}"), "18446744073709552000");
    assert_eq!(
        evaluate("{{ x }}", &json!(["not", "an", "object"])).unwrap(),
        ""
    );
}

#[test]
fn numbers_print_like_javascript() {
    let cases = [
        (0.0, "0"),
        (-0.0, "0"),
        (1.5, "1.5"),
        (-2.25, "-2.25"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (123456789012345680000.0, "123456789012345680000"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "Infinity"),
    ];
    for (n, expected) in cases {
        assert_eq!(js_number(n), expected, "{n}");
    }
    assert_eq!(js_string_to_number(" 12.5 "), 12.5);
    assert_eq!(js_string_to_number("0x1f"), 31.0);
    assert_eq!(js_string_to_number(""), 0.0);
    assert!(js_string_to_number("1e").is_nan());
    assert!(js_string_to_number("inf").is_nan());
}

#[test]
fn dates_parse_like_javascript() {
    let ms = |s: &str| parse_iso_millis(s);
    assert_eq!(ms("1970-01-01"), Some(0));
    assert_eq!(ms("1970-01-01T00:00:01.5Z"), Some(1500));
    assert_eq!(ms("1970-01-01T01:00:00+01:00"), Some(0));
    assert_eq!(ms("2024-02-30"), ms("2024-03-01"));
    assert_eq!(ms("2024-02-32"), None);
    assert_eq!(ms("2024-13-01"), None);
    assert_eq!(ms("not a date"), None);
    assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
    let payload = json!({"ts": "2024-03-05T07:08:09.123+02:00"});
    let out = evaluate("{{ ts | date: '%Y-%m-%d %H:%M:%S.%L %Z' }}", &payload).unwrap();
    assert_eq!(out, "2024-03-05 05:08:09.123 UTC");
    let err = LiquidTemplate::parse("{{ ts | date: fmt }}").unwrap_err();
    assert!(err.0.contains("not supported"), "{}", err.0);
    assert!(LiquidTemplate::parse("{{ ts | date: '%99999Y' }}").is_err());
}

#[test]
fn conditions_group_like_liquidjs() {
    let payload = json!({"t": true, "f": false, "s": "10", "list": ["a"]});
    let out = |t: &str| evaluate(t, &payload).unwrap();
    // LiquidJS reads `a and b or c` as `a and (b or c)`.
    assert_eq!(out("{% if f and f or t %}y{% else %}n{% endif %}"), "n");
    assert_eq!(out("{% if t or f and f %}y{% else %}n{% endif %}"), "y");
    assert_eq!(out("{% if not f %}y{% endif %}"), "y");
    assert_eq!(out("{% if s > 9 %}y{% else %}n{% endif %}"), "y");
    assert_eq!(out("{% if s == true %}y{% else %}n{% endif %}"), "n");
    assert_eq!(
        out("{% if missing contains 'a' %}y{% else %}n{% endif %}"),
        "n"
    );
    assert_eq!(
        out("{% unless t %}a{% elsif t %}b{% else %}c{% endunless %}"),
        "b"
    );
    assert_eq!(out("{{ t == f }}"), "false");
}

#[test]
fn errors_are_lowercase_without_final_punctuation() {
    let payload = json!({});
    for template in [
        "{{ }}",
        "{% if x %}",
        "{{ x | sort }}",
        "{% nope %}",
        r#"{{ "!" | base64_decode }}"#,
    ] {
        let err = evaluate(template, &payload).unwrap_err().0;
        let first = err.chars().next().unwrap();
        assert!(!first.is_uppercase(), "{err}");
        assert!(!err.ends_with(['.', '!', ':']), "{err}");
    }
}

/// xorshift64*: a small deterministic generator for the fuzz loop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn never_panics_on_random_templates() {
    const PIECES: [&str; 72] = [
        "{{",
        "}}",
        "{%",
        "%}",
        "{{-",
        "-}}",
        "{%-",
        "-%}",
        " ",
        "\n",
        "\t",
        "|",
        ":",
        ",",
        ".",
        "[",
        "]",
        "(",
        ")",
        "..",
        "'",
        "\"",
        "\\",
        "-",
        "x",
        "s",
        "n",
        "arr",
        "obj",
        "missing",
        "if",
        "elsif",
        "else",
        "endif",
        "unless",
        "endunless",
        "assign",
        "=",
        "capture",
        "endcapture",
        "raw",
        "endraw",
        "comment",
        "endcomment",
        "#",
        "echo",
        "liquid",
        "cycle",
        "increment",
        "and",
        "or",
        "not",
        "contains",
        "==",
        "<",
        ">=",
        "nil",
        "true",
        "empty",
        "0",
        "-1",
        "9223372036854775807",
        "1e308",
        "2.5",
        "99999999999999999999",
        "upcase",
        "plus",
        "times",
        "slice",
        "truncate",
        "date",
        "split",
    ];
    const FILTERS: [&str; 22] = [
        "upcase",
        "append: s",
        "plus: 9223372036854775807",
        "times: -9223372036854775808",
        "minus: n",
        "divided_by: 0",
        "modulo: -1",
        "round: 9999999999",
        "slice: -9223372036854775808, 9223372036854775807",
        "truncate: -5",
        "truncatewords: 9223372036854775807",
        "split: ''",
        "join: s",
        "first",
        "last",
        "size",
        "date: '%s %-5N %^a'",
        "default",
        "abs",
        "at_least: 1e308",
        "replace: '', s",
        "url_decode",
    ];
    let payload = json!({
        "s": "héllo 😀", "n": i64::MIN, "arr": [1, "a", null, [2]], "obj": {"k": {"j": 1}},
        "x": 1.5e300,
    });
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..4000 {
        let mut template = String::new();
        let structured = rng.next().is_multiple_of(2);
        for _ in 0..(rng.next() % 24) {
            if structured {
                let value = rng.pick(&["s", "n", "arr", "obj.k.j", "x", "'lit'", "-7", "nil"]);
                let filter = rng.pick(&FILTERS);
                let piece = match rng.next() % 4 {
                    0 => format!("{{{{ {value} | {filter} }}}}"),
                    1 => format!("{{% assign v = {value} | {filter} %}}{{{{ v | {filter} }}}}"),
                    2 => {
                        format!("{{% if {value} > {value} or v contains {value} %}}x{{% endif %}}")
                    }
                    _ => rng.pick(&PIECES).to_owned(),
                };
                template.push_str(&piece);
            } else {
                template.push_str(rng.pick(&PIECES));
            }
        }
        let result = evaluate(&template, &payload);
        if let Err(err) = &result {
            assert_ne!(err.0, ENGINE_PANIC, "{template:?}");
        }
    }
}

#[test]
fn added_filters_keep_the_limits() {
    // The output cap holds for a filter that grows its input.
    let payload = json!({"s": "x".repeat(60 * 1024)});
    let err = evaluate("{{ s | base64_encode }}", &payload).unwrap_err();
    assert_eq!(err.0, "liquid output is larger than 65536 bytes");
    // Indented JSON of a wide, deep value stops at its cap instead of growing.
    let deep = (0..60).fold(json!(vec!["x"; 2000]), |inner, _| json!([inner]));
    let err = evaluate("{{ d | json: 10 | size }}", &json!({ "d": deep })).unwrap_err();
    assert!(err.0.contains("json output is larger than"), "{}", err.0);
    // Hashing a large value needs no more than the value.
    let big = json!({"s": "y".repeat(1024 * 1024)});
    assert_eq!(evaluate("{{ s | sha256 | size }}", &big).unwrap(), "64");
}

#[test]
fn json_keeps_the_payload_key_order_and_skips_undefined() {
    let payload = json!({"o": {"z": 1, "a": [1.5, null], "m": {"k": "é\u{1}"}}});
    assert_eq!(
        evaluate("{{ o | json }}", &payload).unwrap(),
        r#"{"z":1,"a":[1.5,null],"m":{"k":"é\u0001"}}"#
    );
    assert_eq!(evaluate("[{{ o.nope | json }}]", &payload).unwrap(), "[]");
    assert_eq!(
        evaluate("{{ o.a | json: 1 }}", &payload).unwrap(),
        "[\n 1.5,\n null\n]"
    );
}

#[test]
fn the_engine_has_exactly_the_tags_and_filters_segment_allows() {
    let parser = &engine().unwrap().parser;
    let mut tags: Vec<&str> = parser.tags().map(|t| t.tag()).collect();
    tags.sort_unstable();
    assert_eq!(
        tags,
        [
            "assign",
            "break",
            "continue",
            "cycle",
            "decrement",
            "increment"
        ]
    );
    let mut blocks: Vec<&str> = parser.blocks().map(|b| b.start_tag()).collect();
    blocks.sort_unstable();
    assert_eq!(blocks, ["capture", "comment", "if", "raw", "unless"]);
    let filters = &engine().unwrap().filters;
    for name in DISABLED_FILTERS {
        assert!(!filters.contains_key(name), "{name}");
    }
    // The 69 LiquidJS filters Segment leaves enabled, but `raw` (the identity), `xml_escape`
    // (read as `escape`) and the four `date_to_*` (read as `date`); with
    // `every_engine_filter_is_a_liquidjs_filter`, each of them. Besides, the translation's
    // own `__lq_range`, which no template can call.
    let translation_own = filters.keys().filter(|n| n.starts_with("__lq")).count();
    assert_eq!(translation_own, 1);
    assert_eq!(filters.len() - translation_own, 69 - 1 - 1 - 4);
}

#[test]
fn ranges_are_charged_to_the_working_memory_budget() {
    // Literal bounds: the exact size, so a hostile range fails before anything is allocated.
    let err = evaluate(
        "{% assign r = (1..100000000000) %}{{ r | size }}",
        &json!({}),
    )
    .unwrap_err();
    assert_eq!(err.0, "liquid template may use too much memory");
    // Bounds from variables: at most MAX_RANGE_ITEMS items, counted as that many.
    let sized = |n: Json| evaluate("{{ (1..n) | size }}", &json!({ "n": n }));
    assert_eq!(
        sized(json!(MAX_RANGE_ITEMS)).unwrap(),
        MAX_RANGE_ITEMS.to_string()
    );
    let err = sized(json!(MAX_RANGE_ITEMS + 1)).unwrap_err();
    assert!(err.0.contains("longer than 10000 items"), "{}", err.0);
    assert!(sized(json!(1e300)).is_err());
    // Past 2^53 `i += 1` stops moving (LiquidJS loops until it runs out): the cap ends it.
    let stuck = json!({"a": 9_007_199_254_740_992.0, "b": 9_007_199_254_740_994.0});
    assert!(evaluate("{{ (a..b) | size }}", &stuck).is_err());
    // The translation's own names are not the template's.
    assert_eq!(
        evaluate(
            "{% assign r = (1..2) %}{{ 1 | __lq_range: 5, 10 }}|{{ __lqr_0 }}|{{ __lqb_0 }}",
            &json!({})
        )
        .unwrap(),
        "1||"
    );
}

#[test]
fn a_counter_and_an_assigned_variable_of_one_name_stay_apart() {
    let render = |t: &str| evaluate(t, &json!({"x": 41})).unwrap();
    // The assigned variable shadows the counter, which goes on from the payload's value.
    assert_eq!(
        render("{% assign x = 1 %}{% increment x %}{{ x }}{% increment x %}"),
        "41142"
    );
    // Each render starts again from the payload.
    let template = LiquidTemplate::parse("{% increment x %}{{ x }}").unwrap();
    for _ in 0..2 {
        assert_eq!(template.render(&json!({"x": 41})).unwrap(), "4142");
    }
}

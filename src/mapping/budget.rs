//! The render budget: how many bytes one render (one row through one mapping) may compute.
//!
//! Every value a directive computes or copies counts with the size of its JSON text (a string
//! its length, a copied object the text it would be written as), and so does the event the
//! values are written into; what a directive only borrows from the row or the mapping is free.
//! Sizes are counted before anything is allocated, so a mapping that would build gigabytes out
//! of a small row (a string encoded over and over, a template repeating a column) stops at the
//! budget with a `RENDER_LIMIT` issue instead.

use std::cell::Cell;

use crate::json::{self, Kind, Num, VRef};

/// The default budget: 4 MiB per row and mapping (`--max-render-bytes-per-row`).
pub(crate) const DEFAULT_RENDER_BYTES: usize = 4 * 1024 * 1024;

/// What is left of one render's budget.
#[derive(Debug)]
pub(crate) struct Budget {
    left: Cell<usize>,
    limit: usize,
}

/// A render went past its budget: `what` would have computed more than was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverBudget {
    pub what: &'static str,
    pub limit: usize,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} would take this render past its budget of {} bytes per row and mapping \
             (--max-render-bytes-per-row)",
            self.what, self.limit
        )
    }
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            left: Cell::new(limit),
            limit,
        }
    }

    /// Counts `bytes` that `what` is about to compute; `Err` (and nothing counted) past the
    /// budget.
    #[inline]
    pub(crate) fn charge(&self, what: &'static str, bytes: usize) -> Result<(), OverBudget> {
        match self.left.get().checked_sub(bytes) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(OverBudget {
                what,
                limit: self.limit,
            }),
        }
    }

    /// Counts a copy of `v` (its JSON text).
    pub(crate) fn charge_copy(&self, what: &'static str, v: VRef<'_>) -> Result<(), OverBudget> {
        let n = json_len(v, self.left.get());
        self.charge(what, n)
    }

    /// What is left.
    pub(crate) fn left(&self) -> usize {
        self.left.get()
    }
}

/// The length of `v` as compact JSON (what [`VRef::write_json`] writes), counted without
/// writing it; once past `cap` counting stops and something over `cap` is returned.
pub(crate) fn json_len(v: VRef<'_>, cap: usize) -> usize {
    let mut n = 0;
    add_json_len(v, cap, &mut n);
    n
}

fn add_json_len(v: VRef<'_>, cap: usize, n: &mut usize) {
    if *n > cap {
        return;
    }
    *n += match v {
        VRef::Plain(s) => s.len() + 2,
        VRef::Hole => 4,
        v => match v.kind() {
            Kind::Null => 4,
            Kind::Bool(b) => 4 + usize::from(!b),
            Kind::Number(Num::Json(n)) => number_len(n),
            Kind::Number(Num::Digits(d)) => d.len(),
            Kind::Str(s) => str_len(s),
            Kind::Array(a) => {
                *n += 2 + a.len().saturating_sub(1);
                for item in a.iter() {
                    add_json_len(item, cap, n);
                }
                0
            }
            Kind::Object(o) => {
                *n += 2 + o.len().saturating_sub(1);
                for (k, item) in o.iter() {
                    *n += str_len(k) + 1;
                    add_json_len(item, cap, n);
                }
                0
            }
        },
    };
}

/// The length of `s` as a JSON string literal (quotes and escapes included).
pub(crate) fn str_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut n = bytes.len() + 2;
    let mut i = 0;
    while let Some(at) = json::next_escape(bytes, i) {
        n += match bytes[at] {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            _ => 5,
        };
        i = at + 1;
    }
    n
}

fn number_len(n: &serde_json::Number) -> usize {
    if let Some(u) = n.as_u64() {
        return itoa::Buffer::new().format(u).len();
    }
    if let Some(i) = n.as_i64() {
        return itoa::Buffer::new().format(i).len();
    }
    let mut buf = Vec::with_capacity(32);
    json::write_number(&mut buf, n);
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_len_is_what_write_json_writes() {
        for v in [
            json!(null),
            json!(true),
            json!(false),
            json!(1e21),
            json!(-0.5),
            json!(12345678901234567890u64),
            json!("plain"),
            json!("q\"b\\n\n\u{1}é😀"),
            json!([]),
            json!({}),
            json!([1, "two", {"three": [null, false]}, []]),
            json!({"k\"ey": {"a": "\u{7}", "b": [1.5, "x"]}, "z": ""}),
        ] {
            let mut out = Vec::new();
            VRef::Json(&v).write_json(&mut out);
            assert_eq!(json_len(VRef::Json(&v), usize::MAX), out.len(), "{v}");
        }
        assert_eq!(json_len(VRef::Plain("abc"), usize::MAX), 5);
        assert_eq!(json_len(VRef::Hole, usize::MAX), 4);
    }

    #[test]
    fn counting_stops_past_the_cap() {
        let big = json!(vec!["x".repeat(100); 1000]);
        let n = json_len(VRef::Json(&big), 500);
        assert!(n > 500 && n < 2000, "{n} (the whole is 104001)");
    }

    #[test]
    fn charges_until_the_limit() {
        let b = Budget::new(10);
        assert!(b.charge("a", 6).is_ok());
        let over = b.charge("@json encode", 5).unwrap_err();
        assert_eq!(over.limit, 10);
        assert_eq!(b.left(), 4, "nothing counted past the budget");
        assert!(b.charge("b", 4).is_ok());
        assert!(over.to_string().contains("@json encode"));
        assert!(over.to_string().contains("10 bytes"));
    }
}

/// Mappings that build far more than they are given, each stopped at the budget with one
/// `RENDER_LIMIT` issue naming the field, long before any large allocation. (Without the budget
/// the first three allocate gigabytes: `tests/cli.rs` runs them under a memory cap.)
#[cfg(test)]
mod bombs {
    use serde_json::{Value, json};

    use super::DEFAULT_RENDER_BYTES;
    use crate::issue::IssueCode;
    use crate::json::parse_columns;
    use crate::mapping::{Identity, Mapping, MappingDoc, Op, Row};

    fn mapping(fields: Value) -> Mapping {
        let doc: MappingDoc =
            serde_json::from_value(json!({"action": "track", "fields": fields})).unwrap();
        Mapping::compile(&doc, Identity::offline("bomb")).unwrap()
    }

    fn row(columns: Value) -> Row {
        let columns = parse_columns(&serde_json::to_vec(&columns).unwrap()).unwrap();
        Row::new(Some("r-1".into()), Op::Added, columns, None)
    }

    /// Renders within `budget`: the one issue must be `RENDER_LIMIT` at `pointer`, naming the
    /// limit, and nothing written.
    fn stops_at(fields: Value, columns: Value, budget: usize, pointer: &str, what: &str) {
        let m = mapping(fields);
        let mut out = Vec::new();
        let r = m.render_within(&row(columns), &mut out, budget);
        assert!(!r.accepted());
        let issues = &r.built.issues;
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].code, IssueCode::RenderLimit, "{issues:?}");
        assert_eq!(issues[0].pointer, pointer);
        let message = &issues[0].message;
        assert!(message.contains(what), "{message}");
        assert!(message.contains(&format!("{budget} bytes")), "{message}");
        assert!(message.contains("--max-render-bytes-per-row"), "{message}");
        assert!(out.is_empty());
        assert_eq!(r.built.size, None);
    }

    fn base(extra: (&str, Value)) -> Value {
        let mut fields = json!({
            "event_name": {"@literal": "Bomb"},
            "user_id": {"@path": "$.properties.u"},
        });
        fields[extra.0] = extra.1;
        fields
    }

    /// `@json` encode nested 28 deep around a column holding `"`: each level doubles the
    /// escapes (2^28 backslashes: gigabytes).
    #[test]
    fn nested_json_encode() {
        let mut v = json!({"@path": "$.properties.q"});
        for _ in 0..28 {
            v = json!({"@json": {"mode": "encode", "value": v}});
        }
        let fields = base(("properties", json!({"x": v})));
        let columns = json!({"u": "u-1", "q": "\""});
        stops_at(
            fields,
            columns,
            DEFAULT_RENDER_BYTES,
            "/properties",
            "@json encode",
        );
    }

    /// `@template` repeating a 100 kB column 10,000 times (a gigabyte).
    #[test]
    fn template_repeating_a_column() {
        let template = "{{properties.big}}".repeat(10_000);
        let fields = base(("properties", json!({"t": {"@template": template}})));
        let columns = json!({"u": "u-1", "big": "x".repeat(100_000)});
        stops_at(
            fields,
            columns,
            DEFAULT_RENDER_BYTES,
            "/properties",
            "@template",
        );
    }

    /// A template computed from the row (`@template` of `@path`) is counted too.
    #[test]
    fn computed_template_from_the_row() {
        let fields = base((
            "event_name",
            json!({"@template": {"@path": "$.properties.tpl"}}),
        ));
        let columns = json!({
            "u": "u-1",
            "big": "x".repeat(10_000),
            "tpl": "{{properties.big}}".repeat(5_000),
        });
        stops_at(
            fields,
            columns,
            DEFAULT_RENDER_BYTES,
            "/event_name",
            "@template",
        );
    }

    /// `@replace` nested ten deep, each level replacing every `x` by ten of them (10^10 times
    /// the column); and `` $` `` (the text before each match), quadratic in one level.
    #[test]
    fn nested_replace() {
        let mut v = json!({"@path": "$.properties.s"});
        for _ in 0..10 {
            v = json!({"@replace": {"value": v, "pattern": "x", "replacement": "xxxxxxxxxx"}});
        }
        let fields = base(("event_name", v));
        stops_at(
            fields,
            json!({"u": "u-1", "s": "x".repeat(1000)}),
            DEFAULT_RENDER_BYTES,
            "/event_name",
            "@replace",
        );
        let before = json!({"@replace": {
            "value": {"@path": "$.properties.s"}, "pattern": "x", "replacement": "$`$`$`$`$`"
        }});
        stops_at(
            base(("event_name", before)),
            json!({"u": "u-1", "s": "x".repeat(100_000)}),
            DEFAULT_RENDER_BYTES,
            "/event_name",
            "@replace",
        );
    }

    /// Copies: `@merge` of one column many times, `@flatten` with a long separator, the items
    /// `@arrayPath` builds, `@liquid`'s copy of the payload.
    #[test]
    fn copies_count() {
        let columns = json!({"u": "u-1", "big": {"k": "x".repeat(50_000)}, "arr": vec![0; 20_000]});
        let merge = json!({"@merge": {
            "objects": vec![json!({"@path": "$.properties.big"}); 100], "direction": "right"
        }});
        stops_at(
            base(("properties", json!({"m": merge}))),
            columns.clone(),
            1_000_000,
            "/properties",
            "@merge",
        );
        let flatten = json!({"@flatten": {
            "value": {"@path": "$.properties"}, "separator": "-".repeat(1000)
        }});
        stops_at(
            base(("properties", flatten)),
            columns.clone(),
            1_000_000,
            "/properties",
            "@flatten",
        );
        let shape: serde_json::Map<String, Value> = (0..200)
            .map(|i| (format!("k{i}"), json!({"@literal": i})))
            .collect();
        let array_path = json!({"@arrayPath": ["$.properties.arr", shape]});
        stops_at(
            base(("properties", json!({"a": array_path}))),
            columns.clone(),
            1_000_000,
            "/properties",
            "@arrayPath",
        );
        let liquid: serde_json::Map<String, Value> = (0..30)
            .map(|i| (format!("l{i}"), json!({"@liquid": "{{ properties.u }}"})))
            .collect();
        stops_at(
            base(("properties", Value::Object(liquid))),
            columns,
            1_000_000,
            "/properties",
            "@liquid",
        );
    }

    /// Evaluations count even when they compute nothing: `@if`s nested 30 deep (61 values
    /// evaluated), and so does a shape run for each of 5,000 items.
    #[test]
    fn evaluations_count() {
        let mut v = json!({"@path": "$.x"});
        for _ in 0..30 {
            v = json!({"@if": {"exists": {"@path": "$.x"}, "then": 1, "else": v}});
        }
        let columns = json!({"u": "u-1", "arr": vec![0; 5000]});
        stops_at(
            base(("event_name", v.clone())),
            columns.clone(),
            900,
            "/event_name",
            "evaluating directives",
        );
        let array_path = json!({"@arrayPath": ["$.properties.arr", {"k": v}]});
        stops_at(
            base(("properties", json!({"a": array_path}))),
            columns,
            1_000_000,
            "/properties",
            "",
        );
    }

    /// A flat mapping (no directive computes) copying one large column into many keys: the
    /// event itself is counted before it is written.
    #[test]
    fn the_event_counts() {
        let properties: serde_json::Map<String, Value> = (0..200)
            .map(|i| (format!("k{i}"), json!({"@path": "$.properties.big"})))
            .collect();
        let m = mapping(base(("properties", Value::Object(properties.clone()))));
        assert!(m.is_flat());
        stops_at(
            base(("properties", Value::Object(properties))),
            json!({"u": "u-1", "big": "x".repeat(100_000)}),
            DEFAULT_RENDER_BYTES,
            "/properties",
            "the event",
        );
    }

    /// Within the budget nothing changes: an oversize event is still reported with its exact
    /// size, and ordinary mappings are accepted.
    #[test]
    fn within_the_budget_nothing_changes() {
        let fields = base(("properties", json!({"a": {"@path": "$.properties.big"}})));
        let m = mapping(fields);
        let r = m.test_within(
            &row(json!({"u": "u-1", "big": "x".repeat(40_000)})),
            1 << 20,
        );
        assert_eq!(r.issues.len(), 1);
        assert_eq!(r.issues[0].code, IssueCode::EventTooLarge);
        assert!(r.size_bytes.unwrap() > 40_000);
        let mut v = json!({"@path": "$.properties.q"});
        for _ in 0..5 {
            v = json!({"@json": {"mode": "encode", "value": v}});
        }
        let m = mapping(base(("properties", json!({"x": v}))));
        let r = m.test(&row(json!({"u": "u-1", "q": "\""})));
        assert!(r.accepted, "{:?}", r.issues);
    }
}

//! JSON text the way JavaScript writes it (numbers, strings, `JSON.stringify`), so what we emit
//! matches Segment's code byte for byte where JavaScript behaviour shows through.

mod val;

pub use val::{ArrRef, Columns, Kind, ObjIter, ObjRef, VRef, Val};

use serde_json::{Number, Value};

/// Appends `n` as JavaScript's `String(n)` would (integers exactly, floats per ECMAScript).
pub fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
    } else {
        write_f64(out, n.as_f64().unwrap_or(0.0));
    }
}

/// Appends a finite `f64` as JavaScript's `Number.prototype.toString` (`1e21` → `1e+21`, `-0` → `0`).
pub fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f == 0.0 {
        out.push(b'0');
    } else {
        out.extend_from_slice(ryu_js::Buffer::new().format(f).as_bytes());
    }
}

/// `String(n)` for a JSON number.
pub fn number_to_string(n: &Number) -> String {
    let mut out = Vec::with_capacity(24);
    write_number(&mut out, n);
    String::from_utf8(out).unwrap_or_default()
}

/// A JSON number from a finite `f64`, kept an integer when it is one (as JavaScript prints it).
pub fn number_from_f64(f: f64) -> Option<Number> {
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        // Exact: |f| < 2^53, so the cast loses nothing.
        Some(Number::from(f as i64))
    } else {
        Number::from_f64(f)
    }
}

/// Appends `s` as a JSON string literal, escaping as `JSON.stringify` does.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `v` as compact JSON in its own key order (`JSON.stringify(v)`).
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// `JSON.stringify(v)` as a `String`.
pub fn stringify(v: &Value) -> String {
    let mut out = Vec::with_capacity(64);
    write_value(&mut out, v);
    // Only valid UTF-8 was written: every piece came from `str`s and ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `v` as canonical JSON: object keys sorted, no whitespace (the messageId hash input).
pub fn write_canonical(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(map) => write_canonical_entries(out, map.iter()),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        other => write_value(out, other),
    }
}

/// Canonical JSON of an object given as entries (sorted by key, compact).
pub fn write_canonical_entries<'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
) {
    let mut sorted: Vec<(&String, &Value)> = entries.collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, item)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_canonical(out, item);
    }
    out.push(b'}');
}

/// JavaScript's `ToNumber` on a string (`+s`): `None` where JavaScript gives `NaN`.
pub fn string_to_number(s: &str) -> Option<f64> {
    let t = s.trim_matches(is_js_whitespace);
    if t.is_empty() {
        return Some(0.0);
    }
    let radix = |p: &str, r: u32| -> Option<f64> {
        if p.is_empty() || !p.chars().all(|c| c.is_digit(r)) {
            return None;
        }
        Some(p.chars().fold(0.0_f64, |acc, c| {
            acc * f64::from(r) + f64::from(c.to_digit(r).unwrap_or(0))
        }))
    };
    let lower = t.get(..2).map(str::to_ascii_lowercase);
    match lower.as_deref() {
        Some("0x") => return radix(&t[2..], 16),
        Some("0o") => return radix(&t[2..], 8),
        Some("0b") => return radix(&t[2..], 2),
        _ => {}
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return Some(if t.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    // StrDecimalLiteral: digits [. digits] [e[+-]digits], or . digits [...]
    let b = unsigned.as_bytes();
    let mut i = 0;
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits == 0 {
            return None;
        }
        i += exp_digits;
    }
    if i != b.len() {
        return None;
    }
    t.parse::<f64>().ok()
}

/// JavaScript's `WhiteSpace` and `LineTerminator` (what `String.prototype.trim` removes).
pub fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{9}' | '\u{a}' | '\u{b}' | '\u{c}' | '\u{d}' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// The length of `s` as JavaScript counts it (UTF-16 code units).
pub fn js_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn num(v: Value) -> String {
        match v {
            Value::Number(n) => number_to_string(&n),
            _ => unreachable!(),
        }
    }

    #[test]
    fn numbers_format_like_javascript() {
        assert_eq!(num(json!(98765)), "98765");
        assert_eq!(num(json!(-3)), "-3");
        assert_eq!(num(json!(1.5)), "1.5");
        assert_eq!(num(json!(100.0)), "100");
        assert_eq!(num(json!(1e21)), "1e+21");
        assert_eq!(num(json!(0.1)), "0.1");
        assert_eq!(num(json!(-0.0)), "0");
        assert_eq!(num(json!(1.5e-7)), "1.5e-7");
        assert_eq!(num(json!(18446744073709551615u64)), "18446744073709551615");
    }

    #[test]
    fn strings_escape_like_json_stringify() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\n\u{1}é😀");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\n\\u0001é😀\""
        );
    }

    #[test]
    fn stringify_keeps_key_order_and_is_compact() {
        let v: Value =
            serde_json::from_str(r#"{"b": 1, "a": [true, null, 2.50], "c": {"z": "x"}}"#).unwrap();
        assert_eq!(
            stringify(&v),
            r#"{"b":1,"a":[true,null,2.5],"c":{"z":"x"}}"#
        );
    }

    #[test]
    fn canonical_sorts_keys_recursively() {
        let v: Value =
            serde_json::from_str(r#"{"b": {"y": 1, "x": 2}, "a": [{"d": 1, "c": 2}]}"#).unwrap();
        let mut out = Vec::new();
        write_canonical(&mut out, &v);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":[{"c":2,"d":1}],"b":{"x":2,"y":1}}"#
        );
    }

    #[test]
    fn to_number_follows_javascript() {
        assert_eq!(string_to_number("48.85"), Some(48.85));
        assert_eq!(string_to_number(" 12 "), Some(12.0));
        assert_eq!(string_to_number("0x1F"), Some(31.0));
        assert_eq!(string_to_number("1e3"), Some(1000.0));
        assert_eq!(string_to_number(".5"), Some(0.5));
        assert_eq!(string_to_number("5."), Some(5.0));
        assert_eq!(string_to_number("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(string_to_number("   "), Some(0.0));
        assert_eq!(string_to_number("north"), None);
        assert_eq!(string_to_number("1_000"), None);
        assert_eq!(string_to_number("-0x10"), None);
        assert_eq!(string_to_number("1e"), None);
        assert_eq!(string_to_number("."), None);
    }
}

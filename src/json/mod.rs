//! JSON text the way JavaScript writes it (numbers, strings, `JSON.stringify`), so what we emit
//! matches Segment's code byte for byte where JavaScript behaviour shows through.

mod columns;
mod val;

pub use columns::{Columns, deserialize_columns, parse_columns};
pub(crate) use val::{Kind, Num, ObjRef, VRef, Val};

use serde_json::{Number, Value};

/// Appends `n` as JavaScript's `String(n)` would (integers exactly, floats per ECMAScript).
pub(crate) fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
    } else {
        write_f64(out, n.as_f64().unwrap_or(0.0));
    }
}

/// Appends a finite `f64` as JavaScript's `Number.prototype.toString` (`1e21` → `1e+21`, `-0` → `0`).
pub(crate) fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f == 0.0 {
        out.push(b'0');
    } else if f.abs() < 1e15 && (f as i64) as f64 == f {
        // Integral and short: JavaScript prints the integer (exact: |f| < 2^53).
        out.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
    } else if let Some((n, k)) = few_decimals(f) {
        // n / 10^k is the shortest decimal that reads back as f: print it plainly, as JavaScript
        // does for magnitudes from 1e-6 to 1e21.
        if n < 0 {
            out.push(b'-');
        }
        let digits = n.unsigned_abs();
        let scale = 10u64.pow(k);
        out.extend_from_slice(itoa::Buffer::new().format(digits / scale).as_bytes());
        // The fraction's last `k` (at most 3) digits, leading zeros kept.
        let frac = digits % scale;
        let fraction = [digit(frac / 100), digit(frac / 10 % 10), digit(frac % 10)];
        out.push(b'.');
        out.extend_from_slice(&fraction[3 - k as usize..]);
    } else {
        out.extend_from_slice(ryu_js::Buffer::new().format(f).as_bytes());
    }
}

#[inline]
fn digit(d: u64) -> u8 {
    b'0' + d as u8
}

/// `f` as `n / 10^k` with `k` in 1..=3 as small as possible, when that decimal reads back as
/// exactly `f` and is the only one of its length that does (|n| < 2^52).
fn few_decimals(f: f64) -> Option<(i64, u32)> {
    const LIMIT: f64 = 4_503_599_627_370_496.0; // 2^52
    for (k, scale) in [(1u32, 10.0), (2, 100.0), (3, 1000.0)] {
        let x = f * scale;
        if x.abs() >= LIMIT {
            return None;
        }
        // `x.round()` (half away from zero) without a libm call: truncate, then step by the
        // remainder, which is exact below 2^52.
        let t = x as i64;
        let d = x - t as f64;
        let n = t + i64::from(d >= 0.5) - i64::from(d <= -0.5);
        if n as f64 / scale == f {
            return Some((n, k));
        }
    }
    None
}

/// Whether `s` (a string a number field coerces) is already the text JavaScript would print
/// for `+s`: plain decimal, no redundant zeros, at most 15 significant digits (so it reads
/// back to the same digits), and a magnitude JavaScript prints without an exponent.
pub(crate) fn is_canonical_number_text(s: &str) -> bool {
    let b = s.strip_prefix('-').unwrap_or(s).as_bytes();
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 || (int_len > 1 && b[0] == b'0') {
        return false;
    }
    let (frac, sig_int) = match &b[int_len..] {
        [] => (&b[..0], if b[0] == b'0' { 0 } else { int_len }),
        [b'.', frac @ ..] => (frac, if b[0] == b'0' { 0 } else { int_len }),
        _ => return false,
    };
    if int_len > 21 || !frac.iter().all(u8::is_ascii_digit) || frac.last() == Some(&b'0') {
        return false;
    }
    if b.len() > int_len && frac.is_empty() {
        return false;
    }
    let lead_zeros = if sig_int == 0 {
        frac.iter().take_while(|c| **c == b'0').count()
    } else {
        0
    };
    let sig = sig_int + frac.len() - lead_zeros;
    // Below 1e-6 JavaScript switches to exponent notation; "0" and "-0" print as "0".
    let tiny = sig_int == 0 && lead_zeros >= 6;
    sig <= 15 && !tiny && !(sig == 0 && s.starts_with('-')) && (sig > 0 || frac.is_empty())
}

/// `String(n)` for a JSON number.
pub(crate) fn number_to_string(n: &Number) -> String {
    let mut out = Vec::with_capacity(24);
    write_number(&mut out, n);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `s` as a JSON string literal, escaping as `JSON.stringify` does.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !has_escape(bytes) {
        // The common case: one copy.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..i]);
        let b = bytes[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any byte of `bytes` is one JSON escapes: whole words, the last one overlapping the
/// one before it, so no byte is looked at alone unless the string is shorter than a word.
#[inline]
fn has_escape(bytes: &[u8]) -> bool {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let n = bytes.len();
    if n < 8 {
        // One word: two overlapping halves, or the bytes over spaces (which need no escape).
        let half = |i: usize| u64::from(u32::from_le_bytes(word4(bytes, i)));
        let w = if n >= 4 {
            half(0) | half(n - 4) << 32
        } else {
            bytes
                .iter()
                .fold(u64::from_le_bytes([b' '; 8]), |w, &b| w << 8 | u64::from(b))
        };
        return needs_escape(w);
    }
    let mut i = 0;
    while i + 8 <= n {
        if needs_escape(word(i)) {
            return true;
        }
        i += 8;
    }
    i < n && needs_escape(word(n - 8))
}

/// Whether `s` has nothing JSON escapes.
pub(crate) fn is_plain(s: &str) -> bool {
    !has_escape(s.as_bytes())
}

/// Appends `s`, known to need no escaping (see [`VRef::Plain`]), as a JSON string literal.
#[inline]
pub(crate) fn write_plain_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(!has_escape(s.as_bytes()));
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// The four bytes of `bytes` from `i` (there are).
#[inline]
fn word4(bytes: &[u8], i: usize) -> [u8; 4] {
    bytes[i..i + 4].try_into().unwrap_or_default()
}

/// The position of the first byte from `i` on that JSON escapes (a control character, `"` or
/// `\\`): eight bytes at a time, the byte found from the word's mask.
#[inline]
pub(super) fn next_escape(bytes: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mask = escape_mask(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        if mask != 0 {
            return Some(i + (mask.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    // The last few bytes, padded with spaces (which need no escape).
    let rest = bytes.get(i..)?;
    let mut word = [b' '; 8];
    word[..rest.len()].copy_from_slice(rest);
    let mask = escape_mask(u64::from_le_bytes(word));
    (mask != 0).then(|| i + (mask.trailing_zeros() / 8) as usize)
}

/// Appends `"key":` for a key known to need no escaping (the event's own keys).
#[inline(always)]
pub(crate) fn write_plain_key(out: &mut Vec<u8>, key: &str) {
    debug_assert!(!key.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
    out.reserve(key.len() + 3);
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Whether any of the eight bytes of `w` is a control character, `"` or `\\`.
#[inline]
fn needs_escape(w: u64) -> bool {
    escape_mask(w) != 0
}

/// The high bit of each byte of `w` (little-endian) that is a control character, `"` or `\\`.
/// Bytes after the first such byte may be marked wrongly (a borrow carries), never the first: its
/// position is the mask's trailing zeros over eight.
#[inline]
fn escape_mask(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    // Bytes below 0x20 (ASCII only: UTF-8 continuation bytes have the high bit set).
    let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    below | has_zero(w ^ (ONES * u64::from(b'"'))) | has_zero(w ^ (ONES * u64::from(b'\\')))
}

/// Appends `v` as compact JSON in its own key order (`JSON.stringify(v)`).
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) {
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
#[cfg(test)]
pub(crate) fn stringify(v: &Value) -> String {
    let mut out = Vec::with_capacity(64);
    write_value(&mut out, v);
    // Only valid UTF-8 was written: every piece came from `str`s and ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `v` as canonical JSON: object keys sorted, no whitespace (the messageId hash input).
pub(crate) fn write_canonical(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(map) => {
            write_canonical_entries(out, map.iter().map(|(k, v)| (k.as_str(), VRef::Json(v))))
        }
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
pub(crate) fn write_canonical_entries<'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = (&'a str, VRef<'a>)>,
) {
    let mut sorted: Vec<(&str, VRef<'_>)> = entries.collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, item)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        match item {
            VRef::Json(v) => write_canonical(out, v),
            VRef::Str(s) | VRef::Plain(s) => write_str(out, s),
            VRef::Int(d) => out.extend_from_slice(d.as_bytes()),
            other => write_canonical(out, &other.to_value()),
        }
    }
    out.push(b'}');
}

/// JavaScript's `ToNumber` on a string (`+s`): `None` where JavaScript gives `NaN`.
pub(crate) fn string_to_number(s: &str) -> Option<f64> {
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
pub(crate) fn is_js_whitespace(c: char) -> bool {
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
pub(crate) fn js_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_are_found_at_any_offset() {
        let naive = |b: &[u8], i: usize| {
            (i..b.len()).find(|&k| b[k] < 0x20 || b[k] == b'"' || b[k] == b'\\')
        };
        // Every escape byte at every position of strings up to 20 bytes, with bytes around it
        // that sit next to the ranges tested (0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0xff).
        for len in 0..20 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    for filler in [0x20, 0x21, 0x5b, 0x5d, 0x7f, 0xff, b'a'] {
                        let mut b = vec![filler; len];
                        if at < len {
                            b[at] = special;
                        }
                        for i in 0..=len {
                            assert_eq!(next_escape(&b, i), naive(&b, i), "{b:?} from {i}");
                        }
                        assert_eq!(has_escape(&b), naive(&b, 0).is_some(), "{b:?}");
                    }
                }
            }
        }
    }

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
        assert_eq!(num(json!(3.0)), "3");
        assert_eq!(num(json!(-1e15)), "-1000000000000000");
        assert_eq!(num(json!(1e20)), "100000000000000000000");
        assert_eq!(num(json!(19.99)), "19.99");
        assert_eq!(num(json!(-2.35)), "-2.35");
        assert_eq!(num(json!(0.001)), "0.001");
        assert_eq!(num(json!(0.1 + 0.2)), "0.30000000000000004");
        // The fast paths agree with the full algorithm on many values.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = match i % 4 {
                0 => (x % 100_000_000) as f64 / 1000.0,
                1 => (x % 1_000_000) as f64 * 1.5 / 100.0,
                2 => -((x % 10_000) as f64) / 10.0,
                _ => f64::from_bits(x >> 2),
            };
            if !f.is_finite() {
                continue;
            }
            let mut out = Vec::new();
            write_f64(&mut out, f);
            let want = if f == 0.0 {
                "0".to_owned()
            } else {
                ryu_js::Buffer::new().format(f).to_owned()
            };
            assert_eq!(String::from_utf8(out).unwrap(), want, "{f:e}");
        }
    }

    #[test]
    fn canonical_number_text_is_what_javascript_prints() {
        for (s, canonical) in [
            ("48.85", true),
            ("0", true),
            ("-2.5", true),
            ("1080", true),
            ("0.000001", true),
            ("0.0000001", false),
            ("048", false),
            ("1.50", false),
            ("1.", false),
            (".5", false),
            ("+1", false),
            ("1e3", false),
            (" 1", false),
            ("-0", false),
            ("123456789012345", true),
            ("1234567890123456", false),
            ("0.0", false),
        ] {
            assert_eq!(is_canonical_number_text(s), canonical, "{s}");
            if canonical {
                let mut out = Vec::new();
                write_f64(&mut out, string_to_number(s).unwrap());
                assert_eq!(String::from_utf8(out).unwrap(), s);
            }
        }
    }

    /// Every ASCII byte at every position of strings around the eight-byte word size, plus
    /// multi-byte characters, against serde_json (which escapes as `JSON.stringify` does).
    #[test]
    fn escaping_matches_serde_json_at_every_position() {
        let fillers = ["", "a", "abcdefg", "abcdefgh", "abcdefghijklmno", "é😀x"];
        for b in 0u8..0x80 {
            let c = char::from(b);
            for before in fillers {
                for after in fillers {
                    let s = format!("{before}{c}{after}{c}");
                    let mut out = Vec::new();
                    write_str(&mut out, &s);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        serde_json::to_string(&s).unwrap(),
                        "{s:?}"
                    );
                }
            }
        }
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

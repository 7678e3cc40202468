//! LiquidJS's versions of filters the `liquid` crate also has but computes differently:
//! `default` (with `allow_false`), `strip`/`lstrip`/`rstrip` (with the characters to strip),
//! `split` and `replace` (an empty separator), `truncate` and `truncatewords` (code points,
//! LiquidJS's word rule), `url_encode` (`encodeURIComponent`'s safe characters) and `slice`
//! (negative starts on code points).

use liquid::model::State;

use super::*;

fn is_space(c: char) -> bool {
    crate::json::is_js_whitespace(c)
}

fn text_arg(args: &Args, i: usize) -> String {
    args.get(i).map(|v| js_stringify(v)).unwrap_or_default()
}

fn number_arg(args: &Args, i: usize, default: f64) -> f64 {
    args.get(i).map_or(default, |v| super::array::to_number(v))
}

/// `default: value, allow_false: flag`: an empty string or array, nil and `false` take the
/// default, unless `allow_false` keeps `false`.
pub(super) fn default(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let fallback = || args.positional.first().cloned().unwrap_or(LiquidValue::Nil);
    if let Some(array) = input.as_array() {
        return Ok(if array.size() > 0 {
            input.to_value()
        } else {
            fallback()
        });
    }
    if input.is_nil() {
        return Ok(fallback());
    }
    match input.type_name() {
        "string" if input.to_kstr().is_empty() => Ok(fallback()),
        "boolean" if !input.query_state(State::Truthy) => {
            let allow_false = args
                .keyword
                .iter()
                .any(|(k, v)| k.as_str() == "allow_false" && v.query_state(State::Truthy));
            Ok(if allow_false {
                input.to_value()
            } else {
                fallback()
            })
        }
        _ => Ok(input.to_value()),
    }
}

/// The characters `strip: chars` removes, or JavaScript's whitespace without an argument.
fn strip_set(args: &Args) -> Option<Vec<char>> {
    let chars = text_arg(args, 0);
    (!chars.is_empty()).then(|| chars.chars().collect())
}

fn strip_with(input: &dyn ValueView, args: &Args, start: bool, end: bool) -> LiquidValue {
    let text = js_stringify(input);
    let set = strip_set(args);
    let strip = |c: char| match &set {
        Some(set) => set.contains(&c),
        None => is_space(c),
    };
    let mut out = text.as_str();
    if start {
        out = out.trim_start_matches(strip);
    }
    if end {
        out = out.trim_end_matches(strip);
    }
    string(out.to_owned())
}

pub(super) fn strip(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    Ok(strip_with(input, args, true, true))
}

pub(super) fn lstrip(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    Ok(strip_with(input, args, true, false))
}

pub(super) fn rstrip(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    Ok(strip_with(input, args, false, true))
}

/// `str.split(sep)`: an empty separator splits into characters.
fn js_split<'s>(text: &'s str, sep: &str) -> Vec<&'s str> {
    if sep.is_empty() {
        text.char_indices()
            .map(|(i, c)| &text[i..i + c.len_utf8()])
            .collect()
    } else {
        text.split(sep).collect()
    }
}

/// `split`, then trailing empty strings dropped like Ruby's `split`.
pub(super) fn split(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let sep = text_arg(args, 0);
    let mut parts = js_split(&text, &sep);
    while parts.last() == Some(&"") {
        parts.pop();
    }
    Ok(LiquidValue::Array(
        parts.into_iter().map(|p| string(p.to_owned())).collect(),
    ))
}

/// `str.split(pattern).join(replacement)`.
pub(super) fn replace(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let pattern = text_arg(args, 0);
    let replacement = text_arg(args, 1);
    Ok(string(js_split(&text, &pattern).join(&replacement)))
}

/// `truncate: length, ellipsis`: lengths in code points; a short enough input is returned as
/// it is (a number stays a number).
pub(super) fn truncate(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let length = number_arg(args, 0, 50.0);
    let ellipsis = args
        .positional
        .get(1)
        .map_or_else(|| "...".to_owned(), |v| js_stringify(v));
    let points = text.chars().count() as f64;
    if text.encode_utf16().count() as f64 <= length || points <= length {
        return Ok(input.to_value());
    }
    let keep = (length - ellipsis.chars().count() as f64).max(0.0) as usize;
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(&ellipsis);
    Ok(string(out))
}

/// `str.split(/\s+/)`.
fn split_spaces(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_space(c) {
            words.push(&text[start..i]);
            let mut end = i + c.len_utf8();
            while let Some((j, d)) = chars.peek().copied() {
                if !is_space(d) {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            start = end;
        }
    }
    words.push(&text[start..]);
    words
}

/// `truncatewords: words, ellipsis`: the first words joined by one space, the ellipsis added
/// whenever the input has at least that many words.
pub(super) fn truncatewords(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let mut words = number_arg(args, 0, 15.0);
    let ellipsis = args
        .positional
        .get(1)
        .map_or_else(|| "...".to_owned(), |v| js_stringify(v));
    let all = split_spaces(text.trim_start_matches(is_space));
    if words <= 0.0 || words.is_nan() {
        words = 1.0;
    }
    let mut out = all[..all.len().min(words as usize)].join(" ");
    if all.len() as f64 >= words {
        out.push_str(&ellipsis);
    }
    Ok(string(out))
}

/// `encodeURIComponent(s).replace(/%20/g, '+')`.
pub(super) fn url_encode(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let encoded = super::text::percent_encode(&text, |b| {
        b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
    });
    Ok(string(encoded.replace("%20", "+")))
}

/// `slice: begin, length`: arrays by item, anything else by code point of its string.
pub(super) fn slice(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    if input.is_nil() {
        return Ok(LiquidValue::Array(Vec::new()));
    }
    let mut begin = number_arg(args, 0, 0.0).trunc();
    let length = number_arg(args, 1, 1.0).trunc();
    if let Some(array) = input.as_array() {
        let items: Vec<_> = array.values().collect();
        if begin < 0.0 {
            begin += items.len() as f64;
        }
        if begin < 0.0 || length < 0.0 {
            return Ok(LiquidValue::Array(Vec::new()));
        }
        let start = (begin as usize).min(items.len());
        let end = ((begin + length) as usize).min(items.len()).max(start);
        return Ok(LiquidValue::Array(
            items[start..end].iter().map(|v| v.to_value()).collect(),
        ));
    }
    let text = js_stringify(input);
    if begin < 0.0 {
        begin += text.chars().count() as f64;
    }
    if begin < 0.0 || length < 0.0 {
        return Ok(string(String::new()));
    }
    Ok(string(
        text.chars()
            .skip(begin as usize)
            .take(length as usize)
            .collect(),
    ))
}

/// `&`, `<`, `>`, `"` and `'` as `&amp;`, `&lt;`, `&gt;`, `&#34;` and `&#39;`.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
}

pub(super) fn escape(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let mut out = String::with_capacity(text.len());
    escape_into(&text, &mut out);
    Ok(string(out))
}

/// `escape` after undoing the five entities `escape` writes (and no others).
pub(super) fn escape_once(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    const ENTITIES: [(&str, &str); 5] = [
        ("&amp;", "&"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&#34;", "\""),
        ("&#39;", "'"),
    ];
    let text = js_stringify(input);
    let mut plain = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find('&') {
        plain.push_str(&rest[..i]);
        rest = &rest[i..];
        match ENTITIES.iter().find(|(entity, _)| rest.starts_with(entity)) {
            Some((entity, c)) => {
                plain.push_str(c);
                rest = &rest[entity.len()..];
            }
            None => {
                plain.push('&');
                rest = &rest[1..];
            }
        }
    }
    plain.push_str(rest);
    let mut out = String::with_capacity(plain.len());
    escape_into(&plain, &mut out);
    Ok(string(out))
}

/// The first character upper-cased, the rest lower-cased.
pub(super) fn capitalize(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let mut chars = text.chars();
    let mut out = String::with_capacity(text.len());
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
        out.push_str(&chars.as_str().to_lowercase());
    }
    Ok(string(out))
}

/// `sample: count`: a random item (or character), or `count` of them in random order.
pub(super) fn sample(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    use std::hash::{BuildHasher, Hasher};
    if input.is_nil() {
        return Ok(LiquidValue::Array(Vec::new()));
    }
    let mut items: Vec<LiquidValue> = match input.as_array() {
        Some(array) => array.values().map(ValueView::to_value).collect(),
        None => js_stringify(input)
            .chars()
            .map(|c| string(c.to_string()))
            .collect(),
    };
    // A Fisher-Yates shuffle seeded from the standard library's per-process random keys.
    let mut seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        | 1;
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let count = number_arg(args, 0, 1.0);
    if count == 1.0 {
        return Ok(items.into_iter().next().unwrap_or(LiquidValue::Nil));
    }
    items.truncate(count.max(0.0) as usize);
    Ok(LiquidValue::Array(items))
}

//! String filters: `squish`, `normalize_whitespace`, `number_of_words`, `remove_last`,
//! `replace_last`, `slugify`, `cgi_escape`, `uri_escape`.

use super::*;

/// JavaScript's `\s`.
fn is_space(c: char) -> bool {
    crate::json::is_js_whitespace(c)
}

/// `str.replace(/\s+/g, ' ')`.
fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if is_space(c) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

pub(super) fn squish(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let collapsed = collapse_spaces(&js_stringify(input));
    Ok(string(collapsed.trim_matches(is_space).to_owned()))
}

pub(super) fn normalize_whitespace(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    Ok(string(collapse_spaces(&js_stringify(input))))
}

/// The CJK ranges LiquidJS counts one character at a time.
fn is_cjk(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{3400}'..='\u{4DBF}'
        | '\u{3040}'..='\u{309F}' | '\u{30A0}'..='\u{30FF}' | '\u{AC00}'..='\u{D7AF}')
}

pub(super) fn number_of_words(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let text = text.trim_matches(is_space);
    if text.is_empty() {
        return Ok(number(0.0));
    }
    let words = || text.split(is_space).filter(|w| !w.is_empty()).count();
    // Runs of characters that are neither CJK nor spaces.
    let non_cjk = || {
        text.split(|c: char| is_cjk(c) || is_space(c))
            .filter(|w| !w.is_empty())
            .count()
    };
    let cjk = text.chars().filter(|c| is_cjk(*c)).count();
    let mode = args.get(0).map(|m| js_stringify(m));
    let n = match mode.as_deref() {
        Some("cjk") => cjk + non_cjk(),
        Some("auto") if cjk > 0 => cjk + non_cjk(),
        _ => words(),
    };
    Ok(number(n as f64))
}

pub(super) fn remove_last(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let pattern = args.get(0).map(|p| js_stringify(p)).unwrap_or_default();
    Ok(string(match text.rfind(&pattern) {
        Some(i) => format!("{}{}", &text[..i], &text[i + pattern.len()..]),
        None => text,
    }))
}

pub(super) fn replace_last(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let pattern = args.get(0).map(|p| js_stringify(p)).unwrap_or_default();
    let replacement = args.get(1).map(|p| js_stringify(p)).unwrap_or_default();
    Ok(string(match text.rfind(&pattern) {
        Some(i) => format!("{}{replacement}{}", &text[..i], &text[i + pattern.len()..]),
        None => text,
    }))
}

/// LiquidJS's `latin` mode: accents of common Latin letters removed.
fn remove_accents(c: char, out: &mut String) {
    let plain = match c {
        'à'..='å' => "a",
        'æ' => "ae",
        'ç' => "c",
        'è'..='ë' => "e",
        'ì'..='ï' => "i",
        'ð' => "d",
        'ñ' => "n",
        'ò'..='ö' | 'ø' => "o",
        'ù'..='ü' => "u",
        'ý' | 'ÿ' => "y",
        'ß' => "ss",
        'œ' => "oe",
        _ => {
            out.push(c);
            return;
        }
    };
    out.push_str(plain);
}

/// What `\p{L}`, `\p{M}` and `\p{Nd}` match (letters, marks, decimal digits), as far as Rust's
/// `char` classification reaches: alphabetic or numeric.
fn is_slug_char(c: char) -> bool {
    c.is_alphanumeric() || is_mark(c)
}

/// Combining marks in the common blocks (`\p{M}`).
fn is_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// Replaces each run of characters `keep` refuses with one `-`, then drops a leading and a
/// trailing `-`.
fn dash_runs(text: &str, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if keep(c) {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    let out = out.strip_prefix('-').unwrap_or(&out);
    out.strip_suffix('-').unwrap_or(out).to_owned()
}

pub(super) fn slugify(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let mode = args
        .get(0)
        .map_or_else(|| "default".to_owned(), |m| js_stringify(m));
    let cased = args
        .get(1)
        .is_some_and(|c| c.query_state(liquid::model::State::Truthy));
    let slug = match mode.as_str() {
        "raw" => dash_runs(&text, |c| !is_space(c)),
        "pretty" => dash_runs(&text, |c| is_slug_char(c) || "._~!$&'()+,;=@".contains(c)),
        "ascii" => dash_runs(&text, |c| c.is_ascii_alphanumeric()),
        "latin" => {
            let mut plain = String::with_capacity(text.len());
            text.chars().for_each(|c| remove_accents(c, &mut plain));
            dash_runs(&plain, is_slug_char)
        }
        "none" => text,
        // An unknown mode has no replacer in LiquidJS either.
        "default" => dash_runs(&text, is_slug_char),
        _ => text,
    };
    Ok(string(if cased { slug } else { slug.to_lowercase() }))
}

/// Percent-encodes every byte of `text` outside `keep`, in upper-case hex.
pub(super) fn percent_encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// `encodeURIComponent(s).replace(/%20/g, '+')` with `!'()*` encoded too.
pub(super) fn cgi_escape(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let encoded = percent_encode(&text, |b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
    Ok(string(encoded.replace("%20", "+")))
}

/// `encodeURI(s)` with `[` and `]` left as they are.
pub(super) fn uri_escape(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    Ok(string(percent_encode(&text, |b| {
        b.is_ascii_alphanumeric() || b"-_.!~*'();/?:@&=+$,#[]".contains(&b)
    })))
}

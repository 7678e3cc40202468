//! A row's columns: names and values in the caller's order, built for the row path. A row keeps
//! its JSON text, and every name and string value is a span of it (one allocation for all of a
//! row's text, and its strings side by side in memory; a string with escapes is decoded after
//! the text); other values are JSON. A row of a few dozen columns is
//! searched by scanning (names compared by length first), a wider one through a sorted index of
//! name hashes built when it is parsed. Mappings mostly look columns up by position (`get_at`,
//! with the position a path remembers), which costs one name comparison.
//!
//! Parsing reads the row's object itself (literals, integers and short decimals included), and
//! leaves nested arrays and objects, and other numbers, to serde_json.

use std::fmt;
use std::hash::BuildHasher as _;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::{Number, Value};

use super::VRef;

/// Rows wider than this get a hash index; narrower ones are scanned.
const SCAN_MAX: usize = 24;

/// A row's columns (a JSON object's entries, key order kept; a repeated key keeps its first
/// position and its last value, as a JavaScript object does).
#[derive(Clone, Default)]
pub struct Columns {
    /// The row's JSON text, then its strings that had escapes, decoded (rows parsed with
    /// [`parse_columns`]); every name and string value, one after another (rows deserialized).
    text: String,
    cols: Vec<Col>,
    /// For wide rows: `(hash of name, position)`, sorted.
    index: Option<Vec<(u64, u32)>>,
}

#[derive(Clone)]
struct Col {
    name: Span,
    value: Cell,
}

/// Where a name or a string is in `text`.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

#[derive(Clone)]
enum Cell {
    /// A string that had no escape in the row's JSON text (so needs none written).
    Plain(Span),
    Str(Span),
    /// An integer too long for 64 bits: its digits in the row's text.
    Int(Span),
    Json(Value),
}

/// The most text a row's names and strings may hold (spans are 32-bit).
const MAX_TEXT: usize = u32::MAX as usize;

/// Whether two byte strings are equal, compared a word at a time in line (names are short: a
/// call to `memcmp` would cost more than the comparison).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], at: usize| u32::from_ne_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    match n {
        0 => true,
        1..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => {
            // Whole words, then the last word (overlapping the one before it).
            let mut at = 0;
            while at + 8 < n {
                if word(a, at) != word(b, at) {
                    return false;
                }
                at += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        }
    }
}

/// The names of a row as it is read, in a 1024-bit filter of cheap hashes: a name whose bit is
/// already taken may repeat an earlier one.
#[derive(Default)]
struct Seen {
    bits: [u64; 16],
    maybe_repeated: bool,
}

impl Seen {
    #[inline]
    fn add(&mut self, name: &[u8]) {
        let h = quick_hash(name);
        let (word, bit) = (h >> 6, 1u64 << (h & 63));
        self.maybe_repeated |= self.bits[word] & bit != 0;
        self.bits[word] |= bit;
    }
}

/// Ten bits of a name: from its length and its first and last eight bytes.
#[inline]
fn quick_hash(name: &[u8]) -> usize {
    let n = name.len();
    let (a, b) = match name.get(..8) {
        Some(head) => (
            u64::from_le_bytes(head.try_into().unwrap_or_default()),
            u64::from_le_bytes(name[n - 8..].try_into().unwrap_or_default()),
        ),
        None => (name.iter().fold(0, |h, &c| h << 8 | u64::from(c)), 0),
    };
    let h = (a ^ b.rotate_left(23) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 54) as usize
}

fn hash(name: &str) -> u64 {
    // One random seed per process (the index only has to agree with itself), so names that
    // collide cannot be prepared in advance to make lookups slow.
    static STATE: std::sync::OnceLock<foldhash::fast::FixedState> = std::sync::OnceLock::new();
    STATE
        .get_or_init(|| {
            let seed = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
            foldhash::fast::FixedState::with_seed(seed)
        })
        .hash_one(name)
}

impl Columns {
    pub(crate) fn len(&self) -> usize {
        self.cols.len()
    }

    #[inline]
    fn text(&self, span: Span) -> &str {
        self.text
            .get(span.start as usize..span.end as usize)
            .unwrap_or_default()
    }

    /// The bytes of a span (no character-boundary checks: names are compared as bytes).
    #[inline]
    fn bytes(&self, span: Span) -> &[u8] {
        self.text
            .as_bytes()
            .get(span.start as usize..span.end as usize)
            .unwrap_or_default()
    }

    #[inline]
    fn name(&self, i: usize) -> &str {
        self.text(self.cols[i].name)
    }

    #[inline]
    fn value<'c>(&'c self, col: &'c Col) -> VRef<'c> {
        match &col.value {
            Cell::Plain(span) => VRef::Plain(self.text(*span)),
            Cell::Str(span) => VRef::Str(self.text(*span)),
            Cell::Int(span) => VRef::Int(self.text(*span)),
            Cell::Json(v) => VRef::Json(v),
        }
    }

    /// The column at position `i`.
    #[cfg(test)]
    pub(crate) fn get_index(&self, i: usize) -> Option<(&str, VRef<'_>)> {
        let col = self.cols.get(i)?;
        Some((self.text(col.name), self.value(col)))
    }

    /// The value at position `i` if that column is `name`: what a remembered position costs.
    #[inline]
    pub(crate) fn get_at(&self, i: usize, name: &str) -> Option<VRef<'_>> {
        let col = self.cols.get(i)?;
        same(self.bytes(col.name), name.as_bytes()).then(|| self.value(col))
    }

    /// The position and value of column `name`.
    pub(crate) fn get_full(&self, name: &str) -> Option<(usize, VRef<'_>)> {
        let i = self.position(name)?;
        Some((i, self.value(&self.cols[i])))
    }

    pub(crate) fn get(&self, name: &str) -> Option<VRef<'_>> {
        self.get_full(name).map(|(_, v)| v)
    }

    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => {
                let h = hash(name);
                let from = index.partition_point(|&(x, _)| x < h);
                index[from..]
                    .iter()
                    .take_while(|&&(x, _)| x == h)
                    .map(|&(_, i)| i as usize)
                    .find(|&i| self.name(i) == name)
            }
            None => self
                .cols
                .iter()
                .position(|c| same(self.bytes(c.name), name.as_bytes())),
        }
    }

    /// Names and values in order.
    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter {
            columns: self,
            cols: self.cols.iter(),
        }
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.cols.iter().map(|c| self.text(c.name))
    }

    /// Appends `s` to the text; `None` past [`MAX_TEXT`].
    fn push_text(&mut self, s: &str) -> Option<Span> {
        let start = self.text.len();
        if start + s.len() > MAX_TEXT {
            return None;
        }
        self.text.push_str(s);
        Some(Span {
            start: start as u32,
            end: self.text.len() as u32,
        })
    }

    /// A column from a name and a JSON value (strings go to the text).
    fn push_value(&mut self, name: Span, value: Value) -> Option<()> {
        let value = match value {
            Value::String(s) if super::is_plain(&s) => Cell::Plain(self.push_text(&s)?),
            Value::String(s) => Cell::Str(self.push_text(&s)?),
            v => Cell::Json(v),
        };
        self.cols.push(Col { name, value });
        Some(())
    }

    fn build_index(&self) -> Vec<(u64, u32)> {
        let mut index: Vec<(u64, u32)> = self
            .keys()
            .enumerate()
            .map(|(i, name)| (hash(name), i as u32))
            .collect();
        index.sort_unstable();
        index
    }

    /// After the columns are read: indexes a wide row, then merges repeated names (first
    /// position, last value), which is rare and so done the slow way. A narrow row is looked at
    /// only when `maybe_repeated` (its names' filter saw a bit taken twice).
    fn finish(mut self, maybe_repeated: bool) -> Columns {
        let repeated = if self.len() > SCAN_MAX {
            let index = self.build_index();
            // Names with equal hashes sit together: compare within each such run.
            let repeated = index
                .chunk_by(|a, b| a.0 == b.0)
                .filter(|run| run.len() > 1)
                .any(|run| {
                    run.iter().enumerate().any(|(k, a)| {
                        run[k + 1..]
                            .iter()
                            .any(|b| self.name(a.1 as usize) == self.name(b.1 as usize))
                    })
                });
            self.index = Some(index);
            repeated
        } else {
            maybe_repeated
                && self
                    .keys()
                    .enumerate()
                    .any(|(i, name)| self.position(name) != Some(i))
        };
        if !repeated {
            return self;
        }
        // Rare: merged the slow way, through a DoS-resistant map of where each name went. The
        // text stays as it is: spans still point into it.
        let cols = std::mem::take(&mut self.cols);
        let mut merged: Vec<Col> = Vec::with_capacity(cols.len());
        let mut at: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(cols.len());
        for col in cols {
            match at.get(self.text(col.name)) {
                Some(&j) => merged[j].value = col.value,
                None => {
                    at.insert(self.text(col.name), merged.len());
                    merged.push(col);
                }
            }
        }
        drop(at);
        self.cols = merged;
        self.index = (self.len() > SCAN_MAX).then(|| self.build_index());
        self
    }
}

impl PartialEq for Columns {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.cols.iter().zip(&other.cols).all(|(a, b)| {
                self.text(a.name) == other.text(b.name)
                    && match (&a.value, &b.value) {
                        (Cell::Plain(x) | Cell::Str(x), Cell::Plain(y) | Cell::Str(y)) => {
                            self.text(*x) == other.text(*y)
                        }
                        (Cell::Int(x), Cell::Int(y)) => self.text(*x) == other.text(*y),
                        (Cell::Json(x), Cell::Json(y)) => x == y,
                        _ => false,
                    }
            })
    }
}

impl fmt::Debug for Columns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The columns in order.
#[derive(Clone)]
pub struct Iter<'c> {
    columns: &'c Columns,
    cols: std::slice::Iter<'c, Col>,
}

impl<'c> Iterator for Iter<'c> {
    type Item = (&'c str, VRef<'c>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let c = self.cols.next()?;
        Some((self.columns.text(c.name), self.columns.value(c)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.cols.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'c> IntoIterator for &'c Columns {
    type Item = (&'c str, VRef<'c>);
    type IntoIter = Iter<'c>;

    fn into_iter(self) -> Iter<'c> {
        self.iter()
    }
}

#[cfg(test)]
impl<'k> FromIterator<(&'k str, Value)> for Columns {
    fn from_iter<I: IntoIterator<Item = (&'k str, Value)>>(iter: I) -> Columns {
        let mut columns = Columns::default();
        for (k, v) in iter {
            let name = columns.push_text(k).unwrap();
            columns.push_value(name, v).unwrap();
        }
        columns.finish(true)
    }
}

impl serde::Serialize for Columns {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Columns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Columns, D::Error> {
        deserialize_columns(d)
    }
}

/// Deserializes a JSON object into columns (a row file, a test's row; the service's rows come
/// through [`parse_columns`]).
pub fn deserialize_columns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Columns, D::Error> {
    d.deserialize_map(ColumnsVisitor)
}

struct ColumnsVisitor;

fn too_long<E: serde::de::Error>() -> E {
    E::custom("the row's names and strings are longer than 4 GiB")
}

impl<'de> Visitor<'de> for ColumnsVisitor {
    type Value = Columns;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Columns, A::Error> {
        let mut columns = Columns::default();
        while let Some(name) = map.next_key_seed(NameSeed(&mut columns))? {
            let name = name.ok_or_else(too_long)?;
            let value: Value = map.next_value()?;
            columns.push_value(name, value).ok_or_else(too_long)?;
        }
        Ok(columns.finish(true))
    }
}

/// Appends a map key to the text.
struct NameSeed<'b>(&'b mut Columns);

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = Option<Span>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<Span>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = Option<Span>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Option<Span>, E> {
        Ok(self.0.push_text(name))
    }
}

/// Parses a JSON object of columns (a row's `columns_json`), as serde_json would, but keeping
/// the text and its strings as spans of it.
pub fn parse_columns(bytes: &[u8]) -> Result<Columns, serde_json::Error> {
    // UTF-8 is checked once for the whole text, not string by string.
    let text = std::str::from_utf8(bytes).map_err(|e| custom(format_args!("not UTF-8: {e}")))?;
    // The text kept is the row's and, after it, its escaped strings decoded (no longer).
    if text.len() > MAX_TEXT / 2 {
        return Err(too_long());
    }
    let mut p = Parser { s: text, i: 0 };
    let mut columns = Columns {
        text: text.to_owned(),
        // About one column per 16 bytes: rarely more.
        cols: Vec::with_capacity((text.len() / 16).clamp(4, 256)),
        index: None,
    };
    let mut seen = Seen::default();
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(p.error("expected a JSON object"));
    }
    p.i += 1;
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            if p.peek() != Some(b'"') {
                return Err(p.error("expected a column name"));
            }
            let name = p.string(&mut columns.text)?;
            seen.add(columns.bytes(name));
            p.ws();
            if p.peek() != Some(b':') {
                return Err(p.error("expected `:`"));
            }
            p.i += 1;
            p.ws();
            let value = match p.peek() {
                Some(b'"') => {
                    let span = p.string(&mut columns.text)?;
                    // Still in the row's own text: it had no escape.
                    if span.end as usize <= text.len() {
                        Cell::Plain(span)
                    } else {
                        Cell::Str(span)
                    }
                }
                _ => match long_integer(&text.as_bytes()[p.i..]) {
                    Some(len) => {
                        let start = p.i as u32;
                        p.i += len;
                        Cell::Int(Span {
                            start,
                            end: p.i as u32,
                        })
                    }
                    None => Cell::Json(p.value(columns.text(name))?),
                },
            };
            columns.cols.push(Col { name, value });
            p.ws();
            match p.peek() {
                Some(b',') => {
                    p.i += 1;
                    p.ws();
                }
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return Err(p.error("expected `,` or `}`")),
            }
        }
    }
    p.ws();
    if p.i < text.len() {
        return Err(p.error("trailing characters"));
    }
    Ok(columns.finish(seen.maybe_repeated))
}

fn custom(msg: impl fmt::Display) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(msg)
}

/// Exact powers of ten as `f64` (every one up to 1e22 is).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The number `bytes` starts with and its length, for the common forms read exactly without
/// serde_json: an integer of up to 18 digits, or a decimal without exponent of up to 15
/// significant digits (a mantissa and a power of ten both exact as `f64`, so their quotient is
/// correctly rounded: the value serde_json reads). `None` for anything else, `-0` included.
fn simple_number(bytes: &[u8]) -> Option<(Number, usize)> {
    let negative = bytes.first() == Some(&b'-');
    let digits = |from: usize| {
        bytes[from.min(bytes.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let int_start = usize::from(negative);
    let int = digits(int_start);
    let leading_zero = int > 1 && bytes[int_start] == b'0';
    if int == 0 || int > 18 || leading_zero {
        return None;
    }
    let value = |from: usize, to: usize| {
        bytes[from..to]
            .iter()
            .filter(|b| b.is_ascii_digit())
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'))
    };
    let mut end = int_start + int;
    match bytes.get(end) {
        Some(b'e' | b'E') => None,
        Some(b'.') => {
            let frac = digits(end + 1);
            end += 1 + frac;
            if frac == 0 || int + frac > 15 || matches!(bytes.get(end), Some(b'e' | b'E')) {
                return None;
            }
            let f = value(int_start, end) as f64 / POW10[frac];
            let f = if negative { -f } else { f };
            (f != 0.0).then_some(())?;
            Some((Number::from_f64(f)?, end))
        }
        _ => {
            let n = value(int_start, end);
            let n = if negative {
                // `-0` is left to serde_json.
                (n != 0).then_some(())?;
                Number::from(-(n as i64))
            } else {
                Number::from(n)
            };
            Some((n, end))
        }
    }
}

/// The length of the integer `bytes` starts with when it is too long for 64 bits (more than 19
/// digits and not an `i64` or `u64`; no fraction or exponent after it): such a column keeps its
/// digits, where serde_json would round it to a double.
fn long_integer(bytes: &[u8]) -> Option<usize> {
    let sign = usize::from(bytes.first() == Some(&b'-'));
    let digits = bytes[sign..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = sign + digits;
    if digits < 20 || bytes[sign] == b'0' || matches!(bytes.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    (text.parse::<i64>().is_err() && text.parse::<u64>().is_err()).then_some(end)
}

/// Reads a row's JSON text.
struct Parser<'s> {
    s: &'s str,
    i: usize,
}

impl Parser<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// An error at the current position, with its line and column as serde_json gives them.
    fn error(&self, what: &str) -> serde_json::Error {
        let before = &self.s.as_bytes()[..self.i.min(self.s.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
        let what = if self.i >= self.s.len() {
            "EOF while parsing the columns"
        } else {
            what
        };
        custom(format_args!("{what} at line {line} column {column}"))
    }

    /// A string (at its opening quote). `text` starts with the row's JSON text itself, so a
    /// string without escapes is where it already is; one with escapes is decoded onto its end.
    #[inline(always)]
    fn string(&mut self, text: &mut String) -> Result<Span, serde_json::Error> {
        let start = self.i + 1;
        // Up to the closing quote, or a backslash or control character, eight bytes at a time.
        match super::next_escape(self.s.as_bytes(), start) {
            Some(j) if self.s.as_bytes()[j] == b'"' => {
                self.i = j + 1;
                Ok(Span {
                    start: start as u32,
                    end: j as u32,
                })
            }
            _ => self.escaped_string(text),
        }
    }

    /// The same for a string with escapes (or an error).
    #[cold]
    #[inline(never)]
    fn escaped_string(&mut self, text: &mut String) -> Result<Span, serde_json::Error> {
        let bytes = self.s.as_bytes();
        let decoded = text.len();
        self.i += 1;
        loop {
            let Some(j) = super::next_escape(bytes, self.i) else {
                self.i = bytes.len();
                return Err(self.error("EOF while parsing a string"));
            };
            text.push_str(&self.s[self.i..j]);
            self.i = j;
            match bytes[j] {
                b'"' => {
                    self.i += 1;
                    break;
                }
                b'\\' => self.escape(text)?,
                _ => {
                    return Err(self.error(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
            }
        }
        Ok(Span {
            start: decoded as u32,
            end: text.len() as u32,
        })
    }

    /// An escape (at its backslash), decoded onto `text`.
    fn escape(&mut self, text: &mut String) -> Result<(), serde_json::Error> {
        let c = match self.s.as_bytes().get(self.i + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.i += 2;
                let high = self.hex4()?;
                let c = match high {
                    0xD800..=0xDBFF => {
                        if !self.s[self.i..].starts_with("\\u") {
                            return Err(self.error("lone leading surrogate in hex escape"));
                        }
                        self.i += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(self.error("lone leading surrogate in hex escape"));
                        }
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.error("lone trailing surrogate in hex escape"));
                    }
                    c => c,
                };
                let c =
                    char::from_u32(c).ok_or_else(|| self.error("invalid unicode code point"))?;
                text.push(c);
                return Ok(());
            }
            _ => return Err(self.error("invalid escape")),
        };
        text.push(c);
        self.i += 2;
        Ok(())
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Result<u32, serde_json::Error> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("invalid escape"))?;
        self.i += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid escape"))
    }

    /// Any value but a string: literals and small integers here, the rest through serde_json.
    fn value(&mut self, column: &str) -> Result<Value, serde_json::Error> {
        let rest = &self.s[self.i..];
        let bytes = rest.as_bytes();
        let literal = match bytes.first() {
            Some(b't') => Some(("true", Value::Bool(true))),
            Some(b'f') => Some(("false", Value::Bool(false))),
            Some(b'n') => Some(("null", Value::Null)),
            _ => None,
        };
        if let Some((word, value)) = literal
            && rest.starts_with(word)
        {
            self.i += word.len();
            return Ok(value);
        }
        if let Some((n, len)) = simple_number(bytes) {
            self.i += len;
            return Ok(Value::Number(n));
        }
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match values.next() {
            Some(Ok(value)) => {
                self.i += values.byte_offset();
                Ok(value)
            }
            Some(Err(e)) => Err(custom(format_args!("column {column:?}: {e}"))),
            None => Err(self.error("expected a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(text: &str) -> Columns {
        parse_columns(text.as_bytes()).unwrap()
    }

    fn value(v: Option<VRef<'_>>) -> Option<Value> {
        v.map(VRef::to_value)
    }

    fn written(v: VRef<'_>) -> String {
        let mut out = Vec::new();
        v.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// Integers too long for 64 bits keep every digit; everything 64 bits hold, and every
    /// number with a fraction or an exponent, is JSON's number as before.
    #[test]
    fn long_integers_keep_their_digits() {
        let c = parse(
            r#"{"big": 123456789012345678901234567890, "neg": -98765432109876543210987,
                "u64": 18446744073709551615, "i64": -9223372036854775808,
                "over_u64": 18446744073709551616, "frac": 123456789012345678901234.5,
                "exp": 12345678901234567890123e2, "zero": 0, "nested": [123456789012345678901234567890]}"#,
        );
        let kept = |name: &str| matches!(c.get(name), Some(VRef::Int(_)));
        assert_eq!(
            written(c.get("big").unwrap()),
            "123456789012345678901234567890"
        );
        assert_eq!(written(c.get("neg").unwrap()), "-98765432109876543210987");
        assert_eq!(written(c.get("over_u64").unwrap()), "18446744073709551616");
        assert!(kept("big") && kept("neg") && kept("over_u64"));
        for name in ["u64", "i64", "frac", "exp", "zero", "nested"] {
            assert!(!kept(name), "{name}");
        }
        assert_eq!(written(c.get("u64").unwrap()), "18446744073709551615");
        // A number still: its type, truthiness, its double for computing, equality by digits.
        let big = c.get("big").unwrap();
        assert_eq!(big.type_name(), "number");
        assert!(big.truthy());
        assert_eq!(big.to_value(), json!(1.2345678901234568e29));
        assert_ne!(
            parse(r#"{"n": 123456789012345678901234567890}"#),
            parse(r#"{"n": 123456789012345678901234567891}"#)
        );
    }

    /// What serde_json makes of `text` as an object, as columns would hold it.
    fn serde(text: &str) -> Result<Vec<(String, Value)>, serde_json::Error> {
        let map: serde_json::Map<String, Value> = serde_json::from_str(text)?;
        Ok(map.into_iter().collect())
    }

    fn ours(text: &str) -> Result<Vec<(String, Value)>, serde_json::Error> {
        let c = parse_columns(text.as_bytes())?;
        Ok(c.iter()
            .map(|(k, v)| (k.to_owned(), v.to_value()))
            .collect())
    }

    #[test]
    fn compares_names_of_every_length() {
        let names: Vec<String> = (0..40)
            .map(|n| "abcdefghij".repeat(4)[..n].into())
            .collect();
        for a in &names {
            for b in &names {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
                // One byte changed anywhere: different.
                for i in 0..b.len() {
                    let mut c = b.clone().into_bytes();
                    c[i] = b'Z';
                    assert_eq!(same(a.as_bytes(), &c), a.as_bytes() == c, "{a:?} {c:?}");
                }
            }
        }
        let c = parse(r#"{"user_id": 1, "a_much_longer_column_name": "two"}"#);
        assert_eq!(value(c.get_at(0, "user_id")), Some(json!(1)));
        assert!(c.get_at(0, "user_iD").is_none());
        assert_eq!(
            value(c.get_at(1, "a_much_longer_column_name")),
            Some(json!("two"))
        );
        assert!(c.get_at(1, "a_much_longer_column_namE").is_none());
        assert!(c.get_at(2, "user_id").is_none());
    }

    #[test]
    fn keeps_order_and_finds_by_name_and_position() {
        let c = parse(r#"{"b": 1, "a": "x", "": null, "ab": [true]}"#);
        assert_eq!(c.keys().collect::<Vec<_>>(), ["b", "a", "", "ab"]);
        // A string without escapes is known to need none.
        assert!(matches!(c.get("a"), Some(VRef::Plain("x"))));
        assert_eq!(value(c.get("")), Some(Value::Null));
        assert_eq!(value(c.get("ab")), Some(json!([true])));
        assert!(c.get("abc").is_none());
        assert_eq!(c.get_full("ab").map(|(i, _)| i), Some(3));
        assert!(matches!(c.get_index(1), Some(("a", VRef::Plain("x")))));
        assert!(c.get_index(4).is_none());
    }

    #[test]
    fn a_repeated_name_keeps_its_first_position_and_its_last_value() {
        for n in [3, SCAN_MAX + 10] {
            let mut text = String::from(r#"{"dup": 1"#);
            for i in 0..n {
                text.push_str(&format!(r#", "c{i}": "{i}""#));
            }
            text.push_str(r#", "dup": "two"}"#);
            let c = parse(&text);
            assert_eq!(c.len(), n + 1, "{n}");
            assert!(
                matches!(c.get_index(0), Some(("dup", VRef::Plain("two")))),
                "{n}"
            );
            for i in 0..n {
                assert_eq!(value(c.get(&format!("c{i}"))), Some(json!(i.to_string())));
            }
            // As serde_json (a map keeping order) has it.
            assert_eq!(ours(&text).unwrap(), serde(&text).unwrap());
        }
    }

    #[test]
    fn wide_rows_are_indexed_and_found() {
        let wide: serde_json::Map<String, Value> =
            (0..500).map(|i| (format!("col_{i}"), json!(i))).collect();
        let c = parse(&Value::Object(wide).to_string());
        assert!(c.index.is_some());
        for i in 0..500 {
            let (at, v) = c.get_full(&format!("col_{i}")).unwrap();
            assert_eq!((at, v.to_value()), (i, json!(i)));
        }
        assert!(c.get("col_500").is_none());
    }

    #[test]
    fn a_wide_row_of_repeated_names_merges_and_stays_indexed() {
        let mut text = String::from("{");
        for round in 0..2 {
            for i in 0..5000 {
                if text.len() > 1 {
                    text.push(',');
                }
                text.push_str(&format!(r#""c{i}": {}"#, i + round * 10_000));
            }
        }
        text.push('}');
        let c = parse(&text);
        assert_eq!(c.len(), 5000);
        assert!(c.index.is_some());
        assert_eq!(value(c.get_index(7).map(|(_, v)| v)), Some(json!(10_007)));
        let (at, v) = c.get_full("c4999").unwrap();
        assert_eq!((at, v.to_value()), (4999, json!(14_999)));
    }

    #[test]
    fn escaped_names_and_strings_are_decoded_and_serialisation_round_trips() {
        let text = r#"{"a\"b": 1, "\u00e9": "\ud83d\ude00 \\ \/ \b\f\n\r\t", "s": "plain"}"#;
        let c = parse(text);
        assert_eq!(value(c.get("a\"b")), Some(json!(1)));
        assert_eq!(value(c.get("é")), Some(json!("😀 \\ / \u{8}\u{c}\n\r\t")));
        assert_eq!(ours(text).unwrap(), serde(text).unwrap());
        let back: Columns = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        // Decoded strings may need escaping again; plain ones not.
        assert!(matches!(c.get("é"), Some(VRef::Str(_))));
        assert!(matches!(c.get("s"), Some(VRef::Plain("plain"))));
    }

    /// Every text serde_json takes as an object, this takes with the same entries, and every
    /// text it refuses, this refuses.
    #[test]
    fn agrees_with_serde_json_on_chosen_texts() {
        for text in [
            "{}",
            " { } ",
            "{\"a\":1}",
            "{\"a\" : -0, \"b\": -12, \"c\": 1.5e3, \"d\": 18446744073709551615}",
            "{\"a\": 18446744073709551616, \"b\": 99999999999999999999, \"c\": 0}",
            "{\"a\": 1e400}",
            "{\"a\": 0.1, \"b\": -2.5, \"c\": 1234.5, \"d\": 0.000001, \"e\": 9.007199254740993}",
            "{\"a\": 123456789012345.6, \"b\": 999999999999999999, \"c\": -999999999999999999}",
            "{\"a\": -0.0, \"b\": 0.0, \"c\": -0, \"d\": 1.0, \"e\": 00.5, \"f\": -01}",
            "{\"a\": 1.5E3, \"b\": 2e-3, \"c\": 1.e3, \"d\": -.5, \"e\": 1.5.5}",
            "{\"a\": [1, {\"b\": [null]}], \"c\": {\"d\": \"e\"}, \"f\": true, \"g\": false}",
            "{\"a\": \"\\ud800\"}",
            "{\"a\": \"\\udc00\"}",
            "{\"a\": \"\\ud800\\u0041\"}",
            "{\"a\": \"\\x\"}",
            "{\"a\": \"\\u12\"}",
            "{\"a\": \"tab\there\"}",
            "{\"a\": \"nl\nhere\"}",
            "{\"a\": 01}",
            "{\"a\": 1.}",
            "{\"a\": .5}",
            "{\"a\": -}",
            "{\"a\": +1}",
            "{\"a\": 1x}",
            "{\"a\": tru}",
            "{\"a\": truex}",
            "{\"a\": nul}",
            "{\"a\": }",
            "{\"a\" 1}",
            "{\"a\": 1,}",
            "{\"a\": 1 \"b\": 2}",
            "{a: 1}",
            "{\"a\": 1} x",
            "{\"a\": 1}}",
            "{\"a\": [1, 2}",
            "{\"a\": \"unterminated",
            "{\"a\": 1",
            "{",
            "",
            "[1]",
            "null",
            "\"s\"",
        ] {
            let (a, b) = (ours(text), serde(text));
            match (&a, &b) {
                (Ok(x), Ok(y)) => assert_eq!(x, y, "{text}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{text}: ours {a:?}, serde_json {b:?}"),
            }
        }
        let e = parse_columns(b"{\"a\": 1,\n \"b\" 2}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected `:` at line 2 column 6"), "{e}");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::from),
            "[a-z\"\\\\\n\t\u{1}é😀]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..4)
                    .prop_map(|e| Value::Object(e.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Integers and decimals read exactly as serde_json reads them, on either side of the
        /// limits of the quick path (18 digits, 15 significant digits).
        #[test]
        fn numbers_read_as_serde_json_reads_them(
            number in "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,17})?",
        ) {
            let text = format!("{{\"n\": {number}}}");
            prop_assert_eq!(ours(&text).unwrap(), serde(&text).unwrap());
            let quick = simple_number(number.as_bytes()).map(|(n, _)| n);
            if let Some(n) = quick {
                prop_assert_eq!(Some(n), number.parse::<Number>().ok());
            }
        }

        /// Random rows, written compactly or pretty, read as serde_json reads them; and any
        /// text (cut short, or bytes changed) accepted or refused as serde_json does.
        #[test]
        fn agrees_with_serde_json_on_random_rows(
            columns in prop::collection::vec(("[a-z\"é]{0,6}", json_value()), 0..12),
            pretty in any::<bool>(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut text = String::from("{");
            for (i, (k, v)) in columns.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                if pretty {
                    text.push_str("\n  ");
                }
                text.push_str(&serde_json::to_string(k).unwrap());
                text.push_str(if pretty { ": " } else { ":" });
                let v = if pretty {
                    serde_json::to_string_pretty(v).unwrap()
                } else {
                    v.to_string()
                };
                text.push_str(&v);
            }
            text.push('}');
            prop_assert_eq!(ours(&text).unwrap(), serde(&text).unwrap());
            // What is marked plain is written without a scan: it must need no escape.
            for (_, v) in parse(&text).iter() {
                if let VRef::Plain(s) = v {
                    prop_assert!(super::super::is_plain(s), "{:?}", s);
                }
            }
            let mut bytes = text.clone().into_bytes();
            bytes.truncate(cut.index(bytes.len() + 1));
            if !bytes.is_empty() {
                let at = flip.index(bytes.len());
                bytes[at] = byte;
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let (a, b) = (ours(text), serde(text));
                prop_assert_eq!(a.is_ok(), b.is_ok(), "{}: {:?} {:?}", text, a, b);
                if let (Ok(a), Ok(b)) = (a, b) {
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}

//! A row's columns: names and values in the caller's order, built for the row path. All the
//! names share one buffer (one allocation per row, not one per column); a row of a few dozen
//! columns is searched by scanning (names compared by length first), a wider one through a sorted
//! index of name hashes built when it is parsed. Mappings mostly look columns up by position
//! (`get_index`, with the position a path remembers), which costs nothing here.

use std::fmt;
use std::hash::BuildHasher as _;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::Value;

/// Rows wider than this get a hash index; narrower ones are scanned.
const SCAN_MAX: usize = 24;

/// A row's columns (a JSON object's entries, key order kept; a repeated key keeps its first
/// position and its last value, as a JavaScript object does).
#[derive(Clone, Default)]
pub struct Columns {
    /// Every name, one after another.
    names: String,
    /// Each column: where its name ends in `names` (it starts where the previous one ends).
    ends: Vec<u32>,
    values: Vec<Value>,
    /// For wide rows: `(hash of name, position)`, sorted.
    index: Option<Vec<(u64, u32)>>,
}

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
    /// Empty, with room for `n` columns.
    pub fn with_capacity(n: usize) -> Columns {
        Columns {
            names: String::with_capacity(n * 12),
            ends: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
            index: None,
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    #[inline]
    fn name(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.names[start..self.ends[i] as usize]
    }

    /// The column at position `i`.
    #[inline]
    pub fn get_index(&self, i: usize) -> Option<(&str, &Value)> {
        let value = self.values.get(i)?;
        Some((self.name(i), value))
    }

    /// The value at position `i` if that column is `name`: what a remembered position costs.
    #[inline]
    pub fn get_at(&self, i: usize, name: &str) -> Option<&Value> {
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        let found = self.names.as_bytes().get(start..end)?;
        same(found, name.as_bytes()).then(|| &self.values[i])
    }

    /// The position and value of column `name`.
    pub fn get_full(&self, name: &str) -> Option<(usize, &Value)> {
        let i = self.position(name)?;
        Some((i, &self.values[i]))
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
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
            None => {
                let mut start = 0;
                for (i, &end) in self.ends.iter().enumerate() {
                    let end = end as usize;
                    if end - start == name.len() && &self.names[start..end] == name {
                        return Some(i);
                    }
                    start = end;
                }
                None
            }
        }
    }

    /// Names and values in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            columns: self,
            next: 0,
            start: 0,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// Adds a column, or replaces the value of the one already named so (keeping its position).
    pub fn insert(&mut self, name: &str, value: Value) {
        if let Some(i) = self.position(name) {
            self.values[i] = value;
            return;
        }
        self.push(name, value);
        let i = self.len() - 1;
        if let Some(index) = &mut self.index {
            // Kept sorted: one entry placed, not the whole index rebuilt.
            let entry = (hash(name), i as u32);
            let at = index.partition_point(|e| *e < entry);
            index.insert(at, entry);
        } else if self.len() > SCAN_MAX {
            self.index = Some(self.build_index());
        }
    }

    /// Appends without looking for the name: `finish` settles repeated names afterwards.
    fn push(&mut self, name: &str, value: Value) {
        self.names.push_str(name);
        self.ends
            .push(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        self.values.push(value);
    }

    fn build_index(&self) -> Vec<(u64, u32)> {
        let mut index: Vec<(u64, u32)> = self
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (hash(name), i as u32))
            .collect();
        index.sort_unstable();
        index
    }

    /// After `push`es: indexes a wide row, then merges repeated names (first position, last
    /// value), which is rare and so done the slow way.
    fn finish(mut self) -> Columns {
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
            // A 256-bit filter of name hashes: only a name whose bit is taken is looked up.
            let mut seen = [0u64; 4];
            self.iter().enumerate().any(|(i, (name, _))| {
                let h = hash(name) as usize & 255;
                let (word, bit) = (h >> 6, 1u64 << (h & 63));
                let maybe = seen[word] & bit != 0;
                seen[word] |= bit;
                maybe && self.position(name) != Some(i)
            })
        };
        if !repeated {
            return self;
        }
        // Rare: merged the slow way, through a DoS-resistant map of where each name went.
        let values = std::mem::take(&mut self.values);
        let mut merged = Columns::with_capacity(values.len());
        let mut at = std::collections::HashMap::with_capacity(values.len());
        for (i, value) in values.into_iter().enumerate() {
            let name = self.name(i);
            match at.get(name) {
                Some(&j) => merged.values[j] = value,
                None => {
                    at.insert(name, merged.len());
                    merged.push(name, value);
                }
            }
        }
        if merged.len() > SCAN_MAX {
            merged.index = Some(merged.build_index());
        }
        merged
    }
}

impl PartialEq for Columns {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Columns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The columns in order.
#[derive(Debug, Clone)]
pub struct Iter<'c> {
    columns: &'c Columns,
    next: usize,
    start: usize,
}

impl<'c> Iterator for Iter<'c> {
    type Item = (&'c str, &'c Value);

    fn next(&mut self) -> Option<Self::Item> {
        let c = self.columns;
        let value = c.values.get(self.next)?;
        let end = c.ends[self.next] as usize;
        let name = &c.names[self.start..end];
        self.start = end;
        self.next += 1;
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.columns.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'c> IntoIterator for &'c Columns {
    type Item = (&'c str, &'c Value);
    type IntoIter = Iter<'c>;

    fn into_iter(self) -> Iter<'c> {
        self.iter()
    }
}

impl<'k> FromIterator<(&'k str, Value)> for Columns {
    fn from_iter<I: IntoIterator<Item = (&'k str, Value)>>(iter: I) -> Columns {
        let mut columns = Columns::default();
        for (k, v) in iter {
            columns.push(k, v);
        }
        columns.finish()
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

/// Parses a JSON object of columns (a row's `columns_json`).
pub fn parse_columns(bytes: &[u8]) -> Result<Columns, serde_json::Error> {
    // Validating UTF-8 once for the whole text is cheaper than string by string.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        <serde_json::Error as serde::de::Error>::custom(format_args!("not UTF-8: {e}"))
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let columns = deserialize_columns(&mut de)?;
    de.end()?;
    Ok(columns)
}

/// Deserializes a JSON object into columns.
pub fn deserialize_columns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Columns, D::Error> {
    d.deserialize_map(ColumnsVisitor)
}

struct ColumnsVisitor;

impl<'de> Visitor<'de> for ColumnsVisitor {
    type Value = Columns;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Columns, A::Error> {
        let mut columns = Columns::with_capacity(map.size_hint().unwrap_or(32).min(1024));
        // Each name is appended straight to the shared buffer (no String per name).
        while map.next_key_seed(NameSeed(&mut columns.names))?.is_some() {
            let value: Value = map.next_value()?;
            columns
                .ends
                .push(u32::try_from(columns.names.len()).unwrap_or(u32::MAX));
            columns.values.push(value);
        }
        Ok(columns.finish())
    }
}

/// Appends a map key to the names buffer.
struct NameSeed<'b>(&'b mut String);

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<(), E> {
        self.0.push_str(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Columns {
        parse_columns(text.as_bytes()).unwrap()
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
        let c = parse(r#"{"user_id": 1, "a_much_longer_column_name": 2}"#);
        assert_eq!(c.get_at(0, "user_id"), Some(&json!(1)));
        assert_eq!(c.get_at(0, "user_iD"), None);
        assert_eq!(c.get_at(1, "a_much_longer_column_name"), Some(&json!(2)));
        assert_eq!(c.get_at(1, "a_much_longer_column_namE"), None);
        assert_eq!(c.get_at(2, "user_id"), None);
    }

    #[test]
    fn keeps_order_and_finds_by_name_and_position() {
        let c = parse(r#"{"b": 1, "a": "x", "": null, "ab": [true]}"#);
        assert_eq!(c.keys().collect::<Vec<_>>(), ["b", "a", "", "ab"]);
        assert_eq!(c.get("a"), Some(&json!("x")));
        assert_eq!(c.get(""), Some(&Value::Null));
        assert_eq!(c.get("ab"), Some(&json!([true])));
        assert_eq!(c.get("abc"), None);
        assert_eq!(c.get_full("ab").map(|(i, _)| i), Some(3));
        assert_eq!(c.get_index(1), Some(("a", &json!("x"))));
        assert_eq!(c.get_index(4), None);
    }

    #[test]
    fn a_repeated_name_keeps_its_first_position_and_its_last_value() {
        for n in [3, SCAN_MAX + 10] {
            let mut text = String::from(r#"{"dup": 1"#);
            for i in 0..n {
                text.push_str(&format!(r#", "c{i}": {i}"#));
            }
            text.push_str(r#", "dup": 2}"#);
            let c = parse(&text);
            assert_eq!(c.len(), n + 1, "{n}");
            assert_eq!(c.get_index(0), Some(("dup", &json!(2))), "{n}");
            assert_eq!(c.get("dup"), Some(&json!(2)), "{n}");
            for i in 0..n {
                assert_eq!(c.get(&format!("c{i}")), Some(&json!(i)), "{n}");
            }
        }
    }

    #[test]
    fn wide_rows_are_indexed_and_found() {
        let wide: serde_json::Map<String, Value> =
            (0..500).map(|i| (format!("col_{i}"), json!(i))).collect();
        let c = parse(&Value::Object(wide).to_string());
        assert!(c.index.is_some());
        for i in 0..500 {
            assert_eq!(c.get_full(&format!("col_{i}")), Some((i, &json!(i))));
        }
        assert_eq!(c.get("col_500"), None);
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
        let mut c = parse(&text);
        assert_eq!(c.len(), 5000);
        assert_eq!(c.get_index(7), Some(("c7", &json!(10_007))));
        assert_eq!(c.get_full("c4999"), Some((4999, &json!(14_999))));
        c.insert("new", json!(true));
        c.insert("c3", json!(null));
        assert_eq!(c.get_full("new"), Some((5000, &json!(true))));
        assert_eq!(c.get_full("c3"), Some((3, &Value::Null)));
        assert_eq!(c.get_full("c4998"), Some((4998, &json!(14_998))));
    }

    #[test]
    fn escaped_names_are_decoded_and_serialisation_round_trips() {
        let c = parse(r#"{"a\"b": 1, "\u00e9": 2}"#);
        assert_eq!(c.get("a\"b"), Some(&json!(1)));
        assert_eq!(c.get("é"), Some(&json!(2)));
        let back: Columns = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn insert_replaces_in_place_or_appends() {
        let mut c = Columns::default();
        c.insert("a", json!(1));
        c.insert("b", json!(2));
        c.insert("a", json!(3));
        assert_eq!(format!("{c:?}"), r#"{"a": Number(3), "b": Number(2)}"#);
    }

    #[test]
    fn not_an_object_is_an_error() {
        assert!(parse_columns(b"[1]").is_err());
        assert!(parse_columns(b"{\"a\": }").is_err());
        assert!(parse_columns(b"{} x").is_err());
    }
}

//! `@path` and template paths, split as Segment's `get` splits them and walked with JavaScript's
//! `prev && prev[key]`, so a falsy value part-way answers itself and strings have a `length`.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use super::envelope::{EnvRoot, Scope};
use crate::json::{Columns, Kind, VRef, Val, js_len};

/// A compiled path: its keys, split once at compile time, and what its first key names in the
/// envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Path {
    keys: Box<[Box<str>]>,
    root: EnvRoot,
    column: ColumnHint,
}

/// Where the column a `$.properties.<column>` path names was last found. Rows of one model
/// share their column order, so the next row usually has it at the same index: one key
/// comparison instead of a hash lookup.
#[derive(Debug, Default)]
struct ColumnHint(AtomicU32);

impl Clone for ColumnHint {
    fn clone(&self) -> Self {
        ColumnHint(AtomicU32::new(self.0.load(Ordering::Relaxed)))
    }
}

impl PartialEq for ColumnHint {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ColumnHint {}

impl ColumnHint {
    #[inline(always)]
    fn get<'c>(&self, columns: &'c Columns, key: &str) -> Option<VRef<'c>> {
        let hint = self.0.load(Ordering::Relaxed) as usize;
        match columns.get_at(hint, key) {
            Some(v) => Some(v),
            None => self.find(columns, key),
        }
    }

    /// Not where it was: looked up by name, and the position remembered.
    #[cold]
    fn find<'c>(&self, columns: &'c Columns, key: &str) -> Option<VRef<'c>> {
        let (i, v) = columns.get_full(key)?;
        self.0
            .store(u32::try_from(i).unwrap_or(0), Ordering::Relaxed);
        Some(v)
    }
}

impl Path {
    /// An `@path` or `@arrayPath` argument: the first `$.` is removed, then split as `get` does.
    pub(super) fn parse_directive(src: &str) -> Path {
        match src.find("$.") {
            Some(i) => Path::parse_get(&format!("{}{}", &src[..i], &src[i + 2..])),
            None => Path::parse_get(src),
        }
    }

    /// A template placeholder: split as `get` does (no `$.` removal).
    pub(super) fn parse_get(src: &str) -> Path {
        let keys: Box<[Box<str>]> = if src.is_empty() || src == "." {
            Box::new([])
        } else {
            split(src)
                .into_iter()
                .filter(|k| !k.is_empty())
                .map(|k| k.replace(['\'', '"'], "").into_boxed_str())
                .collect()
        };
        let root = EnvRoot::of(keys.first().map(|k| &**k));
        Path {
            keys,
            root,
            column: ColumnHint::default(),
        }
    }

    /// The column a `$.properties.<column>` path names.
    pub(super) fn column(&self) -> Option<&str> {
        match (self.root, &self.keys[..]) {
            (EnvRoot::Properties, [_, column]) => Some(column),
            _ => None,
        }
    }

    /// For a `$.properties.<column>` path, that column of `columns` (where it was in the last
    /// row, else looked up); `None` for another path.
    #[inline]
    pub(super) fn column_in<'c>(&self, columns: &'c Columns) -> Option<VRef<'c>> {
        self.column.get(columns, self.column()?)
    }

    /// Whether this path is `$.messageId`.
    pub(super) fn is_message_id(&self) -> bool {
        self.root == EnvRoot::MessageId && self.keys.len() == 1
    }

    /// Whether what this path finds is always borrowed (no `length`, no string indexing), so
    /// [`Path::resolve`] never computes a value for it.
    pub(super) fn borrows(&self) -> bool {
        self.keys
            .iter()
            .skip(1)
            .all(|k| &**k != "length" && array_index(k).is_none())
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| &**k)
    }

    /// The value at this path in `scope`, `None` for `undefined`.
    pub(super) fn resolve<'a>(&self, scope: &Scope<'a>) -> Option<Val<'a>> {
        let (start, rest) = match scope {
            Scope::Env(env) => match (self.root, &self.keys[..]) {
                (EnvRoot::Whole, _) => return Some(Val::Ref(env.as_value())),
                // The common case, `$.properties.<column>`: straight to the column (a column
                // found is its own value: nothing to walk).
                (EnvRoot::Properties, [_, _]) => {
                    return self.column_in(&env.row().columns).map(VRef::to_val);
                }
                (EnvRoot::Properties, [_, column, rest @ ..]) => {
                    (self.column.get(&env.row().columns, column)?, rest)
                }
                (root, [_, rest @ ..]) => (env.root(root)?, rest),
                (_, []) => return Some(Val::Ref(env.as_value())),
            },
            Scope::Node(node) => (*node, &self.keys[..]),
            Scope::Nothing => return None,
        };
        walk(start, rest)
    }
}

/// Splits like `path.split(/\[(?="|'|\d)|\.|(?<="|'|\d)]+/)`.
fn split(src: &str) -> Vec<&str> {
    let b = src.as_bytes();
    let quoteish = |c: u8| c == b'"' || c == b'\'' || c.is_ascii_digit();
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        let delim_len = match b[i] {
            b'[' if b.get(i + 1).is_some_and(|&c| quoteish(c)) => 1,
            b'.' => 1,
            b']' if i > 0 && quoteish(b[i - 1]) => {
                b[i..].iter().take_while(|&&c| c == b']').count()
            }
            _ => 0,
        };
        if delim_len > 0 {
            parts.push(&src[start..i]);
            i += delim_len;
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(&src[start..]);
    parts
}

/// One step of a walk: borrowed where possible; `length` and string indexing compute values.
enum Step<'a> {
    Ref(VRef<'a>),
    Own(Value),
}

/// Walks `keys` from `start` with `prev && prev[key]`.
pub(super) fn walk<'a>(start: VRef<'a>, keys: &[Box<str>]) -> Option<Val<'a>> {
    let mut cur = Step::Ref(start);
    for key in keys {
        cur = match cur {
            Step::Ref(v) => {
                if !v.truthy() {
                    return Some(v.to_val());
                }
                match v.kind() {
                    Kind::Object(o) => Step::Ref(o.get(key)?),
                    Kind::Array(a) => match &**key {
                        "length" => Step::Own(Value::from(a.len())),
                        k => Step::Ref(a.get(array_index(k)?)?),
                    },
                    Kind::Str(s) => Step::Own(string_member(s, key)?),
                    _ => return None,
                }
            }
            Step::Own(v) => {
                if !VRef::Json(&v).truthy() {
                    return Some(Val::Own(v));
                }
                match v {
                    Value::String(s) => Step::Own(string_member(&s, key)?),
                    _ => return None,
                }
            }
        };
    }
    Some(match cur {
        Step::Ref(v) => v.to_val(),
        Step::Own(v) => Val::Own(v),
    })
}

/// A canonical array index (`"0"`, `"12"`, not `"01"`).
fn array_index(key: &str) -> Option<usize> {
    if key.len() > 1 && key.starts_with('0') {
        return None;
    }
    key.parse().ok()
}

/// `s[key]` for a JavaScript string: `length` and UTF-16 indexing.
fn string_member(s: &str, key: &str) -> Option<Value> {
    if key == "length" {
        return Some(Value::from(js_len(s)));
    }
    let unit = *s
        .encode_utf16()
        .collect::<Vec<_>>()
        .get(array_index(key)?)?;
    String::from_utf16(&[unit]).ok().map(Value::String)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(p: &Path) -> Vec<&str> {
        p.keys().collect()
    }

    #[test]
    fn splits_like_segment_get() {
        assert_eq!(
            keys(&Path::parse_directive("$.properties.user_id")),
            ["properties", "user_id"]
        );
        assert_eq!(
            keys(&Path::parse_directive("$.a.b[0].c")),
            ["a", "b", "0", "c"]
        );
        assert_eq!(
            keys(&Path::parse_directive("$.a['my key']")),
            ["a", "my key"]
        );
        assert_eq!(keys(&Path::parse_directive("$.a[\"k\"]")), ["a", "k"]);
        // Keys with dots cannot be reached, as in Segment's code.
        assert_eq!(keys(&Path::parse_directive("$.a['k.x']")), ["a", "k", "x"]);
        assert_eq!(keys(&Path::parse_directive("$.")), Vec::<&str>::new());
        assert_eq!(keys(&Path::parse_get("$.a")), ["$", "a"]);
        assert_eq!(keys(&Path::parse_get(" a ")), [" a "]);
        assert_eq!(keys(&Path::parse_directive("x[a]")), ["x[a]"]);
    }

    fn at(v: &Value, p: &str) -> Option<Value> {
        Path::parse_directive(p)
            .resolve(&Scope::Node(VRef::Json(v)))
            .map(Val::into_value)
    }

    #[test]
    fn walks_with_javascript_semantics() {
        let v = json!({"a": {"b": [10, 20]}, "z": 0, "n": null, "s": "héllo", "t": true});
        assert_eq!(at(&v, "$.a.b[1]"), Some(json!(20)));
        assert_eq!(at(&v, "$.a.b.length"), Some(json!(2)));
        assert_eq!(at(&v, "$.a.missing"), None);
        assert_eq!(at(&v, "$.z.deeper"), Some(json!(0)));
        assert_eq!(at(&v, "$.n.deeper"), Some(json!(null)));
        assert_eq!(at(&v, "$.s.length"), Some(json!(5)));
        assert_eq!(at(&v, "$.s[1]"), Some(json!("é")));
        assert_eq!(at(&v, "$.t.x"), None);
        assert_eq!(at(&v, "$.a.b.01"), None);
        assert_eq!(at(&v, "$.missing.deeper"), None);
    }
}

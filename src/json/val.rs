//! Values met while rendering: borrowed from the row or the mapping wherever possible, owned only
//! where a directive computed something new. `VRef` is the one read-only view every consumer uses.

use serde_json::{Map, Number, Value};

use super::Columns;

/// A resolved mapping value (`undefined` is `Option::None` around it).
#[derive(Debug, Clone)]
pub enum Val<'a> {
    /// Borrowed JSON: a row value, a part of it, or a literal of the mapping.
    Ref(&'a Value),
    /// A borrowed string that is not stored as JSON (the envelope's `type`, `event`, ids).
    Str(&'a str),
    /// All of a row's columns (`$.properties`).
    Row(&'a Columns),
    /// A raw object of the mapping with directives inside, resolved entry by entry.
    Obj(Vec<(&'a str, Val<'a>)>),
    /// A raw array of the mapping with directives inside.
    Arr(Vec<Val<'a>>),
    /// A row's integer too long for 64 bits: its digits (see [`VRef::Int`]).
    Int(&'a str),
    /// A value a directive computed.
    Own(Value),
    /// An `undefined` item of an array: written as `null` (as `JSON.stringify` does), but
    /// `@flatten` and `@merge` drop it, as JavaScript does.
    Hole,
}

/// A borrowed view of a `Val` or of JSON inside one.
#[derive(Debug, Clone, Copy)]
pub enum VRef<'x> {
    Json(&'x Value),
    Str(&'x str),
    /// A string with nothing JSON escapes in it (a row's string that had no escape in its JSON
    /// text): written without looking.
    Plain(&'x str),
    Row(&'x Columns),
    Obj(&'x [(&'x str, Val<'x>)]),
    Arr(&'x [Val<'x>]),
    /// A row column's integer too long for 64 bits, as its digits (an optional `-`, no leading
    /// zero): written as it came, where JSON's numbers would round it to a double.
    Int(&'x str),
    Hole,
}

/// The JSON type of a value, with its content.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind<'x> {
    Null,
    Bool(bool),
    Number(Num<'x>),
    Str(&'x str),
    Array(ArrRef<'x>),
    Object(ObjRef<'x>),
}

/// A number: JSON's, or a row's integer beyond 64 bits as its digits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Num<'x> {
    Json(&'x Number),
    Digits(&'x str),
}

impl Num<'_> {
    /// The nearest double (what JavaScript computes with).
    pub(crate) fn as_f64(self) -> Option<f64> {
        match self {
            Num::Json(n) => n.as_f64(),
            Num::Digits(d) => d.parse().ok(),
        }
    }

    /// Appends the number as JavaScript prints it; long integers with every digit.
    pub(crate) fn write(self, out: &mut Vec<u8>) {
        match self {
            Num::Json(n) => super::write_number(out, n),
            Num::Digits(d) => out.extend_from_slice(d.as_bytes()),
        }
    }

    /// As [`Num::write`], as a `String`.
    pub(crate) fn to_js_string(self) -> String {
        match self {
            Num::Json(n) => super::number_to_string(n),
            Num::Digits(d) => d.to_owned(),
        }
    }
}

/// An array's items.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ArrRef<'x> {
    Json(&'x [Value]),
    Vals(&'x [Val<'x>]),
}

/// An object's entries.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ObjRef<'x> {
    Map(&'x Map<String, Value>),
    Row(&'x Columns),
    Pairs(&'x [(&'x str, Val<'x>)]),
}

// === impl Val ===

impl<'a> Val<'a> {
    #[inline]
    pub(crate) fn as_ref(&self) -> VRef<'_> {
        match self {
            Val::Ref(v) => VRef::Json(v),
            Val::Str(s) => VRef::Str(s),
            Val::Row(c) => VRef::Row(c),
            Val::Obj(p) => VRef::Obj(p),
            Val::Arr(a) => VRef::Arr(a),
            Val::Own(v) => VRef::Json(v),
            Val::Int(d) => VRef::Int(d),
            Val::Hole => VRef::Hole,
        }
    }

    /// This value as owned JSON (a copy where it was borrowed).
    pub(crate) fn into_value(self) -> Value {
        match self {
            Val::Own(v) => v,
            other => other.as_ref().to_value(),
        }
    }
}

// === impl VRef ===

/// As the JSON it views (a row's value sized, a row written out).
impl serde::Serialize for VRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            VRef::Json(v) => v.serialize(s),
            VRef::Str(t) | VRef::Plain(t) => s.serialize_str(t),
            // serde_json's numbers hold no more than 64 bits: the digits go through `write_json`
            // (every event), this only rounds where serde serialises a row (tests, debugging).
            other => other.to_value().serialize(s),
        }
    }
}

impl<'x> VRef<'x> {
    #[inline]
    pub(crate) fn kind(self) -> Kind<'x> {
        match self {
            VRef::Json(v) => match v {
                Value::Null => Kind::Null,
                Value::Bool(b) => Kind::Bool(*b),
                Value::Number(n) => Kind::Number(Num::Json(n)),
                Value::String(s) => Kind::Str(s),
                Value::Array(a) => Kind::Array(ArrRef::Json(a)),
                Value::Object(m) => Kind::Object(ObjRef::Map(m)),
            },
            VRef::Str(s) | VRef::Plain(s) => Kind::Str(s),
            VRef::Row(c) => Kind::Object(ObjRef::Row(c)),
            VRef::Obj(p) => Kind::Object(ObjRef::Pairs(p)),
            VRef::Arr(a) => Kind::Array(ArrRef::Vals(a)),
            VRef::Int(d) => Kind::Number(Num::Digits(d)),
            VRef::Hole => Kind::Null,
        }
    }

    /// An `undefined` array item.
    pub(crate) fn is_hole(self) -> bool {
        matches!(self, VRef::Hole)
    }

    pub(crate) fn is_null(self) -> bool {
        matches!(self.kind(), Kind::Null)
    }

    pub(crate) fn as_str(self) -> Option<&'x str> {
        match self.kind() {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_object(self) -> Option<ObjRef<'x>> {
        match self.kind() {
            Kind::Object(o) => Some(o),
            _ => None,
        }
    }

    /// JavaScript truthiness.
    pub(crate) fn truthy(self) -> bool {
        match self.kind() {
            Kind::Null => false,
            Kind::Bool(b) => b,
            Kind::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Kind::Str(s) => !s.is_empty(),
            Kind::Array(_) | Kind::Object(_) => true,
        }
    }

    /// The type name AJV reports (`string`, `number`, `boolean`, `object`, `array`, `null`).
    pub(crate) fn type_name(self) -> &'static str {
        match self.kind() {
            Kind::Null => "null",
            Kind::Bool(_) => "boolean",
            Kind::Number(_) => "number",
            Kind::Str(_) => "string",
            Kind::Array(_) => "array",
            Kind::Object(_) => "object",
        }
    }

    pub(crate) fn to_value(self) -> Value {
        match self {
            VRef::Json(v) => v.clone(),
            VRef::Str(s) | VRef::Plain(s) => Value::String(s.to_owned()),
            VRef::Row(c) => Value::Object(
                c.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_value()))
                    .collect(),
            ),
            VRef::Obj(p) => Value::Object(
                p.iter()
                    .map(|(k, v)| ((*k).to_owned(), v.as_ref().to_value()))
                    .collect(),
            ),
            VRef::Arr(a) => Value::Array(a.iter().map(|v| v.as_ref().to_value()).collect()),
            // Owned JSON holds doubles: what a directive computing over it sees, as in JavaScript.
            VRef::Int(d) => d
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map_or(Value::Null, Value::Number),
            VRef::Hole => Value::Null,
        }
    }

    #[inline]
    pub(crate) fn to_val(self) -> Val<'x> {
        match self {
            VRef::Json(v) => Val::Ref(v),
            VRef::Str(s) | VRef::Plain(s) => Val::Str(s),
            VRef::Row(c) => Val::Row(c),
            VRef::Obj(p) => Val::Obj(p.to_vec()),
            VRef::Arr(a) => Val::Arr(a.to_vec()),
            VRef::Int(d) => Val::Int(d),
            VRef::Hole => Val::Hole,
        }
    }

    /// Appends this value as compact JSON.
    pub(crate) fn write_json(self, out: &mut Vec<u8>) {
        match self {
            // A string needs no trip through `write_value` (most values are strings).
            VRef::Json(Value::String(s)) => super::write_str(out, s),
            VRef::Str(s) => super::write_str(out, s),
            VRef::Plain(s) => super::write_plain_str(out, s),
            VRef::Json(v) => super::write_value(out, v),
            VRef::Hole => out.extend_from_slice(b"null"),
            VRef::Int(d) => out.extend_from_slice(d.as_bytes()),
            VRef::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.as_ref().write_json(out);
                }
                out.push(b']');
            }
            VRef::Row(_) | VRef::Obj(_) => {
                out.push(b'{');
                if let Some(obj) = self.as_object() {
                    for (i, (k, item)) in obj.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        super::write_str(out, k);
                        out.push(b':');
                        item.write_json(out);
                    }
                }
                out.push(b'}');
            }
        }
    }
}

// === impl ArrRef ===

impl<'x> ArrRef<'x> {
    pub(crate) fn len(self) -> usize {
        match self {
            ArrRef::Json(a) => a.len(),
            ArrRef::Vals(a) => a.len(),
        }
    }

    pub(crate) fn get(self, i: usize) -> Option<VRef<'x>> {
        match self {
            ArrRef::Json(a) => a.get(i).map(VRef::Json),
            ArrRef::Vals(a) => a.get(i).map(Val::as_ref),
        }
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = VRef<'x>> {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

// === impl ObjRef ===

impl<'x> ObjRef<'x> {
    pub(crate) fn get(self, key: &str) -> Option<VRef<'x>> {
        match self {
            ObjRef::Map(m) => m.get(key).map(VRef::Json),
            ObjRef::Row(c) => c.get(key),
            ObjRef::Pairs(p) => p
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_ref()),
        }
    }

    pub(crate) fn len(self) -> usize {
        match self {
            ObjRef::Map(m) => m.len(),
            ObjRef::Row(c) => c.len(),
            ObjRef::Pairs(p) => p.len(),
        }
    }

    pub(crate) fn iter(self) -> ObjIter<'x> {
        match self {
            ObjRef::Map(m) => ObjIter::Map(m.iter()),
            ObjRef::Row(c) => ObjIter::Row(c.iter()),
            ObjRef::Pairs(p) => ObjIter::Pairs(p.iter()),
        }
    }
}

/// The entries of an `ObjRef`, in order.
pub(crate) enum ObjIter<'x> {
    Map(serde_json::map::Iter<'x>),
    Row(super::columns::Iter<'x>),
    Pairs(std::slice::Iter<'x, (&'x str, Val<'x>)>),
}

impl<'x> Iterator for ObjIter<'x> {
    type Item = (&'x str, VRef<'x>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ObjIter::Map(it) => it.next().map(|(k, v)| (k.as_str(), VRef::Json(v))),
            ObjIter::Row(it) => it.next(),
            ObjIter::Pairs(it) => it.next().map(|(k, v)| (*k, v.as_ref())),
        }
    }
}

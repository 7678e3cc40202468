//! `json`, `jsonify` and `inspect` (JavaScript's `JSON.stringify`, with its `space` argument)
//! and `to_integer` (JavaScript's `Number`).

use liquid::model::ObjectView;

use super::*;
use crate::mapping::liquid::scope;
use crate::mapping::liquid::value::{JsObject, Node, Root};

/// Longest indented JSON text: indentation is the one way `json` can outgrow its input more
/// than six times, so the working-memory estimate counts it at this size.
pub(in crate::mapping::liquid) const MAX_INDENTED_BYTES: usize = 1024 * 1024;

/// JSON text as `JSON.stringify(value, null, indent)` writes it, from a walk over the value.
struct Writer {
    out: Vec<u8>,
    indent: String,
    depth: usize,
}

impl Writer {
    fn new(indent: String) -> Writer {
        Writer {
            out: Vec::new(),
            indent,
            depth: 0,
        }
    }

    fn newline(&mut self) {
        if !self.indent.is_empty() && self.out.len() <= MAX_INDENTED_BYTES {
            self.out.push(b'\n');
            for _ in 0..self.depth {
                self.out.extend_from_slice(self.indent.as_bytes());
            }
        }
    }

    fn number(&mut self, f: f64) {
        if f.is_finite() {
            crate::json::write_f64(&mut self.out, f);
        } else {
            self.out.extend_from_slice(b"null");
        }
    }

    fn open(&mut self, bracket: u8) {
        self.out.push(bracket);
        self.depth += 1;
    }

    fn item(&mut self, first: bool) {
        if !first {
            self.out.push(b',');
        }
        self.newline();
    }

    fn key(&mut self, key: &str) {
        crate::json::write_str(&mut self.out, key);
        self.out.push(b':');
        if !self.indent.is_empty() {
            self.out.push(b' ');
        }
    }

    fn close(&mut self, bracket: u8, empty: bool) {
        self.depth -= 1;
        if !empty {
            self.newline();
        }
        self.out.push(bracket);
    }

    /// A liquid value (the output of an earlier filter, or a variable). An object's keys come
    /// in the order of the payload object it copies (every LiquidJS object is one of the
    /// payload's: no filter Segment allows builds one), found from `hint` (the payload value at
    /// the same place in a copied parent) or by a search of the payload; sorted if none is.
    fn value(&mut self, value: &dyn ValueView, hint: Option<&Node>, root: Option<&Root>) {
        if value.is_nil() {
            self.out.extend_from_slice(b"null");
        } else if let Some(array) = value.as_array() {
            let hints = match hint {
                Some(Node::Array(hint)) if hint.items.len() == array.size() as usize => {
                    Some(&hint.items)
                }
                _ => None,
            };
            self.open(b'[');
            let mut first = true;
            for (i, item) in array.values().enumerate() {
                self.item(first);
                first = false;
                self.value(item, hints.and_then(|h| h.get(i)), root);
            }
            self.close(b']', first);
        } else if let Some(object) = value.as_object() {
            let source = match hint {
                Some(Node::Object(hint)) if same_object(hint, object) => Some(&**hint),
                _ => root.and_then(|root| find_object(&root.object, object)),
            };
            self.open(b'{');
            let mut first = true;
            match source {
                Some(source) => {
                    for (key, hint) in &source.entries {
                        let Some(item) = object.get(key) else {
                            continue;
                        };
                        self.item(first);
                        first = false;
                        self.key(key);
                        self.value(item, Some(hint), root);
                    }
                }
                None => {
                    let mut entries: Vec<_> = object.iter().collect();
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                    for (key, item) in entries {
                        self.item(first);
                        first = false;
                        self.key(key.as_str());
                        self.value(item, None, root);
                    }
                }
            }
            self.close(b'}', first);
        } else {
            match value.type_name() {
                "boolean" | "whole number" => {
                    self.out.extend_from_slice(value.to_kstr().as_bytes());
                }
                "fractional number" => {
                    let f = value.as_scalar().and_then(|s| s.to_float()).unwrap_or(0.0);
                    self.number(f);
                }
                _ => crate::json::write_str(&mut self.out, value.to_kstr().as_str()),
            }
        }
    }

    /// A payload value: keys in the payload's order, `undefined` left out of objects and
    /// `null` in arrays, as in JavaScript.
    fn node(&mut self, node: &Node) {
        match node {
            Node::Undefined | Node::Null => self.out.extend_from_slice(b"null"),
            Node::Bool(b) => self
                .out
                .extend_from_slice(if *b { b"true" } else { b"false" }),
            Node::Int(i) => self
                .out
                .extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Node::Float(f) => self.number(*f),
            Node::Str(s) => crate::json::write_str(&mut self.out, &s.text),
            Node::Array(array) => {
                self.open(b'[');
                for (i, item) in array.items.iter().enumerate() {
                    self.item(i == 0);
                    self.node(item);
                }
                self.close(b']', array.items.is_empty());
            }
            Node::Object(object) => {
                self.open(b'{');
                let mut first = true;
                for (key, item) in &object.entries {
                    if matches!(item, Node::Undefined) {
                        continue;
                    }
                    self.item(first);
                    first = false;
                    self.key(key);
                    self.node(item);
                }
                self.close(b'}', first);
            }
        }
    }

    fn finish(self) -> Result<String> {
        if self.out.len() > MAX_INDENTED_BYTES {
            return Err(Error::with_msg(format!(
                "json output is larger than {MAX_INDENTED_BYTES} bytes"
            )));
        }
        Ok(String::from_utf8(self.out).unwrap_or_default())
    }
}

/// `JSON.stringify`'s `space`: a number is that many spaces (at most 10), a string its first
/// 10 characters.
fn indent(space: Option<&LiquidValue>) -> String {
    let Some(space) = space else {
        return String::new();
    };
    match space.type_name() {
        "whole number" | "fractional number" => {
            let n = space.as_scalar().and_then(|s| s.to_float()).unwrap_or(0.0);
            " ".repeat(n.clamp(0.0, 10.0) as usize)
        }
        "string" => space.to_kstr().chars().take(10).collect(),
        _ => String::new(),
    }
}

/// `JSON.stringify(node, null, space)` of a payload value; `None` for `undefined`, which
/// LiquidJS prints as "".
pub(in crate::mapping::liquid) fn json_of_node(
    node: &Node,
    space: Option<f64>,
) -> Result<Option<String>> {
    if matches!(node, Node::Undefined) {
        return Ok(None);
    }
    let space = space.map(LiquidValue::scalar);
    let mut writer = Writer::new(indent(space.as_ref()));
    writer.node(node);
    writer.finish().map(Some)
}

pub(super) fn json(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let mut writer = Writer::new(indent(args.get(0)));
    let root = scope::current();
    writer.value(input, None, root.as_deref());
    Ok(string(writer.finish()?))
}

/// The payload object (at any depth under `scope`) that `object` is a copy of.
fn find_object<'a>(scope: &'a JsObject, object: &dyn ObjectView) -> Option<&'a JsObject> {
    if same_object(scope, object) {
        return Some(scope);
    }
    scope
        .entries
        .iter()
        .find_map(|(_, node)| find_in_node(node, object))
}

fn find_in_node<'a>(node: &'a Node, object: &dyn ObjectView) -> Option<&'a JsObject> {
    match node {
        Node::Object(inner) => find_object(inner, object),
        Node::Array(array) => array
            .items
            .iter()
            .find_map(|item| find_in_node(item, object)),
        _ => None,
    }
}

fn same_object(node: &JsObject, object: &dyn ObjectView) -> bool {
    node.entries.len() as i64 == object.size()
        && node
            .entries
            .iter()
            .all(|(key, item)| object.get(key).is_some_and(|v| same_value(item, v)))
}

/// Whether a liquid value is a copy of a payload value.
fn same_value(node: &Node, value: &dyn ValueView) -> bool {
    match node {
        Node::Undefined | Node::Null => value.is_nil(),
        Node::Bool(b) => {
            value.type_name() == "boolean" && value.query_state(liquid::model::State::Truthy) == *b
        }
        Node::Int(i) => number_of(value) == Some(*i as f64),
        Node::Float(f) => number_of(value) == Some(*f),
        Node::Str(s) => {
            value.type_name() == "string" && value.to_kstr().as_str() == s.text.as_str()
        }
        Node::Array(array) => value.as_array().is_some_and(|values| {
            values.size() as usize == array.items.len()
                && array
                    .items
                    .iter()
                    .zip(values.values())
                    .all(|(item, v)| same_value(item, v))
        }),
        Node::Object(inner) => {
            value.type_name() == "object"
                && value
                    .as_object()
                    .is_some_and(|object| same_object(inner, object))
        }
    }
}

fn number_of(value: &dyn ValueView) -> Option<f64> {
    match value.type_name() {
        "whole number" | "fractional number" => value.as_scalar().and_then(|s| s.to_float()),
        _ => None,
    }
}

/// JavaScript's `Number(value)`; NaN prints as "NaN".
pub(super) fn to_integer(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let n = super::array::to_number(input);
    Ok(if n.is_finite() {
        number(n)
    } else {
        string(js_number(n))
    })
}

use super::*;

/// A payload value. Integers stay integers; floats with an integral value become integers, as
/// JavaScript does not tell them apart.
#[derive(Debug, Clone)]
pub(super) enum Node {
    /// A missing key or index: JavaScript's `undefined`.
    Undefined,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<JsString>),
    Array(Box<JsArray>),
    Object(Box<JsObject>),
}

#[derive(Debug, Clone)]
pub(super) struct JsString {
    pub(super) text: KString,
    pub(super) length: OnceLock<Node>,
    pub(super) units: OnceLock<Vec<Node>>,
}

#[derive(Debug, Clone)]
pub(super) struct JsArray {
    pub(super) items: Vec<Node>,
    pub(super) size: Node,
}

#[derive(Debug, Clone)]
pub(super) struct JsObject {
    pub(super) entries: Vec<(KString, Node)>,
    pub(super) index: Option<HashMap<KString, usize>>,
    pub(super) size: Node,
}

pub(super) static UNDEFINED: Node = Node::Undefined;

/// Objects with more keys than this get a hash index.
pub(super) const INDEXED_OBJECT_KEYS: usize = 12;

pub(super) fn count(n: usize) -> Node {
    Node::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A non-negative index written the canonical way, as JavaScript matches array keys.
pub(super) fn canonical_index(key: &str) -> Option<usize> {
    let index: usize = key.parse().ok()?;
    (index.to_string() == key).then_some(index)
}

impl JsString {
    pub(super) fn new(text: &str) -> JsString {
        JsString {
            text: KString::from_ref(text),
            length: OnceLock::new(),
            units: OnceLock::new(),
        }
    }

    pub(super) fn lookup(&self, key: &str) -> &Node {
        match key {
            "size" | "length" => self
                .length
                .get_or_init(|| count(self.text.encode_utf16().count())),
            _ => canonical_index(key)
                .and_then(|i| self.units().get(i))
                .unwrap_or(&UNDEFINED),
        }
    }

    /// The string's UTF-16 units as one-character strings (a lone surrogate becomes U+FFFD).
    pub(super) fn units(&self) -> &[Node] {
        self.units.get_or_init(|| {
            let mut units = Vec::new();
            for c in self.text.chars() {
                let mut buf = [0u8; 4];
                let unit = if c.len_utf16() == 1 {
                    &*c.encode_utf8(&mut buf)
                } else {
                    "\u{fffd}"
                };
                for _ in 0..c.len_utf16() {
                    units.push(Node::Str(Box::new(JsString::new(unit))));
                }
            }
            units
        })
    }
}

impl JsArray {
    pub(super) fn lookup(&self, key: &str) -> &Node {
        let item = match key {
            "size" | "length" => Some(&self.size),
            "first" => self.items.first(),
            "last" => self.items.last(),
            _ => match key.strip_prefix('-') {
                Some(back) => canonical_index(back)
                    .filter(|i| *i > 0)
                    .and_then(|i| self.items.len().checked_sub(i))
                    .and_then(|i| self.items.get(i)),
                None => canonical_index(key).and_then(|i| self.items.get(i)),
            },
        };
        item.unwrap_or(&UNDEFINED)
    }
}

impl JsObject {
    pub(super) fn new(entries: Vec<(KString, Node)>) -> JsObject {
        let index = (entries.len() > INDEXED_OBJECT_KEYS).then(|| {
            let mut index = HashMap::with_capacity(entries.len());
            for (i, (key, _)) in entries.iter().enumerate() {
                index.entry(key.clone()).or_insert(i);
            }
            index
        });
        let size = count(entries.len());
        JsObject {
            entries,
            index,
            size,
        }
    }

    pub(super) fn find(&self, key: &str) -> Option<&Node> {
        match &self.index {
            Some(index) => index.get(key).map(|i| &self.entries[*i].1),
            None => self
                .entries
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v),
        }
    }

    pub(super) fn lookup(&self, key: &str) -> &Node {
        match self.find(key) {
            Some(node) => node,
            None if key == "size" => &self.size,
            None => &UNDEFINED,
        }
    }
}

impl Node {
    /// The value of property `key`, with LiquidJS's rules.
    pub(super) fn lookup(&self, key: &str) -> &Node {
        match self {
            Node::Str(s) => s.lookup(key),
            Node::Array(array) => array.lookup(key),
            Node::Object(object) => object.lookup(key),
            _ => &UNDEFINED,
        }
    }

    pub(super) fn from_json(
        value: &Json,
        depth: usize,
        weight: &mut f64,
    ) -> Result<Node, LiquidError> {
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(error("payload is nested too deeply for liquid"));
        }
        *weight += 8.0;
        Ok(match value {
            Json::Null => Node::Null,
            Json::Bool(b) => Node::Bool(*b),
            Json::Number(n) => {
                *weight += 24.0;
                match n.as_i64() {
                    Some(i) => Node::Int(i),
                    None => number_node(n.as_f64().unwrap_or(f64::NAN)),
                }
            }
            Json::String(s) => {
                *weight += s.len() as f64;
                Node::Str(Box::new(JsString::new(s)))
            }
            Json::Array(items) => {
                let items = items
                    .iter()
                    .map(|item| Node::from_json(item, depth + 1, weight))
                    .collect::<Result<Vec<_>, _>>()?;
                let size = count(items.len());
                Node::Array(Box::new(JsArray { items, size }))
            }
            Json::Object(map) => {
                let mut entries = Vec::with_capacity(map.len());
                for (key, value) in map {
                    *weight += key.len() as f64 + 8.0;
                    entries.push((
                        KString::from_ref(key),
                        Node::from_json(value, depth + 1, weight)?,
                    ));
                }
                Node::Object(Box::new(JsObject::new(entries)))
            }
        })
    }
}

pub(super) fn number_node(f: f64) -> Node {
    if f.fract() == 0.0 && f.abs() < MAX_SAFE_INTEGER {
        Node::Int(f as i64)
    } else {
        Node::Float(f)
    }
}

/// The payload: every name resolves (to nil when missing), aliases are followed and the
/// payload values the template's filters read with a coercion are available, coerced, under
/// their aliases.
#[derive(Debug)]
pub(super) struct Root {
    pub(super) object: JsObject,
    pub(super) coerced: HashMap<String, Node>,
    pub(super) weight: f64,
    /// One slot per `increment`/`decrement` tag of the template, in source order: the value
    /// the tag left its counter at, once it has run. Without loops a tag runs at most once per
    /// render, so the last slot set for a name holds that counter's current value.
    pub(super) counters: Vec<CounterSlot>,
}

/// The value an `increment` or `decrement` tag set its counter to.
#[derive(Debug)]
pub(super) struct CounterSlot {
    pub(super) name: String,
    pub(super) value: OnceLock<Node>,
}

impl Root {
    pub(super) fn new(
        payload: &Json,
        coerced: &[CoercedInput],
        counters: &[String],
    ) -> Result<Root, LiquidError> {
        let mut weight = 0.0;
        let mut entries = Vec::new();
        if let Json::Object(map) = payload {
            entries.reserve(map.len());
            for (key, value) in map {
                weight += key.len() as f64 + 8.0;
                entries.push((
                    KString::from_ref(key),
                    Node::from_json(value, 1, &mut weight)?,
                ));
            }
        }
        let mut root = Root {
            object: JsObject::new(entries),
            coerced: HashMap::new(),
            weight,
            counters: counters
                .iter()
                .map(|name| CounterSlot {
                    name: name.clone(),
                    value: OnceLock::new(),
                })
                .collect(),
        };
        for input in coerced {
            let mut keys = input.path.iter();
            let Some(first) = keys.next() else {
                continue;
            };
            let mut node = root.object.find(first).unwrap_or(&UNDEFINED);
            for key in keys {
                node = node.lookup(key);
            }
            let coerced = match input.coercion {
                Coercion::Number => Node::Float(js_to_number(node)),
                Coercion::Size => Node::Int(js_size(node)),
                Coercion::IsTrue => match node {
                    Node::Bool(_) => node.clone(),
                    _ => Node::Null,
                },
                Coercion::IsFalse => match node {
                    Node::Bool(_) => node.clone(),
                    _ => Node::Bool(true),
                },
                Coercion::Relational => match js_relational_number(node) {
                    Some(n) => Node::Float(n),
                    None => Node::Null,
                },
                Coercion::RangeBound => Node::Float(js_number_of(node)),
                Coercion::Container => match node {
                    Node::Object(_) => Node::Null,
                    _ => node.clone(),
                },
                Coercion::ArrayLike => match node {
                    Node::Array(_) | Node::Str(_) => node.clone(),
                    _ => Node::Str(Box::new(JsString::new(""))),
                },
                Coercion::Json(space) => {
                    match json_of_node(node, space).map_err(|e| error(describe(&e)))? {
                        Some(text) => {
                            root.weight += text.len() as f64;
                            Node::Str(Box::new(JsString::new(&text)))
                        }
                        None => Node::Undefined,
                    }
                }
                Coercion::ToArray => match node {
                    Node::Array(_) => node.clone(),
                    Node::Undefined | Node::Null => Node::Array(Box::new(JsArray {
                        items: Vec::new(),
                        size: Node::Int(0),
                    })),
                    _ => Node::Array(Box::new(JsArray {
                        items: vec![node.clone()],
                        size: Node::Int(1),
                    })),
                },
            };
            root.coerced.insert(input.alias.clone(), coerced);
        }
        Ok(root)
    }

    /// A root variable as LiquidJS's payload scope holds it: a counter a tag has set, else
    /// the payload's value (assigned variables are the `liquid` runtime's, above this).
    pub(super) fn lookup(&self, key: &str) -> &Node {
        match self.counter(key) {
            Some(node) => node,
            None => self.payload_lookup(key),
        }
    }

    /// The current value of counter `name`, once a tag has set it.
    pub(super) fn counter(&self, name: &str) -> Option<&Node> {
        self.counters
            .iter()
            .rev()
            .filter(|slot| slot.name == name)
            .find_map(|slot| slot.value.get())
    }

    /// A root variable of the payload (or an alias of one), ignoring counters.
    pub(super) fn payload_lookup(&self, key: &str) -> &Node {
        if let Some(node) = self.object.find(key) {
            return node;
        }
        if let Some(node) = self.coerced.get(key) {
            return node;
        }
        match alias_target(key) {
            Some(target) => self.object.find(&target).unwrap_or(&UNDEFINED),
            None => &UNDEFINED,
        }
    }
}

pub(super) const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// JavaScript's `+value || 0`, how LiquidJS's math filters read their operands.
pub(super) fn js_to_number(node: &Node) -> f64 {
    let n = js_number_of(node);
    if n.is_nan() || n == 0.0 { 0.0 } else { n }
}

/// JavaScript's `Number(value)` (`undefined` is NaN).
pub(super) fn js_number_of(node: &Node) -> f64 {
    match node {
        Node::Undefined => f64::NAN,
        Node::Null | Node::Bool(false) => 0.0,
        Node::Bool(true) => 1.0,
        Node::Int(i) => *i as f64,
        Node::Float(f) => *f,
        Node::Str(s) => js_string_to_number(&s.text),
        // `+[x]` is `+String(x)`; a longer array has a comma in its string.
        Node::Array(array) => match array.items.as_slice() {
            [] => 0.0,
            [Node::Bool(_)] => f64::NAN,
            [Node::Undefined | Node::Null] => 0.0,
            [item] => js_number_of(item),
            _ => f64::NAN,
        },
        Node::Object(_) => f64::NAN,
    }
}

/// JavaScript's `Number(value)` as a relational comparison with a number reads it; `None` for
/// NaN, which compares false with everything.
pub(super) fn js_relational_number(node: &Node) -> Option<f64> {
    let n = js_number_of(node);
    (!n.is_nan()).then_some(n)
}

/// JavaScript's `Number(string)`.
pub(super) fn js_string_to_number(text: &str) -> f64 {
    crate::json::string_to_number(text).unwrap_or(f64::NAN)
}

/// LiquidJS's `size` filter: `(value && value.length) || 0`.
pub(super) fn js_size(node: &Node) -> i64 {
    match node {
        Node::Str(s) => i64::try_from(s.text.encode_utf16().count()).unwrap_or(i64::MAX),
        Node::Array(array) => array.size(),
        Node::Object(object) => match object.find("length") {
            Some(Node::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

/// Formats a number like JavaScript's `Number.prototype.toString`.
pub(super) fn js_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".to_owned();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let mut out = Vec::with_capacity(24);
    crate::json::write_f64(&mut out, n);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes a node the way LiquidJS's `stringify` does.
pub(super) fn stringify(node: &Node, out: &mut dyn fmt::Write) -> fmt::Result {
    match node {
        Node::Undefined | Node::Null => Ok(()),
        Node::Bool(b) => out.write_str(if *b { "true" } else { "false" }),
        Node::Int(i) => write!(out, "{i}"),
        Node::Float(f) => out.write_str(&js_number(*f)),
        Node::Str(s) => out.write_str(&s.text),
        Node::Array(array) => {
            for item in &array.items {
                stringify(item, out)?;
            }
            Ok(())
        }
        Node::Object(_) => out.write_str("[object Object]"),
    }
}

pub(super) struct Stringified<'a>(&'a Node);

impl fmt::Display for Stringified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        stringify(self.0, f)
    }
}

impl ValueView for Node {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }

    fn render(&self) -> DisplayCow<'_> {
        DisplayCow::Owned(Box::new(Stringified(self)))
    }

    fn source(&self) -> DisplayCow<'_> {
        self.render()
    }

    fn type_name(&self) -> &'static str {
        match self {
            Node::Undefined | Node::Null => "nil",
            Node::Bool(_) => "boolean",
            Node::Int(_) => "whole number",
            Node::Float(_) => "fractional number",
            Node::Str(_) => "string",
            Node::Array(_) => "array",
            Node::Object(_) => "object",
        }
    }

    fn query_state(&self, state: State) -> bool {
        self.to_value().query_state(state)
    }

    fn to_kstr(&self) -> KStringCow<'_> {
        match self {
            Node::Str(s) => KStringCow::from_ref(s.text.as_str()),
            _ => KStringCow::from_string(Stringified(self).to_string()),
        }
    }

    fn to_value(&self) -> LiquidValue {
        match self {
            Node::Undefined | Node::Null => LiquidValue::Nil,
            Node::Bool(b) => LiquidValue::scalar(*b),
            Node::Int(i) => LiquidValue::scalar(*i),
            Node::Float(f) => LiquidValue::scalar(*f),
            Node::Str(s) => LiquidValue::scalar(s.text.clone()),
            Node::Array(array) => {
                LiquidValue::Array(array.items.iter().map(ValueView::to_value).collect())
            }
            Node::Object(object) => {
                let mut out = liquid::Object::new();
                for (key, value) in &object.entries {
                    out.insert(key.clone(), value.to_value());
                }
                LiquidValue::Object(out)
            }
        }
    }

    fn as_scalar(&self) -> Option<ScalarCow<'_>> {
        match self {
            Node::Bool(b) => Some(ScalarCow::new(*b)),
            Node::Int(i) => Some(ScalarCow::new(*i)),
            Node::Float(f) => Some(ScalarCow::new(*f)),
            Node::Str(s) => Some(ScalarCow::new(s.text.as_str())),
            _ => None,
        }
    }

    /// Every node is traversed as an object so that the runtime's property lookup follows
    /// LiquidJS's rules (see [`Node::lookup`]) instead of failing on unknown properties.
    fn as_object(&self) -> Option<&dyn ObjectView> {
        Some(self)
    }

    fn is_nil(&self) -> bool {
        matches!(self, Node::Undefined | Node::Null)
    }
}

impl ObjectView for Node {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        match self {
            Node::Array(array) => array.size(),
            Node::Object(object) => object.size(),
            _ => 0,
        }
    }

    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        match self {
            Node::Object(object) => object.keys(),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match self {
            Node::Array(array) => Box::new(array.items.iter().map(|v| v as &dyn ValueView)),
            Node::Object(object) => ObjectView::values(object.as_ref()),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        match self {
            Node::Object(object) => object.iter(),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn contains_key(&self, index: &str) -> bool {
        !matches!(self.lookup(index), Node::Undefined)
    }

    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        Some(self.lookup(index))
    }
}

impl JsArray {
    pub(super) fn size(&self) -> i64 {
        i64::try_from(self.items.len()).unwrap_or(i64::MAX)
    }
}

impl ValueView for JsObject {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }

    fn render(&self) -> DisplayCow<'_> {
        DisplayCow::Borrowed(&"[object Object]")
    }

    fn source(&self) -> DisplayCow<'_> {
        self.render()
    }

    fn type_name(&self) -> &'static str {
        "object"
    }

    fn query_state(&self, state: State) -> bool {
        match state {
            State::Truthy => true,
            State::DefaultValue => false,
            State::Empty | State::Blank => self.entries.is_empty(),
        }
    }

    fn to_kstr(&self) -> KStringCow<'_> {
        KStringCow::from_static("[object Object]")
    }

    fn to_value(&self) -> LiquidValue {
        let mut out = liquid::Object::new();
        for (key, value) in &self.entries {
            out.insert(key.clone(), value.to_value());
        }
        LiquidValue::Object(out)
    }

    fn as_object(&self) -> Option<&dyn ObjectView> {
        Some(self)
    }
}

impl ObjectView for JsObject {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        i64::try_from(self.entries.len()).unwrap_or(i64::MAX)
    }

    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        Box::new(
            self.entries
                .iter()
                .map(|(k, _)| KStringCow::from_ref(k.as_str())),
        )
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        Box::new(self.entries.iter().map(|(_, v)| v as &dyn ValueView))
    }

    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        Box::new(
            self.entries
                .iter()
                .map(|(k, v)| (KStringCow::from_ref(k.as_str()), v as &dyn ValueView)),
        )
    }

    fn contains_key(&self, index: &str) -> bool {
        self.find(index).is_some()
    }

    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        Some(self.lookup(index))
    }
}

impl ValueView for Root {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }

    fn render(&self) -> DisplayCow<'_> {
        self.object.render()
    }

    fn source(&self) -> DisplayCow<'_> {
        self.object.source()
    }

    fn type_name(&self) -> &'static str {
        "object"
    }

    fn query_state(&self, state: State) -> bool {
        self.object.query_state(state)
    }

    fn to_kstr(&self) -> KStringCow<'_> {
        self.object.to_kstr()
    }

    fn to_value(&self) -> LiquidValue {
        self.object.to_value()
    }

    fn as_object(&self) -> Option<&dyn ObjectView> {
        Some(self)
    }
}

impl ObjectView for Root {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        self.object.size()
    }

    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        self.object.keys()
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        ObjectView::values(&self.object)
    }

    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        self.object.iter()
    }

    /// Every name is claimed so that a missing variable is nil, not an error; the runtime
    /// consults assigned variables before the payload, so they still take precedence.
    fn contains_key(&self, _index: &str) -> bool {
        true
    }

    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        Some(self.lookup(index))
    }
}

pub(super) fn coerce_literal(operand: &Operand, coercion: Coercion) -> Option<Operand> {
    match coercion {
        Coercion::Number => match operand {
            Operand::Str(s) => {
                let n = js_string_to_number(s);
                let n = if n.is_nan() { 0.0 } else { n };
                n.is_finite().then_some(Operand::Num(n))
            }
            Operand::Literal(Literal::True) => Some(Operand::Num(1.0)),
            Operand::Literal(_) => Some(Operand::Num(0.0)),
            _ => None,
        },
        Coercion::Size => match operand {
            Operand::Str(s) => Some(Operand::Num(s.encode_utf16().count() as f64)),
            Operand::Num(_) | Operand::Literal(_) => Some(Operand::Num(0.0)),
            _ => None,
        },
        Coercion::IsTrue
        | Coercion::IsFalse
        | Coercion::Relational
        | Coercion::ArrayLike
        | Coercion::ToArray
        | Coercion::Container
        | Coercion::RangeBound
        | Coercion::Json(_) => None,
    }
}

//! The event of a flat mapping (every field a value or a raw object of values), compiled: its
//! keys pre-escaped and in Segment's order, each with the value it takes. Writing follows the
//! plan straight into the buffer. The first value that needs more than copying (a coercion other
//! than the common ones, a missing identity or required field, a bad timestamp, an oversize
//! event) makes it give up: the general builder ([`super::event::build`]) then renders the row
//! and reports every issue. A property test holds both to the same bytes
//! (`mapping::render::plan_against_general`).

use super::accept::{self, MAX_EVENT_BYTES, MAX_MESSAGE_ID_CHARS};
use super::event::{Built, Coerced, coerce, present, removed, timestamp};
use super::fields::{Action, Field, FieldType, Scalar, sub};
use crate::json::{self, Kind, VRef};

/// What a field is mapped to, as a plan sees it: value `i` of the mapping's values, or a raw
/// object of them.
#[derive(Debug)]
pub(crate) enum Shape {
    Value(u16),
    Object(Vec<(String, u16)>),
}

/// A compiled event writer (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Plan {
    steps: Box<[Step]>,
}

#[derive(Debug)]
enum Step {
    /// Bytes always written: the key of an entry that is always there, `"consent":{}`, ...
    Lit(Bytes),
    /// An object whose entries follow, each led by a comma: the first comma becomes its `{`.
    Open,
    Close,
    /// A string field of the event or its context (`,"key":` then the value), when it has a
    /// value (`""` and `null` are removed).
    Str {
        key: Bytes,
        value: u16,
        role: Role,
    },
    /// The messageId: the mapped one when it has a value, else the derived one.
    MessageId(Option<u16>),
    /// A declared sub-field: removed when empty, coerced to its type.
    Sub {
        key: Bytes,
        value: u16,
        ty: Scalar,
    },
    /// An entry of a free-form object, written as it is unless `undefined`.
    Entry {
        key: Bytes,
        value: u16,
    },
    /// A free-form object mapped as one value: each of its entries.
    Entries(u16),
    /// Page and screen copy a string field into their properties, unless the properties have
    /// the same key. `root`: removed when `""` too (a root field), else only when `null`.
    Copy {
        key: Bytes,
        value: u16,
        root: bool,
        unless: Unless,
    },
    /// Identify's address replaces `traits.address` only when a sub-field is set (D3): what the
    /// two steps around it decide.
    Address,
    AddressEnd,
}

/// When the properties override a copied key.
#[derive(Debug, Clone, Copy)]
enum Unless {
    Never,
    /// The raw properties object maps the key to value `i`: when it is not `undefined`.
    Mapped(u16),
    /// The properties are value `i`: when it is an object with the key.
    InObject(u16, &'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    /// `userId` or `anonymousId`: one of them must have a value.
    Identity,
    /// Must be RFC 3339.
    Timestamp,
    /// The action's required field (track's event, group's groupId).
    Required,
}

/// Bytes a plan writes as they are (a key with its comma and colon, a literal). Short ones are
/// held in line and written as one fixed-size move cut to length: cheaper than a call to
/// `memcpy` for a few bytes.
#[derive(Debug)]
enum Bytes {
    Short([u8; SHORT], u8),
    Long(Box<[u8]>),
}

const SHORT: usize = 24;

impl Bytes {
    fn new(bytes: &[u8]) -> Bytes {
        match u8::try_from(bytes.len()) {
            Ok(n) if bytes.len() <= SHORT => {
                let mut short = [0; SHORT];
                short[..bytes.len()].copy_from_slice(bytes);
                Bytes::Short(short, n)
            }
            _ => Bytes::Long(bytes.into()),
        }
    }

    #[inline(always)]
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Bytes::Short(bytes, n) => {
                let len = out.len();
                out.extend_from_slice(bytes);
                out.truncate(len + usize::from(*n));
            }
            Bytes::Long(bytes) => out.extend_from_slice(bytes),
        }
    }
}

/// `",\"key\":"` for a key of the event, or a data key (escaped).
fn entry_key(key: &str) -> Bytes {
    let mut out = vec![b','];
    json::write_str(&mut out, key);
    out.push(b':');
    Bytes::new(&out)
}

/// The deepest objects nest: the event, its context (or traits), a declared object in it.
const MAX_DEPTH: usize = 3;

/// Builds a plan, step by step, in the order the general builder writes the event.
struct Compiler<'f> {
    action: Action,
    fields: &'f [(Field, Shape)],
    steps: Vec<Step>,
}

impl<'f> Compiler<'f> {
    fn get(&self, f: Field) -> Option<&'f Shape> {
        let fields: &'f [(Field, Shape)] = self.fields;
        fields.iter().find(|(g, _)| *g == f).map(|(_, s)| s)
    }

    fn lit(&mut self, bytes: &[u8]) {
        self.steps.push(Step::Lit(Bytes::new(bytes)));
    }

    /// `,"key":` and an object whose entries follow (closed by the caller).
    fn open(&mut self, key: &str) {
        self.steps.push(Step::Lit(entry_key(key)));
        self.steps.push(Step::Open);
    }

    /// A string field; `None` when it is mapped to an object (a type mismatch to report).
    fn str(&mut self, f: Field, key: &str) -> Option<()> {
        let role = match f {
            Field::UserId | Field::AnonymousId => Role::Identity,
            Field::Timestamp => Role::Timestamp,
            f if f.required(self.action) => Role::Required,
            _ => Role::Plain,
        };
        match self.get(f) {
            None if role == Role::Required => None,
            None => Some(()),
            Some(Shape::Object(_)) => None,
            Some(&Shape::Value(value)) => {
                let key = entry_key(key);
                self.steps.push(Step::Str { key, value, role });
                Some(())
            }
        }
    }

    /// A free-form object (`{}` when unmapped).
    fn free(&mut self, f: Field, key: &str) {
        self.open(key);
        self.entries(f);
        self.steps.push(Step::Close);
    }

    /// The entries of a free-form object.
    fn entries(&mut self, f: Field) {
        match self.get(f) {
            None => {}
            Some(&Shape::Value(v)) => self.steps.push(Step::Entries(v)),
            Some(Shape::Object(entries)) => {
                self.steps.extend(entries.iter().map(|(k, v)| Step::Entry {
                    key: entry_key(k),
                    value: *v,
                }));
            }
        }
    }

    /// A declared object, when mapped. `None` for what the plan leaves to the general builder:
    /// an object mapped as one value, or one mapping both spellings of a device key (D7).
    fn declared(&mut self, f: Field, key: &str) -> Option<()> {
        let FieldType::Object(subs) = f.ty() else {
            return None;
        };
        let entries = match self.get(f) {
            None => return Some(()),
            Some(Shape::Value(_)) => return None,
            Some(Shape::Object(entries)) => entries,
        };
        let has = |k: &str| entries.iter().any(|(e, _)| e == k);
        if entries
            .iter()
            .any(|(k, _)| sub(subs, k).is_some_and(|s| s.is_alias() && has(s.out)))
        {
            return None;
        }
        self.open(key);
        for (k, value) in entries {
            if let Some(s) = sub(subs, k) {
                self.steps.push(Step::Sub {
                    key: entry_key(s.out),
                    value: *value,
                    ty: s.ty,
                });
            }
        }
        self.steps.push(Step::Close);
        Some(())
    }

    /// Page's and screen's properties: the copied fields, then the mapped properties.
    fn properties_with_copies(&mut self, copies: &[(&'static str, Option<u16>, bool)]) {
        let properties = self.get(Field::Properties);
        let unless = |k: &'static str| match properties {
            None => Unless::Never,
            Some(Shape::Object(entries)) => entries
                .iter()
                .find(|(m, _)| m == k)
                .map_or(Unless::Never, |(_, v)| Unless::Mapped(*v)),
            Some(&Shape::Value(v)) => Unless::InObject(v, k),
        };
        let steps: Vec<Step> = copies
            .iter()
            .filter_map(|&(k, value, root)| {
                Some(Step::Copy {
                    key: entry_key(k),
                    value: value?,
                    root,
                    unless: unless(k),
                })
            })
            .collect();
        self.open("properties");
        self.steps.extend(steps);
        self.entries(Field::Properties);
        self.steps.push(Step::Close);
    }

    fn value_of(&self, f: Field) -> Option<u16> {
        match self.get(f) {
            Some(&Shape::Value(v)) => Some(v),
            _ => None,
        }
    }

    /// Identify's traits and address.
    fn identify_traits(&mut self) -> Option<()> {
        let address = self.get(Field::Address);
        match (self.get(Field::Traits), address) {
            // Whether the traits' own address stays depends on the row.
            (Some(Shape::Value(_)), Some(_)) => return None,
            (Some(Shape::Object(e)), Some(_)) if e.iter().any(|(k, _)| k == "address") => {
                return None;
            }
            _ => {}
        }
        self.open("traits");
        self.entries(Field::Traits);
        if address.is_some() {
            self.steps.push(Step::Address);
            self.declared(Field::Address, "address")?;
            self.steps.push(Step::AddressEnd);
        }
        self.steps.push(Step::Close);
        Some(())
    }

    fn compile(mut self) -> Option<Plan> {
        let action = self.action;
        // Consent is kept only when valid (`validateConsentObject`): left to the general builder.
        if self.get(Field::Consent).is_some()
            || matches!(self.get(Field::MessageId), Some(Shape::Object(_)))
        {
            return None;
        }
        self.steps.push(Step::Open);
        self.str(Field::UserId, "userId")?;
        self.str(Field::AnonymousId, "anonymousId")?;
        if action == Action::Group {
            self.str(Field::GroupId, "groupId")?;
        }
        self.str(Field::Timestamp, "timestamp")?;
        match action {
            Action::Track => self.str(Field::EventName, "event")?,
            Action::Page => self.str(Field::PageName, "name")?,
            Action::Screen => self.str(Field::ScreenName, "name")?,
            Action::Identify | Action::Group => {}
        }
        let message_id = self.value_of(Field::MessageId);
        self.steps.push(Step::MessageId(message_id));
        self.open("context");
        if action == Action::Track {
            self.free(Field::Traits, "traits");
        }
        self.declared(Field::Application, "app")?;
        self.declared(Field::CampaignParameters, "campaign")?;
        self.lit(b",\"consent\":{}");
        self.declared(Field::Device, "device")?;
        self.str(Field::IpAddress, "ip")?;
        self.str(Field::Locale, "locale")?;
        self.declared(Field::Location, "location")?;
        self.declared(Field::Network, "network")?;
        self.declared(Field::OperatingSystem, "os")?;
        self.declared(Field::Page, "page")?;
        self.declared(Field::Screen, "screen")?;
        self.str(Field::UserAgent, "userAgent")?;
        self.str(Field::Timezone, "timezone")?;
        if action != Action::Group {
            self.str(Field::GroupId, "groupId")?;
        }
        self.steps.push(Step::Close);
        match action {
            Action::Track => self.free(Field::Properties, "properties"),
            Action::Page => {
                let mut copies = vec![
                    ("name", self.value_of(Field::PageName), true),
                    ("category", self.value_of(Field::PageCategory), true),
                ];
                if let (Some(Shape::Object(page)), FieldType::Object(subs)) =
                    (self.get(Field::Page), Field::Page.ty())
                {
                    for s in subs {
                        let value = page.iter().find(|(k, _)| k == s.key).map(|(_, v)| *v);
                        copies.push((s.key, value, false));
                    }
                }
                self.properties_with_copies(&copies);
            }
            Action::Screen => {
                let name = self.value_of(Field::ScreenName);
                self.properties_with_copies(&[("name", name, true)]);
            }
            Action::Identify => self.identify_traits()?,
            Action::Group => self.free(Field::Traits, "traits"),
        }
        let mut ty = b",\"type\":".to_vec();
        json::write_str(&mut ty, action.as_str());
        self.lit(&ty);
        self.steps.push(Step::Close);
        Some(Plan {
            steps: self.steps.into(),
        })
    }
}

/// Writes `v` coerced to `ty`, as the general builder coerces it; `None` where coercion fails
/// (the general builder reports it). A plain string needs no look.
#[inline]
fn write_scalar(out: &mut Vec<u8>, v: VRef<'_>, ty: Scalar) -> Option<()> {
    match (ty, v) {
        (Scalar::Str, VRef::Plain(s)) => json::write_plain_str(out, s),
        _ => coerce(v, ty).ok()?.write(out),
    }
    Some(())
}

impl Plan {
    /// The plan for a flat mapping of `action`, or `None` when its events need the general
    /// builder whatever the row (a field mapped to the wrong type, a consent object, ...).
    pub(crate) fn compile(action: Action, fields: &[(Field, Shape)]) -> Option<Plan> {
        Compiler {
            action,
            fields,
            steps: Vec::new(),
        }
        .compile()
    }

    /// Writes the event, with `value(i)` the mapping's value `i` for this row and `derived` the
    /// messageId when none is mapped. `None` (and `out` as it was) when the general builder must
    /// render this row.
    pub(crate) fn write<'a>(
        &self,
        value: impl Fn(u16) -> Option<VRef<'a>>,
        derived: impl Fn() -> String,
        out: &mut Vec<u8>,
    ) -> Option<Built> {
        let start = out.len();
        let built = self.write_steps(value, derived, out, start);
        if built.is_none() {
            out.truncate(start);
        }
        built
    }

    fn write_steps<'a>(
        &self,
        value: impl Fn(u16) -> Option<VRef<'a>>,
        derived: impl Fn() -> String,
        out: &mut Vec<u8>,
        start: usize,
    ) -> Option<Built> {
        let mut opens = [0; MAX_DEPTH];
        let mut depth = 0;
        let mut identified = false;
        let mut message_id = None;
        // Where the address starts, and whether a sub-field of it is set.
        let (mut address_at, mut address_set) = (0, false);
        for step in &self.steps {
            // Past the limit the general builder reports the event's size: no need to write
            // more (a mapping may copy a large column into many keys).
            if out.len() - start > MAX_EVENT_BYTES {
                return None;
            }
            match step {
                Step::Lit(bytes) => bytes.write(out),
                Step::Open => {
                    *opens.get_mut(depth)? = out.len();
                    depth += 1;
                }
                Step::Close => {
                    depth -= 1;
                    let at = opens[depth];
                    if out.len() == at {
                        out.extend_from_slice(b"{}");
                    } else {
                        out[at] = b'{';
                        out.push(b'}');
                    }
                }
                Step::Str {
                    key,
                    value: i,
                    role,
                } => {
                    let Some(v) = present(value(*i)) else {
                        if *role == Role::Required {
                            return None;
                        }
                        continue;
                    };
                    if *role == Role::Timestamp && !v.as_str().is_some_and(accept::is_rfc3339) {
                        // A warehouse form (D8) is written as its RFC 3339 text; anything else
                        // is the general builder's to report.
                        let ts = timestamp(v)?;
                        key.write(out);
                        json::write_str(out, &ts);
                        continue;
                    }
                    key.write(out);
                    let at = out.len();
                    write_scalar(out, v, Scalar::Str)?;
                    // An id counts when its string is not empty (`[null]` coerces to `""`).
                    identified |= *role == Role::Identity && out.len() - at > 2;
                }
                Step::MessageId(mapped) => {
                    // The mapped one as the builder coerces it, unless empty.
                    let mapped = match present(mapped.and_then(&value)) {
                        Some(v) => match coerce(v, Scalar::Str).ok()? {
                            Coerced::Str(s) => Some(s),
                            _ => None,
                        },
                        None => None,
                    };
                    let id = match mapped {
                        Some(s) if !s.is_empty() => s.into_owned(),
                        _ => derived(),
                    };
                    // UTF-16 units are never more than bytes.
                    if id.len() > MAX_MESSAGE_ID_CHARS && json::js_len(&id) > MAX_MESSAGE_ID_CHARS {
                        return None;
                    }
                    out.extend_from_slice(b",\"messageId\":");
                    json::write_str(out, &id);
                    message_id = Some(id);
                }
                Step::Sub { key, value: i, ty } => {
                    let Some(v) = value(*i) else { continue };
                    if removed(v, *ty) {
                        continue;
                    }
                    key.write(out);
                    write_scalar(out, v, *ty)?;
                    address_set |= !matches!(v.kind(), Kind::Str(""));
                }
                Step::Entry { key, value: i } => {
                    if let Some(v) = value(*i) {
                        key.write(out);
                        v.write_json(out);
                    }
                }
                Step::Entries(i) => {
                    let Some(v) = present(value(*i)) else {
                        continue;
                    };
                    for (k, v) in v.as_object()?.iter() {
                        if out.len() - start > MAX_EVENT_BYTES {
                            return None;
                        }
                        out.push(b',');
                        json::write_str(out, k);
                        out.push(b':');
                        v.write_json(out);
                    }
                }
                Step::Copy {
                    key,
                    value: i,
                    root,
                    unless,
                } => {
                    let overridden = match *unless {
                        Unless::Never => false,
                        Unless::Mapped(u) => value(u).is_some(),
                        Unless::InObject(u, k) => present(value(u))
                            .and_then(VRef::as_object)
                            .is_some_and(|o| o.get(k).is_some()),
                    };
                    if overridden {
                        continue;
                    }
                    // A root field's value, or a declared string sub-field's.
                    let v = match root {
                        true => present(value(*i)),
                        false => value(*i).filter(|v| !removed(*v, Scalar::Str)),
                    };
                    let Some(v) = v else { continue };
                    key.write(out);
                    write_scalar(out, v, Scalar::Str)?;
                }
                Step::Address => (address_at, address_set) = (out.len(), false),
                Step::AddressEnd => {
                    if !address_set {
                        out.truncate(address_at);
                    }
                }
            }
        }
        let size = out.len() - start;
        if !identified || size > MAX_EVENT_BYTES {
            return None;
        }
        Some(Built {
            message_id,
            size: Some(size),
            issues: Vec::new(),
        })
    }
}

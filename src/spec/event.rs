//! Building the Spec event from resolved field values, as Segment's pipeline does
//! (docs/SEGMENT_SPEC.md §3.1 steps 4–6): empty-value removal, AJV's coercion and checks, then each
//! action's `perform`, written straight into a reused buffer, key order as Segment's code.

use std::borrow::Cow;

use super::accept::{self, MAX_EVENT_BYTES, MAX_MESSAGE_ID_CHARS};
use super::fields::{Action, Field, FieldType, Scalar, Sub, sub};
use crate::issue::{Issue, IssueCode, pointer};
use crate::json::{self, Kind, ObjRef, VRef};

/// The resolved value of every field a mapping maps (`None`: unmapped or `undefined`).
pub(crate) type Fields<'a> = [Option<VRef<'a>>; Field::COUNT];

/// What building produced. The event's bytes are `out[start..]` when `size` is `Some`.
#[derive(Debug, Default)]
pub struct Built {
    /// The event's messageId (the mapped one, else the derived one).
    pub message_id: Option<String>,
    /// The serialised size, when an event could be built (it may still fail the API's limits).
    pub size: Option<usize>,
    pub issues: Vec<Issue>,
}

/// A scalar after coercion.
pub(super) enum Coerced<'v> {
    Str(Cow<'v, str>),
    Num(f64),
    Number(json::Num<'v>),
    /// A number written as this text (already JavaScript's form).
    Text(&'v str),
    Bool(bool),
}

impl Coerced<'_> {
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        match self {
            Coerced::Str(s) => json::write_str(out, s),
            Coerced::Num(f) => json::write_f64(out, *f),
            Coerced::Number(n) => n.write(out),
            Coerced::Text(t) => out.extend_from_slice(t.as_bytes()),
            Coerced::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        }
    }
}

fn article(t: &str) -> &'static str {
    if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn mismatch(ptr: String, label: &str, expected: &str, found: &str) -> Issue {
    Issue::new(
        IssueCode::TypeMismatch,
        ptr,
        format!(
            "{label} must be {} {expected} but it was {} {found}.",
            article(expected),
            article(found)
        ),
    )
}

/// AJV's `coerceTypes: "array"`: a one-element array stands for its element, then scalars
/// convert as JavaScript does. `Err` carries the type name found.
pub(super) fn coerce<'v>(v: VRef<'v>, ty: Scalar) -> Result<Coerced<'v>, &'static str> {
    let v = match v.kind() {
        Kind::Array(a) if a.len() == 1 => a.get(0).unwrap_or(v),
        _ => v,
    };
    match (ty, v.kind()) {
        (Scalar::Str, Kind::Str(s)) => Ok(Coerced::Str(Cow::Borrowed(s))),
        (Scalar::Str, Kind::Number(n)) => Ok(Coerced::Str(Cow::Owned(n.to_js_string()))),
        (Scalar::Str, Kind::Bool(b)) => Ok(Coerced::Str(Cow::Borrowed(if b {
            "true"
        } else {
            "false"
        }))),
        (Scalar::Str, Kind::Null) => Ok(Coerced::Str(Cow::Borrowed(""))),
        (Scalar::Num, Kind::Number(n)) => Ok(Coerced::Number(n)),
        (Scalar::Num, Kind::Bool(b)) => Ok(Coerced::Num(if b { 1.0 } else { 0.0 })),
        (Scalar::Num, Kind::Null) => Ok(Coerced::Num(0.0)),
        // A numeric string that is already JavaScript's text for its number is written as it is.
        (Scalar::Num, Kind::Str(s)) if json::is_canonical_number_text(s) => Ok(Coerced::Text(s)),
        (Scalar::Num, Kind::Str(s)) if !s.is_empty() => match json::string_to_number(s) {
            // Infinity would become `null` on the wire: refuse it rather than lose it.
            Some(f) if f.is_finite() => Ok(Coerced::Num(f)),
            _ => Err(v.type_name()),
        },
        (Scalar::Bool, Kind::Bool(b)) => Ok(Coerced::Bool(b)),
        (Scalar::Bool, Kind::Str("true")) => Ok(Coerced::Bool(true)),
        (Scalar::Bool, Kind::Str("false")) => Ok(Coerced::Bool(false)),
        (Scalar::Bool, Kind::Null) => Ok(Coerced::Bool(false)),
        (Scalar::Bool, Kind::Number(n)) => match n.as_f64() {
            Some(0.0) => Ok(Coerced::Bool(false)),
            Some(1.0) => Ok(Coerced::Bool(true)),
            _ => Err(v.type_name()),
        },
        _ => Err(v.type_name()),
    }
}

/// D8: a mapped `timestamp` as RFC 3339 when it is a warehouse's form of one (a number as epoch
/// seconds or milliseconds); `None` leaves it to the string coercion (and `INVALID_TIMESTAMP`).
pub(crate) fn timestamp(v: VRef<'_>) -> Option<String> {
    let v = match v.kind() {
        Kind::Array(a) if a.len() == 1 => a.get(0).unwrap_or(v),
        _ => v,
    };
    match v.kind() {
        Kind::Number(n) => accept::epoch_timestamp(n.as_f64()?),
        Kind::Str(s) if !accept::is_rfc3339(s) => accept::normalize_timestamp(s),
        _ => None,
    }
}

/// `removeEmptyValues` at the root: `""` and `null` are removed whatever the field's type.
pub(super) fn present(v: Option<VRef<'_>>) -> Option<VRef<'_>> {
    let r = v?;
    match r.kind() {
        Kind::Null => None,
        Kind::Str("") => None,
        _ => Some(r),
    }
}

/// Whether a declared sub-field value is removed by `removeEmptyValues` (null; `""` unless string).
pub(super) fn removed(v: VRef<'_>, ty: Scalar) -> bool {
    match v.kind() {
        Kind::Null => true,
        Kind::Str("") => ty != Scalar::Str,
        _ => false,
    }
}

/// The event under construction.
struct Builder<'v, 'o> {
    action: Action,
    fields: &'v Fields<'v>,
    strings: [Option<Cow<'v, str>>; Field::COUNT],
    out: &'o mut Vec<u8>,
    issues: Vec<Issue>,
}

/// Builds the event for `action` from `fields` into `out` (appended), and checks it.
/// `derived_message_id` supplies the messageId when the mapping gives none (D5).
pub(crate) fn build<'v>(
    action: Action,
    fields: &'v Fields<'v>,
    derived_message_id: impl FnOnce() -> String,
    out: &mut Vec<u8>,
) -> Built {
    let start = out.len();
    let mut b = Builder {
        action,
        fields,
        strings: [const { None }; Field::COUNT],
        out,
        issues: Vec::new(),
    };
    b.check_root();
    let message_id = match b.strings[Field::MessageId.index()].take() {
        Some(id) if !id.is_empty() => id.into_owned(),
        _ => derived_message_id(),
    };
    b.write(&message_id);
    let bad_timestamp = b
        .string(Field::Timestamp)
        .filter(|ts| !accept::is_rfc3339(ts))
        .map(|ts| {
            let message =
                format!("timestamp {ts:?} is not an RFC 3339 date-time (2024-05-01T12:00:00Z) nor a warehouse form of one (2024-05-01 12:00:00, a date, epoch seconds as a number)");
            Issue::new(IssueCode::InvalidTimestamp, "/timestamp", message)
        });
    let Builder {
        mut issues, out, ..
    } = b;
    if !issues.is_empty() {
        out.truncate(start);
        return Built {
            message_id: Some(message_id),
            size: None,
            issues,
        };
    }
    // The event is whole from here: what follows are the API's limits (D6), reported with it.
    let size = out.len() - start;
    issues.extend(bad_timestamp);
    if size > MAX_EVENT_BYTES {
        issues.push(Issue::new(
            IssueCode::EventTooLarge,
            "",
            format!(
                "the event is {size} bytes; the Tracking API accepts at most {MAX_EVENT_BYTES}"
            ),
        ));
    }
    if json::js_len(&message_id) > MAX_MESSAGE_ID_CHARS {
        issues.push(Issue::new(
            IssueCode::MessageIdTooLong,
            "/message_id",
            format!(
                "the messageId has {} characters; the Tracking API keeps at most {MAX_MESSAGE_ID_CHARS}",
                json::js_len(&message_id)
            ),
        ));
    }
    Built {
        message_id: Some(message_id),
        size: Some(size),
        issues,
    }
}

impl<'v> Builder<'v, '_> {
    fn get(&self, f: Field) -> Option<VRef<'v>> {
        present(self.fields[f.index()])
    }

    fn string(&self, f: Field) -> Option<&str> {
        self.strings[f.index()].as_deref()
    }

    /// Type checks and coercion of root fields, required fields and identity (steps 5–6).
    fn check_root(&mut self) {
        for f in Field::ALL {
            let Some(v) = self.get(f) else { continue };
            let ptr = || pointer("", f.key());
            if f == Field::Timestamp
                && let Some(ts) = timestamp(v)
            {
                self.strings[f.index()] = Some(Cow::Owned(ts));
                continue;
            }
            match f.ty() {
                FieldType::Str => match coerce(v, Scalar::Str) {
                    Ok(Coerced::Str(s)) => self.strings[f.index()] = Some(s),
                    Ok(_) => {}
                    Err(found) => self
                        .issues
                        .push(mismatch(ptr(), f.label(), "string", found)),
                },
                FieldType::Object(_) | FieldType::FreeObject => {
                    if v.as_object().is_none() {
                        self.issues
                            .push(mismatch(ptr(), f.label(), "object", v.type_name()));
                    }
                }
            }
        }
        for f in [Field::EventName, Field::GroupId] {
            if f.required(self.action) && self.get(f).is_none() {
                self.issues.push(Issue::new(
                    IssueCode::RequiredField,
                    pointer("", f.key()),
                    format!(
                        "The root value is missing the required field '{}'.",
                        f.key()
                    ),
                ));
            }
        }
        let has = |f: Field| self.string(f).is_some_and(|s| !s.is_empty());
        // An id of the wrong type is already reported; a missing identity would only repeat it.
        let bad_id = |f: Field| self.get(f).is_some() && self.string(f).is_none();
        if !has(Field::UserId)
            && !has(Field::AnonymousId)
            && !bad_id(Field::UserId)
            && !bad_id(Field::AnonymousId)
        {
            self.issues.push(Issue::new(
                IssueCode::MissingIdentity,
                "/user_id",
                "Either `Anonymous ID` or `User ID` must be defined.",
            ));
        }
    }

    /// One of the event's own keys (plain ASCII: written without an escape scan). Inlined, so
    /// the key's length is a constant and its copy a few moves.
    #[inline(always)]
    fn key(&mut self, first: &mut bool, key: &'static str) {
        if !*first {
            self.out.push(b',');
        }
        *first = false;
        json::write_plain_key(self.out, key);
    }

    /// A key that came from data (free-form objects): escaped.
    fn data_key(&mut self, first: &mut bool, key: &str) {
        if !*first {
            self.out.push(b',');
        }
        *first = false;
        json::write_str(self.out, key);
        self.out.push(b':');
    }

    #[inline(always)]
    fn str_key(&mut self, first: &mut bool, key: &'static str, f: Field) {
        if let Some(s) = self.strings[f.index()].take() {
            self.key(first, key);
            json::write_str(self.out, &s);
            self.strings[f.index()] = Some(s);
        }
    }

    /// `perform`: the event, key order as Segment's code builds it.
    fn write(&mut self, message_id: &str) {
        let action = self.action;
        let first = &mut true;
        self.out.push(b'{');
        self.str_key(first, "userId", Field::UserId);
        self.str_key(first, "anonymousId", Field::AnonymousId);
        if action == Action::Group {
            self.str_key(first, "groupId", Field::GroupId);
        }
        self.str_key(first, "timestamp", Field::Timestamp);
        match action {
            Action::Track => self.str_key(first, "event", Field::EventName),
            Action::Page => self.str_key(first, "name", Field::PageName),
            Action::Screen => self.str_key(first, "name", Field::ScreenName),
            Action::Identify | Action::Group => {}
        }
        self.key(first, "messageId");
        json::write_str(self.out, message_id);
        self.key(first, "context");
        self.write_context();
        match action {
            Action::Track => {
                self.key(first, "properties");
                self.write_spread(&[], self.get(Field::Properties), None);
            }
            Action::Page => {
                self.key(first, "properties");
                let copied = self.page_properties();
                self.write_spread(&copied, self.get(Field::Properties), None);
            }
            Action::Screen => {
                self.key(first, "properties");
                let name = self
                    .string(Field::ScreenName)
                    .map(|s| Coerced::Str(Cow::Owned(s.to_owned())));
                let copied: Vec<(&str, Coerced<'_>)> =
                    name.map(|n| ("name", n)).into_iter().collect();
                self.write_spread(&copied, self.get(Field::Properties), None);
            }
            Action::Identify => {
                self.key(first, "traits");
                let address = self.get(Field::Address).filter(|a| address_is_set(*a));
                self.write_spread(&[], self.get(Field::Traits), address);
            }
            Action::Group => {
                self.key(first, "traits");
                self.write_spread(&[], self.get(Field::Traits), None);
            }
        }
        self.key(first, "type");
        json::write_str(self.out, action.as_str());
        self.out.push(b'}');
    }

    fn write_context(&mut self) {
        let action = self.action;
        let first = &mut true;
        self.out.push(b'{');
        if action == Action::Track {
            self.key(first, "traits");
            self.write_spread(&[], self.get(Field::Traits), None);
        }
        self.object_key(first, "app", Field::Application);
        self.object_key(first, "campaign", Field::CampaignParameters);
        self.key(first, "consent");
        match self.get(Field::Consent).filter(|c| consent_is_valid(*c)) {
            Some(c) => c.write_json(self.out),
            None => self.out.extend_from_slice(b"{}"),
        }
        self.object_key(first, "device", Field::Device);
        self.str_key(first, "ip", Field::IpAddress);
        self.str_key(first, "locale", Field::Locale);
        self.object_key(first, "location", Field::Location);
        self.object_key(first, "network", Field::Network);
        self.object_key(first, "os", Field::OperatingSystem);
        self.object_key(first, "page", Field::Page);
        self.object_key(first, "screen", Field::Screen);
        self.str_key(first, "userAgent", Field::UserAgent);
        // D2: Send Screen keeps the timezone like every other action.
        self.str_key(first, "timezone", Field::Timezone);
        if action != Action::Group {
            self.str_key(first, "groupId", Field::GroupId);
        }
        self.out.push(b'}');
    }

    fn object_key(&mut self, first: &mut bool, key: &'static str, f: Field) {
        let (Some(v), FieldType::Object(subs)) = (self.get(f), f.ty()) else {
            return;
        };
        let Some(obj) = v.as_object() else { return };
        self.key(first, key);
        self.write_declared(f, subs, obj);
    }

    /// A declared object: unknown sub-keys removed, empties removed, values coerced (D1: the
    /// Spec spelling of device keys, which wins when both are mapped).
    fn write_declared(&mut self, f: Field, subs: &'static [Sub], obj: ObjRef<'v>) {
        let first = &mut true;
        self.out.push(b'{');
        for (k, v) in obj.iter() {
            let Some(s) = sub(subs, k) else { continue };
            if removed(v, s.ty) {
                continue;
            }
            if s.is_alias() && obj.get(s.out).is_some_and(|spec| !removed(spec, s.ty)) {
                continue;
            }
            match coerce(v, s.ty) {
                Ok(c) => {
                    self.key(first, s.out);
                    c.write(self.out);
                }
                Err(found) => {
                    let ptr = pointer(&pointer("", f.key()), k);
                    self.issues.push(mismatch(ptr, s.label, s.ty.name(), found));
                }
            }
        }
        self.out.push(b'}');
    }

    /// Page: `{name, category, path, referrer, search, title, url, ...properties}`.
    fn page_properties(&self) -> Vec<(&'static str, Coerced<'v>)> {
        let mut copied = Vec::new();
        let own = |f: Field| {
            self.string(f)
                .map(|s| Coerced::Str(Cow::Owned(s.to_owned())))
        };
        copied.extend(own(Field::PageName).map(|c| ("name", c)));
        copied.extend(own(Field::PageCategory).map(|c| ("category", c)));
        if let (Some(page), FieldType::Object(subs)) = (self.get(Field::Page), Field::Page.ty())
            && let Some(obj) = page.as_object()
        {
            for s in subs {
                if let Some(v) = obj.get(s.key).filter(|v| !removed(*v, s.ty))
                    && let Ok(c) = coerce(v, s.ty)
                {
                    copied.push((s.key, c));
                }
            }
        }
        copied
    }

    /// `{...copied, ...object, address?}`: keys of `object` override copied ones; a set address
    /// replaces the object's own `address` (D3).
    fn write_spread(
        &mut self,
        copied: &[(&'static str, Coerced<'_>)],
        object: Option<VRef<'v>>,
        address: Option<VRef<'v>>,
    ) {
        let obj = object.and_then(VRef::as_object);
        let first = &mut true;
        self.out.push(b'{');
        for (k, c) in copied {
            if obj.is_some_and(|o| o.get(k).is_some()) {
                continue;
            }
            self.key(first, k);
            c.write(self.out);
        }
        if let Some(obj) = obj {
            for (k, v) in obj.iter() {
                if address.is_some() && k == "address" {
                    continue;
                }
                self.data_key(first, k);
                v.write_json(self.out);
            }
        }
        if let (Some(a), FieldType::Object(subs)) = (address, Field::Address.ty())
            && let Some(a) = a.as_object()
        {
            self.key(first, "address");
            self.write_declared(Field::Address, subs, a);
        }
        self.out.push(b'}');
    }
}

/// D3/D7: an address replaces `traits.address` only when some sub-field has a value.
fn address_is_set(v: VRef<'_>) -> bool {
    let (Some(obj), FieldType::Object(subs)) = (v.as_object(), Field::Address.ty()) else {
        return false;
    };
    obj.iter()
        .any(|(k, v)| sub(subs, k).is_some() && !matches!(v.kind(), Kind::Null | Kind::Str("")))
}

/// Segment's `validateConsentObject`: kept only with `categoryPreferences` of booleans alone.
fn consent_is_valid(v: VRef<'_>) -> bool {
    let Some(prefs) = v.as_object().and_then(|o| o.get("categoryPreferences")) else {
        return false;
    };
    match prefs.kind() {
        Kind::Object(o) => o.iter().all(|(_, v)| matches!(v.kind(), Kind::Bool(_))),
        Kind::Array(a) => a.iter().all(|v| matches!(v.kind(), Kind::Bool(_))),
        _ => false,
    }
}

//! The derived messageId (docs/DESIGN.md): the same row under a mapping that does the same thing
//! always gets the same id, so a retry deduplicates at Segment, and so does a row re-sent after
//! the same mapping was applied again; a changed row or a changed mapping gets a new id.

use sha2::{Digest, Sha256};

use super::row::Row;
use super::{MappingDoc, TriggerDoc};
use crate::json;

/// Who renders: the ids that go into the derived messageId. Two mappings that do the same thing
/// still derive different ids, since their ids differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub destination_id: String,
    pub mapping_id: String,
}

impl Identity {
    /// The placeholder ids used offline and for inline mappings: `offline` and the mapping name.
    pub fn offline(mapping_name: &str) -> Identity {
        Identity {
            destination_id: "offline".into(),
            mapping_id: mapping_name.into(),
        }
    }
}

/// What a mapping does, as a digest: the first 16 bytes of SHA-256 over the canonical JSON of
/// its document without `name` and `enabled` (which do not change an event), keys that are
/// absent or `null` left out. Computed once, when the mapping is compiled.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Content([u8; 16]);

impl Content {
    /// The digest of `doc`'s `action`, `fields`, `model` and `trigger`.
    pub fn of(doc: &MappingDoc) -> Content {
        let mut h = Sha256::new();
        h.update(Content::canonical(doc));
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Content(bytes)
    }

    /// The digest's input: `{"action":…,"fields":…,"model":…,"trigger":…}`, keys sorted and
    /// every object in `fields` too, no whitespace, numbers and strings as JavaScript writes them.
    fn canonical(doc: &MappingDoc) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, k: &str| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            json::write_str(out, k);
            out.push(b':');
        };
        // In key order: action, fields, model, trigger.
        if let Some(action) = &doc.action {
            key(&mut out, "action");
            json::write_str(&mut out, action);
        }
        if let Some(fields) = &doc.fields {
            key(&mut out, "fields");
            json::write_canonical_entries(
                &mut out,
                fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), json::VRef::Json(v))),
            );
        }
        if let Some(model) = &doc.model {
            key(&mut out, "model");
            json::write_str(&mut out, model);
        }
        match &doc.trigger {
            None => {}
            Some(TriggerDoc::Named(name)) => {
                key(&mut out, "trigger");
                json::write_str(&mut out, name);
            }
            Some(TriggerDoc::Fql { fql }) => {
                key(&mut out, "trigger");
                out.extend_from_slice(b"{\"fql\":");
                json::write_str(&mut out, fql);
                out.push(b'}');
            }
        }
        out.push(b'}');
        out
    }

    /// The digest as 32 lowercase hex digits (the messageId's third part).
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(32);
        push_hex(&mut s, &self.0);
        s
    }

    /// [`Content::hex`] without an allocation, for the hash.
    fn hex_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 15) as usize];
        }
        out
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Content({})", self.hex())
    }
}

/// The prefix of every derived id (a version tag: a new recipe gets a new prefix). `sc1-` hashed
/// the mapping's version counter, which every update bumped; `sc2-` hashes what it does.
pub(crate) const PREFIX: &str = "sc2-";

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
}

/// `sc2-` + the first 32 hex digits of SHA-256 over the length-prefixed parts: destination id,
/// mapping id, the mapping's [`Content`] in hex, row id, op, and the row's columns as canonical
/// JSON.
pub fn derive(identity: &Identity, content: &Content, row: &Row) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(identity.destination_id.as_bytes());
    part(identity.mapping_id.as_bytes());
    part(&content.hex_bytes());
    part(row.id.as_deref().unwrap_or("").as_bytes());
    part(row.op.as_str().as_bytes());
    part(row.canonical_columns());
    let digest = h.finalize();
    let mut id = String::with_capacity(PREFIX.len() + 32);
    id.push_str(PREFIX);
    push_hex(&mut id, &digest[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::row::Op;

    fn row(json: &str) -> Row {
        Row::from_json(json.as_bytes()).unwrap()
    }

    fn doc(json: &str) -> MappingDoc {
        MappingDoc::parse(json.as_bytes()).unwrap()
    }

    const DOC: &str = r#"{"name": "n", "model": "orders", "action": "track",
        "trigger": {"fql": "event = \"new\""},
        "fields": {"event_name": "E", "user_id": {"@path": "$.properties.u"}, "properties": {"b": 1, "a": 2.50}}}"#;

    #[test]
    fn content_is_the_canonical_document_without_name_and_enabled() {
        assert_eq!(
            String::from_utf8(Content::canonical(&doc(DOC))).unwrap(),
            r#"{"action":"track","fields":{"event_name":"E","properties":{"a":2.5,"b":1},"user_id":{"@path":"$.properties.u"}},"model":"orders","trigger":{"fql":"event = \"new\""}}"#
        );
        let c = Content::of(&doc(DOC));
        // Name, enabled, whitespace, key order and number spelling do not count.
        let same = r#"{"enabled": false, "name": "other",
            "fields": {"properties": {"a": 2.5, "b": 1.0}, "user_id": {"@path": "$.properties.u"}, "event_name": "E"},
            "trigger": {"fql": "event = \"new\""}, "action": "track", "model": "orders"}"#;
        assert_eq!(Content::of(&doc(same)), c);
        // What the mapping does does.
        for other in [
            DOC.replace(r#""E""#, r#""F""#),
            DOC.replace("orders", "users"),
            DOC.replace(r#"{"fql": "event = \"new\""}"#, r#""added""#),
            DOC.replace(r#""action": "track","#, r#""action": "page","#),
        ] {
            assert_ne!(Content::of(&doc(&other)), c, "{other}");
        }
        // An absent key and a null one are alike.
        assert_eq!(
            Content::of(&doc(r#"{"action": "track", "trigger": null}"#)),
            Content::of(&doc(r#"{"action": "track"}"#))
        );
        assert_eq!(c.hex().len(), 32);
        assert_eq!(c.hex().as_bytes(), c.hex_bytes());
    }

    #[test]
    fn same_row_same_id_and_every_part_counts() {
        let ident = Identity {
            destination_id: "d".into(),
            mapping_id: "m".into(),
        };
        let content = Content::of(&doc(DOC));
        let a = derive(
            &ident,
            &content,
            &row(r#"{"id": "1", "op": "added", "columns": {"a": 1, "b": 2}}"#),
        );
        assert!(a.starts_with("sc2-") && a.len() == 36, "{a}");
        // Column order does not matter: the columns are hashed as canonical JSON.
        let same = derive(
            &ident,
            &content,
            &row(r#"{"id": "1", "op": "added", "columns": {"b": 2, "a": 1}}"#),
        );
        assert_eq!(a, same);
        let base = row(r#"{"id": "1", "op": "added", "columns": {"a": 1, "b": 2}}"#);
        let other_content = Content::of(&doc(&DOC.replace(r#""E""#, r#""F""#)));
        let others = [
            derive(
                &Identity {
                    destination_id: "d2".into(),
                    ..ident.clone()
                },
                &content,
                &base,
            ),
            derive(
                &Identity {
                    mapping_id: "m2".into(),
                    ..ident.clone()
                },
                &content,
                &base,
            ),
            derive(&ident, &other_content, &base),
            derive(
                &ident,
                &content,
                &row(r#"{"id": "2", "op": "added", "columns": {"a": 1, "b": 2}}"#),
            ),
            derive(
                &ident,
                &content,
                &Row::new(Some("1".into()), Op::Updated, base.columns.clone(), None),
            ),
            derive(
                &ident,
                &content,
                &row(r#"{"id": "1", "op": "added", "columns": {"a": 1, "b": 3}}"#),
            ),
        ];
        for other in others {
            assert_ne!(a, other);
        }
        // Length prefixes keep parts apart: ("ab", "c") is not ("a", "bc").
        let x = derive(
            &Identity {
                destination_id: "ab".into(),
                mapping_id: "c".into(),
            },
            &content,
            &base,
        );
        let y = derive(
            &Identity {
                destination_id: "a".into(),
                mapping_id: "bc".into(),
            },
            &content,
            &base,
        );
        assert_ne!(x, y);
    }
}

//! The derived messageId (docs/DESIGN.md): the same row under one mapping version always gets the
//! same id, so a retry deduplicates at Segment; a changed row or mapping gets a new one.

use sha2::{Digest, Sha256};

use super::row::Row;

/// Who renders: the ids that go into the derived messageId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub destination_id: String,
    pub mapping_id: String,
    pub version: u64,
}

impl Identity {
    /// The placeholder ids used offline and for inline mappings: `offline` and the mapping name.
    pub fn offline(mapping_name: &str) -> Identity {
        Identity {
            destination_id: "offline".into(),
            mapping_id: mapping_name.into(),
            version: 0,
        }
    }
}

/// The prefix of every derived id (a version tag: a new recipe gets a new prefix).
pub(crate) const PREFIX: &str = "sc1-";

/// `sc1-` + the first 32 hex digits of SHA-256 over the length-prefixed parts: destination id,
/// mapping id, mapping version, row id, op, and the row's columns as canonical JSON.
pub fn derive(identity: &Identity, row: &Row) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(identity.destination_id.as_bytes());
    part(identity.mapping_id.as_bytes());
    part(itoa::Buffer::new().format(identity.version).as_bytes());
    part(row.id.as_deref().unwrap_or("").as_bytes());
    part(row.op.as_str().as_bytes());
    part(row.canonical_columns());
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(PREFIX.len() + 32);
    id.push_str(PREFIX);
    for b in &digest[..16] {
        id.push(HEX[(b >> 4) as usize] as char);
        id.push(HEX[(b & 15) as usize] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::row::Op;

    fn row(json: &str) -> Row {
        Row::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn same_row_same_id_and_every_part_counts() {
        let ident = Identity {
            destination_id: "d".into(),
            mapping_id: "m".into(),
            version: 1,
        };
        let a = derive(
            &ident,
            &row(r#"{"id": "1", "op": "added", "columns": {"a": 1, "b": 2}}"#),
        );
        assert!(a.starts_with("sc1-") && a.len() == 36, "{a}");
        // Column order does not matter: the columns are hashed as canonical JSON.
        let same = derive(
            &ident,
            &row(r#"{"id": "1", "op": "added", "columns": {"b": 2, "a": 1}}"#),
        );
        assert_eq!(a, same);
        let base = row(r#"{"id": "1", "op": "added", "columns": {"a": 1, "b": 2}}"#);
        let others = [
            derive(
                &Identity {
                    destination_id: "d2".into(),
                    ..ident.clone()
                },
                &base,
            ),
            derive(
                &Identity {
                    mapping_id: "m2".into(),
                    ..ident.clone()
                },
                &base,
            ),
            derive(
                &Identity {
                    version: 2,
                    ..ident.clone()
                },
                &base,
            ),
            derive(
                &ident,
                &row(r#"{"id": "2", "op": "added", "columns": {"a": 1, "b": 2}}"#),
            ),
            derive(
                &ident,
                &Row::new(Some("1".into()), Op::Updated, base.columns.clone(), None),
            ),
            derive(
                &ident,
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
                version: 1,
            },
            &base,
        );
        let y = derive(
            &Identity {
                destination_id: "a".into(),
                mapping_id: "bc".into(),
                version: 1,
            },
            &base,
        );
        assert_ne!(x, y);
    }
}

//! The write key: a secret that never prints, never logs and is only read back as a fingerprint.
//! Only the sender's HTTP layer (`http.rs`) exposes it, in the Basic auth header; the store
//! exposes it only to encrypt it.

use std::fmt;

use sha2::{Digest, Sha256};

/// A Segment write key. `Debug` and `Display` print `[redacted]`; only [`WriteKey::expose`]
/// gives the text, for encryption and (later) the Basic auth header.
#[derive(Clone, PartialEq, Eq)]
pub struct WriteKey(String);

/// The longest write key accepted (Segment's are 32 characters).
pub(crate) const MAX_WRITE_KEY_LEN: usize = 256;

impl WriteKey {
    /// Checks the shape only: non-empty, at most [`MAX_WRITE_KEY_LEN`] bytes, printable ASCII
    /// without spaces. The message never contains the key.
    pub fn parse(s: String) -> Result<WriteKey, &'static str> {
        if s.is_empty() {
            return Err("is required");
        }
        if s.len() > MAX_WRITE_KEY_LEN {
            return Err("is longer than 256 bytes");
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces");
        }
        Ok(WriteKey(s))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first 8 hex digits of the key's SHA-256: enough to tell keys apart, useless to an
    /// attacker.
    pub fn fingerprint(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes())[..4])
    }
}

impl fmt::Debug for WriteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for WriteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_key() {
        let k = WriteKey::parse("abcDEF123secret".into()).unwrap();
        assert_eq!(format!("{k}"), "[redacted]");
        assert_eq!(format!("{k:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&k)), "Some([redacted])");
        assert_eq!(k.expose(), "abcDEF123secret");
        let fp = k.fingerprint();
        assert_eq!(fp.len(), 8);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    /// The README's tour shows this fingerprint: it must be the real one.
    #[test]
    fn the_tours_fingerprint_is_real() {
        let k = WriteKey::parse("YOUR_WRITE_KEY".into()).unwrap();
        assert_eq!(k.fingerprint(), "d28b8fe4");
        let readme = include_str!("../../README.md");
        assert!(readme.contains("write_key_fingerprint: d28b8fe4"));
    }

    #[test]
    fn checks_the_shape() {
        assert!(WriteKey::parse(String::new()).is_err());
        assert!(WriteKey::parse("has space".into()).is_err());
        assert!(WriteKey::parse("x".repeat(257)).is_err());
        assert!(WriteKey::parse("x".repeat(256)).is_ok());
    }
}

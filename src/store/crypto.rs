//! Encryption at rest for write keys: AES-256-GCM with a random 96-bit nonce per ciphertext,
//! the destination id as associated data, and the key id stored beside each ciphertext so keys
//! can rotate (new writes use the current key; older keys still decrypt).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

use crate::sender::hex;

/// Bytes in a key.
pub(crate) const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Why a key could not be loaded or a ciphertext not opened. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("encryption key: {0}")]
    BadKey(String),
    #[error("no encryption key with id {0} is loaded")]
    UnknownKey(String),
    #[error("ciphertext does not open with key {0}")]
    Open(String),
}

/// A ciphertext and what is needed to open it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// What a patch stores: the key id, nonce and ciphertext columns, each `None` when the patch
/// leaves the write key as it is.
pub(crate) type SealedColumns = (Option<String>, Option<Vec<u8>>, Option<Vec<u8>>);

impl Sealed {
    /// `sealed` as its three columns.
    pub(crate) fn columns(sealed: Option<Sealed>) -> SealedColumns {
        match sealed {
            Some(Sealed {
                key_id,
                nonce,
                ciphertext,
            }) => (Some(key_id), Some(nonce), Some(ciphertext)),
            None => (None, None, None),
        }
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// The current key and any previous ones (decrypt only).
pub struct KeyRing {
    current: Key,
    previous: Vec<Key>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeyRing {
    /// Parses keys as 64 hex digits each, one per line: the first is current, the others are
    /// previous keys kept to decrypt older ciphertexts. Blank lines and `#` comments are skipped.
    pub fn from_hex_lines(text: &str) -> Result<KeyRing, CryptoError> {
        let mut keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .enumerate()
            .map(|(i, line)| {
                parse_key(line).map_err(|e| CryptoError::BadKey(format!("line {}: {e}", i + 1)))
            });
        let current = keys
            .next()
            .ok_or_else(|| CryptoError::BadKey("no key found (expected 64 hex digits)".into()))??;
        let previous = keys.collect::<Result<Vec<_>, _>>()?;
        Ok(KeyRing { current, previous })
    }

    /// A new random key as 64 hex digits.
    pub fn generate_hex() -> Result<String, CryptoError> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key)
            .map_err(|e| CryptoError::BadKey(format!("no randomness: {e}")))?;
        Ok(hex(&key))
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypts `plaintext` under the current key, binding it to `aad`.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| CryptoError::BadKey(format!("no randomness: {e}")))?;
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Open(self.current.id.clone()))?;
        Ok(Sealed {
            key_id: self.current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypts with the key `sealed` names; fails if it is not loaded or `aad` differs.
    pub(crate) fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        let nonce: [u8; NONCE_LEN] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Open(key.id.clone()))?;
        key.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Open(key.id.clone()))
    }
}

fn parse_key(line: &str) -> Result<Key, String> {
    if line.len() != KEY_LEN * 2 {
        return Err(format!(
            "expected {} hex digits, found {} characters",
            KEY_LEN * 2,
            line.len()
        ));
    }
    let mut bytes = [0u8; KEY_LEN];
    for (i, pair) in line.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16).ok_or("not a hex digit");
        bytes[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| "bad key length".to_owned())?;
    // The id names the key without revealing it.
    let mut h = Sha256::new();
    h.update(b"segment-connections key id\0");
    h.update(bytes);
    let id = format!("k{}", hex(&h.finalize()[..4]));
    Ok(Key { id, cipher })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_the_aad() {
        let ring = KeyRing::from_hex_lines(&KeyRing::generate_hex().unwrap()).unwrap();
        let sealed = ring.seal(b"secret-write-key", b"dst_1").unwrap();
        assert_eq!(sealed.key_id, ring.current_key_id());
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(ring.open(&sealed, b"dst_1").unwrap(), b"secret-write-key");
        assert!(matches!(
            ring.open(&sealed, b"dst_2"),
            Err(CryptoError::Open(_))
        ));
        // Two seals of the same text differ (fresh nonce).
        assert_ne!(
            ring.seal(b"x", b"a").unwrap(),
            ring.seal(b"x", b"a").unwrap()
        );
    }

    #[test]
    fn rotation_keeps_old_ciphertexts_readable() {
        let old = KeyRing::generate_hex().unwrap();
        let new = KeyRing::generate_hex().unwrap();
        let before = KeyRing::from_hex_lines(&old).unwrap();
        let sealed = before.seal(b"k", b"d").unwrap();
        let after = KeyRing::from_hex_lines(&format!("{new}\n# rotated\n{old}\n")).unwrap();
        assert_ne!(after.current_key_id(), before.current_key_id());
        assert_eq!(after.open(&sealed, b"d").unwrap(), b"k");
        assert_eq!(
            after.seal(b"k", b"d").unwrap().key_id,
            after.current_key_id()
        );
        let only_new = KeyRing::from_hex_lines(&new).unwrap();
        assert!(matches!(
            only_new.open(&sealed, b"d"),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn rejects_bad_keys() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63)] {
            assert!(KeyRing::from_hex_lines(bad).is_err(), "{bad}");
        }
        let err = format!("{:?}", KeyRing::from_hex_lines(&"a".repeat(64)).unwrap());
        assert!(!err.contains("aaaa"), "{err}");
    }
}

//! `sha256`, `hmac_sha256`, `base64_encode` and `base64_decode`, on the UTF-8 of the input's
//! LiquidJS string.

use sha2::{Digest, Sha256};

use super::*;

const HEX: &[u8; 16] = b"0123456789abcdef";
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

pub(super) fn sha256(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    Ok(string(hex(&Sha256::digest(js_stringify(input).as_bytes()))))
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

pub(super) fn hmac_sha256(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let key = args.get(0).map(|k| js_stringify(k)).unwrap_or_default();
    Ok(string(hex(&hmac(
        key.as_bytes(),
        js_stringify(input).as_bytes(),
    ))))
}

pub(super) fn base64_encode(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let bytes = js_stringify(input).into_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    Ok(string(out))
}

/// LiquidJS's `isBase64` check, then Node's `Buffer.from(s, 'base64')` read as UTF-8 (invalid
/// sequences become U+FFFD).
pub(super) fn base64_decode(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let text = js_stringify(input);
    let mut digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b"\t\n\x0c\r ".contains(b))
        .collect();
    if digits.len().is_multiple_of(4) {
        for _ in 0..2 {
            if digits.last() == Some(&b'=') {
                digits.pop();
            }
        }
    }
    let valid = digits.len() % 4 != 1 && digits.iter().all(|b| BASE64.contains(b));
    if !valid {
        return Err(Error::with_msg("invalid base64 provided to base64_decode"));
    }
    let mut out = Vec::with_capacity(digits.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for d in digits {
        let v = BASE64.iter().position(|b| *b == d).unwrap_or(0) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(string(String::from_utf8_lossy(&out).into_owned()))
}

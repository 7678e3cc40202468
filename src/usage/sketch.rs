//! A HyperLogLog sketch of distinct users: 2^14 one-byte registers (16 KiB), a stable 64-bit
//! hash (the same in every process and release, so replicas' sketches merge), Ertl's improved
//! estimator (unbiased from 0 to billions, no empirical bias tables). Standard error
//! 1.04 / √16384 ≈ 0.81 %; under 2.5 % in about 99.7 % of estimates.
//!
//! Merge is register-wise max: commutative, associative and idempotent, so merging the same
//! sketch twice (a flush retried) changes nothing.

/// Index bits: 2^14 registers.
const P: u32 = 14;
/// Registers.
pub(crate) const REGISTERS: usize = 1 << P;
/// Bits left for the rank.
const Q: u32 = 64 - P;
/// The stored form: magic, format version, precision, then the registers.
const MAGIC: u8 = b'H';
const FORMAT: u8 = 1;
const HEADER: usize = 3;

/// Why a stored sketch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    #[error("stored sketch is {0} bytes; expected {len}", len = HEADER + REGISTERS)]
    Length(usize),
    #[error("stored sketch has an unknown header {0:?}")]
    Header([u8; 3]),
    #[error("stored sketch has a register of {0}, past the most possible ({max})", max = Q + 1)]
    Register(u8),
}

/// A HyperLogLog sketch (see the module's documentation).
#[derive(Clone, PartialEq, Eq)]
pub struct Sketch {
    registers: Box<[u8; REGISTERS]>,
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sketch")
            .field("estimate", &self.estimate())
            .finish()
    }
}

impl Default for Sketch {
    fn default() -> Sketch {
        Sketch::new()
    }
}

impl Sketch {
    pub fn new() -> Sketch {
        Sketch {
            registers: Box::new([0; REGISTERS]),
        }
    }

    /// Adds an item by its [`hash`].
    #[inline]
    pub fn insert_hash(&mut self, h: u64) {
        let index = (h >> Q) as usize;
        // The rank: leading zeros of the low Q bits, plus one (at most Q + 1).
        let rest = h << P;
        let rank = (rest.leading_zeros().min(Q) + 1) as u8;
        let r = &mut self.registers[index];
        if rank > *r {
            *r = rank;
        }
    }

    /// Whether adding `h` would change the sketch.
    #[inline]
    pub fn would_change(&self, h: u64) -> bool {
        let index = (h >> Q) as usize;
        let rank = ((h << P).leading_zeros().min(Q) + 1) as u8;
        rank > self.registers[index]
    }

    /// Register-wise max.
    pub fn merge(&mut self, other: &Sketch) {
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.registers.iter().all(|&r| r == 0)
    }

    /// The estimated number of distinct items (Ertl 2017, "New cardinality estimation
    /// algorithms for HyperLogLog sketches", the improved raw estimator).
    pub fn estimate(&self) -> u64 {
        let mut histogram = [0u32; Q as usize + 2];
        for &r in self.registers.iter() {
            histogram[r as usize] += 1;
        }
        let m = REGISTERS as f64;
        if histogram[0] as usize == REGISTERS {
            return 0;
        }
        let mut z = m * tau(1.0 - f64::from(histogram[Q as usize + 1]) / m);
        for k in (1..=Q as usize).rev() {
            z = 0.5 * (z + f64::from(histogram[k]));
        }
        z += m * sigma(f64::from(histogram[0]) / m);
        let alpha = 0.5 / std::f64::consts::LN_2;
        (alpha * m * m / z).round() as u64
    }

    /// The stored form (see [`Sketch::from_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + REGISTERS);
        out.extend_from_slice(&[MAGIC, FORMAT, P as u8]);
        out.extend_from_slice(&self.registers[..]);
        out
    }

    /// Reads a stored sketch; anything but exactly what [`Sketch::to_bytes`] writes is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sketch, SketchError> {
        if bytes.len() != HEADER + REGISTERS {
            return Err(SketchError::Length(bytes.len()));
        }
        let header = [bytes[0], bytes[1], bytes[2]];
        if header != [MAGIC, FORMAT, P as u8] {
            return Err(SketchError::Header(header));
        }
        if let Some(&bad) = bytes[HEADER..].iter().find(|&&r| u32::from(r) > Q + 1) {
            return Err(SketchError::Register(bad));
        }
        let mut registers = Box::new([0u8; REGISTERS]);
        registers.copy_from_slice(&bytes[HEADER..]);
        Ok(Sketch { registers })
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if z == before {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == before {
            return z / 3.0;
        }
    }
}

/// A stable 64-bit hash of `bytes` (fixed here, so every process and release agrees; sketches
/// made with another hash would not merge): 8-byte words folded by a multiply-xorshift, the
/// length mixed in, then MurmurHash3's 64-bit finaliser.
pub fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = 0x243F_6A88_85A3_08D3 ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    fmix64(h)
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(range: std::ops::Range<u64>, prefix: &str) -> Sketch {
        let mut s = Sketch::new();
        for i in range {
            s.insert_hash(hash(format!("{prefix}{i}").as_bytes()));
        }
        s
    }

    fn relative_error(estimate: u64, truth: u64) -> f64 {
        (estimate as f64 - truth as f64).abs() / truth as f64
    }

    #[test]
    fn empty_is_zero_and_small_counts_are_exact_or_nearly() {
        assert_eq!(Sketch::new().estimate(), 0);
        assert!(Sketch::new().is_empty());
        for n in [1u64, 2, 10, 100, 1000] {
            let e = of(0..n, "user-").estimate();
            assert!(
                relative_error(e, n) <= 0.01 || e.abs_diff(n) <= 1,
                "{n}: estimated {e}"
            );
        }
    }

    #[test]
    fn the_error_stays_within_three_standard_errors() {
        // 0.81 % standard error; 3σ ≈ 2.5 %. Several sizes, including HyperLogLog's classic
        // bias zone (2.5–5 × the registers), and ids as sequential as real ones are.
        for (n, prefix) in [
            (20_000u64, "u"),
            (60_000, "user-"),
            (100_000, "anon-"),
            (250_000, "a1b2c3d4-"),
        ] {
            let e = of(0..n, prefix).estimate();
            assert!(relative_error(e, n) < 0.025, "{n}: estimated {e}");
        }
    }

    #[test]
    fn repeats_count_once() {
        let mut s = of(0..5_000, "u");
        let before = s.clone();
        for i in 0..5_000 {
            s.insert_hash(hash(format!("u{i}").as_bytes()));
        }
        assert_eq!(s, before);
    }

    #[test]
    fn merge_is_the_union() {
        // Two replicas, overlapping by 20,000 ids: the union is 100,000.
        let mut a = of(0..60_000, "user-");
        let b = of(40_000..100_000, "user-");
        let all = of(0..100_000, "user-");
        let b_then_a = {
            let mut b = b.clone();
            b.merge(&a);
            b
        };
        a.merge(&b);
        assert_eq!(
            a, all,
            "the union of two sketches is the sketch of the union"
        );
        assert_eq!(a, b_then_a, "commutative");
        let again = a.clone();
        a.merge(&b);
        assert_eq!(a, again, "idempotent");
        assert!(relative_error(a.estimate(), 100_000) < 0.025);
    }

    #[test]
    fn bytes_round_trip() {
        let s = of(0..30_000, "user-");
        let bytes = s.to_bytes();
        assert_eq!(bytes.len(), HEADER + REGISTERS);
        assert_eq!(Sketch::from_bytes(&bytes).unwrap(), s);
        assert_eq!(
            Sketch::from_bytes(&Sketch::new().to_bytes()).unwrap(),
            Sketch::new()
        );
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let good = of(0..100, "u").to_bytes();
        assert_eq!(Sketch::from_bytes(&[]), Err(SketchError::Length(0)));
        assert_eq!(
            Sketch::from_bytes(&good[..good.len() - 1]),
            Err(SketchError::Length(good.len() - 1))
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            Sketch::from_bytes(&bad),
            Err(SketchError::Header(_))
        ));
        let mut bad = good.clone();
        bad[HEADER + 7] = 200;
        assert_eq!(Sketch::from_bytes(&bad), Err(SketchError::Register(200)));
        // Every single-byte truncation or garbage length is refused without a panic.
        for n in 0..64 {
            assert!(Sketch::from_bytes(&vec![0xFF; n]).is_err());
        }
    }

    #[test]
    fn the_hash_is_fixed() {
        // Stored sketches depend on it: a change here would stop old and new sketches merging.
        assert_eq!(hash(b""), fmix64(0x243F_6A88_85A3_08D3));
        let a = hash(b"user-1");
        assert_eq!(a, hash(b"user-1"));
        assert_ne!(a, hash(b"user-2"));
        assert_ne!(hash(b"abcdefgh"), hash(b"abcdefgh\0"));
        assert_eq!(hash(b"uuser-42"), 0x12ff_c768_6a04_5c82);
    }

    #[test]
    fn would_change_matches_insert() {
        let mut s = of(0..1000, "u");
        for i in 0..2000u64 {
            let h = hash(format!("u{i}").as_bytes());
            let before = s.clone();
            let predicted = s.would_change(h);
            s.insert_hash(h);
            assert_eq!(predicted, s != before);
        }
    }
}

//! The record ids a sync has received, without holding them all: a Bloom filter over every id
//! (about 12 bits an id, in stages that double as the sync grows), and the ids not yet written to
//! the store, exactly. An id the filter has never seen is new for certain, so only the filter's
//! rare "maybe" costs a query of the store; a sync of ten million records holds at most 30 MB.

use std::collections::HashSet;
use std::hash::BuildHasher as _;

type Ids = HashSet<String, foldhash::fast::RandomState>;

/// Ids a stage holds before the next, twice its size, begins.
const FIRST_STAGE: usize = 1 << 16;
/// Bits set per id, all in one 512-bit block.
const BITS_PER_ID: u32 = 8;
/// Bits of filter per id of capacity.
const FILTER_BITS_PER_ID: usize = 12;

/// What the filter says of an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// Never received.
    No,
    /// Received and not yet written (certain).
    Unflushed,
    /// Perhaps received before, and written: ask the store.
    Maybe,
}

/// One stage of the filter: blocks of 512 bits, each id's bits in the block its hash picks.
struct Stage {
    blocks: Vec<[u64; 8]>,
    capacity: usize,
    len: usize,
}

impl Stage {
    fn new(capacity: usize) -> Stage {
        let blocks = (capacity * FILTER_BITS_PER_ID).div_ceil(512).max(1);
        Stage {
            blocks: vec![[0; 8]; blocks],
            capacity,
            len: 0,
        }
    }

    /// The block and the bits of `hash`: the block from its high half, the bits from a
    /// multiplicative sequence seeded by its low half.
    fn locate(&self, hash: u64) -> (usize, [u16; BITS_PER_ID as usize]) {
        let block = (((hash >> 32) * self.blocks.len() as u64) >> 32) as usize;
        let mut x = (hash as u32) | 1;
        let mut bits = [0u16; BITS_PER_ID as usize];
        for b in &mut bits {
            x = x.wrapping_mul(0x9E37_79B1);
            *b = (x >> 23) as u16;
        }
        (block, bits)
    }

    fn insert(&mut self, hash: u64) {
        let (block, bits) = self.locate(hash);
        let block = &mut self.blocks[block];
        for b in bits {
            block[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        self.len += 1;
    }

    fn contains(&self, hash: u64) -> bool {
        let (block, bits) = self.locate(hash);
        let block = &self.blocks[block];
        bits.iter()
            .all(|&b| block[usize::from(b >> 6)] & (1 << (b & 63)) != 0)
    }
}

/// Every id a sync has received (see the module's comment).
pub(super) struct Received {
    hasher: foldhash::fast::RandomState,
    stages: Vec<Stage>,
    unflushed: Ids,
}

impl Received {
    pub(super) fn new() -> Received {
        Received {
            hasher: foldhash::fast::RandomState::default(),
            stages: vec![Stage::new(FIRST_STAGE)],
            unflushed: Ids::default(),
        }
    }

    pub(super) fn seen(&self, id: &str) -> Seen {
        if self.unflushed.contains(id) {
            return Seen::Unflushed;
        }
        let hash = self.hasher.hash_one(id);
        match self.stages.iter().any(|s| s.contains(hash)) {
            true => Seen::Maybe,
            false => Seen::No,
        }
    }

    /// Adds an id received (and not yet written).
    pub(super) fn insert(&mut self, id: String) {
        let hash = self.hasher.hash_one(id.as_str());
        let last = self.stages.last_mut().expect("a filter has a stage");
        if last.len >= last.capacity {
            let next = Stage::new(last.capacity * 2);
            self.stages.push(next);
        }
        self.stages
            .last_mut()
            .expect("a filter has a stage")
            .insert(hash);
        self.unflushed.insert(id);
    }

    /// How many ids wait to be written.
    pub(super) fn unflushed(&self) -> usize {
        self.unflushed.len()
    }

    /// The ids to write, in byte order (so the store's index takes them in order).
    pub(super) fn to_flush(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.unflushed.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// The ids of [`Received::to_flush`] are written.
    pub(super) fn flushed(&mut self) {
        self.unflushed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_never_received_is_no_and_one_received_is_never_no() {
        let mut r = Received::new();
        assert_eq!(r.seen("a"), Seen::No);
        r.insert("a".into());
        assert_eq!(r.seen("a"), Seen::Unflushed);
        assert_eq!(r.to_flush(), ["a"]);
        r.flushed();
        assert_eq!(r.unflushed(), 0);
        assert_eq!(r.seen("a"), Seen::Maybe);
    }

    /// Across several stages: no false "no" ever, and few false "maybe".
    #[test]
    fn no_false_negatives_and_few_false_positives_across_stages() {
        let mut r = Received::new();
        let n = FIRST_STAGE * 5;
        for i in 0..n {
            r.insert(format!("row-{i}"));
            if r.unflushed() >= 10_000 {
                r.flushed();
            }
        }
        r.flushed();
        assert!(r.stages.len() >= 3, "{} stages", r.stages.len());
        assert!((0..n).all(|i| r.seen(&format!("row-{i}")) == Seen::Maybe));
        let probes = 100_000;
        let false_maybes = (0..probes)
            .filter(|i| r.seen(&format!("other-{i}")) == Seen::Maybe)
            .count();
        // Each stage is built for about 0.3 %; three stages at most about 1 %.
        assert!(false_maybes < probes / 50, "{false_maybes} of {probes}");
    }

    #[test]
    fn ids_to_write_come_sorted() {
        let mut r = Received::new();
        for id in ["c", "a", "b"] {
            r.insert(id.into());
        }
        assert_eq!(r.to_flush(), ["a", "b", "c"]);
    }
}

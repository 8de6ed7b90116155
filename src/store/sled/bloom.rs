//! A blocked Bloom filter: every key sets 8 bits within one 64-byte block, so a lookup costs
//! one cache line. At 16 bits per key it answers "maybe" for about 0.09 % of absent keys (1.04 %
//! at 10, 0.41 % at 12, 0.18 % at 14: measured on a million absent keys). Runs sealed by an
//! earlier hookgate keep the 10 bits they were written with.

const BLOCK_BITS: u64 = 512;
pub const BLOCK_BYTES: usize = 64;
const BITS_PER_KEY: usize = 16;
const PROBES: u64 = 8;

/// A key's hash, computed once and probed in every filter. Written down here (FNV-1a, then
/// splitmix64's finalizer), so a filter written to disk reads back the same in any build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(u64, u64);

impl KeyHash {
    pub fn of(key: &[u8]) -> KeyHash {
        let fnv = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        KeyHash(mix(fnv), mix(fnv ^ 0x9e37_79b9_7f4a_7c15))
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    bytes: Vec<u8>,
}

impl Bloom {
    /// A filter sized for `keys` keys.
    pub fn with_capacity(keys: usize) -> Bloom {
        let blocks = (keys * BITS_PER_KEY).div_ceil(BLOCK_BITS as usize).max(1);
        Bloom {
            bytes: vec![0; blocks * BLOCK_BYTES],
        }
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Option<Bloom> {
        (!bytes.is_empty() && bytes.len().is_multiple_of(BLOCK_BYTES)).then_some(Bloom { bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn insert(&mut self, key: KeyHash) {
        let (block, mut bits) = self.locate(key);
        for _ in 0..PROBES {
            let bit = block * BLOCK_BITS as usize + (bits % u128::from(BLOCK_BITS)) as usize;
            self.bytes[bit / 8] |= 1 << (bit % 8);
            bits /= u128::from(BLOCK_BITS);
        }
    }

    /// `false`: the key was never inserted. `true`: it may have been.
    #[cfg(test)]
    pub fn may_contain(&self, key: KeyHash) -> bool {
        let probe = Probe::of(key);
        let block = probe.block(self.blocks()) * BLOCK_BYTES;
        probe.found_in(&self.bytes[block..block + BLOCK_BYTES])
    }

    /// How many 64-byte blocks it has.
    pub fn blocks(&self) -> usize {
        self.bytes.len() / BLOCK_BYTES
    }

    /// The block of `key`, and 72 bits (8 probes of 9 bits) to place in it.
    fn locate(&self, key: KeyHash) -> (usize, u128) {
        (key.block(self.blocks()), key.bits())
    }
}

impl KeyHash {
    fn block(self, blocks: usize) -> usize {
        (self.0 % blocks as u64) as usize
    }

    fn bits(self) -> u128 {
        u128::from(self.1) << 8 | u128::from(self.0 >> 56)
    }
}

/// A key's probe of any filter: which block, and the 8 bits it sets in a block as one mask of
/// eight words, made once and checked against every filter's block with eight ANDs.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    key: KeyHash,
    mask: [u64; 8],
}

impl Probe {
    pub fn of(key: KeyHash) -> Probe {
        let mut bits = key.bits();
        let mut mask = [0u64; 8];
        for _ in 0..PROBES {
            let bit = (bits % u128::from(BLOCK_BITS)) as usize;
            bits /= u128::from(BLOCK_BITS);
            mask[bit / 64] |= 1 << (bit % 64);
        }
        Probe { key, mask }
    }

    /// Its block in a filter of `blocks` blocks.
    pub fn block(&self, blocks: usize) -> usize {
        self.key.block(blocks)
    }

    /// Whether a filter's 64-byte `block` (this probe's) has every bit of the key set. (Bit `n`
    /// of a block is bit `n % 8` of its byte `n / 8`: bit `n % 64` of its little-endian word
    /// `n / 64`.)
    pub fn found_in(&self, block: &[u8]) -> bool {
        block.chunks_exact(8).zip(self.mask).all(|(word, mask)| {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            word & mask == mask
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_always_found_and_few_others_are() {
        let mut bloom = Bloom::with_capacity(10_000);
        for n in 0..10_000 {
            bloom.insert(KeyHash::of(format!("in-{n}").as_bytes()));
        }
        let found = |key: String| bloom.may_contain(KeyHash::of(key.as_bytes()));
        assert!((0..10_000).all(|n| found(format!("in-{n}"))));
        let false_positives = (0..100_000).filter(|n| found(format!("out-{n}"))).count();
        assert!(false_positives < 300, "{false_positives} of 100000");
        let copy = Bloom::from_bytes(bloom.as_bytes().to_vec()).unwrap();
        assert!(copy.may_contain(KeyHash::of(b"in-7")));
    }
}

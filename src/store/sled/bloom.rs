//! A blocked Bloom filter: every key sets 8 bits within one 64-byte block, so a lookup costs
//! one cache line. At 16 bits per key it answers "maybe" for about 0.09 % of absent keys (1.04 %
//! at 10, 0.41 % at 12, 0.18 % at 14: measured on a million absent keys). Runs sealed by an
//! earlier hookgate keep the 10 bits they were written with.

const BLOCK_BITS: u64 = 512;
const BLOCK_BYTES: usize = 64;
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
        (!bytes.is_empty() && bytes.len() % BLOCK_BYTES == 0).then_some(Bloom { bytes })
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
    pub fn may_contain(&self, key: KeyHash) -> bool {
        let (block, mut bits) = self.locate(key);
        (0..PROBES).all(|_| {
            let bit = block * BLOCK_BITS as usize + (bits % u128::from(BLOCK_BITS)) as usize;
            bits /= u128::from(BLOCK_BITS);
            self.bytes[bit / 8] & (1 << (bit % 8)) != 0
        })
    }

    /// The block of `key`, and 72 bits (8 probes of 9 bits) to place in it.
    fn locate(&self, key: KeyHash) -> (usize, u128) {
        let KeyHash(first, second) = key;
        let blocks = (self.bytes.len() / BLOCK_BYTES) as u64;
        let block = (first % blocks) as usize;
        (block, u128::from(second) << 8 | u128::from(first >> 56))
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

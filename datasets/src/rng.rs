//! A tiny deterministic PRNG (splitmix64): reproducible shuffles and crops without a
//! dependency whose output could change between versions.

/// Mixes one 64-bit word into a well-distributed one (the splitmix64 finalizer).
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64: passes BigCrush, one addition and a mix per draw.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for one purpose (`domain`) and a list of keys (seed, epoch, ...): different
    /// purposes or keys give unrelated streams.
    pub fn new(domain: u64, keys: &[u64]) -> Self {
        let state = keys.iter().fold(mix(domain), |state, &key| {
            mix(state ^ mix(key.wrapping_add(0x9e37_79b9_7f4a_7c15)))
        });
        Self(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..bound` (`bound` > 0), without modulo bias (Lemire's method).
    pub fn below(&mut self, bound: u64) -> u64 {
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_permutation_and_depends_on_keys() {
        let mut a: Vec<u32> = (0..100).collect();
        let mut b = a.clone();
        SplitMix64::new(1, &[7, 0]).shuffle(&mut a);
        SplitMix64::new(1, &[7, 1]).shuffle(&mut b);
        assert_ne!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        let mut again: Vec<u32> = (0..100).collect();
        SplitMix64::new(1, &[7, 0]).shuffle(&mut again);
        assert_eq!(a, again);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64::new(2, &[3]);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let v = rng.below(5) as usize;
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}

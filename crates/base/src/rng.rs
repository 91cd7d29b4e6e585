//! xorshift64 (Marsaglia, 2003): the kernel's one pseudo-random generator. Every random choice
//! (stress roles' operations, bench walkers, `fail_alloc=` injection) derives from `seed=`, so a
//! run is reproducible per CPU. Not for anything that needs real randomness.

/// A xorshift64 stream. The state must never be 0.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A stream starting from `state` (forced odd, so never 0).
    pub const fn from_state(state: u64) -> Self {
        Self(state | 1)
    }

    /// One xorshift64 step: the successor of a non-zero state.
    pub const fn step(mut x: u64) -> u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = Self::step(self.0);
        self.0
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sequence_and_never_zero() {
        // xorshift64 with shifts 13, 7, 17 from state 1.
        assert_eq!(Rng::step(1), 0x4082_2041);
        let mut r = Rng::from_state(0);
        for _ in 0..10_000 {
            assert_ne!(r.next_u64(), 0);
        }
        let mut r = Rng::from_state(42);
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}

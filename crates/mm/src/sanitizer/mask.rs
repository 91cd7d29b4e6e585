//! [`CpuMask`]: a set of CPU numbers, which CPUs may hold a TLB entry.

use core::fmt;

/// The most CPUs a [`CpuMask`] can name.
pub const MAX_SANITIZER_CPUS: usize = 512;

const MASK_WORDS: usize = MAX_SANITIZER_CPUS / 64;

/// A set of CPU numbers below [`MAX_SANITIZER_CPUS`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CpuMask([u64; MASK_WORDS]);

impl CpuMask {
    /// No CPU.
    pub const EMPTY: Self = Self([0; MASK_WORDS]);

    /// Every CPU it can name.
    pub const ALL: Self = Self([u64::MAX; MASK_WORDS]);

    /// The CPUs whose bits are set in `words`, 64 CPUs a word from CPU 0 (a kernel bitmap).
    pub fn from_words(words: impl IntoIterator<Item = u64>) -> Self {
        let mut mask = Self::EMPTY;
        for (w, bits) in words.into_iter().take(MASK_WORDS).enumerate() {
            mask.0[w] = bits;
        }
        mask
    }

    /// Only `cpu`.
    ///
    /// # Panics
    /// If `cpu >= MAX_SANITIZER_CPUS`.
    pub const fn single(cpu: usize) -> Self {
        let mut mask = Self::EMPTY;
        mask.0[cpu / 64] = 1 << (cpu % 64);
        mask
    }

    /// CPUs `0..n`.
    pub fn first(n: usize) -> Self {
        Self::from_cpus(0..n.min(MAX_SANITIZER_CPUS))
    }

    /// The CPUs `cpus` yields.
    pub fn from_cpus(cpus: impl IntoIterator<Item = usize>) -> Self {
        let mut mask = Self::EMPTY;
        for cpu in cpus {
            mask.insert(cpu);
        }
        mask
    }

    /// Adds `cpu`.
    pub fn insert(&mut self, cpu: usize) {
        self.0[cpu / 64] |= 1 << (cpu % 64);
    }

    /// Removes `cpu`.
    pub fn remove(&mut self, cpu: usize) {
        self.0[cpu / 64] &= !(1 << (cpu % 64));
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < MAX_SANITIZER_CPUS && self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The CPUs in both sets.
    pub fn and(self, other: Self) -> Self {
        Self(core::array::from_fn(|i| self.0[i] & other.0[i]))
    }

    /// The CPUs in either set.
    pub fn or(self, other: Self) -> Self {
        Self(core::array::from_fn(|i| self.0[i] | other.0[i]))
    }

    /// The CPUs in `self` but not in `other`.
    pub fn without(self, other: Self) -> Self {
        Self(core::array::from_fn(|i| self.0[i] & !other.0[i]))
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(self, other: Self) -> bool {
        self.without(other).is_empty()
    }

    /// The CPUs in ascending order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        self.0.into_iter().enumerate().flat_map(|(w, mut bits)| {
            core::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    w * 64 + b
                })
            })
        })
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for CpuMask {
    /// `{0,3,300}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, cpu) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{cpu}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn from_bitmap_words() {
        let m = CpuMask::from_words([0b101, 0, 1 << 63]);
        assert_eq!(m.iter().collect::<Vec<_>>(), [0, 2, 191]);
        assert!(CpuMask::from_words([]).is_empty());
        assert_eq!(CpuMask::first(3), CpuMask::from_cpus([0, 1, 2]));
    }

    #[test]
    fn hold_512_cpus() {
        let mut m = CpuMask::from_cpus([0, 63, 64, 300, 511]);
        assert!(m.contains(511) && m.contains(300) && !m.contains(1) && !m.contains(512));
        assert_eq!(m.iter().collect::<Vec<_>>(), [0, 63, 64, 300, 511]);
        assert_eq!(alloc::format!("{m}"), "{0,63,64,300,511}");
        assert_eq!(m.and(CpuMask::single(300)), CpuMask::single(300));
        assert!(CpuMask::single(64).is_subset(m));
        m.remove(64);
        assert!(!m.contains(64));
        assert_eq!(m.or(CpuMask::single(64)).iter().count(), 5);
        m = m.without(CpuMask::from_cpus([0, 63, 300, 511]));
        assert!(m.is_empty());
    }
}

//! What a gather must invalidate, and what a flush did invalidate: the portable bookkeeping of
//! [`mm::gather`](crate) and the coverage rule the self-tests check flushes against. Both
//! compile on the host, where a property test drives random clears through the gather's
//! tracking and the flush planner and proves every cleared leaf is covered.
//!
//! Mirrors Linux's `struct mmu_gather` range fields (`start`, `end`, `cleared_*`,
//! `freed_tables`) and `tlb_get_level` (include/asm-generic/tlb.h).
//!
//! Sits on nothing in this crate: portable, tested on the host.

use broadside_arch::pte::{PAGE_SIZE, level_block_size};

/// The VA range a gather has collected, the smallest leaf cleared, and which levels had
/// entries cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatherRange {
    /// Start of the range, `u64::MAX` while empty.
    pub start: u64,
    /// End of the range (exclusive), 0 while empty.
    pub end: u64,
    /// The flush stride: the smallest leaf cleared (`u64::MAX` while empty).
    pub stride: u64,
    /// Bit `l` set: entries at level `l` were cleared.
    pub cleared_levels: u8,
}

impl Default for GatherRange {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl GatherRange {
    /// Nothing gathered.
    pub const EMPTY: Self = Self {
        start: u64::MAX,
        end: 0,
        stride: u64::MAX,
        cleared_levels: 0,
    };

    /// Whether nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    fn track(&mut self, va: u64, size: u64) {
        self.start = self.start.min(va);
        self.end = self.end.max(va + size);
    }

    /// A leaf at `level` mapping `va` was cleared (`tlb_remove_page_size`).
    pub fn leaf(&mut self, va: u64, level: u8) {
        let size = level_block_size(level);
        self.track(va, size);
        self.stride = self.stride.min(size);
        self.cleared_levels |= 1 << level;
    }

    /// The table at `level` covering `va` was unhooked, with every entry inside it already
    /// cleared into this gather (`pte_free_tlb`). A walk-cache entry for the parent's entry is
    /// used to translate every VA in the table's span, so one page of that span in the
    /// (walk-cache) flush invalidates it, as Linux's `pte_free_tlb` adds one page at `address`.
    pub fn table(&mut self, va: u64, level: u8) {
        let span = if level == 0 {
            1 << 48
        } else {
            level_block_size(level - 1)
        };
        self.track(va & !(span - 1), PAGE_SIZE);
        self.stride = self.stride.min(PAGE_SIZE);
        self.cleared_levels |= 1 << level.saturating_sub(1);
    }

    /// The table at `level` (>= 1) covering `va` was unhooked while still full of valid leaves
    /// of `leaf_size`: the whole span, at the leaf stride, as well as the table itself.
    pub fn table_with_leaves(&mut self, va: u64, level: u8, leaf_size: u64) {
        let span = level_block_size(level - 1);
        self.track(va & !(span - 1), span);
        self.stride = self.stride.min(leaf_size);
        self.cleared_levels |= 1 << level;
        self.table(va, level);
    }

    /// This space's level-1 entry for a shared level-2 table covering the 1 GiB at `va` was
    /// dropped (`tlb_unshare_pmd_ptdesc`): the whole GiB, at the 2 MiB block stride.
    pub fn unshared_table(&mut self, va: u64) {
        let gib = level_block_size(1);
        self.track(va & !(gib - 1), gib);
        self.stride = self.stride.min(level_block_size(2));
        self.cleared_levels |= 1 << 1;
    }

    /// The TTL hint for the flush: the one level whose leaves were cleared, if only one was
    /// (levels 2 and 3; `tlb_get_level`).
    pub fn level_hint(&self) -> Option<u8> {
        match self.cleared_levels {
            0b1000 => Some(3),
            0b0100 => Some(2),
            _ => None,
        }
    }
}

/// The translations a flush invalidated (of one ASID).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushCoverage {
    /// Nothing: no flush was needed (the space never ran) or none was issued.
    #[default]
    Nothing,
    /// Every translation of the ASID (`ASIDE1`, or a range over the threshold).
    WholeAsid,
    /// `[start, end)` in steps of `stride`, with the TTL `level_hint` when there was one.
    Range {
        /// First VA of the request.
        start: u64,
        /// End of the request (exclusive).
        end: u64,
        /// Step between invalidated addresses.
        stride: u64,
        /// The level the TLBIs were limited to, if any.
        level_hint: Option<u8>,
    },
}

impl FlushCoverage {
    /// Whether the leaf of `size` bytes at `va` (aligned to `size`), at `level`, is invalidated.
    ///
    /// A by-VA TLBI invalidates every entry that translates its address (Arm ARM D8.13.5), so
    /// a range flush hits a leaf exactly when one of its steps — multiples of `stride` from
    /// `start` rounded down — lies inside the leaf: a leaf at least as large as the stride
    /// always contains one; a smaller leaf only if it starts on a step (a 2 MiB stride steps
    /// over 511 of every 512 pages). A level hint (TTL) limits the hit to that level.
    pub fn covers_leaf(&self, va: u64, size: u64, level: u8) -> bool {
        match *self {
            Self::Nothing => false,
            Self::WholeAsid => true,
            Self::Range {
                start,
                end,
                stride,
                level_hint,
            } => {
                let first_step = start & !(stride - 1);
                let step_inside = if size >= stride {
                    va + size > first_step && va < end
                } else {
                    va.is_multiple_of(stride) && va >= first_step && va < end
                };
                step_inside && level_hint.is_none_or(|l| l == level)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broadside_arch::pte::{L1_BLOCK_SIZE, L2_BLOCK_SIZE};
    use broadside_arch::tlbi::{FlushPlan, FlushRequest, TlbFeatures, plan_range_flush};
    use proptest::prelude::*;

    /// What the planner's flush for `r` covers, as `mm::tlb::flush_tlb_range` records it.
    fn coverage_of(r: &GatherRange, feats: TlbFeatures) -> FlushCoverage {
        let req = FlushRequest {
            start: r.start,
            end: r.end,
            stride: r.stride,
            asid: 1,
            last_level_only: false,
            level_hint: r.level_hint(),
        };
        match plan_range_flush(&req, feats) {
            FlushPlan::Ops(_) => FlushCoverage::Range {
                start: r.start,
                end: r.end,
                stride: r.stride,
                level_hint: r.level_hint(),
            },
            _ => FlushCoverage::WholeAsid,
        }
    }

    fn features(range: bool) -> TlbFeatures {
        TlbFeatures { range, ttl: false }
    }

    #[test]
    fn the_last_sharers_table_flush_covers_every_block() {
        let va = 4 * L1_BLOCK_SIZE;
        let mut full = GatherRange::EMPTY;
        full.table_with_leaves(va, 2, L2_BLOCK_SIZE);
        let mut narrow = GatherRange::EMPTY;
        narrow.table(va, 2); // bug=last-sharer-narrow-flush
        for range in [false, true] {
            let good = coverage_of(&full, features(range));
            let bad = coverage_of(&narrow, features(range));
            for k in 0..512 {
                let block = va + k * L2_BLOCK_SIZE;
                assert!(good.covers_leaf(block, L2_BLOCK_SIZE, 2), "block {k}");
                if k > 0 {
                    assert!(!bad.covers_leaf(block, L2_BLOCK_SIZE, 2), "block {k}");
                }
            }
        }
    }

    #[test]
    fn a_block_stride_steps_over_pages() {
        let c = FlushCoverage::Range {
            start: 0x4000_0000,
            end: 0x4040_0000,
            stride: L2_BLOCK_SIZE,
            level_hint: None,
        };
        assert!(c.covers_leaf(0x4000_0000, PAGE_SIZE, 3)); // on a step
        assert!(!c.covers_leaf(0x4000_1000, PAGE_SIZE, 3));
        assert!(c.covers_leaf(0x4020_0000, L2_BLOCK_SIZE, 2));
        assert!(!c.covers_leaf(0x4040_0000, L2_BLOCK_SIZE, 2)); // past the end
        let hinted = FlushCoverage::Range {
            start: 0x4000_0000,
            end: 0x4040_0000,
            stride: PAGE_SIZE,
            level_hint: Some(2),
        };
        assert!(!hinted.covers_leaf(0x4000_1000, PAGE_SIZE, 3)); // wrong level
        assert!(hinted.covers_leaf(0x4020_0000, L2_BLOCK_SIZE, 2));
        assert!(!FlushCoverage::Nothing.covers_leaf(0, PAGE_SIZE, 3));
    }

    #[test]
    fn mixed_levels_get_no_hint() {
        let mut r = GatherRange::EMPTY;
        r.leaf(0x4000_0000, 3);
        assert_eq!(r.level_hint(), Some(3));
        r.leaf(0x4020_0000, 2);
        assert_eq!(r.level_hint(), None);
        assert_eq!(r.stride, PAGE_SIZE);
        let mut u = GatherRange::EMPTY;
        u.unshared_table(L1_BLOCK_SIZE + 5 * PAGE_SIZE);
        assert_eq!((u.start, u.end), (L1_BLOCK_SIZE, 2 * L1_BLOCK_SIZE));
        assert_eq!(u.level_hint(), None);
    }

    /// One thing a gather can record: a leaf at level 2 or 3, a full table freed, an unshare.
    #[derive(Clone, Copy, Debug)]
    enum Clear {
        Leaf { va: u64, level: u8 },
        FullTable { va: u64 },
        Unshare { va: u64 },
    }

    fn clear() -> impl Strategy<Value = Clear> {
        // A few GiBs of VA space, so ranges mix and overlap.
        let va = 0u64..8 * L1_BLOCK_SIZE;
        prop_oneof![
            (va.clone(), 2u8..=3).prop_map(|(va, level)| Clear::Leaf {
                va: va & !(level_block_size(level) - 1),
                level
            }),
            va.clone().prop_map(|va| Clear::FullTable { va }),
            va.prop_map(|va| Clear::Unshare { va }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever mix a gather records, the flush planned from it covers every leaf that was
        /// cleared (and every block of each full table freed or unshared), with and without
        /// FEAT_TLBIRANGE.
        #[test]
        fn every_cleared_leaf_is_covered(clears in proptest::collection::vec(clear(), 1..12),
                                         range in any::<bool>()) {
            let mut r = GatherRange::EMPTY;
            for c in &clears {
                match *c {
                    Clear::Leaf { va, level } => r.leaf(va, level),
                    Clear::FullTable { va } => r.table_with_leaves(va, 2, L2_BLOCK_SIZE),
                    Clear::Unshare { va } => r.unshared_table(va),
                }
            }
            let cov = coverage_of(&r, features(range));
            for c in &clears {
                match *c {
                    Clear::Leaf { va, level } => {
                        prop_assert!(cov.covers_leaf(va, level_block_size(level), level),
                            "{c:?} not covered by {cov:?}");
                    }
                    Clear::FullTable { va } | Clear::Unshare { va } => {
                        let gib = va & !(L1_BLOCK_SIZE - 1);
                        for k in 0..512 {
                            let b = gib + k * L2_BLOCK_SIZE;
                            prop_assert!(cov.covers_leaf(b, L2_BLOCK_SIZE, 2),
                                "{c:?}: block {b:#x} not covered by {cov:?}");
                        }
                    }
                }
            }
        }
    }
}

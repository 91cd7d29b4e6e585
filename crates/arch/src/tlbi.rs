//! TLB flush planning: which TLBI instructions, with which operands, invalidate a VA range.
//!
//! After page-table entries change, every TLB entry (and, when tables were freed or unshared,
//! every walk-cache entry) that could still translate through the old entries must be
//! invalidated before the memory is reused. This module decides *what* to issue; the arch
//! module executes the plan (`DSB ISHST`, the ops with or without the `IS` suffix, `DSB ISH`),
//! so everything here is portable and host-tested.
//!
//! The planning mirrors Linux `arch/arm64/include/asm/tlbflush.h`:
//! - `__flush_tlb_range_nosync`: align to the stride; more than `MAX_DVM_OPS` (512) strides
//!   without FEAT_TLBIRANGE, or more than `MAX_TLBI_RANGE_PAGES` pages with it, and a single
//!   `ASIDE1` is cheaper than the walk ([`plan_range_flush`]).
//! - `__flush_tlb_range_op`: with FEAT_TLBIRANGE, one range op per SCALE from 3 down to 0, each
//!   covering as many `2^(5*SCALE+1)`-page units as fit, and a final odd page as a non-range op.
//!   At most one op per scale plus one single-page op: [`MAX_RANGE_PLAN_OPS`] = 5, reached for
//!   `2^16 + 2^11 + 2^6 + 3` pages. 512 contiguous pages take exactly one op (SCALE 1, NUM 7),
//!   wherever they start, because with the 4K granule BADDR is a page number: the range op's
//!   base needs no alignment beyond the page (only LPA2's 64K-unit BADDR would).
//! - `__TLBI_VADDR` / `__TLBI_VADDR_RANGE` / `__tlbi_level`: operand layouts
//!   ([`tlbi_vaddr`], [`tlbi_range_operand`]).
//! - `flush_tlb_kernel_range`: all-ASID `VAAE1`/`VAALE1` per page, `VMALLE1` over the threshold
//!   ([`plan_kernel_range_flush`]).
//!
//! Two correctness rules are enforced here rather than left to callers:
//! - leaf-only forms (`VALE1`, `RVALE1`, `VAALE1`) only when `last_level_only`: they may leave
//!   walk-cache entries pointing at a freed table (Linux c2ff4764e03e);
//! - a TTL level hint only for leaf-only flushes: a hint promises where the *leaf* was, so an
//!   invalidation meant to reach intermediate (walk-cache) entries must not carry one.

use core::ops::Range;

use crate::pte::{L1_BLOCK_SIZE, L2_BLOCK_SIZE, PAGE_SHIFT, PAGE_SIZE};

/// Linux `MAX_DVM_OPS` (= PTRS_PER_PTE): without range ops, this many strides or more are
/// flushed with one ASID (or whole-TLB) invalidation instead of one op per stride.
pub const MAX_DVM_OPS: u64 = 512;

/// Linux `MAX_TLBI_RANGE_PAGES`: the most 4 KiB pages one range op can name (SCALE 3,
/// NUM 31): 2^21 pages, 8 GiB. With range ops, larger ranges become one ASID flush.
pub const MAX_TLBI_RANGE_PAGES: u64 = range_op_pages(31, 3);

/// The most ops a range-op plan holds: one per SCALE (3, 2, 1, 0) plus one odd page.
pub const MAX_RANGE_PLAN_OPS: usize = 5;

/// VA operand: bits [43:0] hold VA[55:12].
const VA_PAGE_MASK: u64 = (1 << 44) - 1;
/// ASID in bits [63:48] of every ASID-tagged operand.
const ASID_SHIFT: u32 = 48;
/// FEAT_TTL hint in bits [47:44] of a VA operand: TTL[3:2] granule, TTL[1:0] level.
const VA_TTL_SHIFT: u32 = 44;
/// TTL[3:2] and TG value for the 4 KiB granule.
const GRANULE_4K: u64 = 0b01;

const RANGE_BADDR_MASK: u64 = (1 << 37) - 1;
const RANGE_TTL_SHIFT: u32 = 37;
const RANGE_NUM_SHIFT: u32 = 39;
const RANGE_SCALE_SHIFT: u32 = 44;
const RANGE_TG_SHIFT: u32 = 46;

/// Pages covered by one range op: `(NUM + 1) * 2^(5 * SCALE + 1)` (Linux `__TLBI_RANGE_PAGES`).
pub const fn range_op_pages(num: u8, scale: u8) -> u64 {
    (num as u64 + 1) << (5 * scale as u32 + 1)
}

/// Levels a TTL hint can name with the 4K granule: level 0 needs FEAT_LPA2.
pub const fn is_hintable_level(level: u8) -> bool {
    matches!(level, 1..=3)
}

/// The operand of `TLBI VAE1/VALE1/VAAE1/VAALE1`: VA page number in [43:0], ASID in [63:48]
/// (ignored by the all-ASID forms; pass 0), and with `ttl_level` a FEAT_TTL hint in [47:44]
/// saying the leaf entry is at that level.
///
/// Only pass `ttl_level` when the CPU has FEAT_TTL; CPUs without it treat the field as RES0,
/// which the Arm ARM allows them to reject. A level outside 1..=3 cannot be expressed for the
/// 4K granule and is dropped: no hint is always correct, only slower.
pub const fn tlbi_vaddr(va: u64, asid: u16, ttl_level: Option<u8>) -> u64 {
    let mut operand = ((va >> PAGE_SHIFT) & VA_PAGE_MASK) | ((asid as u64) << ASID_SHIFT);
    if let Some(level) = ttl_level {
        debug_assert!(is_hintable_level(level));
        if is_hintable_level(level) {
            operand |= ((GRANULE_4K << 2) | level as u64) << VA_TTL_SHIFT;
        }
    }
    operand
}

/// The operand of `TLBI ASIDE1`: the ASID in [63:48].
pub const fn tlbi_asid_operand(asid: u16) -> u64 {
    (asid as u64) << ASID_SHIFT
}

/// The operand of `TLBI RVAE1/RVALE1` (FEAT_TLBIRANGE), 4K granule: ASID [63:48], TG [47:46]
/// = 0b01, SCALE [45:44], NUM [43:39], TTL [38:37] (level 1..=3 of the leaves, 0 = unknown),
/// BADDR [36:0] = VA[48:12]. It covers [`range_op_pages`]`(num, scale)` pages from `base_va`.
///
/// # Panics
/// If `scale > 3` or `num > 31`: those do not fit their fields.
pub const fn tlbi_range_operand(
    base_va: u64,
    asid: u16,
    scale: u8,
    num: u8,
    ttl_level: Option<u8>,
) -> u64 {
    assert!(
        scale <= 3 && num <= 31,
        "range TLBI SCALE is 2 bits, NUM 5 bits"
    );
    let ttl = match ttl_level {
        Some(level) if is_hintable_level(level) => level as u64,
        _ => 0,
    };
    ((asid as u64) << ASID_SHIFT)
        | (GRANULE_4K << RANGE_TG_SHIFT)
        | ((scale as u64) << RANGE_SCALE_SHIFT)
        | ((num as u64) << RANGE_NUM_SHIFT)
        | (ttl << RANGE_TTL_SHIFT)
        | ((base_va >> PAGE_SHIFT) & RANGE_BADDR_MASK)
}

/// One TLBI instruction for stage-1 EL1&0 entries, with its encoded operand. Whether it is
/// broadcast (`...IS`) or local is the executor's choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbiOp {
    /// By VA and ASID, every level: leaf and walk-cache entries.
    Vae1 {
        /// From [`tlbi_vaddr`].
        operand: u64,
    },
    /// By VA and ASID, last level only.
    Vale1 {
        /// From [`tlbi_vaddr`].
        operand: u64,
    },
    /// By VA range and ASID, every level (FEAT_TLBIRANGE).
    Rvae1 {
        /// From [`tlbi_range_operand`].
        operand: u64,
    },
    /// By VA range and ASID, last level only (FEAT_TLBIRANGE).
    Rvale1 {
        /// From [`tlbi_range_operand`].
        operand: u64,
    },
    /// Every entry tagged with one ASID (global entries are kept).
    Aside1 {
        /// From [`tlbi_asid_operand`].
        operand: u64,
    },
    /// Every stage-1 EL1&0 entry, all ASIDs, global ones too.
    Vmalle1,
    /// By VA, all ASIDs, every level.
    Vaae1 {
        /// From [`tlbi_vaddr`] with ASID 0.
        operand: u64,
    },
    /// By VA, all ASIDs, last level only.
    Vaale1 {
        /// From [`tlbi_vaddr`] with ASID 0.
        operand: u64,
    },
}

impl TlbiOp {
    /// The instruction mnemonic without the `is` suffix, e.g. `"vale1"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Vae1 { .. } => "vae1",
            Self::Vale1 { .. } => "vale1",
            Self::Rvae1 { .. } => "rvae1",
            Self::Rvale1 { .. } => "rvale1",
            Self::Aside1 { .. } => "aside1",
            Self::Vmalle1 => "vmalle1",
            Self::Vaae1 { .. } => "vaae1",
            Self::Vaale1 { .. } => "vaale1",
        }
    }

    /// The register operand, or `None` for `VMALLE1` (which takes none).
    pub const fn operand(self) -> Option<u64> {
        match self {
            Self::Vae1 { operand }
            | Self::Vale1 { operand }
            | Self::Rvae1 { operand }
            | Self::Rvale1 { operand }
            | Self::Aside1 { operand }
            | Self::Vaae1 { operand }
            | Self::Vaale1 { operand } => Some(operand),
            Self::Vmalle1 => None,
        }
    }

    /// Uses the FEAT_TLBIRANGE operand layout.
    pub const fn is_range(self) -> bool {
        matches!(self, Self::Rvae1 { .. } | Self::Rvale1 { .. })
    }

    /// Invalidates last-level entries only, leaving walk caches: wrong after freeing tables.
    pub const fn is_leaf_only(self) -> bool {
        matches!(
            self,
            Self::Vale1 { .. } | Self::Rvale1 { .. } | Self::Vaale1 { .. }
        )
    }

    /// The ASID the op is limited to; `None` for the all-ASID forms and `VMALLE1`.
    pub const fn asid(self) -> Option<u16> {
        match self {
            Self::Vae1 { operand }
            | Self::Vale1 { operand }
            | Self::Rvae1 { operand }
            | Self::Rvale1 { operand }
            | Self::Aside1 { operand } => Some((operand >> ASID_SHIFT) as u16),
            Self::Vmalle1 | Self::Vaae1 { .. } | Self::Vaale1 { .. } => None,
        }
    }

    /// The TTL level hint carried by the operand, if any.
    pub const fn ttl_level(self) -> Option<u8> {
        match self {
            Self::Vae1 { operand }
            | Self::Vale1 { operand }
            | Self::Vaae1 { operand }
            | Self::Vaale1 { operand } => {
                let ttl = (operand >> VA_TTL_SHIFT) & 0b1111;
                let level = (ttl & 0b11) as u8;
                if ttl >> 2 == GRANULE_4K && is_hintable_level(level) {
                    Some(level)
                } else {
                    None
                }
            }
            Self::Rvae1 { operand } | Self::Rvale1 { operand } => {
                match ((operand >> RANGE_TTL_SHIFT) & 0b11) as u8 {
                    0 => None,
                    level => Some(level),
                }
            }
            Self::Aside1 { .. } | Self::Vmalle1 => None,
        }
    }
}

/// The 4 KiB page numbers an op names: for a range op `(NUM+1) << (5*SCALE+1)` pages from
/// BADDR; for a by-VA op the one page whose address it carries (the entry translating that
/// page is invalidated whatever its size). `None` for `ASIDE1`/`VMALLE1`, which name no VA.
///
/// Page numbers are the operand's fields: VA[55:12] for by-VA ops, VA[48:12] for range ops,
/// so they equal `va >> 12` for low-half (TTBR0) VAs.
pub fn pages_covered(op: TlbiOp) -> Option<Range<u64>> {
    match op {
        TlbiOp::Vae1 { operand }
        | TlbiOp::Vale1 { operand }
        | TlbiOp::Vaae1 { operand }
        | TlbiOp::Vaale1 { operand } => {
            let page = operand & VA_PAGE_MASK;
            Some(page..page + 1)
        }
        TlbiOp::Rvae1 { operand } | TlbiOp::Rvale1 { operand } => {
            let base = operand & RANGE_BADDR_MASK;
            let scale = ((operand >> RANGE_SCALE_SHIFT) & 0b11) as u8;
            let num = ((operand >> RANGE_NUM_SHIFT) & 0b1_1111) as u8;
            Some(base..base + range_op_pages(num, scale))
        }
        TlbiOp::Aside1 { .. } | TlbiOp::Vmalle1 => None,
    }
}

/// TLB maintenance features that change the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlbFeatures {
    /// FEAT_TLBIRANGE: `RVAE1`/`RVALE1` exist.
    pub range: bool,
    /// FEAT_TTL: the level hint in [47:44] of by-VA operands is understood.
    pub ttl: bool,
}

impl TlbFeatures {
    /// Decodes ID_AA64ISAR0_EL1.TLB ([59:56]: 1 = TLBIOS, 2 = TLBIOS and TLBIRANGE) and
    /// ID_AA64MMFR2_EL1.TTL ([51:48]: nonzero = FEAT_TTL).
    ///
    /// ID fields are compared with `>=`, not `==`: the Arm ARM's ID scheme makes a larger value
    /// of an unsigned field a superset of smaller ones (Linux's cpufeature does the same).
    pub const fn from_id_regs(isar0: u64, mmfr2: u64) -> Self {
        Self {
            range: (isar0 >> 56) & 0b1111 >= 2,
            ttl: (mmfr2 >> 48) & 0b1111 >= 1,
        }
    }
}

/// What changed in one address space, in the terms the planner needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushRequest {
    /// First VA whose translation changed.
    pub start: u64,
    /// End of the range (exclusive).
    pub end: u64,
    /// The size of the leaf mappings in the range: `PAGE_SIZE`, 2 MiB or 1 GiB. One by-VA op is
    /// issued per stride, so a stride larger than the real leaves would miss entries.
    pub stride: u64,
    /// The address space's ASID.
    pub asid: u16,
    /// Only leaf entries changed. `false` when tables were freed or unshared: then the walk
    /// caches must be hit too, so no leaf-only op and no level hint.
    pub last_level_only: bool,
    /// Level (1..=3) of every leaf entry in the range, when known; used as a TTL hint only when
    /// `last_level_only` and the CPU has FEAT_TTL.
    pub level_hint: Option<u8>,
}

/// A lazily generated sequence of TLBI ops (no allocation): by-VA ops one per stride, or the
/// range-op decomposition of Linux `__flush_tlb_range_op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushOps {
    next_va: u64,
    /// 4 KiB pages from `next_va` still to cover.
    remaining_pages: u64,
    stride_pages: u64,
    asid: u16,
    leaf_only: bool,
    /// All-ASID (kernel, global) forms: `VAAE1`/`VAALE1`; never range ops.
    all_asids: bool,
    use_range: bool,
    /// Next SCALE to try in range mode; counts down from 3.
    next_scale: i8,
    ttl_level: Option<u8>,
}

impl FlushOps {
    const EMPTY: Self = Self {
        next_va: 0,
        remaining_pages: 0,
        stride_pages: 1,
        asid: 0,
        leaf_only: false,
        all_asids: false,
        use_range: false,
        next_scale: 3,
        ttl_level: None,
    };

    fn by_va_op(&self) -> TlbiOp {
        let operand = tlbi_vaddr(self.next_va, self.asid, self.ttl_level);
        match (self.all_asids, self.leaf_only) {
            (false, false) => TlbiOp::Vae1 { operand },
            (false, true) => TlbiOp::Vale1 { operand },
            (true, false) => TlbiOp::Vaae1 { operand },
            (true, true) => TlbiOp::Vaale1 { operand },
        }
    }
}

/// Linux `__TLBI_RANGE_NUM`: the NUM that covers as many whole `2^(5*scale+1)`-page units of
/// `pages` as one op can (at most 32), or `None` if not even one unit fits.
fn range_num(pages: u64, scale: u8) -> Option<u8> {
    let units = pages.min(MAX_PAGES_AT_SCALE[scale as usize]) >> (5 * scale as u32 + 1);
    units.checked_sub(1).map(|num| num as u8)
}

const MAX_PAGES_AT_SCALE: [u64; 4] = [
    range_op_pages(31, 0),
    range_op_pages(31, 1),
    range_op_pages(31, 2),
    range_op_pages(31, 3),
];

impl Iterator for FlushOps {
    type Item = TlbiOp;

    fn next(&mut self) -> Option<TlbiOp> {
        while self.remaining_pages > 0 {
            // The planner only uses range mode for at most MAX_TLBI_RANGE_PAGES pages, so after
            // SCALE 0 at most one page is left; `next_scale < 0` is only a guard that would keep
            // the plan correct (per-stride ops) if that invariant were broken.
            if !self.use_range || self.remaining_pages == 1 || self.next_scale < 0 {
                debug_assert!(!self.use_range || self.remaining_pages == 1);
                let op = self.by_va_op();
                self.next_va = self.next_va.wrapping_add(self.stride_pages << PAGE_SHIFT);
                self.remaining_pages = self.remaining_pages.saturating_sub(self.stride_pages);
                return Some(op);
            }
            let scale = self.next_scale as u8;
            self.next_scale -= 1;
            if let Some(num) = range_num(self.remaining_pages, scale) {
                let operand =
                    tlbi_range_operand(self.next_va, self.asid, scale, num, self.ttl_level);
                let pages = range_op_pages(num, scale);
                self.next_va = self.next_va.wrapping_add(pages << PAGE_SHIFT);
                self.remaining_pages -= pages;
                return Some(if self.leaf_only {
                    TlbiOp::Rvale1 { operand }
                } else {
                    TlbiOp::Rvae1 { operand }
                });
            }
        }
        None
    }
}

/// The TLB maintenance for one request, to be issued in order and completed with one DSB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPlan {
    /// `ASIDE1` for the request's ASID: the range was over the threshold.
    WholeAsid(TlbiOp),
    /// `VMALLE1`: a kernel range over the threshold.
    WholeTlb(TlbiOp),
    /// The ops yielded by the iterator (none for an empty range).
    Ops(FlushOps),
}

impl FlushPlan {
    /// Every op of the plan, in issue order.
    pub fn ops(&self) -> impl Iterator<Item = TlbiOp> + Clone + use<> {
        let (whole, ranged) = match *self {
            Self::WholeAsid(op) | Self::WholeTlb(op) => (Some(op), FlushOps::EMPTY),
            Self::Ops(ops) => (None, ops),
        };
        whole.into_iter().chain(ranged)
    }

    /// How many TLBI instructions the plan issues.
    pub fn op_count(&self) -> usize {
        self.ops().count()
    }
}

/// Start aligned down to `stride`, and the number of strides up to `end` aligned up.
/// An empty request is empty even when `start` is not aligned.
fn aligned_strides(start: u64, end: u64, stride: u64) -> (u64, u64) {
    let aligned_start = start & !(stride - 1);
    if start == end {
        return (aligned_start, 0);
    }
    (aligned_start, (end - aligned_start).div_ceil(stride))
}

/// Plans the invalidation of `[req.start, req.end)` in ASID `req.asid` (Linux
/// `__flush_tlb_range`).
///
/// - Without FEAT_TLBIRANGE: `MAX_DVM_OPS` strides or more → `ASIDE1`; else one
///   `VAE1`/`VALE1` per stride.
/// - With FEAT_TLBIRANGE: up to `MAX_TLBI_RANGE_PAGES` pages → at most
///   [`MAX_RANGE_PLAN_OPS`] range/by-VA ops; beyond that, per-stride ops while there are
///   fewer than `MAX_DVM_OPS` strides (only 1 GiB strides get there), else `ASIDE1`. For a
///   4 KiB stride this is exactly Linux's rule: more than 2^21 pages → `ASIDE1`.
///
/// # Panics
/// If the stride is not 4 KiB, 2 MiB or 1 GiB, or `end < start`.
pub fn plan_range_flush(req: &FlushRequest, feats: TlbFeatures) -> FlushPlan {
    assert!(
        matches!(req.stride, PAGE_SIZE | L2_BLOCK_SIZE | L1_BLOCK_SIZE),
        "flush stride must be a leaf size"
    );
    assert!(req.start <= req.end, "flush range ends before it starts");
    let (start, strides) = aligned_strides(req.start, req.end, req.stride);
    let stride_pages = req.stride >> PAGE_SHIFT;
    let pages = strides.saturating_mul(stride_pages);
    let use_range = if feats.range && pages <= MAX_TLBI_RANGE_PAGES {
        true
    } else if strides < MAX_DVM_OPS {
        false
    } else {
        return FlushPlan::WholeAsid(TlbiOp::Aside1 {
            operand: tlbi_asid_operand(req.asid),
        });
    };
    let ttl_level = if req.last_level_only && feats.ttl {
        req.level_hint.filter(|&level| is_hintable_level(level))
    } else {
        None
    };
    FlushPlan::Ops(FlushOps {
        next_va: start,
        remaining_pages: pages,
        stride_pages,
        asid: req.asid,
        leaf_only: req.last_level_only,
        all_asids: false,
        use_range,
        next_scale: 3,
        ttl_level,
    })
}

/// Plans the invalidation of kernel (global) mappings in `[start, end)` for every ASID
/// (Linux `flush_tlb_kernel_range`): one `VAALE1` (or `VAAE1` when tables were freed, like
/// `__flush_tlb_kernel_pgtable`) per page, or `VMALLE1` for `MAX_DVM_OPS` pages or more, the
/// threshold Linux's `__flush_tlb_range_limit_excess` applies without range ops. The
/// instruction set here has no all-ASID range forms, so FEAT_TLBIRANGE does not change it.
///
/// The caller's executor must follow a kernel flush with an `ISB`.
///
/// # Panics
/// If `end < start`.
pub fn plan_kernel_range_flush(start: u64, end: u64, last_level_only: bool) -> FlushPlan {
    assert!(start <= end, "flush range ends before it starts");
    let (start, pages) = aligned_strides(start, end, PAGE_SIZE);
    if pages >= MAX_DVM_OPS {
        return FlushPlan::WholeTlb(TlbiOp::Vmalle1);
    }
    FlushPlan::Ops(FlushOps {
        next_va: start,
        remaining_pages: pages,
        stride_pages: 1,
        asid: 0,
        leaf_only: last_level_only,
        all_asids: true,
        use_range: false,
        next_scale: 3,
        ttl_level: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    const NO_FEATS: TlbFeatures = TlbFeatures {
        range: false,
        ttl: false,
    };
    const ALL_FEATS: TlbFeatures = TlbFeatures {
        range: true,
        ttl: true,
    };
    const STRIDES: [u64; 3] = [PAGE_SIZE, L2_BLOCK_SIZE, L1_BLOCK_SIZE];

    fn user_request(start: u64, pages: u64, last_level_only: bool) -> FlushRequest {
        FlushRequest {
            start,
            end: start + pages * PAGE_SIZE,
            stride: PAGE_SIZE,
            asid: 0x5a,
            last_level_only,
            level_hint: Some(3),
        }
    }

    fn collect(plan: &FlushPlan) -> Vec<TlbiOp> {
        plan.ops().collect()
    }

    #[test]
    fn va_operand_layout() {
        assert_eq!(tlbi_vaddr(0x1234_5000, 0x42, None), 0x0042_0000_0001_2345);
        assert_eq!(
            tlbi_vaddr(0x1234_5fff, 0x42, Some(3)),
            0x0042_7000_0001_2345
        );
        assert_eq!(tlbi_vaddr(0, 0, Some(1)), 0b0101 << 44);
        assert_eq!(tlbi_vaddr(0, 0, Some(2)), 0b0110 << 44);
        // High-half VA: VA[55:12] kept, VA[63:56] dropped.
        assert_eq!(
            tlbi_vaddr(0xffff_0000_1234_5000, 0, None),
            0x0000_0ff0_0001_2345
        );
        assert_eq!(tlbi_asid_operand(0xbeef), 0xbeef << 48);
    }

    #[test]
    fn range_operand_layout() {
        assert_eq!(
            tlbi_range_operand(0x40_0000, 7, 1, 7, None),
            0x0007_5380_0000_0400
        );
        assert_eq!(
            tlbi_range_operand(0x1234_5000, 0x42, 3, 31, Some(2)),
            0x0042_7fc0_0001_2345
        );
        let op = TlbiOp::Rvae1 {
            operand: tlbi_range_operand(0x40_0000, 7, 1, 7, None),
        };
        assert_eq!(pages_covered(op), Some(0x400..0x400 + 512));
        assert_eq!(op.asid(), Some(7));
        assert_eq!(op.ttl_level(), None);
        assert_eq!(MAX_TLBI_RANGE_PAGES, 2_097_152);
        assert_eq!(range_op_pages(0, 0), 2);
        assert_eq!(range_op_pages(0, 1), 64);
    }

    #[test]
    fn op_metadata() {
        let va = tlbi_vaddr(0x2000, 9, Some(3));
        let range = tlbi_range_operand(0x2000, 9, 0, 0, Some(3));
        let ops = [
            TlbiOp::Vae1 { operand: va },
            TlbiOp::Vale1 { operand: va },
            TlbiOp::Rvae1 { operand: range },
            TlbiOp::Rvale1 { operand: range },
            TlbiOp::Aside1 { operand: 9 << 48 },
            TlbiOp::Vmalle1,
            TlbiOp::Vaae1 { operand: va },
            TlbiOp::Vaale1 { operand: va },
        ];
        let names = ops.map(TlbiOp::name);
        assert_eq!(
            names,
            [
                "vae1", "vale1", "rvae1", "rvale1", "aside1", "vmalle1", "vaae1", "vaale1"
            ]
        );
        let (t, f) = (true, false);
        assert_eq!(ops.map(TlbiOp::is_range), [f, f, t, t, f, f, f, f]);
        assert_eq!(ops.map(TlbiOp::is_leaf_only), [f, t, f, t, f, f, f, t]);
        let asid = Some(9);
        let asids = [asid, asid, asid, asid, asid, None, None, None];
        assert_eq!(ops.map(TlbiOp::asid), asids);
        let l3 = Some(3);
        assert_eq!(
            ops.map(TlbiOp::ttl_level),
            [l3, l3, l3, l3, None, None, l3, l3]
        );
        assert_eq!(TlbiOp::Vmalle1.operand(), None);
        assert_eq!(pages_covered(TlbiOp::Vale1 { operand: va }), Some(2..3));
        assert_eq!(pages_covered(TlbiOp::Rvale1 { operand: range }), Some(2..4));
        assert_eq!(pages_covered(TlbiOp::Vmalle1), None);
        assert_eq!(pages_covered(TlbiOp::Aside1 { operand: 0 }), None);
    }

    #[test]
    fn features_from_id_registers() {
        assert_eq!(TlbFeatures::from_id_regs(0, 0), NO_FEATS);
        // TLB = 1: TLBIOS only.
        assert!(!TlbFeatures::from_id_regs(1 << 56, 0).range);
        assert!(TlbFeatures::from_id_regs(2 << 56, 0).range);
        // Neighbouring fields must not leak in: RNDR [63:60] and TS [55:52].
        assert!(!TlbFeatures::from_id_regs(0xf0f0_0000_0000_0000 | (1 << 56), 0).range);
        assert!(TlbFeatures::from_id_regs(0, 1 << 48).ttl);
        assert!(!TlbFeatures::from_id_regs(0, 0xfff0_ffff_ffff_ffff).ttl);
        assert_eq!(
            TlbFeatures::from_id_regs(0x0221_1000_0000_0000, 0x0001_0000_0000_0000),
            ALL_FEATS
        );
    }

    #[test]
    fn one_page_is_one_by_va_op() {
        for feats in [NO_FEATS, ALL_FEATS] {
            let leaf = collect(&plan_range_flush(&user_request(0x7000, 1, true), feats));
            let ttl = if feats.ttl { Some(3) } else { None };
            assert_eq!(
                leaf,
                [TlbiOp::Vale1 {
                    operand: tlbi_vaddr(0x7000, 0x5a, ttl)
                }]
            );
            let walk = collect(&plan_range_flush(&user_request(0x7000, 1, false), feats));
            assert_eq!(
                walk,
                [TlbiOp::Vae1 {
                    operand: tlbi_vaddr(0x7000, 0x5a, None)
                }]
            );
        }
    }

    #[test]
    fn five_hundred_twelve_pages() {
        // With range ops: exactly one, SCALE 1 NUM 7, even from an unaligned page.
        for start in [0x20_0000, 0x20_3000] {
            let plan = plan_range_flush(&user_request(start, 512, false), ALL_FEATS);
            assert_eq!(
                collect(&plan),
                [TlbiOp::Rvae1 {
                    operand: tlbi_range_operand(start, 0x5a, 1, 7, None)
                }]
            );
        }
        // Without: one ASID flush.
        assert_eq!(
            plan_range_flush(&user_request(0x20_0000, 512, true), NO_FEATS),
            FlushPlan::WholeAsid(TlbiOp::Aside1 {
                operand: 0x5a << 48
            })
        );
        // One below the threshold: one op per page.
        let plan = plan_range_flush(&user_request(0x20_0000, 511, true), NO_FEATS);
        assert_eq!(plan.op_count(), 511);
        assert!(plan.ops().all(|op| matches!(op, TlbiOp::Vale1 { .. })));
    }

    #[test]
    fn range_thresholds_and_worst_case() {
        let max = plan_range_flush(&user_request(0, MAX_TLBI_RANGE_PAGES, true), ALL_FEATS);
        assert_eq!(
            collect(&max),
            [TlbiOp::Rvale1 {
                operand: tlbi_range_operand(0, 0x5a, 3, 31, Some(3))
            }]
        );
        let over = user_request(0, MAX_TLBI_RANGE_PAGES + 1, true);
        assert!(matches!(
            plan_range_flush(&over, ALL_FEATS),
            FlushPlan::WholeAsid(_)
        ));
        // One op per scale and a final odd page: the worst case.
        let worst = (1 << 16) + (1 << 11) + (1 << 6) + 3;
        let ops = collect(&plan_range_flush(&user_request(0, worst, false), ALL_FEATS));
        let expected = [
            TlbiOp::Rvae1 {
                operand: tlbi_range_operand(0, 0x5a, 3, 0, None),
            },
            TlbiOp::Rvae1 {
                operand: tlbi_range_operand(1 << 28, 0x5a, 2, 0, None),
            },
            TlbiOp::Rvae1 {
                operand: tlbi_range_operand((1 << 28) + (1 << 23), 0x5a, 1, 0, None),
            },
            TlbiOp::Rvae1 {
                operand: tlbi_range_operand((1 << 28) + (1 << 23) + (1 << 18), 0x5a, 0, 0, None),
            },
            TlbiOp::Vae1 {
                operand: tlbi_vaddr((worst - 1) << 12, 0x5a, None),
            },
        ];
        assert_eq!(ops, expected);
        assert_eq!(ops.len(), MAX_RANGE_PLAN_OPS);
    }

    #[test]
    fn empty_range_issues_nothing() {
        let req = FlushRequest {
            start: 0x1800,
            end: 0x1800,
            ..user_request(0, 0, true)
        };
        assert_eq!(plan_range_flush(&req, ALL_FEATS).op_count(), 0);
        assert_eq!(plan_range_flush(&req, NO_FEATS).op_count(), 0);
        assert_eq!(plan_kernel_range_flush(0x1800, 0x1800, true).op_count(), 0);
    }

    #[test]
    fn block_strides_without_range() {
        let req = FlushRequest {
            start: 0x4010_0000,
            end: 0x4060_0001,
            stride: L2_BLOCK_SIZE,
            asid: 3,
            last_level_only: true,
            level_hint: Some(2),
        };
        let ops = collect(&plan_range_flush(
            &req,
            TlbFeatures {
                range: false,
                ttl: true,
            },
        ));
        let expected: Vec<_> = [0x4000_0000, 0x4020_0000, 0x4040_0000, 0x4060_0000]
            .map(|va| TlbiOp::Vale1 {
                operand: tlbi_vaddr(va, 3, Some(2)),
            })
            .into();
        assert_eq!(ops, expected);
    }

    #[test]
    fn gigabyte_strides_past_range_limit_stay_per_stride() {
        // 16 GiB of 1 GiB blocks: over MAX_TLBI_RANGE_PAGES, but only 16 strides.
        let req = FlushRequest {
            start: 0,
            end: 16 << 30,
            stride: L1_BLOCK_SIZE,
            asid: 1,
            last_level_only: false,
            level_hint: None,
        };
        let plan = plan_range_flush(&req, ALL_FEATS);
        assert_eq!(plan.op_count(), 16);
        assert!(plan.ops().all(|op| matches!(op, TlbiOp::Vae1 { .. })));
    }

    #[test]
    fn kernel_ranges() {
        let base = 0xffff_0000_4000_0000;
        let ops = collect(&plan_kernel_range_flush(base + 0x10, base + 0x2001, true));
        let expected: Vec<_> = [base, base + 0x1000, base + 0x2000]
            .map(|va| TlbiOp::Vaale1 {
                operand: tlbi_vaddr(va, 0, None),
            })
            .into();
        assert_eq!(ops, expected);
        let ops = collect(&plan_kernel_range_flush(base, base + 0x1000, false));
        assert_eq!(
            ops,
            [TlbiOp::Vaae1 {
                operand: tlbi_vaddr(base, 0, None)
            }]
        );
        assert_eq!(
            plan_kernel_range_flush(base, base + 511 * PAGE_SIZE, true).op_count(),
            511
        );
        assert_eq!(
            plan_kernel_range_flush(base, base + 512 * PAGE_SIZE, true),
            FlushPlan::WholeTlb(TlbiOp::Vmalle1)
        );
        // The last page of the address space: no overflow.
        let top = plan_kernel_range_flush(u64::MAX - 0x1fff, u64::MAX, true);
        assert_eq!(top.op_count(), 2);
    }

    /// The model: the op count a range plan must have, derived from the pages alone.
    fn model_range_op_count(pages: u64) -> usize {
        if pages == MAX_TLBI_RANGE_PAGES {
            return 1;
        }
        let per_scale = (0..4).filter(|&scale| (pages >> (5 * scale + 1)) & 31 != 0);
        per_scale.count() + (pages & 1) as usize
    }

    /// Checks one plan against the request: exact threshold choice, exact coverage (ops in
    /// ascending order, contiguous, no page outside the aligned range), ASID, leaf-only and TTL
    /// rules, and the op count.
    fn check_plan(req: &FlushRequest, feats: TlbFeatures, plan: &FlushPlan) {
        let stride_pages = req.stride >> PAGE_SHIFT;
        let first = (req.start & !(req.stride - 1)) >> PAGE_SHIFT;
        let strides = if req.start == req.end {
            0
        } else {
            (req.end - (first << PAGE_SHIFT)).div_ceil(req.stride)
        };
        let pages = strides * stride_pages;
        let ranged = feats.range && pages <= MAX_TLBI_RANGE_PAGES;
        if !ranged && strides >= MAX_DVM_OPS {
            assert_eq!(
                *plan,
                FlushPlan::WholeAsid(TlbiOp::Aside1 {
                    operand: u64::from(req.asid) << 48
                }),
                "{req:?}"
            );
            return;
        }
        let expected_ttl = if req.last_level_only && feats.ttl {
            req.level_hint
        } else {
            None
        };
        let mut next_page = first;
        let mut count = 0;
        for op in plan.ops() {
            count += 1;
            assert_eq!(op.asid(), Some(req.asid), "{op:?}");
            assert_eq!(op.is_leaf_only(), req.last_level_only, "{op:?}");
            assert_eq!(op.ttl_level(), expected_ttl, "{op:?}");
            assert!(feats.range || !op.is_range(), "{op:?}");
            let named = pages_covered(op).unwrap();
            let covered = if op.is_range() {
                // A range op must cover whole strides, never part of a block.
                assert_eq!(named.start % stride_pages, 0, "{op:?}");
                assert_eq!((named.end - named.start) % stride_pages, 0, "{op:?}");
                named
            } else {
                // A by-VA op hits the leaf (of size `stride`) containing its page.
                assert_eq!(named.start % stride_pages, 0, "{op:?}");
                named.start..named.start + stride_pages
            };
            assert_eq!(
                covered.start, next_page,
                "gap or overlap at {op:?} for {req:?}"
            );
            next_page = covered.end;
        }
        assert_eq!(next_page, first + pages, "plan stops short for {req:?}");
        if ranged {
            assert!(count <= MAX_RANGE_PLAN_OPS, "{count} ops for {req:?}");
            if req.stride == PAGE_SIZE {
                assert_eq!(count, model_range_op_count(pages), "{req:?}");
            }
        } else {
            assert_eq!(count as u64, strides, "{req:?}");
        }
    }

    #[test]
    fn exhaustive_small_ranges() {
        for feats in [
            NO_FEATS,
            ALL_FEATS,
            TlbFeatures {
                range: true,
                ttl: false,
            },
        ] {
            for start_page in 0..4u64 {
                for offset in [0, 0x801] {
                    for pages in 0..=1100u64 {
                        for last_level_only in [false, true] {
                            let start = (start_page << PAGE_SHIFT) + offset;
                            let req = FlushRequest {
                                start,
                                end: start + pages * PAGE_SIZE,
                                stride: PAGE_SIZE,
                                asid: 0xffff,
                                last_level_only,
                                level_hint: Some(3),
                            };
                            check_plan(&req, feats, &plan_range_flush(&req, feats));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_range_length_up_to_the_limit() {
        // All 2^21 lengths: the op count is the model's, at most MAX_RANGE_PLAN_OPS, and the
        // bound is reached.
        let mut worst = 0;
        for pages in 1..=MAX_TLBI_RANGE_PAGES {
            let req = user_request(0x1000, pages, true);
            let plan = plan_range_flush(&req, ALL_FEATS);
            check_plan(&req, ALL_FEATS, &plan);
            worst = worst.max(plan.op_count());
        }
        assert_eq!(worst, MAX_RANGE_PLAN_OPS);
    }

    fn any_request() -> impl Strategy<Value = FlushRequest> {
        let len_pages = prop_oneof![
            0u64..16,
            500u64..530,
            0u64..4096,
            0u64..(MAX_TLBI_RANGE_PAGES + 4096),
            (MAX_TLBI_RANGE_PAGES - 64)..(MAX_TLBI_RANGE_PAGES + 64),
        ];
        (
            0u64..(1 << 47),
            len_pages,
            prop::sample::select(STRIDES.to_vec()),
            0u64..(64 << 30),
            any::<u16>(),
            any::<bool>(),
            prop::option::of(1u8..=3),
        )
            .prop_map(
                |(start, len_pages, stride, block_len, asid, last_level_only, level_hint)| {
                    // Block strides get lengths up to 64 GiB so both thresholds are crossed.
                    let len = if stride == PAGE_SIZE {
                        len_pages * PAGE_SIZE
                    } else {
                        block_len
                    };
                    FlushRequest {
                        start,
                        end: start + len,
                        stride,
                        asid,
                        last_level_only,
                        level_hint,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn plans_cover_exactly_the_range(
            req in any_request(),
            range in any::<bool>(),
            ttl in any::<bool>(),
        ) {
            let feats = TlbFeatures { range, ttl };
            check_plan(&req, feats, &plan_range_flush(&req, feats));
        }

        #[test]
        fn kernel_plans_cover_exactly_the_range(
            start in 0xffff_0000_0000_0000u64..0xffff_ff00_0000_0000,
            len in 0u64..(600 * PAGE_SIZE),
            last_level_only in any::<bool>(),
        ) {
            let plan = plan_kernel_range_flush(start, start + len, last_level_only);
            let first = start >> PAGE_SHIFT;
            let pages = if len == 0 { 0 } else { (start + len).div_ceil(PAGE_SIZE) - first };
            if pages >= MAX_DVM_OPS {
                prop_assert_eq!(plan, FlushPlan::WholeTlb(TlbiOp::Vmalle1));
            } else {
                let ops: Vec<_> = plan.ops().collect();
                prop_assert_eq!(ops.len() as u64, pages);
                for (i, op) in ops.into_iter().enumerate() {
                    prop_assert_eq!(op.asid(), None);
                    prop_assert_eq!(op.is_leaf_only(), last_level_only);
                    let all_asid_form = matches!(op, TlbiOp::Vaae1 { .. } | TlbiOp::Vaale1 { .. });
                    prop_assert!(all_asid_form, "{:?}", op);
                    let page = (first + i as u64) & ((1 << 44) - 1);
                    prop_assert_eq!(pages_covered(op), Some(page..page + 1));
                }
            }
        }
    }
}

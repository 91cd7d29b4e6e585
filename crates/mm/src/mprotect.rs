//! Changing the protection of a range of an address space: broadside's analogue of Linux's
//! mm/mprotect.c (`change_protection`, then `flush_tlb_range`). `AddressSpace::protect`
//! rewrites the leaf entries in place and flushes the range before it returns; a range that
//! reaches into a shared object's table is refused (`shared::protect_object_gib` unshares
//! first).
//!
//! Sits on `aspace` (the walk over the leaves) and `tlb` (the range flush).

use crate::aspace::AddressSpace;
use crate::audit;
use crate::gather_range::GatherRange;
use broadside_arch::VirtAddr;
use broadside_arch::pte::{Attributes, Descriptor, DescriptorKind, PAGE_SIZE, level_block_size};
use core::sync::atomic::Ordering;

/// Why `AddressSpace::protect` refused a range. It checks the whole range before changing any
/// entry, so a refused call changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtectError {
    /// The space's destroy has begun.
    SpaceNotLive,
    /// A 2 MiB or 1 GiB block at `va` is only partly inside the range (blocks are not split).
    PartialBlock {
        /// Where the block starts.
        va: VirtAddr,
    },
    /// The leaf at `va` is in a table shared with other spaces (a shared object's); changing it
    /// would change every sharer's mapping. Use `shared::protect_object_gib`, which unshares.
    SharedTable {
        /// The leaf's address.
        va: VirtAddr,
    },
}

/// What a successful `protect` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protected {
    /// 4 KiB units whose leaf entries were rewritten.
    pub pages: u64,
    /// The flush that made the change visible to every CPU (nothing if no leaf changed).
    pub flush: crate::tlb::FlushRecord,
}

impl AddressSpace {
    /// Rewrites the permissions of every leaf in `[start, end)` (page aligned) and flushes them,
    /// leaf-only: no break-before-make is needed for a permission change. Caller holds `lock`.
    ///
    /// The range is checked whole before any entry changes: a block only partly inside it, or a
    /// leaf in a table shared with other spaces, refuses the call. The flush steps by the
    /// smallest leaf changed (a 4 KiB stride also hits every 2 MiB block it passes through; a
    /// 2 MiB stride would step over 4 KiB pages) and carries a level hint only when every leaf
    /// changed was at one level (Linux's `flush_tlb_range` with the VMA's page size, and
    /// `tlb_get_level`'s rule that a mixed gather gets no TTL).
    pub fn protect(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        attrs: Attributes,
    ) -> Result<Protected, ProtectError> {
        assert!(
            start.is_aligned(PAGE_SIZE) && end.is_aligned(PAGE_SIZE),
            "protect: [{start:#x}, {end:#x}) is not page aligned"
        );
        if !self.is_live() {
            return Err(ProtectError::SpaceNotLive);
        }
        self.for_each_leaf(start, end, |_, _, level, va, table| {
            if !self.owns_table(table) {
                return Err(ProtectError::SharedTable { va });
            }
            if va < start || va + level_block_size(level) > end {
                return Err(ProtectError::PartialBlock { va });
            }
            Ok(())
        })?;
        let mut pages = 0;
        let mut range = GatherRange::EMPTY;
        let op = audit::begin_op();
        let _ = self.for_each_leaf(start, end, |e, d, level, va, _| {
            let attrs = crate::aspace::user_leaf_attrs(attrs);
            let new = match d.kind(level) {
                DescriptorKind::Page { pa, .. } => Descriptor::page(pa, attrs),
                DescriptorKind::Block { pa, .. } => Descriptor::block(pa, level, attrs),
                _ => unreachable!("for_each_leaf yields leaves"),
            };
            e.store(new.raw(), Ordering::Release);
            // The sanitizer classifies the change: a permission downgrade must be flushed before
            // `protect` returns, an upgrade owes nothing, and anything but permissions needed
            // break-before-make.
            self.audit_change(op, va, level, d, new);
            pages += level_block_size(level) / PAGE_SIZE;
            range.leaf(va.as_u64(), level);
            Ok::<(), ()>(())
        });
        if pages == 0 {
            return Ok(Protected {
                pages,
                flush: crate::tlb::FlushRecord::default(),
            });
        }
        let (stride, level_hint) =
            if crate::fault_inject::planted(broadside_platform::bootargs::Bug::ProtectWideStride) {
                // The planted bug: the largest leaf sets both, as protect used to.
                let largest = range.cleared_levels.trailing_zeros() as u8;
                (level_block_size(largest), Some(largest))
            } else {
                // The gather's rule: the smallest leaf's stride, a hint only for a single level.
                (range.stride, range.level_hint())
            };
        let flush = crate::tlb::flush_tlb_range(
            self,
            VirtAddr::new(range.start),
            VirtAddr::new(range.end),
            stride,
            true,
            level_hint,
        );
        audit::check_return(op);
        Ok(Protected { pages, flush })
    }
}

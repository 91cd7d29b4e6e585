//! Changing the protection of a range of an address space: broadside's analogue of Linux's
//! mm/mprotect.c (`change_protection`, then `flush_tlb_range`). `AddressSpace::protect`
//! rewrites the leaf entries in place and flushes, before it returns, the leaves whose change
//! took a permission away; a range that reaches into a shared object's table is refused
//! (`shared::protect_object_gib` unshares first).
//!
//! A change that only adds permissions (read-only to read-write) is not flushed at all: a TLB
//! may keep the old, more restrictive entry, and an access through it faults; the fault path
//! (`fault::write_user`) sees that the entry allows the access and drops its own stale copy
//! locally. Linux does the same for a write fault that reuses a page ("arm64, tlbflush: don't
//! TLBI broadcast if page reused in write fault", 2025); broadside does it for every upgrade.
//! The audit checks the split independently: it classifies each change itself, and a
//! downgrade left unflushed (`bug=downgrade-as-upgrade`) is a flush gap when `protect`
//! returns.
//!
//! Sits on `aspace` (the walk over the leaves), `tlb` (the range flush) and `audit` (the stale
//! restrictive entries an unflushed upgrade leaves).

use crate::aspace::AddressSpace;
use crate::audit;
use crate::gather_range::GatherRange;
use crate::settings::Bug;
use broadside_arch::VirtAddr;
use broadside_arch::pte::{Attributes, Descriptor, DescriptorKind, PAGE_SIZE, level_block_size};
use core::sync::atomic::{AtomicBool, Ordering};

/// Upgrades flushed like downgrades: the path before this one (Linux before 2025), which
/// `workload=flush-bench` measures against it. Off except while that bench measures.
static FLUSH_UPGRADES: AtomicBool = AtomicBool::new(false);

/// Makes `protect` flush upgrades too (`true`: the old path) or not (`false`, the default).
/// Only while no `protect` is in flight (the flush bench switches between measurements).
pub fn set_flush_upgrades(on: bool) {
    FLUSH_UPGRADES.store(on, Ordering::Relaxed);
}

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
    /// Of those, the units the flush covers: every change but a permission upgrade (which owes
    /// no flush; with [`set_flush_upgrades`], the flush bench's old path, upgrades too).
    pub flushed_pages: u64,
    /// The flush that made the change visible to every CPU (nothing if no leaf changed).
    pub flush: crate::tlb::FlushRecord,
}

impl AddressSpace {
    /// Rewrites the permissions of every leaf in `[start, end)` (page aligned) and flushes, leaf-
    /// only, those whose change took a permission away: no break-before-make is needed for a
    /// permission change, and an upgrade needs no flush (module docs). Caller holds `lock`.
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
        // A deferred batch of another CPU may have cleared pages here and not completed their
        // TLBIs: a protect that finds them gone must not return with them still cached (a
        // write through one after `mprotect(PROT_READ)` returned).
        crate::tlb::flush_tlb_batched_pending(self);
        let (mut pages, mut flushed_pages, mut upgraded) = (0, 0, false);
        let mut range = GatherRange::EMPTY;
        let op = audit::begin_op();
        // The CPUs that may hold the old entries, and the ASID they hold them under, for the
        // audit's model of stale restrictive entries (read before the stores: a CPU that loads
        // the space later walks the new entries).
        let upgrade_model = (audit::enabled())
            .then(|| self.asid_number().map(|asid| (self.cpus_ever(), asid)))
            .flatten();
        let _ = self.for_each_leaf(start, end, |e, d, level, va, _| {
            let attrs = crate::aspace::user_leaf_attrs(attrs);
            let (old_attrs, new) = match d.kind(level) {
                DescriptorKind::Page { pa, attrs: old } => (old, Descriptor::page(pa, attrs)),
                DescriptorKind::Block { pa, attrs: old } => {
                    (old, Descriptor::block(pa, level, attrs))
                }
                _ => unreachable!("for_each_leaf yields leaves"),
            };
            e.store(new.raw(), Ordering::Release);
            // The sanitizer classifies the change itself: a permission downgrade must be
            // flushed before `protect` returns, an upgrade owes nothing, and anything but
            // permissions needed break-before-make.
            self.audit_change(op, va, level, d, new);
            let size = level_block_size(level);
            pages += size / PAGE_SIZE;
            let upgrade = grants_at_least(&old_attrs, &attrs) && old_attrs != attrs;
            if upgrade && !FLUSH_UPGRADES.load(Ordering::Relaxed)
                || crate::fault_inject::planted(Bug::DowngradeAsUpgrade)
            {
                upgraded = true;
                if let Some((cpus, asid)) = upgrade_model {
                    audit::record_unflushed_upgrade(
                        cpus,
                        asid,
                        va.as_u64(),
                        level,
                        size,
                        crate::sanitizer::OldAccess {
                            read: old_attrs.accessed,
                            write: old_attrs.accessed && old_attrs.access.el1_writable(),
                        },
                    );
                }
            } else if old_attrs != attrs {
                flushed_pages += size / PAGE_SIZE;
                range.leaf(va.as_u64(), level);
            }
            Ok::<(), ()>(())
        });
        if flushed_pages == 0 {
            if upgraded {
                broadside_base::stats::count(broadside_base::stats::Counter::UpgradesUnflushed);
            }
            audit::check_return(op);
            audit::check_range(op, self.id, start.as_u64(), end.as_u64());
            return Ok(Protected {
                pages,
                flushed_pages,
                flush: crate::tlb::FlushRecord::default(),
            });
        }
        let (stride, level_hint) =
            if crate::fault_inject::planted(crate::settings::Bug::ProtectWideStride) {
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
        audit::check_range(op, self.id, start.as_u64(), end.as_u64());
        Ok(Protected {
            pages,
            flushed_pages,
            flush,
        })
    }
}

/// Whether every access `old` allows, `new` allows too (so a stale copy of `old` can only
/// fault): the kernel's own rule, kept apart from the sanitizer's classification so that the
/// audit checks it rather than shares it. AF clear allows nothing (and is never cached).
fn grants_at_least(old: &Attributes, new: &Attributes) -> bool {
    use broadside_arch::pte::AccessPermission as Ap;
    if !old.accessed {
        return true;
    }
    let el0 = |a: Ap| matches!(a, Ap::El1El0ReadWrite | Ap::El1El0ReadOnly);
    let el0_write = |a: Ap| matches!(a, Ap::El1El0ReadWrite);
    new.accessed
        && (!old.access.el1_writable() || new.access.el1_writable())
        && (!el0(old.access) || el0(new.access))
        && (!el0_write(old.access) || el0_write(new.access))
        && (old.privileged_execute_never || !new.privileged_execute_never)
        && (old.user_execute_never || !new.user_execute_never)
        && old.mair_index == new.mair_index
        && old.shareability == new.shareability
        && old.not_global == new.not_global
}

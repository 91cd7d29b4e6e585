//! Moving a mapped page to another frame: broadside's analogue of Linux's page migration
//! (mm/migrate.c: `try_to_migrate` replaces the entry and flushes, the contents are copied,
//! `remove_migration_ptes` maps the new page). The entry goes through invalid, with a
//! completed invalidation, before the new output address is written: break-before-make
//! (Arm ARM D8.16.1, "Using break-before-make when updating translation table entries"), the
//! sequence `bug=bbm-skip` breaks by writing the new address over the valid entry.
//!
//! While the entry is invalid, a toucher's access faults and is fixed up, and a lockless walker
//! finds nothing or backs out on its re-check; one that pinned the old frame keeps it until it
//! unpins (the frame is freed by whichever reference goes last).
//!
//! Sits on `aspace` (the leaf, the frames) and `tlb` (the flush).

use crate::aspace::{self, AddressSpace};
use crate::audit;
use crate::fault_inject::planted;
use crate::settings::Bug;
use crate::tlb::{FlushRecord, flush_tlb_range};
use broadside_arch::aarch64::layout::phys_to_virt;
use broadside_arch::aarch64::tlb as arch_tlb;
use broadside_arch::pte::{Descriptor, DescriptorKind, PAGE_SIZE};
use broadside_arch::{PhysAddr, VirtAddr};
use broadside_base::stats::{self, Counter};
use broadside_memory::frame::{self, FrameKind};
use core::sync::atomic::Ordering;

/// Why a page was not migrated. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateError {
    /// The space's destroy has begun.
    SpaceNotLive,
    /// Nothing is mapped at the address.
    NotMapped,
    /// A block maps the address: only 4 KiB pages are migrated.
    NotAPage,
    /// The page is in a table shared with other spaces (a shared object's).
    SharedTable,
    /// No frame to move it to.
    OutOfMemory,
}

/// What a migration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// The frame the page left.
    pub from: PhysAddr,
    /// The frame it now lives in.
    pub to: PhysAddr,
    /// The flush between the break and the make.
    pub flush: FlushRecord,
}

impl AddressSpace {
    /// Moves the 4 KiB page mapped at `va` (page aligned) to a fresh frame, keeping its
    /// contents, attributes and write counter; the page's stamp names the new frame. Caller
    /// holds `lock`.
    pub fn migrate_page(&self, va: VirtAddr) -> Result<Migrated, MigrateError> {
        assert!(
            va.is_aligned(PAGE_SIZE),
            "migrate: {va:#x} is not page aligned"
        );
        if !self.is_live() {
            return Err(MigrateError::SpaceNotLive);
        }
        let mut found = None;
        let _ = self.for_each_leaf(va, va + PAGE_SIZE, |e, d, level, _, table| {
            found = Some((e, d, level, table));
            Ok::<(), ()>(())
        });
        let (e, old, level, table) = found.ok_or(MigrateError::NotMapped)?;
        let DescriptorKind::Page { pa: from, attrs } = old.kind(level) else {
            return Err(MigrateError::NotAPage);
        };
        if !self.owns_table(table) {
            return Err(MigrateError::SharedTable);
        }
        let to = frame::alloc_frame(FrameKind::Data).ok_or(MigrateError::OutOfMemory)?;
        frame::meta(to).owner.store(self.id, Ordering::Relaxed);
        let new = Descriptor::page(to, attrs);
        let op = audit::begin_op();
        let flush = if planted(Bug::BbmSkip) {
            // The planted bug: copy, then the new address over the valid entry, then flush.
            copy_page(from, to, self.id, va);
            e.store(new.raw(), Ordering::Release);
            aspace::note_unmapped(from);
            self.audit_change(op, va, 3, old, new);
            flush_tlb_range(self, va, va + PAGE_SIZE, PAGE_SIZE, true, Some(3))
        } else {
            // Break: the entry invalid, and the invalidation completed everywhere.
            e.store(Descriptor::invalid().raw(), Ordering::Release);
            aspace::note_unmapped(from);
            self.audit_clear_leaf(op, va, 3, old);
            let flush = flush_tlb_range(self, va, va + PAGE_SIZE, PAGE_SIZE, true, Some(3));
            // No CPU can reach the old frame through this entry any more: copy, then make.
            copy_page(from, to, self.id, va);
            e.store(new.raw(), Ordering::Release);
            // A new entry needs no invalidation, only to be visible to the table walkers.
            arch_tlb::store_barrier(arch_tlb::Scope::Broadcast);
            flush
        };
        audit::check_return(op);
        aspace::release_data_frame(from, 0);
        stats::count(Counter::PagesMigrated);
        Ok(Migrated { from, to, flush })
    }
}

/// Copies the 4 KiB page at `from` to `to` and stamps the copy as `space`'s page at `va` in its
/// new frame (the write counter and everything else come along).
fn copy_page(from: PhysAddr, to: PhysAddr, space: u64, va: VirtAddr) {
    let (src, dst) = (
        phys_to_virt(from).as_ptr::<u8>(),
        phys_to_virt(to).as_mut_ptr::<u8>(),
    );
    // SAFETY: both are 4 KiB data frames in the linear map; `to` is fresh and unmapped, and
    // `from` is still allocated (its last reference is dropped only after this).
    unsafe { core::ptr::copy_nonoverlapping(src, dst, PAGE_SIZE as usize) };
    aspace::stamp_page(to, space, va);
}

//! The mmu_gather: broadside's take on Linux's `mm/mmu_gather.c` and `include/asm-generic/tlb.h`.
//!
//! A gather collects what an unmap or teardown removes — the VA range, which levels had entries
//! cleared, whether tables were freed — plus the pages and table pages to free. Its flush
//! invalidates the range (walk caches too when tables were freed: [rule 5](broadside_base::rules#rule-5)), and only then are the
//! pages freed ([rule 1](broadside_base::rules#rule-1)) and the tables handed to the table-free path, which waits for lockless
//! walkers ([rule 2](broadside_base::rules#rule-2)).
//!
//! - Pages go first to a small batch embedded in the gather, then to allocated batches of up to
//!   `BATCH_ENTRIES` pages each, chained up to `MAX_BATCHES`. A full chain, or a batch that
//!   cannot be allocated once the embedded one is full, makes the gather flush early and go on
//!   (`tlb_next_batch` / `tlb_flush_mmu`). The embedded batch is what guarantees progress when
//!   no memory can be had: each early flush empties it (Linux's `tlb->local` / `__pages`).
//! - Table pages go to a table batch; when that cannot be allocated, the fallback frees that one
//!   table synchronously: invalidate, synchronise, free (`tlb_remove_table_one`).
//! - A full-mm gather (destroying a space) flushes with one ASID flush.
//! - `finish` detects another gather in flight on the same space and then flushes everything
//!   (`tlb_finish_mmu` with `mm_tlb_flush_nested`).
//! - The kernel checks [rule 5](broadside_base::rules#rule-5) itself: a flush covering freed tables that was issued leaf-only is
//!   counted in `leaf_only_flush_detected`, since QEMU's TLB cannot show the difference.
//!
//! Sits on `aspace`, `tlb`, `table_free` and `unshare_sync`, with `gather_range`, `audit`,
//! `sanitizer` and `fault_inject`.

use crate::aspace::{AddressSpace, entry, release_data_frame};
use crate::audit;
use crate::fault_inject;
use crate::gather_range::GatherRange;
use crate::sanitizer::OpId;
use crate::settings::Bug;
use crate::table_free;
use crate::tlb::{FlushRecord, flush_tlb_mm, flush_tlb_range};
use alloc::vec::Vec;
use broadside_arch::pte::{Descriptor, DescriptorKind, table_index};
use broadside_arch::pte::{PAGE_SIZE, level_block_size};
use broadside_arch::{PhysAddr, VirtAddr};
use broadside_base::events;
use broadside_base::stats::{self, Counter};
use broadside_memory::frame;
use core::sync::atomic::Ordering;

/// Pages per batch (a batch is about one page of entries, as in Linux).
pub const BATCH_ENTRIES: usize = 256;
/// Batches chained before the gather flushes early (about 10,000 pages, as Linux's
/// `MAX_GATHER_BATCH_COUNT`).
pub const MAX_BATCHES: usize = 40;
/// Table pages per table batch.
pub const TABLE_BATCH_ENTRIES: usize = 256;
/// Pages in the batch embedded in the gather (Linux's `MMU_GATHER_BUNDLE`).
pub const LOCAL_BATCH_ENTRIES: usize = 8;

/// Leaves the gather cleared and has not yet told the sanitizer (`audit=on`): consecutive ones
/// of one level, told as one run (one call, one obligation piece) before the flush that must
/// cover them, or when the run breaks. Telling it later than the clear is conservative: a CPU
/// that loads the space between the two is owed too.
struct AuditRun {
    va: u64,
    level: u8,
    global: bool,
    frames: [u64; AUDIT_RUN_LEAVES],
    len: usize,
    /// This CPU's store-buffer epoch after the run's last store (`broadside_base::weak`).
    epoch: u64,
}

/// The longest run of leaves told to the sanitizer at once.
const AUDIT_RUN_LEAVES: usize = 64;

/// A page (or block) to free after the flush.
#[derive(Clone, Copy, Debug)]
struct PageEntry {
    pa: PhysAddr,
    order: u32,
}

/// An operation's gather on one address space.
pub struct MmuGather<'a> {
    space: &'a AddressSpace,
    fullmm: bool,
    /// The operation this gather is, for the sanitizer: none of its obligations may be open
    /// when it ends.
    op: OpId,
    /// Shared tables this gather unshared (recorded only with `audit=on`): each must be fully
    /// invalidated for this space before the object lock drops and another space may adopt it.
    unshared: Vec<PhysAddr>,
    /// What to invalidate: the VA range, the flush stride, the levels cleared.
    range: GatherRange,
    /// Flush even if nothing was gathered (set by `finish` when gathers were nested).
    force_flush: bool,
    freed_tables: bool,
    /// A shared level-2 table was unshared (the caller's entry dropped; others still use it).
    unshared_tables: bool,
    /// A table became fully unshared: its last other user now owns it alone, so lockless
    /// walkers that entered it through our entry must be synchronised with before the object
    /// lock is dropped ([rule 6](broadside_base::rules#rule-6)).
    fully_unshared_tables: bool,
    /// The embedded batch: filled first, needs no allocation.
    local: [PageEntry; LOCAL_BATCH_ENTRIES],
    local_len: usize,
    pages: Vec<Vec<PageEntry>>,
    tables: Option<Vec<PhysAddr>>,
    /// Cleared leaves not yet told to the sanitizer.
    audit_run: AuditRun,
    /// Flushes this gather issued (for tests).
    pub flushes: u32,
    /// What the last flush did.
    pub last_flush: FlushRecord,
    /// The VAs `unmap` was asked for, first to end (empty: `(u64::MAX, 0)`): when the gather
    /// ends, nothing in them may still be cached anywhere, whoever cleared it.
    unmapped: (u64, u64),
}

impl<'a> MmuGather<'a> {
    fn new(space: &'a AddressSpace, fullmm: bool) -> Self {
        space.flush_pending.fetch_add(1, Ordering::AcqRel);
        stats::count(Counter::Gathers);
        Self {
            space,
            fullmm,
            op: audit::begin_op(),
            unshared: Vec::new(),
            range: GatherRange::EMPTY,
            force_flush: false,
            freed_tables: false,
            unshared_tables: false,
            fully_unshared_tables: false,
            unmapped: (u64::MAX, 0),
            local: [PageEntry {
                pa: PhysAddr::ZERO,
                order: 0,
            }; LOCAL_BATCH_ENTRIES],
            local_len: 0,
            pages: Vec::new(),
            tables: None,
            audit_run: AuditRun {
                va: 0,
                level: 0,
                global: false,
                frames: [0; AUDIT_RUN_LEAVES],
                len: 0,
                epoch: 0,
            },
            flushes: 0,
            last_flush: FlushRecord::default(),
        }
    }

    /// A gather for unmapping a range (`tlb_gather_mmu`).
    pub fn new_range(space: &'a AddressSpace) -> Self {
        Self::new(space, false)
    }

    /// A gather for tearing down a whole space (`tlb_gather_mmu_fullmm`).
    pub fn new_fullmm(space: &'a AddressSpace) -> Self {
        Self::new(space, true)
    }

    /// Unmaps `[start, end)` of the gather's space (Linux's `unmap_page_range`, which takes the
    /// `mmu_gather`): clears leaf entries, and tables that become empty
    /// (never the root), recording each for freeing after the flush. Blocks are unmapped only
    /// when the range covers them entirely. Caller holds `lock`.
    ///
    /// # Panics
    /// If the range reaches into a table this space does not own (a shared object's table still
    /// hooked here): tearing it down would clear and free it under every other sharer. Shared
    /// tables leave a space only through `shared::unmap_object`.
    pub fn unmap(&mut self, start: VirtAddr, end: VirtAddr) {
        let space = self.space;
        if space.is_dead() {
            return;
        }
        // Another CPU's deferred batch may have cleared pages here whose TLBIs it has not
        // completed: this unmap would find nothing to flush there and return with them cached.
        crate::tlb::flush_tlb_batched_pending(space);
        self.unmapped = (
            self.unmapped.0.min(start.as_u64()),
            self.unmapped.1.max(end.as_u64()),
        );
        self.unmap_level(space.root, 0, start, end);
    }

    /// Returns whether `table` is empty afterwards.
    pub(crate) fn unmap_level(
        &mut self,
        table: PhysAddr,
        level: u8,
        start: VirtAddr,
        end: VirtAddr,
    ) -> bool {
        if !self.space.owns_table(table) {
            // A shared table must be unshared, never torn down: one reached here was left
            // hooked where it should not be (a map into a dying space, a failed map that did
            // not undo). Tearing it down would free it under its other users, so it is left
            // alone, and the run fails.
            stats::detected(Counter::ForeignTableDetected);
            broadside_platform::kprintln!(
                "unmap: space {} reached table {table:#x} (level {level}) at va {start:#x}, owned \
                 by {:#x}, not by this space: left alone (a shared table must be unshared, never \
                 torn down)",
                self.space.id,
                frame::meta(table).owner.load(Ordering::Relaxed)
            );
            return false;
        }
        let size = level_block_size(level);
        let mut va = start;
        while va < end {
            let entry_start = va.align_down(size);
            let entry_end = entry_start + size;
            let e = entry(table, table_index(va.as_u64(), level));
            let d = Descriptor::from_raw(e.load(Ordering::Acquire));
            match d.kind(level) {
                DescriptorKind::Invalid => {}
                DescriptorKind::Page { .. } | DescriptorKind::Block { .. } => {
                    if start <= entry_start && end >= entry_end {
                        e.store(Descriptor::invalid().raw(), Ordering::Release);
                        self.remove_page(d, entry_start, level);
                    }
                }
                DescriptorKind::Table { next } => {
                    let sub_end = end.min(entry_end);
                    if self.unmap_level(next, level + 1, va, sub_end) {
                        e.store(Descriptor::invalid().raw(), Ordering::Release);
                        self.remove_table(next, entry_start, level + 1);
                    }
                }
            }
            va = entry_end;
        }
        (0..512).all(|i| !Descriptor::from_raw(entry(table, i).load(Ordering::Relaxed)).is_valid())
    }

    /// Records that the leaf `old` at `level` mapping `va` was cleared; its frame is freed after
    /// the flush (`tlb_remove_page_size`).
    pub fn remove_page(&mut self, old: Descriptor, va: VirtAddr, level: u8) {
        let size = level_block_size(level);
        let pa = old.output_address();
        events::mark(events::Kind::Clear, va.as_u64(), pa.as_u64());
        self.range.leaf(va.as_u64(), level);
        if audit::enabled() {
            self.note_cleared_leaf(va.as_u64(), level, !old.not_global(), pa.as_u64());
        }
        stats::add(Counter::PagesUnmapped, size / PAGE_SIZE);
        if broadside_memory::frame::meta(pa).kind()
            == broadside_memory::frame::FrameKind::Shared as u32
        {
            return; // a shared object's frame: mappings hold no reference, the object frees it
        }
        crate::aspace::note_unmapped(pa);
        let order = (size / PAGE_SIZE).trailing_zeros();
        let entry = PageEntry { pa, order };
        let embedded = !fault_inject::planted(Bug::GatherNoLocalBatch);
        loop {
            if embedded && self.local_len < LOCAL_BATCH_ENTRIES {
                self.local[self.local_len] = entry;
                self.local_len += 1;
                return;
            }
            if let Some(b) = self.pages.last_mut().filter(|b| b.len() < BATCH_ENTRIES) {
                b.push(entry);
                return;
            }
            if self.pages.len() < MAX_BATCHES
                && let Some(b) = new_batch::<PageEntry>(BATCH_ENTRIES)
            {
                self.pages.push(b);
                continue;
            }
            // No room: flush now, free what is batched (the embedded batch empties, so the next
            // pass makes progress whatever the allocator says), and go on.
            self.flush_mmu();
        }
    }

    /// Adds a cleared leaf to the run the sanitizer will be told, telling it the run so far
    /// first if this leaf does not continue it.
    fn note_cleared_leaf(&mut self, va: u64, level: u8, global: bool, pa: u64) {
        let r = &mut self.audit_run;
        let size = level_block_size(level);
        let continues = r.len > 0
            && r.len < AUDIT_RUN_LEAVES
            && r.level == level
            && r.global == global
            && va == r.va + r.len as u64 * size;
        if !continues {
            self.tell_audit();
            let r = &mut self.audit_run;
            r.va = va;
            r.level = level;
            r.global = global;
        }
        let r = &mut self.audit_run;
        r.frames[r.len] = pa;
        r.len += 1;
        // Right after the leaf's store: the run is visible once the buffer drained since.
        r.epoch = broadside_base::weak::epoch();
    }

    /// Tells the sanitizer the leaves cleared since it was last told.
    fn tell_audit(&mut self) {
        let r = &mut self.audit_run;
        if r.len > 0 {
            self.space.audit_clear_leaves(
                self.op,
                VirtAddr::new(r.va),
                r.level,
                r.global,
                &r.frames[..r.len],
                !broadside_base::weak::drained_since(r.epoch),
            );
            r.len = 0;
        }
    }

    /// Records that the table page `pa` at `level`, covering `va`, was unhooked while it still
    /// held valid leaves of `leaf_size` over its whole span — the last sharer of a shared
    /// level-2 table frees it full of blocks. Every one of those leaves may be cached in this
    /// space's TLB entries, so the flush must cover the whole span at the leaf stride, not just
    /// one page of it (Linux's last user falls through to a zap that tracks each huge entry).
    pub fn remove_table_with_leaves(
        &mut self,
        pa: PhysAddr,
        va: VirtAddr,
        level: u8,
        leaf_size: u64,
    ) {
        self.range.table_with_leaves(va.as_u64(), level, leaf_size);
        events::mark(events::Kind::Unhook, va.as_u64(), pa.as_u64());
        self.tell_audit();
        self.space.audit_unhook_table(self.op, va, level, pa);
        self.queue_table(pa);
    }

    /// Records that the table page `pa` at `level`, covering `va`, was unhooked; it is freed
    /// after the flush and a grace period (`pte_free_tlb` / `tlb_remove_table`). The table must
    /// hold no valid entry that was not itself cleared into this gather (see
    /// [`Self::remove_table_with_leaves`] for one that does).
    pub fn remove_table(&mut self, pa: PhysAddr, va: VirtAddr, level: u8) {
        // Entries cached from inside the table were for leaves and tables this or an earlier
        // gather already cleared and flushed; what is left is the walk-cache entry for the
        // parent's entry (see `GatherRange::table`).
        self.range.table(va.as_u64(), level);
        events::mark(events::Kind::Unhook, va.as_u64(), pa.as_u64());
        if level > 0 {
            // The root has no parent entry to invalidate: TTBR0 of a drained space.
            self.tell_audit();
            self.space.audit_unhook_table(self.op, va, level, pa);
        }
        self.queue_table(pa);
    }

    /// Queues the unhooked table page `pa`, whose span the caller has already tracked, for
    /// freeing after the flush and a grace period.
    fn queue_table(&mut self, pa: PhysAddr) {
        self.freed_tables = true;
        if self
            .tables
            .as_ref()
            .is_some_and(|t| t.len() == TABLE_BATCH_ENTRIES)
        {
            // The batch is full: flush (which also covers this table) and start another.
            self.flush_mmu();
            self.freed_tables = true;
        }
        if self.tables.is_none() {
            self.tables = new_batch::<PhysAddr>(TABLE_BATCH_ENTRIES);
        }
        match self.tables.as_mut() {
            Some(t) => t.push(pa),
            None => {
                // No batch: invalidate, synchronise with walkers, free this one table.
                stats::count(Counter::TableFreeFallbacks);
                self.flush_tlb_only();
                audit::check_free(pa);
                table_free::free_table_now(pa);
            }
        }
    }

    /// Invalidates what was gathered so far (`tlb_flush_mmu_tlbonly`). Never inlined: it is
    /// where a debugger stops to look at a gather (`break ...::flush_tlb_only if ...`, then
    /// `bs-gather`), and it must find `self` there.
    #[inline(never)]
    fn flush_tlb_only(&mut self) {
        // Every clear is told before the barrier and TLBIs that must cover it.
        self.tell_audit();
        if self.range.is_empty() && !self.fullmm {
            return;
        }
        // Deterministic runs: let other CPUs run between the unhook and its flush.
        broadside_base::hint::yield_point(broadside_base::hint::Site::UnhookFlush);
        let record = if self.fullmm {
            flush_tlb_mm(self.space)
        } else {
            let last_level_only = !self.freed_tables && !self.unshared_tables;
            flush_tlb_range(
                self.space,
                VirtAddr::new(self.range.start),
                VirtAddr::new(self.range.end),
                self.range.stride,
                last_level_only,
                self.range.level_hint(),
            )
        };
        stats::count(Counter::GatherFlushes);
        if (self.freed_tables || self.unshared_tables) && record.leaf_only {
            // Rule 5 (see `broadside_base::rules`) broken: walk caches may still point into the freed tables.
            stats::detected(Counter::LeafOnlyFlushDetected);
        }
        self.flushes += 1;
        self.last_flush = record;
        self.range = GatherRange::EMPTY;
        self.force_flush = false;
    }

    /// Invalidates, then frees the batched pages and hands the batched tables to the table-free
    /// path (`tlb_flush_mmu`).
    pub fn flush_mmu(&mut self) {
        let nothing = self.range.is_empty()
            && !self.force_flush
            && self.local_len == 0
            && self.pages.is_empty()
            && self.tables.as_ref().is_none_or(|t| t.is_empty());
        if nothing {
            return;
        }
        self.flush_tlb_only();
        // Deterministic runs: let other CPUs run between the flush and the frees.
        broadside_base::hint::yield_point(broadside_base::hint::Site::FlushFree);
        // Each page's reference is dropped now, though a pinning walker may free it later:
        // the flush must already cover it.
        let release = |p: &PageEntry| {
            audit::check_free(p.pa);
            release_data_frame(p.pa, p.order);
        };
        self.local[..self.local_len].iter().for_each(release);
        self.local_len = 0;
        for batch in self.pages.drain(..) {
            batch.iter().for_each(release);
        }
        if let Some(t) = self.tables.take()
            && !t.is_empty()
        {
            // Handed over now, freed after a grace period: the flush must already cover them.
            t.iter().copied().for_each(audit::check_free);
            table_free::free_table_batch(t);
        }
        self.freed_tables = false;
    }

    /// Records that this space's entry for the shared level-2 table covering the 1 GiB at `va`
    /// was dropped (`tlb_unshare_pmd_ptdesc`): the flush widens to that 1 GiB and must hit walk
    /// caches; `fully` says the table is now exclusive to its last other user.
    /// With `unshare=sync-each` (the behaviour before Linux's fix) each unshare is flushed and
    /// synchronised on the spot.
    pub fn unshare_table(&mut self, table: PhysAddr, va: VirtAddr, fully: bool) {
        self.range.unshared_table(va.as_u64());
        events::mark(events::Kind::Unhook, va.as_u64(), table.as_u64());
        self.tell_audit();
        self.space.audit_unhook_table(self.op, va, 2, table);
        if audit::enabled() && self.unshared.try_reserve(1).is_ok() {
            self.unshared.push(table);
        }
        self.unshared_tables = true;
        self.fully_unshared_tables |= fully;
        stats::count(Counter::TablesUnshared);
        if crate::unshare_sync::unshare_mode() == crate::settings::UnshareMode::SyncEach {
            self.flush_tlb_only();
            crate::tlb::sync_all_cpus();
            self.unshared_tables = false;
            self.fully_unshared_tables = false;
        }
    }

    /// Flushes unshared tables while the caller still holds the object lock
    /// (`tlb_flush_unshared_tables`): invalidate the caller's range, walk caches included, and
    /// — only if a table became fully unshared — wait until no lockless walker can still be in
    /// it (`sync-last`). In `recheck` mode there is no wait: walkers re-check the level-1 entry
    /// they came through after pinning, and tables are freed through RCU.
    ///
    /// With `audit=on` it then checks that every table it unshared is invalidated everywhere
    /// for this space: once the caller drops the object lock, another space may adopt it.
    pub fn flush_unshared_tables(&mut self) {
        if self.unshared_tables && !fault_inject::planted(Bug::UnshareFlushLate) {
            self.flush_tlb_only();
            // Deterministic runs: let other CPUs run between the unshare's flush and its sync.
            broadside_base::hint::yield_point(broadside_base::hint::Site::Sharing);
            if self.fully_unshared_tables && crate::unshare_sync::sync_after_full_unshare() {
                crate::tlb::sync_all_cpus();
            }
            self.unshared_tables = false;
            self.fully_unshared_tables = false;
        }
        self.unshared.drain(..).for_each(audit::check_reuse);
    }

    /// Ends the gather (`tlb_finish_mmu`). If another gather ran on the same space meanwhile,
    /// its flush may have raced with ours, so everything of the space is flushed. Returns what
    /// the gather's last flush did (for self-tests; callers may ignore it).
    pub fn finish(mut self) -> FlushRecord {
        if self.fully_unshared_tables {
            // The object lock may already be gone: too late to make this safe (Linux warns the
            // same way). Count it as a detected bug and do the flush anyway.
            stats::detected(Counter::UnshareFlushMissed);
            self.flush_unshared_tables();
        }
        if self.space.flush_pending.load(Ordering::Acquire) > 1 && !self.fullmm {
            self.fullmm = true;
            self.force_flush = true;
        }
        self.flush_mmu();
        self.last_flush
    }
}

impl Drop for MmuGather<'_> {
    /// The last step of `finish`, and a safety net for a gather dropped without it: flush, free
    /// what was gathered, and leave the space's count of gathers in flight.
    fn drop(&mut self) {
        self.flush_mmu();
        self.tell_audit();
        audit::check_return(self.op);
        if self.unmapped.0 < self.unmapped.1 {
            audit::check_range(self.op, self.space.id, self.unmapped.0, self.unmapped.1);
        }
        self.space.flush_pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Allocates a batch, or fails — for real, or by `fail_alloc=` injection.
fn new_batch<T>(capacity: usize) -> Option<Vec<T>> {
    if crate::fault_inject::should_fail_alloc() {
        return None;
    }
    let mut v = Vec::new();
    v.try_reserve_exact(capacity).ok()?;
    Some(v)
}

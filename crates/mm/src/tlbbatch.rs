//! Deferred TLB batches for reclaim: broadside's analogue of Linux's `arch_tlbbatch` (arm64,
//! 43b3dfdd0455, v6.6) and `flush_tlb_batched_pending`.
//!
//! Reclaim unmaps single pages from many address spaces. Flushed one by one, each page costs a
//! `TLBI VALE1IS` and a `DSB ISH`, and the `DSB` is nearly all of it (Kunpeng 920: 95% of
//! `ptep_clear_flush`). A [`TlbBatch`] issues each page's TLBI with no completion
//! ([`tlb::flush_tlb_page_nosync`]) and completes them all with one `DSB ISH`
//! ([`TlbBatch::flush`]), then frees the pages: `dsb_ish` per page falls from 1 to 1 / batch.
//!
//! A `DSB` completes only the TLBIs of the CPU that executes it, so the batch has an owner:
//! the CPU that issued its TLBIs, and the only one whose `DSB` completes them. Meanwhile the
//! pages are gone from the tables but may still be cached. An unmap or `protect` of the same
//! space on another CPU would see nothing there to flush and return while those entries live on
//! (a write after `munmap` or after `mprotect(PROT_READ)` returned). So each of them calls
//! [`tlb::flush_tlb_batched_pending`] first, under the space's lock: a pending batch of another CPU
//! is made complete by invalidating the whole space again on this CPU (`flush_tlb_mm`). Linux
//! 4b634918384c fixed exactly this on arm64: it used to issue a `DSB ISH` there, which
//! completes nothing of the owner's (`bug=batch-drain-other-cpu`); `bug=batch-pending-ignored`
//! skips the call. The audit checks every unmap and `protect` against every open obligation of
//! its space in its range, whichever operation recorded it.
//!
//! Sits on `aspace` (the entries), `tlb` (the invalidations) and `audit`.

use crate::aspace::{self, AddressSpace, entry};
use crate::audit;
use crate::sanitizer::OpId;
use crate::tlb;
use alloc::sync::Arc;
use alloc::vec::Vec;
use broadside_arch::pte::{Descriptor, DescriptorKind, table_index};
use broadside_arch::{PhysAddr, VirtAddr};
use broadside_base::stats::{self, Counter};
use core::sync::atomic::Ordering;

/// Pages one batch holds before it must be flushed (Linux bounds its batch by the CPU mask it
/// accumulates, not by pages; a bound keeps the frames held back small).
pub const MAX_BATCH: usize = 64;

// One completion ends a whole batch, so the audit must hold every TLBI of it at once: as
// pending until the `DSB`, and with erratum 4118414 as awaiting its repeat. A larger batch
// would make it forget the oldest, which can then discharge nothing: a false flush gap.
const _: () = assert!(
    MAX_BATCH <= crate::sanitizer::MAX_PENDING && MAX_BATCH <= crate::sanitizer::MAX_AWAITING,
    "a TLB batch must fit the sanitizer's pending and awaiting lists"
);

/// A deferred batch of single-page unmaps, owned by the CPU that made it.
pub struct TlbBatch {
    op: OpId,
    owner: usize,
    frames: Vec<PhysAddr>,
    spaces: Vec<Arc<AddressSpace>>,
    /// Any of its TLBIs was broadcast (else all were local: a space that ran only here).
    broadcast: bool,
}

impl Default for TlbBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl TlbBatch {
    /// An empty batch owned by this CPU.
    pub fn new() -> Self {
        Self {
            op: audit::begin_op(),
            owner: broadside_base::cpu_id(),
            frames: Vec::with_capacity(MAX_BATCH),
            spaces: Vec::new(),
            broadcast: false,
        }
    }

    /// Pages held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether it holds no page.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Unmaps the private 4 KiB page at `va` of `space` (taking its lock) and issues its
    /// invalidation without waiting for it (`try_to_unmap_one` with `TTU_BATCH_FLUSH`). Returns
    /// whether a page was unmapped: not if the batch is full, the space is dying, or `va` holds
    /// no private page of a table the space owns.
    pub fn unmap_page(&mut self, space: &Arc<AddressSpace>, va: VirtAddr) -> bool {
        assert_eq!(
            self.owner,
            broadside_base::cpu_id(),
            "a TLB batch is filled on the CPU that owns it"
        );
        if self.frames.len() == MAX_BATCH {
            return false;
        }
        let _g = space.lock.lock();
        if !space.is_live() {
            return false;
        }
        let Some(table) = space.table_for(va, 3) else {
            return false;
        };
        if !space.owns_table(table) {
            return false;
        }
        let e = entry(table, table_index(va.as_u64(), 3));
        let old = Descriptor::from_raw(e.load(Ordering::Acquire));
        let DescriptorKind::Page { pa, .. } = old.kind(3) else {
            return false;
        };
        if broadside_memory::frame::meta(pa).kind()
            == broadside_memory::frame::FrameKind::Shared as u32
        {
            return false;
        }
        e.store(Descriptor::invalid().raw(), Ordering::Release);
        broadside_base::events::mark(
            broadside_base::events::Kind::Clear,
            va.as_u64(),
            pa.as_u64(),
        );
        space.audit_clear_leaf(self.op, va, 3, old);
        aspace::note_unmapped(pa);
        stats::count(Counter::PagesUnmapped);
        // Published under the lock, before the TLBI: an unmap that takes the lock next sees
        // that this CPU's TLBIs for the space may be incomplete.
        space.note_batch_pending(self.owner);
        self.broadcast |= tlb::flush_tlb_page_nosync(space, va) == Some(tlb::Scope::Broadcast);
        stats::count(Counter::BatchedPages);
        self.frames.push(pa);
        if !self.spaces.iter().any(|s| Arc::ptr_eq(s, space)) {
            self.spaces.push(space.clone());
        }
        true
    }

    /// Completes every TLBI of the batch with one `DSB ISH` on its owner (`DSB NSH` when all
    /// were local), then frees its pages (`arch_tlbbatch_flush`, then the reclaim's frees).
    /// The completion is [`tlb::complete`]'s, so each erratum workaround runs once per batch.
    pub fn flush(self) {
        assert_eq!(
            self.owner,
            broadside_base::cpu_id(),
            "a TLB batch is completed on the CPU that issued it"
        );
        if self.frames.is_empty() {
            return;
        }
        let spaces: Vec<&AddressSpace> = self.spaces.iter().map(|s| &**s).collect();
        tlb::complete(
            &spaces,
            if self.broadcast {
                tlb::Scope::Broadcast
            } else {
                tlb::Scope::Local
            },
        );
        stats::count(Counter::BatchFlushes);
        for s in &self.spaces {
            // Completed: an unmap that takes the lock from now on owes it nothing. (If one
            // already took the set, the bit is gone and this changes nothing.)
            s.note_batch_completed(self.owner);
        }
        audit::check_return(self.op);
        for pa in self.frames {
            aspace::release_data_frame(pa, 0);
        }
    }
}

//! Tearing an address space down: broadside's analogue of Linux's `exit_mmap` (mm/mmap.c).
//! `destroy` marks the space dying and drains its users (`aspace`), unshares every shared
//! object it maps (`shared`), then unmaps and frees everything left with one full-mm gather
//! (`gather`).
//!
//! The top layer: it sits on `aspace`, `gather` and `shared`, and nothing in the crate sits on
//! it.

use crate::aspace::{AddressSpace, SpaceState};
use crate::gather::MmuGather;
use broadside_arch::VirtAddr;

/// The teardown of an address space runs under the gather that frees its tables (Linux's
/// `exit_mmap` runs `unmap_vmas` and `free_pgtables` under one `mmu_gather`): the address-space
/// layer only marks a space dying and drains its users.
impl AddressSpace {
    /// Destroys the space: [`Self::begin_destroy`], then [`Self::end_destroy`].
    pub fn destroy(&self) {
        self.begin_destroy();
        self.end_destroy();
    }

    /// The key under which a deterministic run's stall waits for this space's teardown to
    /// begin (see `broadside_base::hint::yield_point_until`): [`Self::end_destroy`] hands such
    /// a CPU the turn between unsharing the space's objects and tearing it down.
    pub fn teardown_watch_key(&self) -> u64 {
        (1 << 63) | self.id
    }

    /// Tears a dying space down: unshares every object it maps (its list is final, since
    /// nothing can be mapped any more), then unmaps everything left — tables this space owns —
    /// with a full-mm gather: every page and table freed after one ASID flush.
    ///
    /// The root goes last, and only after the space is marked Dead: a lockless walker that saw
    /// the space not Dead (with IRQs masked) started before the root was queued for freeing, so
    /// the grace period covers it.
    pub fn end_destroy(&self) {
        debug_assert_eq!(
            self.state(),
            SpaceState::Dying,
            "end_destroy before begin_destroy"
        );
        crate::shared::unmap_all_objects(self);
        // Deterministic runs: let a mapper that still holds the space run between the unshare
        // of its objects and the teardown (`bug=map-dying` lets it map one here); one that
        // waits for this step (see [`Self::teardown_watch_key`]) runs now.
        broadside_base::hint::yield_point_watched(
            broadside_base::hint::Site::Sharing,
            self.teardown_watch_key(),
        );
        let _guard = self.lock.lock();
        let mut g = MmuGather::new_fullmm(self);
        g.unmap_level(self.root, 0, VirtAddr::ZERO, VirtAddr::new(1 << 48));
        self.mark_dead();
        g.remove_table(self.root, VirtAddr::ZERO, 0);
        g.finish();
        self.audit_unregister();
    }
}

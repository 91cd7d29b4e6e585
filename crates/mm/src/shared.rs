//! Shared memory objects and shared level-2 tables: broadside's analogue of hugetlb PMD sharing
//! (`huge_pmd_share` / `huge_pmd_unshare` in mm/hugetlb.c).
//!
//! An object is mapped with 2 MiB blocks at 1 GiB-aligned VAs; its blocks alias a few physical
//! 2 MiB frames, so a small guest can map hundreds of GiB. The first space to map a 1 GiB chunk
//! builds its level-2 table; later spaces point their level-1 entry at the same table and raise
//! its share count (extra sharers, in the table's frame metadata). The object's lock serialises
//! sharing and unsharing (the `i_mmap_rwsem` analogue).
//!
//! Unsharing goes through the gather (`MmuGather::unshare_table`), and the caller flushes with
//! `MmuGather::flush_unshared_tables` before it drops the object lock. The danger it guards
//! against (Linux 1013af4f58): once the last other sharer owns the table alone it may install
//! unrelated mappings in it, and a lockless walker that entered through our old level-1 entry
//! would then pin another space's page. `unshare=` picks the defence (the mode is kept by
//! `crate::unshare_sync`, which the gather and the walker ask):
//! - `sync-each`: an IPI sync per unshared table (Linux before the fix);
//! - `sync-last`: one sync per batch, only if a table became fully unshared (the fix);
//! - `recheck`: no sync at all; the walker re-checks the level-1 entry after pinning.
//!
//! Sits on `aspace`, `tlb`, `gather` and `mm_types`, with `audit`, `sanitizer` and
//! `fault_inject`; `exit_mmap` sits on it.

use crate::aspace::{self, AddressSpace, MapError, STAMP_MAGIC, entry};
use crate::fault_inject;
use crate::gather::MmuGather;
use crate::mm_types::{OBJECT_OWNER_BIT, SharedObject};
use crate::settings::Bug;
use crate::tlb::FlushRecord;
use alloc::sync::Arc;
use alloc::vec::Vec;
use broadside_arch::aarch64::layout::phys_to_virt;
use broadside_arch::pte::{
    Attributes, Descriptor, DescriptorKind, L1_BLOCK_SIZE, L2_BLOCK_SIZE, PAGE_SIZE, table_index,
};
use broadside_arch::{PhysAddr, VirtAddr};
use broadside_base::stats::{self, Counter};
use broadside_memory::frame::{self, FrameKind};
use core::sync::atomic::{AtomicU64, Ordering};

/// Share count position in `FrameMeta::level_and_share`.
const SHARE_SHIFT: u32 = 8;

static NEXT_OBJECT_ID: AtomicU64 = AtomicU64::new(1);

impl SharedObject {
    /// An object of `gib` GiB backed by `nframes` physical 2 MiB frames.
    pub fn new(gib: u64, nframes: usize) -> Option<Arc<Self>> {
        let id = NEXT_OBJECT_ID.fetch_add(1, Ordering::Relaxed);
        let mut frames = Vec::new();
        for _ in 0..nframes {
            let pa = frame::alloc_frames(9, FrameKind::Shared)?;
            let m = frame::meta(pa);
            m.owner.store(OBJECT_OWNER_BIT | id, Ordering::Relaxed);
            m.level_and_share.store(9, Ordering::Relaxed);
            for p in 0..512 {
                let w = phys_to_virt(pa + p * PAGE_SIZE).as_mut_ptr::<u64>();
                // SAFETY: a fresh frame owned by this object, not yet mapped anywhere.
                unsafe {
                    w.write_volatile(STAMP_MAGIC ^ (OBJECT_OWNER_BIT | id));
                    w.add(1).write_volatile(0);
                }
            }
            frames.push(pa);
        }
        Some(Arc::new(Self {
            id,
            gib,
            frames,
            tables: broadside_base::hint::Mutex::new(alloc::vec![None; gib as usize]),
        }))
    }

    /// The owner tag of this object's tables and frames.
    pub fn owner_tag(&self) -> u64 {
        OBJECT_OWNER_BIT | self.id
    }

    /// The extra-sharer count of each GiB's shared table (`None`: no table for that GiB).
    pub fn share_counts(&self) -> Vec<Option<u32>> {
        self.tables
            .lock()
            .iter()
            .map(|t| t.map(share_count))
            .collect()
    }

    /// Builds the level-2 table for GiB `index`: 512 blocks over the aliased frames.
    fn build_table(&self, index: u64, attrs: Attributes, owner: u64) -> Option<PhysAddr> {
        if fault_inject::should_fail_table_alloc() {
            return None;
        }
        let t = frame::alloc_frame(FrameKind::Table)?;
        let m = frame::meta(t);
        m.owner.store(owner, Ordering::Relaxed);
        m.level_and_share.store(2, Ordering::Relaxed);
        for i in 0..512u64 {
            let pa = self.frames[((index * 512 + i) % self.frames.len() as u64) as usize];
            let attrs = aspace::user_leaf_attrs(attrs);
            entry(t, i as usize).store(Descriptor::block(pa, 2, attrs).raw(), Ordering::Relaxed);
        }
        Some(t)
    }
}

impl Drop for SharedObject {
    fn drop(&mut self) {
        // Every mapping is gone (spaces hold an Arc while they map it) and every table that
        // pointed at the frames went through the gather's flush. A lockless walker may still
        // hold a pin on a frame: dropping the object's reference frees the frame only if none
        // does; otherwise the walker's unpin frees it.
        for &pa in &self.frames {
            aspace::release_data_frame(pa, 9);
        }
    }
}

/// Extra sharers of table `t`.
fn share_count(t: PhysAddr) -> u32 {
    frame::meta(t).level_and_share.load(Ordering::Relaxed) >> SHARE_SHIFT
}

fn add_share(t: PhysAddr, delta: i32) {
    let m = frame::meta(t);
    if delta > 0 {
        m.level_and_share
            .fetch_add(1 << SHARE_SHIFT, Ordering::AcqRel);
    } else {
        m.level_and_share
            .fetch_sub(1 << SHARE_SHIFT, Ordering::AcqRel);
    }
}

/// The level-1 entry slot for `va` in `space`, if the level-1 table exists.
fn l1_slot(space: &AddressSpace, va: VirtAddr) -> Option<crate::aspace::Pte> {
    let d = Descriptor::from_raw(
        entry(space.root, table_index(va.as_u64(), 0)).load(Ordering::Acquire),
    );
    match d.kind(0) {
        DescriptorKind::Table { next } => Some(entry(next, table_index(va.as_u64(), 1))),
        _ => None,
    }
}

/// Maps `obj` at `va` (1 GiB aligned) in `space`, sharing each GiB's level-2 table with the
/// spaces that already map it (`huge_pmd_share`). GiBs whose level-1 slot is already in use are
/// left alone.
///
/// All or nothing: if memory runs out half-way, every GiB this call hooked is unshared again
/// through a gather (share counts restored, tables it built freed after the flush and a grace
/// period), so no table is left hooked without an `objects` entry for destroy to unshare.
/// A space whose destroy has begun refuses ([`MapError::SpaceNotLive`]).
pub fn map_object(
    space: &AddressSpace,
    obj: &Arc<SharedObject>,
    va: VirtAddr,
) -> Result<(), MapError> {
    assert!(
        va.is_aligned(L1_BLOCK_SIZE),
        "objects map at 1 GiB-aligned VAs"
    );
    let mut tables = obj.tables.lock();
    let _g = space.lock.lock();
    let accepts = if fault_inject::planted(Bug::MapDying) {
        !space.is_dead() // the planted bug: the old check, blind to a destroy in progress
    } else {
        space.is_live()
    };
    if !accepts {
        return Err(MapError::SpaceNotLive);
    }
    let mut hooked: Vec<u64> = Vec::new();
    let mut failure = None;
    for i in 0..obj.gib {
        let v = va + i * L1_BLOCK_SIZE;
        let Some(l1) = space.table_for(v, 1) else {
            failure = Some(MapError::OutOfMemory);
            break;
        };
        let slot = entry(l1, table_index(v.as_u64(), 1));
        if Descriptor::from_raw(slot.load(Ordering::Relaxed)).is_valid() {
            continue;
        }
        let t = match tables[i as usize] {
            Some(t) => {
                add_share(t, 1);
                t
            }
            None => {
                let Some(t) = obj.build_table(i, Attributes::user_data_rw(), obj.owner_tag())
                else {
                    failure = Some(MapError::OutOfMemory);
                    break;
                };
                stats::add(Counter::PagesMapped, 512 * L2_BLOCK_SIZE / PAGE_SIZE);
                tables[i as usize] = Some(t);
                t
            }
        };
        slot.store(Descriptor::table(t).raw(), Ordering::Release);
        hooked.push(i);
    }
    if let Some(e) = failure {
        if !fault_inject::planted(Bug::MapObjectNoUndo) && !hooked.is_empty() {
            let mut gather = MmuGather::new_range(space);
            for &i in &hooked {
                unshare_locked(space, &mut gather, &mut tables, va, i..i + 1);
            }
            gather.flush_unshared_tables();
            drop(tables);
            gather.finish();
        }
        return Err(e);
    }
    space.objects.lock().push((obj.clone(), va));
    Ok(())
}

/// The first GiB of `obj` (mapped at `va`) whose shared table `space` has hooked although its
/// object list does not name `obj` at `va`: what a failed [`map_object`] must never leave
/// (destroy unshares only what the list names, and the teardown would then reach a shared
/// table). `None` if there is none. Takes the object and space locks, as `map_object` does, so
/// it sees no map half-done.
pub fn hooked_but_unlisted(
    space: &AddressSpace,
    obj: &Arc<SharedObject>,
    va: VirtAddr,
) -> Option<u64> {
    let tables = obj.tables.lock();
    let _g = space.lock.lock();
    let listed = space
        .objects
        .lock()
        .iter()
        .any(|(o, at)| Arc::ptr_eq(o, obj) && *at == va);
    if listed {
        return None;
    }
    (0..obj.gib).find(|&i| {
        let Some(slot) = l1_slot(space, va + i * L1_BLOCK_SIZE) else {
            return false;
        };
        match Descriptor::from_raw(slot.load(Ordering::Acquire)).kind(1) {
            DescriptorKind::Table { next } => tables[i as usize] == Some(next),
            _ => false,
        }
    })
}

/// Drops `space`'s use of the object's tables for the GiBs `indices` of the object mapped at
/// `va` into `gather` (`huge_pmd_unshare`). The caller holds the object lock (`tables`) and the
/// space lock.
fn unshare_locked(
    space: &AddressSpace,
    g: &mut MmuGather<'_>,
    tables: &mut [Option<PhysAddr>],
    va: VirtAddr,
    indices: core::ops::Range<u64>,
) {
    for i in indices {
        let v = va + i * L1_BLOCK_SIZE;
        let Some(slot) = l1_slot(space, v) else {
            continue;
        };
        let DescriptorKind::Table { next: t } =
            Descriptor::from_raw(slot.load(Ordering::Acquire)).kind(1)
        else {
            continue;
        };
        if tables[i as usize] == Some(t) {
            slot.store(Descriptor::invalid().raw(), Ordering::Release);
            // Deterministic runs: let other CPUs run between the unhook and the count.
            broadside_base::hint::yield_point(broadside_base::hint::Site::Sharing);
            match share_count(t) {
                0 => {
                    // The last user frees the table, still full of valid blocks (the frames
                    // are the object's): each block may be in this space's TLB, so the flush
                    // covers the whole GiB at a 2 MiB stride, walk caches included.
                    tables[i as usize] = None;
                    if fault_inject::planted(Bug::LastSharerNarrowFlush) {
                        g.remove_table(t, v, 2); // the planted bug: one page of the GiB
                    } else {
                        g.remove_table_with_leaves(t, v, 2, L2_BLOCK_SIZE);
                    }
                }
                extra => {
                    add_share(t, -1);
                    g.unshare_table(t, v, extra == 1);
                }
            }
        } else {
            // A private table over the object (adopted, or a protection copy): unmap it.
            g.unmap(v, v + L1_BLOCK_SIZE);
        }
    }
}

/// Unmaps `obj` from `space`: unshare through a gather, flush (and synchronise, per mode)
/// before the object lock is dropped. Works on a dying space too (destroy unmaps its objects
/// this way). Returns what the gather's last flush did.
pub fn unmap_object(space: &AddressSpace, obj: &Arc<SharedObject>, va: VirtAddr) -> FlushRecord {
    let mut tables = obj.tables.lock();
    let _g = space.lock.lock();
    if space.is_dead() {
        return FlushRecord::default();
    }
    let mut gather = MmuGather::new_range(space);
    unshare_locked(space, &mut gather, &mut tables, va, 0..obj.gib);
    gather.flush_unshared_tables();
    drop(tables);
    let record = gather.finish();
    space
        .objects
        .lock()
        .retain(|(o, v)| !(Arc::ptr_eq(o, obj) && *v == va));
    record
}

/// Fork: maps into `child` every object `parent` maps, at the same VAs, sharing the parent's
/// level-2 tables.
pub fn fork_objects(parent: &AddressSpace, child: &AddressSpace) -> Result<(), MapError> {
    let objects: Vec<(Arc<SharedObject>, VirtAddr)> = parent.objects.lock().clone();
    for (obj, va) in objects {
        map_object(child, &obj, va)?;
    }
    Ok(())
}

/// Unmaps every object `space` maps (the exit path, before the full teardown).
pub fn unmap_all_objects(space: &AddressSpace) {
    let objects: Vec<(Arc<SharedObject>, VirtAddr)> = space.objects.lock().clone();
    for (obj, va) in objects {
        unmap_object(space, &obj, va);
    }
}

/// Changes the protection of GiB `index` of `obj` in `space`: unshare it, then install a
/// private table mapping the same frames with `attrs` (hugetlb unshares before it changes a
/// shared PMD's protection). A space whose destroy has begun refuses. If memory runs out for
/// the private table, the GiB is left unmapped (the old mapping is gone either way).
pub fn protect_object_gib(
    space: &AddressSpace,
    obj: &Arc<SharedObject>,
    va: VirtAddr,
    index: u64,
    attrs: Attributes,
) -> Result<(), MapError> {
    let v = va + index * L1_BLOCK_SIZE;
    let mut tables = obj.tables.lock();
    let _g = space.lock.lock();
    if !space.is_live() {
        return Err(MapError::SpaceNotLive);
    }
    let mut gather = MmuGather::new_range(space);
    unshare_locked(space, &mut gather, &mut tables, va, index..index + 1);
    gather.flush_unshared_tables();
    drop(tables);
    gather.finish();
    let l1 = space.table_for(v, 1).ok_or(MapError::OutOfMemory)?;
    let private = obj
        .build_table(index, attrs, space.id)
        .ok_or(MapError::OutOfMemory)?;
    entry(l1, table_index(v.as_u64(), 1))
        .store(Descriptor::table(private).raw(), Ordering::Release);
    Ok(())
}

/// If `space` is now the only user of the shared table for GiB `index` of `obj`, takes it over
/// as a private table and installs an unrelated private block in it — what the last sharer may
/// do once a table is fully unshared, and why walkers from the other spaces must be gone by
/// then. Returns whether it did.
pub fn adopt_if_exclusive(
    space: &AddressSpace,
    obj: &Arc<SharedObject>,
    va: VirtAddr,
    index: u64,
    slot_in_table: usize,
) -> bool {
    let v = va + index * L1_BLOCK_SIZE;
    let mut tables = obj.tables.lock();
    let Some(t) = tables[index as usize] else {
        return false;
    };
    if share_count(t) != 0 {
        return false;
    }
    let _g = space.lock.lock();
    if !space.is_live() {
        return false; // destroy has begun: it may be unsharing this very table
    }
    let Some(slot) = l1_slot(space, v) else {
        return false;
    };
    if Descriptor::from_raw(slot.load(Ordering::Acquire)).kind(1)
        != (DescriptorKind::Table { next: t })
    {
        return false;
    }
    // Every space that unshared it flushed before dropping the object lock (checked there
    // too); taking it over is a reuse of the table.
    crate::audit::check_reuse(t);
    tables[index as usize] = None;
    frame::meta(t).owner.store(space.id, Ordering::Release);
    drop(tables);
    // Deterministic runs: let other CPUs run once the table changed hands.
    broadside_base::hint::yield_point(broadside_base::hint::Site::Sharing);
    // Break, invalidate, make: the block is replaced by a private one.
    let block_va = v + slot_in_table as u64 * L2_BLOCK_SIZE;
    let slot = entry(t, slot_in_table);
    let old = Descriptor::from_raw(slot.load(Ordering::Relaxed));
    slot.store(Descriptor::invalid().raw(), Ordering::Release);
    let op = crate::audit::begin_op();
    space.audit_clear_leaf(op, block_va, 2, old);
    crate::tlb::flush_tlb_range(
        space,
        block_va,
        block_va + L2_BLOCK_SIZE,
        L2_BLOCK_SIZE,
        true,
        Some(2),
    );
    crate::audit::check_return(op);
    let Some(pa) = frame::alloc_frames(9, FrameKind::Data) else {
        return true;
    };
    frame::meta(pa).owner.store(space.id, Ordering::Relaxed);
    frame::meta(pa).level_and_share.store(9, Ordering::Relaxed);
    for p in 0..512 {
        aspace::stamp_page(pa + p * PAGE_SIZE, space.id, block_va + p * PAGE_SIZE);
    }
    entry(t, slot_in_table).store(
        Descriptor::block(pa, 2, aspace::user_leaf_attrs(Attributes::user_data_rw())).raw(),
        Ordering::Release,
    );
    broadside_arch::aarch64::tlb::begin(broadside_arch::aarch64::tlb::Scope::Broadcast);
    true
}

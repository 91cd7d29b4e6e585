//! Address spaces: a TTBR0 root, an ASID, the CPUs the space has been active on, and the
//! operations that change its tables — map (4 KiB pages and 2 MiB blocks of fresh, stamped
//! frames), unmap, change protection, destroy. Every change that removes or weakens a
//! translation goes through an [`MmuGather`] or a range flush: unhook, invalidate, then free
//! (rule 1).
//!
//! Data frames are stamped so a reader can tell whose page it sees: the first words of every
//! 4 KiB page hold a magic value mixed with the space id, the page's VA, its PA and the frame's
//! generation; word 8 is a counter that touchers increment while the page is writable. A frame is
//! poisoned after its flush completes and before it is freed, so a read of poison, or of another
//! page's stamp, proves a stale translation was used.

use crate::arch::aarch64::layout::phys_to_virt;
use crate::arch::aarch64::{mmu, tlb};
use crate::config::MAX_CPUS;
use crate::mm::asid::{AsidAllocator, AsidContext};
use crate::mm::frame::{self, FrameKind};
use crate::mm::gather::MmuGather;
use crate::mm::pte::{
    Attributes, Descriptor, DescriptorKind, PAGE_SIZE, level_block_size, table_index,
};
use crate::stats::{self, Counter};
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use spin::Once;

/// Stamp word 0 of a live data page: this magic XOR the owning space's id.
pub const STAMP_MAGIC: u64 = 0x5354_414d_5000_0000;
/// What a freed data page's stamp words hold.
pub const DATA_POISON: u64 = 0xdead_dead_dead_dead;
/// What a freed table page holds in every entry (bits 1:0 = 0b00: invalid to any walker).
pub const TABLE_POISON: u64 = 0x5a5a_5a5a_5a5a_5a58;
/// Word index of the touchers' write counter in each 4 KiB page.
pub const WRITE_COUNTER_WORD: usize = 8;
/// Stamp words poisoned when a frame is freed.
const STAMP_WORDS: usize = 4;

/// Life-cycle of a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SpaceState {
    Live = 0,
    /// Being destroyed: no new CPU may activate it.
    Dying = 1,
    Dead = 2,
}

static ASIDS: Once<AsidAllocator> = Once::new();
static NEXT_SPACE_ID: AtomicU64 = AtomicU64::new(1);

/// Sets up the ASID allocator with `bits` (the CPU's width, or less from `asid_bits=`).
pub fn init_asids(bits: u32, cpus: usize) {
    ASIDS.call_once(|| AsidAllocator::new(bits, cpus));
}

pub fn asid_allocator_opt() -> Option<&'static AsidAllocator> {
    ASIDS.get()
}

pub fn asid_allocator() -> &'static AsidAllocator {
    ASIDS.get().expect("ASID allocator not initialised")
}

/// An address space.
pub struct AddressSpace {
    /// Unique for the kernel's lifetime (never reused), recorded in its frames' metadata.
    pub id: u64,
    /// Physical address of the level-0 table.
    pub root: u64,
    pub asid: AsidContext,
    /// CPUs on which this space has ever been loaded into TTBR0.
    cpus_ever: [AtomicU64; MAX_CPUS / 64],
    /// CPUs that have it in TTBR0 right now.
    pub users: AtomicU32,
    state: AtomicU8,
    /// Serialises changes to the tables (mutators); readers (touchers, walkers) take no lock.
    pub lock: spin::Mutex<()>,
    /// Gathers in flight on this space (Linux's `mm->tlb_flush_pending`).
    pub flush_pending: AtomicU32,
    /// Shared objects mapped, and where.
    pub objects:
        spin::Mutex<alloc::vec::Vec<(alloc::sync::Arc<crate::mm::shared::SharedObject>, u64)>>,
}

/// The descriptor slot `index` of table `table_pa`, as an atomic (walkers read it locklessly).
pub fn entry(table_pa: u64, index: usize) -> &'static AtomicU64 {
    debug_assert!(index < 512);
    // SAFETY: table pages are frames in the linear map, 8-byte aligned, and live while reachable;
    // every access to a descriptor is atomic.
    unsafe { &*(phys_to_virt(table_pa) as *const AtomicU64).add(index) }
}

fn alloc_table(space_id: u64, level: u8) -> Option<u64> {
    let pa = frame::alloc_frame(FrameKind::Table)?;
    let m = frame::meta(pa);
    m.owner.store(space_id, Ordering::Relaxed);
    m.level_and_share.store(level as u32, Ordering::Relaxed);
    Some(pa)
}

/// Fills a data page's stamp for `va`.
pub fn stamp_page(pa: u64, space_id: u64, va: u64) {
    let w = phys_to_virt(pa) as *mut u64;
    let generation = frame::meta(pa & !(PAGE_SIZE - 1))
        .generation
        .load(Ordering::Relaxed);
    // SAFETY: `pa` is a data frame just allocated to this space and not yet mapped.
    unsafe {
        w.write_volatile(STAMP_MAGIC ^ space_id);
        w.add(1).write_volatile(va);
        w.add(2).write_volatile(pa);
        w.add(3).write_volatile(generation);
    }
}

/// What a stamp check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampCheck {
    Ok,
    Poison,
    Wrong,
}

/// Checks the stamp words `w[0..2]` read through `va` in space `space_id`. `object` is the owner
/// tag of the shared object mapped there, if any: its frames carry that tag and no VA (they are
/// aliased at many).
pub fn check_stamp(w0: u64, w1: u64, space_id: u64, va: u64, object: Option<u64>) -> StampCheck {
    if w0 == DATA_POISON || w1 == DATA_POISON {
        StampCheck::Poison
    } else if object.is_some_and(|tag| w0 == STAMP_MAGIC ^ tag)
        || (w0 == STAMP_MAGIC ^ space_id && w1 == va & !(PAGE_SIZE - 1))
    {
        StampCheck::Ok
    } else {
        StampCheck::Wrong
    }
}

/// Poisons each 4 KiB page of a data frame of `order` and returns it to the allocator, once the
/// last reference is gone. Called only after the flush that removed its mappings completed.
pub fn release_data_frame(pa: u64, order: u32) {
    if !frame::meta(pa).put() {
        return; // a walker still holds it; its put frees it
    }
    for i in 0..(1u64 << order) {
        let w = phys_to_virt(pa + i * PAGE_SIZE) as *mut u64;
        for k in 0..STAMP_WORDS {
            // SAFETY: the frame is unreachable through any translation and unpinned.
            unsafe { w.add(k).write_volatile(DATA_POISON) };
        }
    }
    frame::free_frames(pa, order);
}

/// Poisons a table page and frees it. Called only when no walker (hardware or lockless) can
/// still be inside it.
pub fn free_table_page(pa: u64) {
    for i in 0..512 {
        entry(pa, i).store(TABLE_POISON, Ordering::Relaxed);
    }
    let m = frame::meta(pa);
    m.owner.store(0, Ordering::Relaxed);
    frame::free_frame(pa);
    stats::count(Counter::TablesFreed);
}

impl AddressSpace {
    /// A new, empty space.
    pub fn new() -> Option<Self> {
        let id = NEXT_SPACE_ID.fetch_add(1, Ordering::Relaxed);
        let root = alloc_table(id, 0)?;
        Some(Self {
            id,
            root,
            asid: AsidContext::new(),
            cpus_ever: [const { AtomicU64::new(0) }; MAX_CPUS / 64],
            users: AtomicU32::new(0),
            state: AtomicU8::new(SpaceState::Live as u8),
            lock: spin::Mutex::new(()),
            flush_pending: AtomicU32::new(0),
            objects: spin::Mutex::new(alloc::vec::Vec::new()),
        })
    }

    pub fn state(&self) -> SpaceState {
        match self.state.load(Ordering::Acquire) {
            0 => SpaceState::Live,
            1 => SpaceState::Dying,
            _ => SpaceState::Dead,
        }
    }

    /// Whether the space has been torn down. Every method that changes or reads the tables
    /// checks it first (with the lock held, or inside an RCU read-side section): another CPU may
    /// still hold a reference to a space that `destroy` has finished with, and its root table is
    /// on its way back to the allocator.
    pub fn is_dead(&self) -> bool {
        self.state() == SpaceState::Dead
    }

    /// The space's current ASID number, if it ever had one.
    pub fn asid_number(&self) -> Option<u16> {
        AsidAllocator::asid_of(&self.asid)
    }

    pub fn was_active_on(&self, cpu: usize) -> bool {
        self.cpus_ever[cpu / 64].load(Ordering::Acquire) & (1 << (cpu % 64)) != 0
    }

    /// Whether this space has only ever been active on `cpu` (or nowhere).
    pub fn only_active_on(&self, cpu: usize) -> bool {
        self.cpus_ever.iter().enumerate().all(|(w, bits)| {
            let b = bits.load(Ordering::Acquire);
            if w == cpu / 64 {
                b & !(1 << (cpu % 64)) == 0
            } else {
                b == 0
            }
        })
    }

    /// Loads this space into TTBR0 on the current CPU. Returns false if it is no longer live.
    /// IRQs are masked for the switch (the ASID allocator's fast path needs it).
    pub fn activate(&self) -> bool {
        let cpu = crate::arch::cpu_id();
        self.users.fetch_add(1, Ordering::AcqRel);
        if self.state() != SpaceState::Live {
            self.users.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.cpus_ever[cpu / 64].fetch_or(1 << (cpu % 64), Ordering::AcqRel);
        let irq = crate::arch::irq::save_and_mask();
        let sw = asid_allocator().switch_to(cpu, &self.asid);
        if sw.flush_local_tlb {
            tlb::local_flush_all();
        }
        // Publish this CPU (its bit in `cpus_ever`) and the space's ASID before this CPU can
        // walk the tables: a flusher that changes an entry and then finds no ASID, or not this
        // CPU, is then guaranteed that this CPU's walks see the change (`mm::tlb` pairs this
        // with a DMB ISH between its table stores and those loads).
        tlb::order_before_walks();
        mmu::set_ttbr0(self.root, sw.asid);
        crate::arch::irq::restore(irq);
        true
    }

    /// Unloads this space from the current CPU (TTBR0 back to the empty table).
    pub fn deactivate(&self) {
        mmu::set_ttbr0(mmu::empty_table_pa(), 0);
        self.users.fetch_sub(1, Ordering::AcqRel);
    }

    /// Walks to the table at `level` covering `va`, allocating missing tables.
    pub fn table_for(&self, va: u64, level: u8) -> Option<u64> {
        let mut table = self.root;
        for l in 0..level {
            let e = entry(table, table_index(va, l));
            let d = Descriptor::from_raw(e.load(Ordering::Acquire));
            table = match d.kind(l) {
                DescriptorKind::Table { next } => next,
                DescriptorKind::Invalid => {
                    let new = alloc_table(self.id, l + 1)?;
                    // The release orders the new table's zeroing before the entry that publishes
                    // it, for other CPUs' table walks and lockless walkers alike (Linux's
                    // smp_wmb() in pmd_install). The DSB ISHST that makes the entries visible to
                    // this CPU's own walks comes once the mapping is complete (`map_pages`).
                    e.store(Descriptor::table(new).raw(), Ordering::Release);
                    new
                }
                _ => return None, // a block is in the way
            };
        }
        Some(table)
    }

    /// Maps `count` fresh 4 KiB pages at `va` with `attrs`. Slots already mapped are left alone.
    /// Returns the number mapped, or None when memory ran out. Caller holds `lock`.
    pub fn map_pages(&self, va: u64, count: u64, attrs: Attributes) -> Option<u64> {
        if self.is_dead() {
            return Some(0);
        }
        let mut mapped = 0;
        for i in 0..count {
            let v = va + i * PAGE_SIZE;
            let table = self.table_for(v, 3)?;
            let e = entry(table, table_index(v, 3));
            if Descriptor::from_raw(e.load(Ordering::Relaxed)).is_valid() {
                continue;
            }
            let pa = frame::alloc_frame(FrameKind::Data)?;
            frame::meta(pa).owner.store(self.id, Ordering::Relaxed);
            stamp_page(pa, self.id, v);
            // The stamp must be visible before the entry that makes it reachable.
            e.store(Descriptor::page(pa, attrs).raw(), Ordering::Release);
            mapped += 1;
        }
        tlb::begin(tlb::Scope::Broadcast);
        stats::add(Counter::PagesMapped, mapped);
        Some(mapped)
    }

    /// Maps a fresh 2 MiB block at `va` (2 MiB aligned) unless the slot is in use. Returns
    /// whether it mapped. Caller holds `lock`.
    pub fn map_block(&self, va: u64, attrs: Attributes) -> Option<bool> {
        if self.is_dead() {
            return Some(false);
        }
        let table = self.table_for(va, 2)?;
        let e = entry(table, table_index(va, 2));
        if Descriptor::from_raw(e.load(Ordering::Relaxed)).is_valid() {
            return Some(false);
        }
        let pa = frame::alloc_frames(9, FrameKind::Data)?;
        frame::meta(pa).owner.store(self.id, Ordering::Relaxed);
        // Data frames keep their allocation order here, for whoever drops the last reference.
        frame::meta(pa).level_and_share.store(9, Ordering::Relaxed);
        for i in 0..512 {
            stamp_page(pa + i * PAGE_SIZE, self.id, va + i * PAGE_SIZE);
        }
        e.store(Descriptor::block(pa, 2, attrs).raw(), Ordering::Release);
        tlb::begin(tlb::Scope::Broadcast);
        stats::add(Counter::PagesMapped, 512);
        Some(true)
    }

    /// Unmaps `[start, end)` into `gather`: clears leaf entries, and tables that become empty
    /// (never the root), recording each for freeing after the flush. Blocks are unmapped only
    /// when the range covers them entirely. Caller holds `lock`.
    pub fn unmap(&self, gather: &mut MmuGather<'_>, start: u64, end: u64) {
        if self.is_dead() {
            return;
        }
        self.unmap_level(gather, self.root, 0, start, end);
    }

    /// Returns whether `table` is empty afterwards.
    fn unmap_level(
        &self,
        g: &mut MmuGather<'_>,
        table: u64,
        level: u8,
        start: u64,
        end: u64,
    ) -> bool {
        let size = level_block_size(level);
        let mut va = start;
        while va < end {
            let entry_start = va & !(size - 1);
            let entry_end = entry_start + size;
            let e = entry(table, table_index(va, level));
            let d = Descriptor::from_raw(e.load(Ordering::Acquire));
            match d.kind(level) {
                DescriptorKind::Invalid => {}
                DescriptorKind::Page { pa, .. } | DescriptorKind::Block { pa, .. } => {
                    if start <= entry_start && end >= entry_end {
                        e.store(Descriptor::invalid().raw(), Ordering::Release);
                        g.remove_page(pa, entry_start, level);
                    }
                }
                DescriptorKind::Table { next } => {
                    let sub_end = end.min(entry_end);
                    if self.unmap_level(g, next, level + 1, va, sub_end) {
                        e.store(Descriptor::invalid().raw(), Ordering::Release);
                        g.remove_table(next, entry_start, level + 1);
                    }
                }
            }
            va = entry_end;
        }
        (0..512).all(|i| !Descriptor::from_raw(entry(table, i).load(Ordering::Relaxed)).is_valid())
    }

    /// Rewrites the permissions of every leaf in `[start, end)` (no break-before-make is needed
    /// for a permission change) and flushes them, leaf-only. Returns the number of leaves (in
    /// 4 KiB units) changed. Caller holds `lock`.
    pub fn protect(&self, start: u64, end: u64, attrs: Attributes) -> u64 {
        if self.is_dead() {
            return 0;
        }
        let mut changed = 0;
        let mut min_level = 3u8;
        let mut va = start;
        while va < end {
            let mut table = self.root;
            let mut step = level_block_size(3);
            for level in 0..=3u8 {
                let e = entry(table, table_index(va, level));
                let d = Descriptor::from_raw(e.load(Ordering::Acquire));
                step = level_block_size(level);
                match d.kind(level) {
                    DescriptorKind::Table { next } => table = next,
                    DescriptorKind::Page { pa, .. } => {
                        e.store(Descriptor::page(pa, attrs).raw(), Ordering::Release);
                        changed += 1;
                        break;
                    }
                    DescriptorKind::Block { pa, .. } => {
                        e.store(Descriptor::block(pa, level, attrs).raw(), Ordering::Release);
                        changed += step / PAGE_SIZE;
                        min_level = min_level.min(level);
                        break;
                    }
                    DescriptorKind::Invalid => break,
                }
            }
            va = (va & !(step - 1)) + step;
        }
        if changed > 0 {
            let stride = level_block_size(min_level);
            crate::mm::tlb::flush_tlb_range(
                self,
                start,
                end,
                stride.min(end - start),
                true,
                Some(min_level),
            );
        }
        changed
    }

    /// The leaf descriptor and level mapping `va`, if any. Safe without the lock: it reads the
    /// tables with IRQs masked, an RCU read-side section like the lockless walker's.
    pub fn lookup(&self, va: u64) -> Option<(Descriptor, u8)> {
        let irq = crate::arch::irq::save_and_mask();
        let found = if self.is_dead() {
            None
        } else {
            self.lookup_in_tables(va)
        };
        crate::arch::irq::restore(irq);
        found
    }

    fn lookup_in_tables(&self, va: u64) -> Option<(Descriptor, u8)> {
        let mut table = self.root;
        for level in 0..=3u8 {
            let d =
                Descriptor::from_raw(entry(table, table_index(va, level)).load(Ordering::Acquire));
            match d.kind(level) {
                DescriptorKind::Table { next } => table = next,
                DescriptorKind::Invalid => return None,
                _ => return Some((d, level)),
            }
        }
        None
    }

    /// Marks the space dying (no new activations) and waits until no CPU has it loaded; then
    /// tears it down with a full-mm gather: every page and table freed after one ASID flush.
    ///
    /// The root goes last, and only after the space is marked Dead: a lockless walker that saw
    /// the space not Dead (with IRQs masked) started before the root was queued for freeing, so
    /// the grace period covers it.
    pub fn destroy(&self) {
        self.state.store(SpaceState::Dying as u8, Ordering::Release);
        while self.users.load(Ordering::Acquire) != 0 {
            crate::kernel::wait_relax();
        }
        crate::mm::shared::unmap_all_objects(self);
        let _guard = self.lock.lock();
        let mut g = MmuGather::new_fullmm(self);
        self.unmap_level(&mut g, self.root, 0, 0, 1 << 48);
        self.state.store(SpaceState::Dead as u8, Ordering::Release);
        g.remove_table(self.root, 0, 0);
        g.finish();
    }
}

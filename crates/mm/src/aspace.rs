//! Address spaces: a TTBR0 root, an ASID, the CPUs the space has been active on, its tables,
//! and what needs no TLB shootdown — activation, map (4 KiB pages and 2 MiB blocks of fresh,
//! stamped frames), walks and lookups, and freeing a data frame or a table page once its flush
//! is done. Every change that removes or weakens a translation sits in a layer above, on the
//! shootdown layer (`crate::tlb`): unmap goes through an mmu_gather (`crate::gather`), a
//! permission change through a range flush (`crate::mprotect`), the teardown through
//! `crate::exit_mmap`; each unhooks, invalidates, then frees
//! ([rule 1](broadside_base::rules#rule-1)).
//!
//! Data frames are stamped so a reader can tell whose page it sees: the first words of every
//! 4 KiB page hold a magic value mixed with the space id, the page's VA, its PA and the frame's
//! generation; word 8 is a counter that touchers increment while the page is writable. A frame is
//! poisoned after its flush completes and before it is freed, so a read of poison, or of another
//! page's stamp, proves a stale translation was used.
//!
//! The address-space core: sits on `asid`, `audit`, `fault_inject`, `sanitizer` and `mm_types`
//! (the shared object's data, for the list of objects a space maps).

use crate::asid::{AsidAllocator, AsidContext};
use crate::audit;
use crate::sanitizer::{Change, Clear, Cleared, CpuMask, LeafRun, OpId, Owed, SpaceSlot};
use broadside_arch::aarch64::layout::phys_to_virt;
use broadside_arch::aarch64::{mmu, tlb};
use broadside_arch::pte::{
    Attributes, Descriptor, DescriptorKind, PAGE_SIZE, level_block_size, table_index,
};
use broadside_arch::{PhysAddr, VirtAddr};
use broadside_base::config::MAX_CPUS;
use broadside_base::stats::{self, Counter};
use broadside_memory::frame::{self, FrameKind};
use broadside_sync::ActiveGate;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use spin::Once;

/// Whether each space keeps the set of CPUs that run it now ([`AddressSpace::running_cpus`]):
/// erratum 4193714's workaround (`mm::tlb`) interrupts exactly those after a completion.
static TRACK_RUNNING: AtomicBool = AtomicBool::new(false);

/// Makes every space keep the CPUs that run it now, and a CPU that leaves a space complete its
/// accesses first (`DSB ISH`): erratum 4193714's workaround. Called once at boot, before any
/// space exists.
pub fn track_running(on: bool) {
    TRACK_RUNNING.store(on, Ordering::Relaxed);
}

fn tracking_running() -> bool {
    TRACK_RUNNING.load(Ordering::Relaxed)
}

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
    /// In use: CPUs may activate it and mutators may map into it.
    Live = 0,
    /// Being destroyed: no new CPU may activate it and nothing new may be mapped into it.
    /// Unmapping and unsharing still work (destroy itself unshares its objects).
    Dying = 1,
    /// Torn down: its tables are gone or on their way back to the allocator.
    Dead = 2,
}

/// Why a mapping was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The space's destroy has begun (or finished): nothing may be added to it any more.
    SpaceNotLive,
    /// A page, block or table could not be allocated. What the call had mapped is undone
    /// where the operation says so (`shared::map_object` undoes all of it).
    OutOfMemory,
    /// A block is in the way of the table the mapping needs.
    BlockInTheWay,
}

static ASIDS: Once<AsidAllocator> = Once::new();
static NEXT_SPACE_ID: AtomicU64 = AtomicU64::new(1);

/// Sets up the ASID allocator with `bits` (the CPU's width, or less from `asid_bits=`).
/// With `audit=on` (call `audit::init` first), the sanitizer observes every rollover.
pub fn init_asids(bits: u32, cpus: usize) {
    ASIDS.call_once(|| {
        let allocator = AsidAllocator::new(bits, cpus);
        if audit::enabled() {
            allocator.with_rollover_observer(audit::rollover)
        } else {
            allocator
        }
    });
}

/// The ASID allocator, if boot has set it up.
pub fn asid_allocator_opt() -> Option<&'static AsidAllocator> {
    ASIDS.get()
}

/// The ASID allocator. Panics before [`init_asids`].
pub fn asid_allocator() -> &'static AsidAllocator {
    ASIDS.get().expect("ASID allocator not initialised")
}

/// An address space.
pub struct AddressSpace {
    /// Unique for the kernel's lifetime (never reused), recorded in its frames' metadata.
    pub id: u64,
    /// Physical address of the level-0 table.
    pub root: PhysAddr,
    /// The space's ASID and its generation (the allocator's per-space state).
    pub asid: AsidContext,
    /// CPUs on which this space has ever been loaded into TTBR0.
    cpus_ever: [AtomicU64; MAX_CPUS / 64],
    /// CPUs that run it now, from before their TTBR0 load until after they left it and
    /// completed their accesses; kept only for erratum 4193714 ([`track_running`]).
    running: [AtomicU64; MAX_CPUS / 64],
    /// CPUs that have it in TTBR0 right now; closed by destroy, which then waits for it to
    /// drain (a store-buffer handshake, correct in the language's memory model: see
    /// [`ActiveGate`]).
    active: ActiveGate,
    state: AtomicU8,
    /// Serialises changes to the tables (mutators); readers (touchers, walkers) take no lock.
    pub lock: broadside_base::hint::Mutex<()>,
    /// Gathers in flight on this space (Linux's `mm->tlb_flush_pending`).
    pub flush_pending: AtomicU32,
    /// The CPUs whose deferred TLB batches hold TLBIs for this space that they have not
    /// completed yet, a bit each (Linux's `mm->tlb_flush_batched`). Set under `lock` by a
    /// batch ([`Self::note_batch_pending`]); taken under `lock` by
    /// `tlb::flush_tlb_batched_pending`. A set, not one owner: two CPUs' batches may hold the
    /// same space at once, and one completing must not hide the other's (a single owner slot,
    /// overwritten by the second batch and cleared when it completed, let an unmap return
    /// with the first batch's TLBIs incomplete: `bug=batch-owner-overwritten`).
    batch_owners: [AtomicU64; MAX_CPUS / 64],
    /// Shared objects mapped, and where.
    pub objects: broadside_base::hint::Mutex<
        alloc::vec::Vec<(alloc::sync::Arc<crate::mm_types::SharedObject>, VirtAddr)>,
    >,
    /// The space's registration with the flush-coverage sanitizer (`audit=on`), through which
    /// it derives who may hold the space's entries from the TTBR0 loads it observes.
    audit_slot: Option<SpaceSlot>,
}

/// The descriptor slot `index` of table `table_pa` (walkers read it locklessly).
pub fn entry(table_pa: PhysAddr, index: usize) -> Pte {
    debug_assert!(index < 512);
    // SAFETY: table pages are frames in the linear map, 8-byte aligned, and live while reachable;
    // every access to a descriptor is atomic.
    Pte(unsafe { &*phys_to_virt(table_pa).as_ptr::<AtomicU64>().add(index) })
}

/// One page-table descriptor slot. Its accesses are atomic and, with `weak=on`, go through the
/// emulated store buffer ([`broadside_base::weak`]): a store reaches memory — other CPUs'
/// lockless walks and every MMU's table walks — only when this CPU drains, and this CPU's own
/// loads see it at once. So a missing barrier between clearing an entry and what must follow
/// it is a missing drain, as it is a missing order on hardware.
#[derive(Clone, Copy)]
pub struct Pte(&'static AtomicU64);

impl Pte {
    /// The descriptor (this CPU's buffered store to it, if any).
    #[inline(always)]
    pub fn load(self, order: Ordering) -> u64 {
        broadside_base::weak::load_u64(self.0, order)
    }

    /// Writes the descriptor (buffered with `weak=on`).
    #[inline(always)]
    pub fn store(self, value: u64, order: Ordering) {
        // SAFETY: a table page outlives this CPU's next drain: a CPU writes descriptors under
        // the lock of the space or object that owns the table, whose release drains, and a
        // table page is freed only through `frame::free_frames`, which drains first.
        unsafe { broadside_base::weak::store_u64(self.0, value, order) }
    }
}

fn alloc_table(space_id: u64, level: u8) -> Option<PhysAddr> {
    if crate::fault_inject::should_fail_table_alloc() {
        return None;
    }
    let pa = frame::alloc_frame(FrameKind::Table)?;
    let m = frame::meta(pa);
    m.owner.store(space_id, Ordering::Relaxed);
    m.level_and_share.store(level as u32, Ordering::Relaxed);
    Some(pa)
}

/// The attributes a user leaf is written with: `attrs` as given, but global (no nG) with
/// `bug=global-user-leaf`, whose entries then survive the ASID flushes of the teardown. Every
/// path that writes a leaf into an address space goes through here.
pub fn user_leaf_attrs(attrs: Attributes) -> Attributes {
    if crate::fault_inject::planted(crate::settings::Bug::GlobalUserLeaf) {
        Attributes {
            not_global: false,
            ..attrs
        }
    } else {
        attrs
    }
}

/// Fills a data page's stamp for `va`.
pub fn stamp_page(pa: PhysAddr, space_id: u64, va: VirtAddr) {
    let w = phys_to_virt(pa).as_mut_ptr::<u64>();
    let generation = frame::meta(pa.align_down(PAGE_SIZE))
        .generation
        .load(Ordering::Relaxed);
    // SAFETY: `pa` is a data frame just allocated to this space and not yet mapped.
    unsafe {
        w.write_volatile(STAMP_MAGIC ^ space_id);
        w.add(1).write_volatile(va.as_u64());
        w.add(2).write_volatile(pa.as_u64());
        w.add(3).write_volatile(generation);
    }
}

/// What a stamp check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampCheck {
    /// The page's own stamp (or its object's): the translation was current.
    Ok,
    /// Poison: the page was freed, so the translation used had outlived its flush.
    Poison,
    /// Another page's stamp: the translation pointed at a reused frame.
    Wrong,
}

/// Checks the stamp words `w[0..2]` read through `va` in space `space_id`. `object` is the owner
/// tag of the shared object mapped there, if any: its frames carry that tag and no VA (they are
/// aliased at many).
pub fn check_stamp(
    w0: u64,
    w1: u64,
    space_id: u64,
    va: VirtAddr,
    object: Option<u64>,
) -> StampCheck {
    if w0 == DATA_POISON || w1 == DATA_POISON {
        StampCheck::Poison
    } else if object.is_some_and(|tag| w0 == STAMP_MAGIC ^ tag)
        || (w0 == STAMP_MAGIC ^ space_id && w1 == va.align_down(PAGE_SIZE).as_u64())
    {
        StampCheck::Ok
    } else {
        StampCheck::Wrong
    }
}

/// Counts that an entry mapping the private data frame `pa` was cleared (or repointed): the
/// frame's unmap count, which the lockless walker compares across its pin. Called right after
/// the store that cleared it, so with `weak=on` the count reaches memory no earlier than the
/// clear.
pub fn note_unmapped(pa: PhysAddr) {
    // SAFETY: frame metadata is a static array: it outlives every drain.
    unsafe { broadside_base::weak::add_u32(&frame::meta(pa).unmaps, 1, Ordering::Release) };
}

/// Poisons each 4 KiB page of a data frame of `order` and returns it to the allocator, once the
/// last reference is gone. Called only after the flush that removed its mappings completed.
pub fn release_data_frame(pa: PhysAddr, order: u32) {
    if !frame::meta(pa).put() {
        return; // a walker still holds it; its put frees it
    }
    // Deterministic runs: let a walker's pin race the free of a frame whose count just fell to
    // zero (`bug=walker-pin-dying` pins it anyway); a walker stalled on this frame runs now.
    broadside_base::hint::yield_point_watched(broadside_base::hint::Site::FreeFrame, pa.as_u64());
    audit::check_free(pa);
    broadside_base::events::mark(broadside_base::events::Kind::Free, pa.as_u64(), 0);
    for i in 0..(1u64 << order) {
        let w = phys_to_virt(pa + i * PAGE_SIZE).as_mut_ptr::<u64>();
        for k in 0..STAMP_WORDS {
            // SAFETY: the frame is unreachable through any translation and unpinned.
            unsafe { w.add(k).write_volatile(DATA_POISON) };
        }
    }
    frame::free_frames(pa, order);
}

/// Poisons a table page and frees it. Called only when no walker (hardware or lockless) can
/// still be inside it.
pub fn free_table_page(pa: PhysAddr) {
    audit::check_free(pa);
    broadside_base::events::mark(broadside_base::events::Kind::Free, pa.as_u64(), 1);
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
            audit_slot: audit::register_space(id, root),
            id,
            root,
            asid: AsidContext::new(),
            cpus_ever: [const { AtomicU64::new(0) }; MAX_CPUS / 64],
            running: [const { AtomicU64::new(0) }; MAX_CPUS / 64],
            active: ActiveGate::new(),
            state: AtomicU8::new(SpaceState::Live as u8),
            lock: broadside_base::hint::Mutex::new(()),
            flush_pending: AtomicU32::new(0),
            batch_owners: [const { AtomicU64::new(0) }; MAX_CPUS / 64],
            objects: broadside_base::hint::Mutex::new(alloc::vec::Vec::new()),
        })
    }

    /// `cpu`'s deferred batch is about to issue a TLBI for this space that it will complete
    /// later. Under `lock`, after the clear and before the TLBI: an unmap that takes the lock
    /// next sees it. `bug=batch-owner-overwritten` keeps one owner, as the slot this replaced
    /// did: the others' bits are dropped.
    pub fn note_batch_pending(&self, cpu: usize) {
        if crate::fault_inject::planted(crate::settings::Bug::BatchOwnerOverwritten) {
            for (w, word) in self.batch_owners.iter().enumerate() {
                let own = if w == cpu / 64 { 1 << (cpu % 64) } else { 0 };
                word.store(own, Ordering::Release);
            }
            return;
        }
        self.batch_owners[cpu / 64].fetch_or(1 << (cpu % 64), Ordering::Release);
    }

    /// `cpu`'s batch completed its TLBIs for this space: it owes an unmap nothing from now on.
    pub fn note_batch_completed(&self, cpu: usize) {
        self.batch_owners[cpu / 64].fetch_and(!(1 << (cpu % 64)), Ordering::AcqRel);
    }

    /// Takes the set of CPUs whose batches hold uncompleted TLBIs for this space (under
    /// `lock`): the caller makes them complete before it returns.
    pub fn take_batch_owners(&self) -> CpuMask {
        CpuMask::from_words(
            self.batch_owners
                .iter()
                .map(|w| w.swap(0, Ordering::AcqRel)),
        )
    }

    /// Where the space is in its life cycle.
    pub fn state(&self) -> SpaceState {
        match self.state.load(Ordering::Acquire) {
            0 => SpaceState::Live,
            1 => SpaceState::Dying,
            _ => SpaceState::Dead,
        }
    }

    /// Whether mappings may still be added (destroy has not begun).
    pub fn is_live(&self) -> bool {
        self.state() == SpaceState::Live
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

    /// Whether this space has ever been loaded into TTBR0 on `cpu`.
    pub fn was_active_on(&self, cpu: usize) -> bool {
        broadside_base::weak::load_u64(&self.cpus_ever[cpu / 64], Ordering::Acquire)
            & (1 << (cpu % 64))
            != 0
    }

    /// Who may hold this space's entries, for the flush-coverage sanitizer: the CPUs it saw
    /// load the space, or — for a space it could not register — the kernel's own record.
    fn audit_owed(&self) -> Owed {
        match self.audit_slot {
            Some(slot) => Owed::Observed(slot),
            None => {
                // The kernel's record is read after a full barrier, the flush's own argument
                // (`mm::tlb`'s `asid_after_table_stores`).
                core::sync::atomic::fence(Ordering::SeqCst);
                let asid = self.asid_number();
                Owed::Recorded {
                    asid,
                    cpus: if asid.is_some() {
                        self.cpus_ever()
                    } else {
                        CpuMask::EMPTY
                    },
                }
            }
        }
    }

    /// Tells the flush-coverage sanitizer (`audit=on`) that `op` just cleared the valid leaf
    /// `old` at `level` translating `va`. Call after the store to the descriptor.
    pub fn audit_clear_leaf(&self, op: OpId, va: VirtAddr, level: u8, old: Descriptor) {
        if !audit::enabled() {
            return;
        }
        if let Some(entry) = Cleared::leaf(va.as_u64(), level, old) {
            self.audit_clear(op, entry);
        }
    }

    /// Tells the sanitizer that `op` cleared the consecutive leaves at `level` from `va` that
    /// mapped `frames` (after the stores; before the flush that covers them). `global`: they
    /// lacked nG.
    ///
    /// `buffered`: the stores may still wait in this CPU's emulated store buffer (`weak=on`).
    pub fn audit_clear_leaves(
        &self,
        op: OpId,
        va: VirtAddr,
        level: u8,
        global: bool,
        frames: &[u64],
        buffered: bool,
    ) {
        if !audit::enabled() {
            return;
        }
        audit::record_leaves(
            &LeafRun {
                op,
                space: self.id,
                owed: self.audit_owed(),
                va: va.as_u64(),
                level,
                global,
                frames,
            },
            buffered,
        );
    }

    /// Tells the sanitizer that `op` just cleared `entry` of this space (after the store).
    pub fn audit_clear(&self, op: OpId, entry: Cleared) {
        if !audit::enabled() {
            return;
        }
        audit::record_clear(&Clear {
            op,
            space: self.id,
            owed: self.audit_owed(),
            entry,
        });
    }

    /// Tells the sanitizer that `op` just unhooked the table `table` at `level` covering `va`
    /// (after the store that cleared its parent's entry). What the table still holds is read
    /// from the table itself, not taken from the caller: a caller that wrongly believes it
    /// empty is what the sanitizer is for.
    pub fn audit_unhook_table(&self, op: OpId, va: VirtAddr, level: u8, table: PhysAddr) {
        if !audit::enabled() {
            return;
        }
        let holds = audit::table_holds(
            (0..512).map(|i| entry(table, i).load(Ordering::Relaxed)),
            level,
        );
        self.audit_clear(
            op,
            Cleared::Table {
                va: va.as_u64(),
                level,
                table: table.as_u64(),
                holds,
            },
        );
    }

    /// Tells the sanitizer that `op` just rewrote the valid leaf at `va` and `level` from `old`
    /// to `new`, both valid (after the store): an upgrade owes nothing, a downgrade must be
    /// flushed, anything else needed break-before-make.
    pub fn audit_change(
        &self,
        op: OpId,
        va: VirtAddr,
        level: u8,
        old: Descriptor,
        new: Descriptor,
    ) {
        if !audit::enabled() {
            return;
        }
        audit::record_change(&Change {
            op,
            space: self.id,
            owed: self.audit_owed(),
            va: va.as_u64(),
            level,
            old,
            new,
        });
    }

    /// Forgets the space's registration with the sanitizer: the end of its teardown, once no
    /// CPU can load it and its last clear is recorded.
    pub(crate) fn audit_unregister(&self) {
        if let Some(slot) = self.audit_slot {
            audit::unregister_space(slot);
        }
    }

    /// The CPUs this space has ever been active on (the kernel's record, which the IPI
    /// shootdown targets; the sanitizer uses it only for a space it could not register).
    pub fn cpus_ever(&self) -> crate::sanitizer::CpuMask {
        CpuMask::from_words(
            self.cpus_ever
                .iter()
                .map(|w| broadside_base::weak::load_u64(w, Ordering::Acquire)),
        )
    }

    /// The CPUs that run this space now (with [`track_running`] on; none otherwise): set before
    /// a CPU's TTBR0 load, and ordered before its walks by the activation's `DSB ISH`; cleared
    /// after it left the space and completed its accesses. A flusher that reads it after its
    /// completing `DSB ISH` finds every CPU that may still have an access through the old
    /// entries outstanding.
    pub fn running_cpus(&self) -> CpuMask {
        CpuMask::from_words(self.running.iter().map(|w| w.load(Ordering::Acquire)))
    }

    /// Whether this space has only ever been active on `cpu` (or nowhere).
    pub fn only_active_on(&self, cpu: usize) -> bool {
        self.cpus_ever.iter().enumerate().all(|(w, bits)| {
            let b = broadside_base::weak::load_u64(bits, Ordering::Acquire);
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
        let cpu = broadside_base::cpu_id();
        if !self.active.try_enter() {
            return false; // destroy has begun
        }
        // SAFETY: the space outlives this CPU's next drain: the caller holds it until it
        // deactivates, and leaving the gate (`deactivate`) drains.
        unsafe {
            broadside_base::weak::or_u64(
                &self.cpus_ever[cpu / 64],
                1 << (cpu % 64),
                Ordering::AcqRel,
            )
        };
        if tracking_running() {
            // A plain atomic, not the emulated store buffer (`weak=on`): the erratum's
            // workaround is not what the weak-memory runs test.
            self.running[cpu / 64].fetch_or(1 << (cpu % 64), Ordering::AcqRel);
        }
        let irq = broadside_base::irq::save_and_mask();
        let sw = asid_allocator().switch_to(cpu, &self.asid);
        if sw.flush_local_tlb
            && !crate::fault_inject::planted(crate::settings::Bug::RolloverSkipFlush)
        {
            tlb::local_flush_all();
        }
        // Publish this CPU (its bit in `cpus_ever`) and the space's ASID before this CPU can
        // walk the tables: a flusher that changes an entry and then finds no ASID, or not this
        // CPU, is then guaranteed that this CPU's walks see the change (`mm::tlb` pairs this
        // with a DMB ISH between its table stores and those loads).
        // Deterministic runs: a stall here, inside the gate with this CPU's entry possibly
        // still buffered (`weak=on`), ends when a destroyer closes the gate: the store-buffer
        // handshake of `sync::gate` then runs with both stores in flight.
        broadside_base::hint::yield_point_until(broadside_base::hint::Site::Activate, 0, || {
            self.active.is_closed()
        });
        if !crate::fault_inject::planted(crate::settings::Bug::ActivateNoDsb) {
            tlb::order_before_walks();
        }
        mmu::set_ttbr0(self.root, sw.asid);
        broadside_base::irq::restore(irq);
        true
    }

    /// Unloads this space from the current CPU (TTBR0 back to the empty table). With erratum
    /// 4193714's workaround on, the CPU then completes its accesses (`DSB ISH`) before it
    /// leaves the space's running set: a flusher that no longer finds it there needs no IPI.
    pub fn deactivate(&self) {
        mmu::set_ttbr0(mmu::empty_table_pa(), 0);
        if tracking_running() {
            let cpu = broadside_base::cpu_id();
            tlb::complete_accesses();
            self.running[cpu / 64].fetch_and(!(1 << (cpu % 64)), Ordering::AcqRel);
        }
        self.active.exit();
    }

    /// Walks to the table at `level` covering `va`, allocating missing tables.
    pub fn table_for(&self, va: VirtAddr, level: u8) -> Option<PhysAddr> {
        let mut table = self.root;
        for l in 0..level {
            let e = entry(table, table_index(va.as_u64(), l));
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
    /// A space whose destroy has begun maps nothing (returns `Some(0)`).
    pub fn map_pages(&self, va: VirtAddr, count: u64, attrs: Attributes) -> Option<u64> {
        if !self.is_live() {
            return Some(0);
        }
        let mut mapped = 0;
        for i in 0..count {
            let v = va + i * PAGE_SIZE;
            let table = self.table_for(v, 3)?;
            let e = entry(table, table_index(v.as_u64(), 3));
            if Descriptor::from_raw(e.load(Ordering::Relaxed)).is_valid() {
                continue;
            }
            let pa = frame::alloc_frame(FrameKind::Data)?;
            frame::meta(pa).owner.store(self.id, Ordering::Relaxed);
            stamp_page(pa, self.id, v);
            // The stamp must be visible before the entry that makes it reachable.
            e.store(
                Descriptor::page(pa, user_leaf_attrs(attrs)).raw(),
                Ordering::Release,
            );
            mapped += 1;
        }
        tlb::begin(tlb::Scope::Broadcast);
        stats::add(Counter::PagesMapped, mapped);
        Some(mapped)
    }

    /// Maps a fresh 2 MiB block at `va` (2 MiB aligned) unless the slot is in use. Returns
    /// whether it mapped. Caller holds `lock`.
    /// A space whose destroy has begun maps nothing (returns `Some(false)`).
    pub fn map_block(&self, va: VirtAddr, attrs: Attributes) -> Option<bool> {
        if !self.is_live() {
            return Some(false);
        }
        let table = self.table_for(va, 2)?;
        let e = entry(table, table_index(va.as_u64(), 2));
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
        e.store(
            Descriptor::block(pa, 2, user_leaf_attrs(attrs)).raw(),
            Ordering::Release,
        );
        tlb::begin(tlb::Scope::Broadcast);
        stats::add(Counter::PagesMapped, 512);
        Some(true)
    }

    /// Whether `table` (a table page reachable from this space) belongs to this space alone.
    /// A shared object's level-2 tables carry the object's owner tag instead: they are torn
    /// down only through unsharing (`shared::unmap_object`), never by a walk over the space.
    pub fn owns_table(&self, table: PhysAddr) -> bool {
        frame::meta(table).owner.load(Ordering::Acquire) == self.id
    }

    /// Calls `f(entry, descriptor, level, entry_va, table)` for each valid leaf that maps part of
    /// `[start, end)`, in address order; stops at the first error.
    pub(crate) fn for_each_leaf<E>(
        &self,
        start: VirtAddr,
        end: VirtAddr,
        mut f: impl FnMut(Pte, Descriptor, u8, VirtAddr, PhysAddr) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut va = start;
        while va < end {
            let mut table = self.root;
            let mut step = PAGE_SIZE;
            for level in 0..=3u8 {
                let e = entry(table, table_index(va.as_u64(), level));
                let d = Descriptor::from_raw(e.load(Ordering::Acquire));
                step = level_block_size(level);
                match d.kind(level) {
                    DescriptorKind::Table { next } => table = next,
                    DescriptorKind::Page { .. } | DescriptorKind::Block { .. } => {
                        f(e, d, level, va.align_down(step), table)?;
                        break;
                    }
                    DescriptorKind::Invalid => break,
                }
            }
            va = va.align_down(step) + step;
        }
        Ok(())
    }

    /// The leaf descriptor and level mapping `va`, if any. Safe without the lock: it reads the
    /// tables with IRQs masked, an RCU read-side section like the lockless walker's.
    pub fn lookup(&self, va: VirtAddr) -> Option<(Descriptor, u8)> {
        let irq = broadside_base::irq::save_and_mask();
        let found = if self.is_dead() {
            None
        } else {
            self.lookup_in_tables(va)
        };
        broadside_base::irq::restore(irq);
        found
    }

    fn lookup_in_tables(&self, va: VirtAddr) -> Option<(Descriptor, u8)> {
        let mut table = self.root;
        for level in 0..=3u8 {
            let d = Descriptor::from_raw(
                entry(table, table_index(va.as_u64(), level)).load(Ordering::Acquire),
            );
            match d.kind(level) {
                DescriptorKind::Table { next } => table = next,
                DescriptorKind::Invalid => return None,
                _ => return Some((d, level)),
            }
        }
        None
    }

    /// Marks the space dying and waits until no CPU has it loaded. From here on nothing can be
    /// mapped into it: the state changes under the space lock, which every mapping path holds
    /// while it checks the state and installs entries, so a mapper either finished before this
    /// or sees Dying and refuses.
    ///
    /// Activation is refused from the same point: the gate closes, and its fenced handshake
    /// guarantees that a CPU either is counted in `drained()` or sees the gate closed.
    pub fn begin_destroy(&self) {
        {
            let _guard = self.lock.lock();
            self.state.store(SpaceState::Dying as u8, Ordering::Release);
            self.active.close();
        }
        while !self.active.drained() {
            broadside_sync::wait::wait_relax();
        }
        // From here the teardown acts on "nobody is inside": a CPU that leaves the gate after
        // this was inside all along (`gate_breach_detected`).
        self.active.seal();
    }

    /// Marks the space Dead (the teardown in `crate::exit_mmap`, with the space lock held, once
    /// every table but the root is unhooked).
    pub(crate) fn mark_dead(&self) {
        self.state.store(SpaceState::Dead as u8, Ordering::Release);
    }
}

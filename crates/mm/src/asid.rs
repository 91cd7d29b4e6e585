//! ASID allocation without IPIs, in the manner of Linux's `arch/arm64/mm/context.c`.
//!
//! An ASID tags the TLB entries (and walk-cache entries) that a CPU creates for the address
//! space currently in `TTBR0_EL1`, so switching address spaces needs no TLB flush. There are
//! only `2^asid_bits` of them (8 or 16 bits, `ID_AA64MMFR0_EL1.ASIDBits`), and broadside never
//! frees one when an address space dies. Instead, as in Linux, ASIDs are handed out in
//! *generations*: when the current generation runs out, the allocator starts a new one
//! (`flush_context`), and every CPU flushes its own TLB (`TLBI VMALLE1`) at its next switch.
//! No CPU is interrupted: a CPU that is running an address space at the rollover keeps
//! running it, because that space's ASID is *reserved* into the new generation.
//!
//! # Encoding
//! An [`AsidContext`] holds `generation << 16 | asid` (Linux's `mm->context.id`), 0 meaning
//! "never allocated". Generations start at 1, so no valid id is 0, and the shift is 16 for
//! every width because no ASID is wider than 16 bits. ASID 0 is never handed out: the kernel's
//! "no address space" `TTBR0_EL1` uses it (Linux's reserved TTBR0 for `init_mm`).
//!
//! # Invariants
//! 1. Two address spaces that may be live at the same time in TLBs never share an ASID within
//!    a generation: the `in_use` bitmap hands each number out once per generation, and a number
//!    is only reused across generations after every CPU has been told to flush.
//! 2. A CPU never runs an ASID of a newer generation without having done its pending local
//!    flush: a rollover sets every CPU's `flush_pending` and zeroes its `active` slot, so the
//!    CPU's next switch cannot take the lock-free path and reports the flush to its caller.
//! 3. The ASID of a space running on some CPU at a rollover is kept (reserved) into the new
//!    generation, so that CPU keeps running it without a flush of its own and without anyone
//!    else being given the same number.
//!
//! # Linux correspondence
//! [`AsidAllocator::switch_to`] is `check_and_switch_context`; the private `new_context`,
//! `roll_over` and `renew_if_reserved` are Linux's `new_context`, `flush_context` and
//! `check_update_reserved_asid`. Pinned ASIDs (SVA) and KPTI's even/odd pairs are left out.
//!
//! One deliberate difference: the lock-free path loads the context id with `Acquire`, and the
//! slow path stores it with `Release` (Linux uses plain accesses). Seeing a new-generation id
//! must imply seeing the rollover's `swap(0)` of this CPU's `active` slot, so the `cmpxchg`
//! fails and the CPU takes the lock and its pending flush. In the Rust memory model nothing
//! else orders that swap before a relaxed store of the id. (loom cannot exhibit the relaxed
//! failure: it needs a load to read from a store that executes later, which loom does not
//! model; the ordering rests on this argument, the loom test checks the rest of the protocol.)
//!
//! Sits on nothing in this crate: portable, unit-, property- and loom-tested on the host.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};

/// Bits below the generation in a context id; ASIDs are at most 16 bits wide.
const GENERATION_SHIFT: u32 = 16;
const ASID_MASK: u64 = (1 << GENERATION_SHIFT) - 1;

/// The ASID the kernel's empty `TTBR0_EL1` uses; never given to an address space.
const KERNEL_ASID: usize = 0;

fn make_id(generation: u64, asid: usize) -> u64 {
    (generation << GENERATION_SHIFT) | asid as u64
}

fn asid_in(id: u64) -> usize {
    (id & ASID_MASK) as usize
}

/// The per-address-space ASID state (Linux's `mm->context.id`).
///
/// Written only by the allocator, under its lock; read lock-free by the fast path and by TLB
/// maintenance code through [`AsidAllocator::asid_of`].
#[derive(Debug)]
pub struct AsidContext(AtomicU64);

impl AsidContext {
    /// A context that has never been given an ASID.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// A context that has never been given an ASID (loom atomics have no `const fn new`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self(AtomicU64::new(0))
    }
}

impl Default for AsidContext {
    fn default() -> Self {
        Self::new()
    }
}

/// What the caller of [`AsidAllocator::switch_to`] must do before writing `TTBR0_EL1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchResult {
    /// The ASID to put in `TTBR0_EL1[63:48]`; never 0.
    pub asid: u16,
    /// A rollover happened since this CPU last switched: it must complete a local
    /// `TLBI VMALLE1` (then `DSB NSH`) before it writes `TTBR0_EL1` with `asid`.
    pub flush_local_tlb: bool,
}

/// One CPU's active context id, alone in its cache line: every context switch on that CPU
/// writes it, and other CPUs only touch it at a rollover.
#[repr(align(64))]
struct ActiveSlot(AtomicU64);

/// State that only changes under the allocator's lock.
struct SlowPath {
    /// ASIDs taken in the current generation, one bit each; bit 0 (the kernel's) always set.
    in_use: Vec<u64>,
    /// Per CPU: the context id that CPU was running at the last rollover and has not switched
    /// away from since (Linux's `reserved_asids`); 0 if none.
    reserved: Vec<u64>,
    /// Per CPU: a rollover happened and that CPU has not flushed its TLB since.
    flush_pending: Vec<bool>,
    /// Where the next search for a free ASID starts. Every ASID below it is taken in the
    /// current generation, because fresh ASIDs are handed out in increasing order from 1 after
    /// each rollover, so the search never has to wrap (Linux's `cur_idx`).
    next_search: usize,
}

#[cfg(not(loom))]
type SlowPathLock = broadside_base::hint::Mutex<SlowPath>;
#[cfg(loom)]
type SlowPathLock = loom::sync::Mutex<SlowPath>;

/// The system-wide ASID allocator: one per kernel, shared by all CPUs.
pub struct AsidAllocator {
    asid_count: usize,
    /// The current generation, starting at 1; changes only under `slow`.
    generation: AtomicU64,
    /// Per CPU: the context id it last switched to, or 0 after a rollover until its next
    /// switch (Linux's `active_asids`). Only the owning CPU writes a non-zero value.
    active: Box<[ActiveSlot]>,
    slow: SlowPathLock,
    /// Told of each rollover (the flush-coverage sanitizer): see [`RolloverObserver`].
    rollover_observer: Option<RolloverObserver>,
}

/// Called under the allocator's lock at each rollover with `kept(cpu)`: the ASID that CPU
/// keeps running unflushed into the new generation, `None` if none. Every other ASID's entries
/// on that CPU are unusable until its pending local flush.
pub type RolloverObserver = fn(kept: &dyn Fn(usize) -> Option<u16>);

impl AsidAllocator {
    /// An allocator for `asid_bits`-wide ASIDs shared by CPUs `0..ncpus`.
    ///
    /// # Panics
    /// If `asid_bits` is outside `2..=16`, `ncpus` is 0, or `2^asid_bits - 1 <= ncpus`: after a
    /// rollover every CPU may keep one ASID, and at least one more must be free for the switch
    /// that caused the rollover (Linux warns about the same bound in `asids_update_limit`).
    pub fn new(asid_bits: u32, ncpus: usize) -> Self {
        assert!(
            (2..=16).contains(&asid_bits),
            "asid: asid_bits={asid_bits}: expected 2..=16"
        );
        assert!(ncpus > 0, "asid: ncpus must be at least 1");
        let asid_count = 1usize << asid_bits;
        assert!(
            asid_count - 1 > ncpus,
            "asid: {asid_bits}-bit ASIDs give {} user ASIDs, need more than ncpus={ncpus}",
            asid_count - 1
        );
        let mut in_use = vec![0u64; asid_count.div_ceil(64)];
        in_use[0] = 1 << KERNEL_ASID;
        Self {
            asid_count,
            generation: AtomicU64::new(1),
            active: (0..ncpus).map(|_| ActiveSlot(AtomicU64::new(0))).collect(),
            slow: SlowPathLock::new(SlowPath {
                in_use,
                reserved: vec![0; ncpus],
                flush_pending: vec![false; ncpus],
                next_search: 1,
            }),
            rollover_observer: None,
        }
    }

    /// The allocator, telling `observer` of every rollover.
    pub fn with_rollover_observer(self, observer: RolloverObserver) -> Self {
        Self {
            rollover_observer: Some(observer),
            ..self
        }
    }

    /// Gives `ctx` an ASID valid on `cpu` in the current generation (Linux's
    /// `check_and_switch_context`).
    ///
    /// Call it on CPU `cpu`, with IRQs masked, right before writing `TTBR0_EL1`; if the result
    /// says so, complete a local TLB flush before that write. IRQs must stay masked until the
    /// write, so that no other switch on this CPU runs in between. Unlike Linux, the flush
    /// happens after the allocator's lock is dropped: until the `TTBR0_EL1` write this CPU
    /// still runs its previous ASID, which a rollover in between reserves (queuing another
    /// flush), and the entries such a flush must remove all predate the write.
    ///
    /// # Panics
    /// If `cpu >= ncpus`.
    pub fn switch_to(&self, cpu: usize, ctx: &AsidContext) -> SwitchResult {
        let slot = &self.active[cpu].0;

        // Lock-free path: the context is current and this CPU's slot was not zeroed by a
        // rollover. The cmpxchg and the rollover's swap are RMWs of one location, so they are
        // totally ordered: either the rollover sees our new id and reserves it, or our cmpxchg
        // sees its 0 and fails, sending us to the lock (and to the pending flush).
        let id = ctx.0.load(Ordering::Acquire);
        let old_active = slot.load(Ordering::Relaxed);
        if old_active != 0
            && self.is_current(id)
            && slot
                .compare_exchange(old_active, id, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return SwitchResult {
                asid: asid_in(id) as u16,
                flush_local_tlb: false,
            };
        }

        let mut slow = self.lock_slow_path();
        // All writers of context ids hold the lock, so this load sees the latest one.
        let mut id = ctx.0.load(Ordering::Relaxed);
        if !self.is_current(id) {
            id = self.new_context(&mut slow, id);
            ctx.0.store(id, Ordering::Release);
        }
        let flush_local_tlb = core::mem::replace(&mut slow.flush_pending[cpu], false);
        slot.store(id, Ordering::Relaxed);
        drop(slow);

        SwitchResult {
            asid: asid_in(id) as u16,
            flush_local_tlb,
        }
    }

    /// Starts a new generation now, as running out of ASIDs would (`flush_context`, which Linux
    /// reaches only from `new_context`): every CPU then flushes at its next switch, and keeps
    /// the ASID it runs. For the self-test and the stress prologue, which script a rollover
    /// rather than wait for thousands of address spaces (or `asid_bits=`).
    pub fn force_rollover(&self) {
        let mut slow = self.lock_slow_path();
        self.roll_over(&mut slow);
    }

    /// The current generation; 1 until the first rollover.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// How many times the ASID space has rolled over.
    pub fn rollovers(&self) -> u64 {
        self.generation() - 1
    }

    /// The ASID number `ctx` last received, whatever its generation, or `None` if it never
    /// ran. TLB maintenance for a space must use this number even when its generation is old:
    /// a CPU may still be running the space under that ASID, reserved at a rollover.
    pub fn asid_of(ctx: &AsidContext) -> Option<u16> {
        match ctx.0.load(Ordering::Relaxed) {
            0 => None,
            id => Some(asid_in(id) as u16),
        }
    }

    /// For diagnostics: the ASID `cpu` last switched to, or 0 when a rollover happened since
    /// (the CPU then still runs the ASID reserved for it, and flushes at its next switch).
    ///
    /// # Panics
    /// If `cpu >= ncpus`.
    pub fn active_asid(&self, cpu: usize) -> u16 {
        asid_in(self.active[cpu].0.load(Ordering::Relaxed)) as u16
    }

    fn is_current(&self, id: u64) -> bool {
        id >> GENERATION_SHIFT == self.generation.load(Ordering::Relaxed)
    }

    /// A current-generation id for a context whose id `old_id` is stale or 0 (Linux's
    /// `new_context`): keep the old number if it was reserved at a rollover or is still free,
    /// else take a fresh one, rolling over if there is none.
    fn new_context(&self, slow: &mut SlowPath, old_id: u64) -> u64 {
        let mut generation = self.generation.load(Ordering::Relaxed);
        if old_id != 0 {
            let old_asid = asid_in(old_id);
            let renewed = make_id(generation, old_asid);
            if Self::renew_if_reserved(slow, old_id, renewed) {
                return renewed;
            }
            // Keeping the number saves nothing in the TLBs (every CPU flushes after a
            // rollover) but keeps a space's ASID stable, as Linux does.
            if !test_and_set(&mut slow.in_use, old_asid) {
                return renewed;
            }
        }

        let asid = match find_free(&slow.in_use, slow.next_search, self.asid_count) {
            Some(asid) => asid,
            None => {
                generation = self.roll_over(slow);
                find_free(&slow.in_use, 1, self.asid_count)
                    .expect("asid: no ASID free after a rollover although ncpus < ASIDs - 1")
            }
        };
        test_and_set(&mut slow.in_use, asid);
        slow.next_search = asid;
        make_id(generation, asid)
    }

    /// If `old_id` is reserved by some CPU, rewrites every such reservation to `renewed`
    /// (Linux's `check_update_reserved_asid`). Every copy must be rewritten, not only the
    /// first: a CPU that keeps its reservation across the next rollover would otherwise hold
    /// an id the context no longer has, and that rollover would fail to protect the number the
    /// CPU is still running.
    fn renew_if_reserved(slow: &mut SlowPath, old_id: u64, renewed: u64) -> bool {
        let mut hit = false;
        for reserved in slow
            .reserved
            .iter_mut()
            .filter(|reserved| **reserved == old_id)
        {
            *reserved = renewed;
            hit = true;
        }
        hit
    }

    /// Starts a new generation (Linux's `flush_context`) and returns it: empties the bitmap
    /// except for the ASIDs CPUs are running, and queues a local TLB flush on every CPU.
    fn roll_over(&self, slow: &mut SlowPath) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        slow.in_use.fill(0);
        slow.in_use[0] = 1 << KERNEL_ASID;
        for (slot, reserved) in self.active.iter().zip(slow.reserved.iter_mut()) {
            let running = slot.0.swap(0, Ordering::Relaxed);
            // 0 means this CPU has not switched since the previous rollover: it still runs
            // what it had reserved then, and that reservation is the only record of it.
            if running != 0 {
                *reserved = running;
            }
            let kept = asid_in(*reserved);
            slow.in_use[kept / 64] |= 1 << (kept % 64);
        }
        slow.flush_pending.fill(true);
        slow.next_search = 1;
        if let Some(observe) = self.rollover_observer {
            let reserved = &slow.reserved;
            observe(&|cpu| {
                let kept = asid_in(reserved[cpu]);
                (kept != KERNEL_ASID).then_some(kept as u16)
            });
        }
        generation
    }

    #[cfg(not(loom))]
    fn lock_slow_path(&self) -> broadside_base::hint::MutexGuard<'_, SlowPath> {
        self.slow.lock()
    }

    #[cfg(loom)]
    fn lock_slow_path(&self) -> loom::sync::MutexGuard<'_, SlowPath> {
        self.slow.lock().expect("asid: slow-path lock poisoned")
    }
}

/// Sets bit `index`; returns whether it was already set.
fn test_and_set(map: &mut [u64], index: usize) -> bool {
    let word = &mut map[index / 64];
    let bit = 1u64 << (index % 64);
    let was_set = *word & bit != 0;
    *word |= bit;
    was_set
}

/// The lowest clear bit in `from..limit`.
fn find_free(map: &[u64], from: usize, limit: usize) -> Option<usize> {
    let mut index = from;
    while index < limit {
        let free = !map[index / 64] >> (index % 64);
        if free != 0 {
            let found = index + free.trailing_zeros() as usize;
            return (found < limit).then_some(found);
        }
        index = (index / 64 + 1) * 64;
    }
    None
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn generation_of(ctx: &AsidContext) -> u64 {
        ctx.0.load(Ordering::Relaxed) >> GENERATION_SHIFT
    }

    fn switch(alloc: &AsidAllocator, cpu: usize, ctx: &AsidContext) -> (u16, bool) {
        let result = alloc.switch_to(cpu, ctx);
        (result.asid, result.flush_local_tlb)
    }

    #[test]
    fn first_generation_hands_out_every_asid_once_then_rolls_over_keeping_running_ones() {
        const CPUS: usize = 4;
        let alloc = AsidAllocator::new(4, CPUS);
        let spaces: Vec<AsidContext> = (0..17).map(|_| AsidContext::new()).collect();

        // Space i on CPU i % 4 gets ASID i + 1: fresh ASIDs are handed out in order, 0 never.
        for (i, space) in spaces.iter().take(15).enumerate() {
            assert_eq!(switch(&alloc, i % CPUS, space), (i as u16 + 1, false));
            assert_eq!(alloc.active_asid(i % CPUS), i as u16 + 1);
        }
        assert_eq!(alloc.rollovers(), 0);
        assert_eq!(alloc.generation(), 1);
        // Running at this point: CPU0 space 12 (ASID 13), CPU1 space 13 (14), CPU2 space 14
        // (15), CPU3 space 11 (12).

        // Space 15 finds the bitmap full: rollover. The reserved ASIDs are 12..=15, so it gets
        // the lowest free one, 1, and CPU0 is told to flush.
        assert_eq!(switch(&alloc, 0, &spaces[15]), (1, true));
        assert_eq!(alloc.rollovers(), 1);
        assert_eq!(alloc.generation(), 2);
        assert_eq!(generation_of(&spaces[15]), 2);
        // The other CPUs' slots were zeroed by the rollover until they switch.
        assert_eq!([1, 2, 3].map(|cpu| alloc.active_asid(cpu)), [0, 0, 0]);

        // Each other CPU switching back to what it was running keeps the number in the new
        // generation, and flushes exactly once.
        for (cpu, space, asid) in [(1, 13, 14), (2, 14, 15), (3, 11, 12)] {
            assert_eq!(generation_of(&spaces[space]), 1);
            assert_eq!(switch(&alloc, cpu, &spaces[space]), (asid, true));
            assert_eq!(generation_of(&spaces[space]), 2);
        }
        // Space 12 stopped running on CPU0 after the rollover, but its ASID is still reserved
        // for this generation, so it keeps it; nobody flushes a second time.
        assert_eq!(switch(&alloc, 1, &spaces[12]), (13, false));
        // A space that was not running at the rollover gets the next fresh ASID.
        assert_eq!(switch(&alloc, 2, &spaces[0]), (2, false));
        for cpu in 0..CPUS {
            assert!(
                !switch(&alloc, cpu, &spaces[16]).1,
                "cpu {cpu} flushed twice"
            );
        }
        assert_eq!(AsidAllocator::asid_of(&spaces[16]), Some(3));
        assert_eq!(alloc.rollovers(), 1);

        // Within generation 2 the ASIDs handed out so far are distinct.
        let mut seen = HashMap::new();
        for (i, space) in spaces.iter().enumerate() {
            if generation_of(space) == 2 {
                let asid = AsidAllocator::asid_of(space).unwrap();
                assert_ne!(asid, 0);
                assert_eq!(seen.insert(asid, i), None, "ASID {asid} given twice");
            }
        }
        assert_eq!(seen.len(), 7);
    }

    #[test]
    fn the_rollover_observer_learns_which_asid_each_cpu_keeps() {
        static SEEN: std::sync::Mutex<Vec<Vec<Option<u16>>>> = std::sync::Mutex::new(Vec::new());
        fn observe(kept: &dyn Fn(usize) -> Option<u16>) {
            SEEN.lock().unwrap().push((0..3).map(kept).collect());
        }
        // 3 bits: ASIDs 1..=7. CPU0 runs 1..=5 in turn, CPU1 runs 6, CPU2 nothing.
        let alloc = AsidAllocator::new(3, 3).with_rollover_observer(observe);
        let spaces: Vec<AsidContext> = (0..8).map(|_| AsidContext::new()).collect();
        for space in &spaces[..5] {
            switch(&alloc, 0, space);
        }
        switch(&alloc, 1, &spaces[5]);
        switch(&alloc, 0, &spaces[6]);
        assert!(SEEN.lock().unwrap().is_empty(), "no rollover yet");
        // The eighth space finds 1..=7 taken: CPU0 keeps 7 (space 6), CPU1 keeps 6.
        switch(&alloc, 0, &spaces[7]);
        assert_eq!(alloc.rollovers(), 1);
        assert_eq!(*SEEN.lock().unwrap(), [vec![Some(7), Some(6), None]]);
    }

    #[test]
    fn a_forced_rollover_is_a_rollover() {
        let alloc = AsidAllocator::new(8, 2);
        let a = AsidContext::new();
        assert_eq!(switch(&alloc, 0, &a), (1, false));
        alloc.force_rollover();
        assert_eq!(alloc.rollovers(), 1);
        // CPU 0 kept ASID 1 and flushes at its next switch; CPU 1 too.
        assert_eq!(switch(&alloc, 0, &a), (1, true));
        assert_eq!(switch(&alloc, 1, &a), (1, true));
        assert_eq!(switch(&alloc, 1, &a), (1, false));
    }

    #[test]
    fn a_stale_space_reuses_its_old_asid_when_still_free() {
        let alloc = AsidAllocator::new(2, 1);
        let [a, b, c, d] = [(); 4].map(|()| AsidContext::new());
        assert_eq!(switch(&alloc, 0, &a), (1, false));
        assert_eq!(switch(&alloc, 0, &b), (2, false));
        assert_eq!(switch(&alloc, 0, &c), (3, false));
        // Rollover keeps c's 3 (running); d takes 1.
        assert_eq!(switch(&alloc, 0, &d), (1, true));
        // b's old 2 is still free in generation 2, so b keeps it.
        assert_eq!(switch(&alloc, 0, &b), (2, false));
        // a's old 1 now belongs to d, and nothing is free: rollover (reserving b's 2), a gets 1.
        assert_eq!(switch(&alloc, 0, &a), (1, true));
        assert_eq!(alloc.rollovers(), 2);
        assert_eq!(AsidAllocator::asid_of(&d), Some(1));
        assert_eq!(generation_of(&d), 2);
    }

    #[test]
    fn repeated_switches_without_rollover_keep_the_asid_and_never_flush() {
        let alloc = AsidAllocator::new(8, 2);
        let [a, b] = [(); 2].map(|()| AsidContext::new());
        assert_eq!(AsidAllocator::asid_of(&a), None);
        for _ in 0..3 {
            assert_eq!(switch(&alloc, 0, &a), (1, false));
            assert_eq!(switch(&alloc, 1, &a), (1, false));
            assert_eq!(switch(&alloc, 0, &b), (2, false));
        }
        assert_eq!(alloc.rollovers(), 0);
    }

    #[test]
    #[should_panic(expected = "need more than ncpus=3")]
    fn rejects_fewer_asids_than_a_rollover_needs() {
        AsidAllocator::new(2, 3);
    }

    #[test]
    #[should_panic(expected = "asid_bits=17")]
    fn rejects_asids_wider_than_16_bits() {
        AsidAllocator::new(17, 1);
    }

    #[test]
    fn find_free_respects_start_and_limit() {
        let mut map = vec![0u64; 2];
        assert_eq!(find_free(&map, 0, 128), Some(0));
        map[0] = u64::MAX;
        assert_eq!(find_free(&map, 3, 128), Some(64));
        map[1] = !(1 << 63);
        assert_eq!(find_free(&map, 65, 128), Some(127));
        assert_eq!(find_free(&map, 65, 127), None);
        assert!(!test_and_set(&mut map, 127));
        assert!(test_and_set(&mut map, 127));
        assert_eq!(find_free(&map, 0, 128), None);
        assert_eq!(find_free(&[0b0111], 1, 4), Some(3));
        assert_eq!(find_free(&[0b1111], 1, 4), None);
    }

    /// A sequential model of the machine around the allocator. Each CPU's TLB is a map from
    /// ASID to the space whose entries it holds, emptied when the CPU is told to flush.
    struct Checker {
        asid_count: u16,
        running: Vec<Option<(usize, u16)>>,
        tlb: Vec<HashMap<u16, usize>>,
        flush_pending: Vec<bool>,
        /// Spaces running at the last rollover, with the ASID they must keep (invariant 3).
        kept: HashMap<usize, u16>,
        rollovers: u64,
    }

    impl Checker {
        fn new(asid_bits: u32, cpus: usize) -> Self {
            Self {
                asid_count: 1 << asid_bits,
                running: vec![None; cpus],
                tlb: vec![HashMap::new(); cpus],
                flush_pending: vec![false; cpus],
                kept: HashMap::new(),
                rollovers: 0,
            }
        }

        fn step(
            &mut self,
            alloc: &AsidAllocator,
            spaces: &[AsidContext],
            cpu: usize,
            space: usize,
        ) {
            let result = alloc.switch_to(cpu, &spaces[space]);
            let asid = result.asid;
            assert!(
                asid != 0 && asid < self.asid_count,
                "ASID {asid} out of range"
            );
            assert_eq!(AsidAllocator::asid_of(&spaces[space]), Some(asid));

            if alloc.rollovers() != self.rollovers {
                assert_eq!(
                    alloc.rollovers(),
                    self.rollovers + 1,
                    "two rollovers in one switch"
                );
                self.rollovers += 1;
                self.flush_pending.fill(true);
                self.kept = self.running.iter().flatten().copied().collect();
            }
            assert_eq!(alloc.generation(), self.rollovers + 1);
            // Invariant 3: a space running at the rollover keeps its number all generation.
            if let Some(&kept) = self.kept.get(&space) {
                assert_eq!(asid, kept, "space {space} lost its reserved ASID");
            }
            // A CPU is told to flush exactly once per rollover it has not yet flushed for.
            assert_eq!(
                result.flush_local_tlb, self.flush_pending[cpu],
                "cpu {cpu} flush"
            );
            self.flush_pending[cpu] = false;

            // Invariant 2: no TLB ever holds two spaces' entries under one ASID.
            if result.flush_local_tlb {
                self.tlb[cpu].clear();
            }
            if let Some(previous) = self.tlb[cpu].insert(asid, space) {
                assert_eq!(
                    previous, space,
                    "cpu {cpu} reuses ASID {asid} without a flush"
                );
            }

            // Invariant 1: CPUs running the same ASID run the same space.
            self.running[cpu] = Some((space, asid));
            for (other, running) in self.running.iter().enumerate() {
                if let Some((other_space, other_asid)) = *running {
                    assert!(
                        other_asid != asid || other_space == space,
                        "cpus {cpu} and {other} run spaces {space} and {other_space} as ASID {asid}"
                    );
                }
            }

            // ASIDs are unique among the spaces of the current generation.
            let mut owners = HashMap::new();
            for (i, ctx) in spaces.iter().enumerate() {
                if generation_of(ctx) == alloc.generation() {
                    let asid = AsidAllocator::asid_of(ctx).unwrap();
                    assert_eq!(owners.insert(asid, i), None, "ASID {asid} given twice");
                }
            }
        }
    }

    fn scenario() -> impl Strategy<Value = (u32, usize, usize, Vec<(usize, usize)>)> {
        (2u32..=5)
            .prop_flat_map(|bits| (Just(bits), 1usize..=4.min((1 << bits) - 2)))
            .prop_flat_map(|(bits, cpus)| {
                let spaces = 1usize..=(1 << bits) * 2;
                (Just(bits), Just(cpus), spaces)
            })
            .prop_flat_map(|(bits, cpus, spaces)| {
                let ops = proptest::collection::vec((0..cpus, 0..spaces), 1..300);
                (Just(bits), Just(cpus), Just(spaces), ops)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn random_switches_keep_the_invariants((bits, cpus, nspaces, ops) in scenario()) {
            let alloc = AsidAllocator::new(bits, cpus);
            let spaces: Vec<AsidContext> = (0..nspaces).map(|_| AsidContext::new()).collect();
            let mut checker = Checker::new(bits, cpus);
            for (cpu, space) in ops {
                checker.step(&alloc, &spaces, cpu, space);
            }
        }
    }

    /// Slot value meaning "this CPU is between switches".
    const SWITCHING: u64 = 0;

    fn running_slot(space: usize, asid: u16) -> u64 {
        ((space as u64 + 1) << 16) | u64::from(asid)
    }

    #[test]
    fn concurrent_switches_on_four_cpus_keep_invariants_1_and_2() {
        const CPUS: usize = 4;
        const SPACES: usize = 12;
        const SWITCHES: usize = 20_000;
        let alloc = Arc::new(AsidAllocator::new(3, CPUS));
        let spaces: Arc<Vec<AsidContext>> =
            Arc::new((0..SPACES).map(|_| AsidContext::new()).collect());
        // Each CPU publishes what it runs, clearing it before a switch starts: with SeqCst, of
        // two CPUs that publish, the later one sees the other's entry.
        let running: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new(
            (0..CPUS)
                .map(|_| std::sync::atomic::AtomicU64::new(SWITCHING))
                .collect(),
        );

        let threads: Vec<_> = (0..CPUS)
            .map(|cpu| {
                let (alloc, spaces, running) = (alloc.clone(), spaces.clone(), running.clone());
                std::thread::spawn(move || {
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (cpu as u64 + 1);
                    let mut tlb: HashMap<u16, usize> = HashMap::new();
                    let mut flushes = 0u64;
                    for _ in 0..SWITCHES {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let space = (rng % SPACES as u64) as usize;
                        running[cpu].store(SWITCHING, std::sync::atomic::Ordering::SeqCst);
                        let result = alloc.switch_to(cpu, &spaces[space]);
                        assert!((1..8).contains(&result.asid));
                        if result.flush_local_tlb {
                            tlb.clear();
                            flushes += 1;
                        }
                        if let Some(previous) = tlb.insert(result.asid, space) {
                            assert_eq!(previous, space, "cpu {cpu}: ASID reused without flush");
                        }
                        running[cpu].store(
                            running_slot(space, result.asid),
                            std::sync::atomic::Ordering::SeqCst,
                        );
                        for (other, slot) in running.iter().enumerate() {
                            let seen = slot.load(std::sync::atomic::Ordering::SeqCst);
                            assert!(
                                other == cpu
                                    || seen == SWITCHING
                                    || seen & ASID_MASK != u64::from(result.asid)
                                    || seen == running_slot(space, result.asid),
                                "cpus {cpu} and {other} share ASID {} across spaces",
                                result.asid
                            );
                        }
                    }
                    flushes
                })
            })
            .collect();
        let flushes: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let rollovers = alloc.rollovers();
        assert!(
            rollovers > 100,
            "only {rollovers} rollovers: the test lost its teeth"
        );
        // One flush per rollover a CPU saw before its next switch; back-to-back rollovers
        // between two switches of a CPU fold into one flush.
        for (cpu, &count) in flushes.iter().enumerate() {
            assert!(
                count >= 1 && count <= rollovers,
                "cpu {cpu}: {count} flushes, {rollovers} rollovers"
            );
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicU64 as LoomU64;
    use std::collections::HashMap;

    const SWITCHING: u64 = 0;

    /// One CPU of the model, with its TLB as a map from ASID to the space it holds entries for.
    struct Cpu {
        id: usize,
        tlb: HashMap<u16, usize>,
    }

    impl Cpu {
        /// Switches to `space`, publishes it, and checks that no other CPU that has finished
        /// its switch runs a different space under the same ASID (invariant 1), and that this
        /// CPU's TLB never holds two spaces under one ASID (invariant 2).
        fn switch(
            &mut self,
            alloc: &AsidAllocator,
            spaces: &[AsidContext],
            running: &[LoomU64],
            space: usize,
        ) {
            running[self.id].store(SWITCHING, Ordering::SeqCst);
            let result = alloc.switch_to(self.id, &spaces[space]);
            assert!((1..4).contains(&result.asid));
            if result.flush_local_tlb {
                self.tlb.clear();
            }
            if let Some(previous) = self.tlb.insert(result.asid, space) {
                assert_eq!(
                    previous, space,
                    "cpu {}: ASID {} reused without flush",
                    self.id, result.asid
                );
            }
            let mine = ((space as u64 + 1) << 16) | u64::from(result.asid);
            running[self.id].store(mine, Ordering::SeqCst);
            let theirs = running[1 - self.id].load(Ordering::SeqCst);
            assert!(
                theirs == SWITCHING || theirs & ASID_MASK != mine & ASID_MASK || theirs == mine,
                "cpu {} runs {mine:#x}, the other cpu {theirs:#x}",
                self.id
            );
        }
    }

    #[test]
    fn two_cpus_switching_across_a_rollover_keep_invariants_1_and_2() {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(|| {
            let alloc = Arc::new(AsidAllocator::new(2, 2));
            let spaces: Arc<Vec<AsidContext>> =
                Arc::new((0..5).map(|_| AsidContext::new()).collect());
            let running: Arc<Vec<LoomU64>> =
                Arc::new((0..2).map(|_| LoomU64::new(SWITCHING)).collect());
            let mut cpu0 = Cpu {
                id: 0,
                tlb: HashMap::new(),
            };
            let mut cpu1 = Cpu {
                id: 1,
                tlb: HashMap::new(),
            };
            // Fill generation 1: CPU1 ran space 0 (ASID 1) and runs space 1 (ASID 2); CPU0
            // runs space 2 (ASID 3).
            cpu1.switch(&alloc, &spaces, &running, 0);
            cpu1.switch(&alloc, &spaces, &running, 1);
            cpu0.switch(&alloc, &spaces, &running, 2);

            let thread1 = {
                let (alloc, spaces, running) = (alloc.clone(), spaces.clone(), running.clone());
                loom::thread::spawn(move || {
                    // Space 4 gets ASID 1, space 0's old number, in CPU0's rollover: if CPU1
                    // saw the new id but missed the rollover, its TLB would mix spaces 0 and 4.
                    cpu1.switch(&alloc, &spaces, &running, 4);
                    cpu1.switch(&alloc, &spaces, &running, 3);
                })
            };
            // Space 4 forces a rollover; space 0 then needs a fresh ASID too.
            cpu0.switch(&alloc, &spaces, &running, 4);
            cpu0.switch(&alloc, &spaces, &running, 0);
            thread1.join().unwrap();
            assert!(alloc.rollovers() >= 1);
        });
    }
}

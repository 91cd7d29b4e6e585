//! TLB maintenance: the only module that issues TLBI instructions and the barriers that order
//! and complete them (Arm ARM D8.13, "TLB maintenance"; Linux arch/arm64/include/asm/tlbflush.h).
//!
//! The sequence for a change other CPUs may have cached:
//! `DSB ISHST` (the page-table write reaches the inner-shareable domain before any walker can be
//! told to re-walk) → `TLBI ...IS` (broadcast) → `DSB ISH` (every CPU has completed it) → `ISB`
//! only when this CPU's own kernel mappings changed. A `DSB` completes only the TLBIs issued by
//! the CPU that executes it.
//!
//! Every completion of broadcast TLBIs is [`complete`]`(Scope::Broadcast)`, so the workaround
//! of an erratum in how they complete lives there, once: with erratum 4118414
//! ([`set_repeat_tlbi`]; `broadside_arch::errata`), the completing `DSB ISH` is followed by one
//! `TLBI VALE1IS, XZR; DSB ISH`, however many TLBIs it completed (Linux's 2026 form of
//! `ARM64_WORKAROUND_REPEAT_TLBI`). Erratum 4193714's IPI is not an instruction: `mm::tlb`
//! sends it after this completion.

use core::arch::asm;

// Boot-time maintenance, callable with the MMU off or from the identity map: leaf routines that
// touch no stack.
core::arch::global_asm!(
    ".section .text, \"ax\"",
    // Invalidates this CPU's whole EL1&0 TLB. Called by `boot.S` before the MMU is first enabled
    // (TLB contents are UNKNOWN at reset).
    ".global __tlb_boot_local_flush_all",
    "__tlb_boot_local_flush_all:",
    "    tlbi vmalle1",
    "    dsb nsh",
    "    isb",
    "    ret",
    // x0 = new TTBR1_EL1, x1 = an empty table. Executed through the identity map, so the TTBR1
    // half may be unmapped in between. Installing the empty table and invalidating before the new
    // table goes in means no TLB ever holds entries from both (break-before-make for the whole
    // half; Linux's idmap_cpu_replace_ttbr1).
    ".global __tlb_replace_ttbr1",
    "__tlb_replace_ttbr1:",
    "    msr ttbr1_el1, x1",
    "    isb",
    "    tlbi vmalle1",
    "    dsb nsh",
    "    isb",
    "    msr ttbr1_el1, x0",
    "    isb",
    "    ret",
);

unsafe extern "C" {
    fn __tlb_replace_ttbr1(ttbr1: u64, empty_table: u64);
}

/// Swaps TTBR1 to `ttbr1` through an empty table, with a local invalidation in between.
///
/// # Safety
///
/// Only on the boot CPU before any other CPU is online, with IRQs masked, while TTBR0 holds the
/// boot identity map covering the image. `ttbr1` must map the image, the stacks and everything
/// the kernel is about to touch at the same virtual addresses as the current tables.
/// `empty_table_pa` must be a zeroed, page-aligned table.
pub unsafe fn replace_ttbr1(ttbr1: u64, empty_table_pa: u64) {
    let trampoline = __tlb_replace_ttbr1 as *const () as u64 - super::layout::KIMAGE_VBASE;
    // SAFETY: `trampoline` is the physical address of the routine, executable through the
    // identity map; it touches no memory and the caller guarantees the new tables are complete.
    unsafe {
        let f: unsafe extern "C" fn(u64, u64) = core::mem::transmute(trampoline as usize);
        f(ttbr1, empty_table_pa);
    }
}

/// Invalidates this CPU's entire EL1&0 TLB and waits for it (`DSB NSHST; TLBI VMALLE1;
/// DSB NSH; ISB`). Used when a CPU drops the boot identity map, and by the ASID allocator's
/// rollover flush.
pub fn local_flush_all() {
    store_barrier(Scope::Local);
    issue(TlbiOp::Vmalle1, Scope::Local);
    complete(Scope::Local);
    // SAFETY: barrier only: the next instruction fetch and walk see the flushed TLB.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

/// Publishes new (previously invalid) kernel entries to this CPU's table walker. New entries
/// need no invalidation — no TLB can hold a translation for an invalid entry — only `DSB ISHST`
/// so the walker sees the store, then `ISB` so this CPU's next access walks again.
pub fn publish_new_kernel_mappings() {
    store_barrier(Scope::Broadcast);
    // SAFETY: barrier only.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

use crate::tlbi::{FlushPlan, TlbiOp};
use broadside_base::stats::{self, Counter};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// Where erratum 4118414's workaround repeats a broadcast invalidation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepeatForm {
    /// Once per completion: after the completing `DSB ISH`, `TLBI VALE1IS, XZR; DSB ISH`,
    /// however many TLBIs it completed (Linux since a8f78680ee6b; what the kernel runs).
    PerCompletion,
    /// After every broadcast TLBI, `DSB ISH` and the same TLBI again; the caller's completing
    /// `DSB ISH` completes the last repeat (Linux's `__TLBI_0` alternative before a8f78680ee6b).
    /// Only `workload=flush-bench` runs it, as the path the per-completion form replaced.
    PerTlbi,
}

/// Erratum 4118414's workaround: 0 off, 1 [`RepeatForm::PerCompletion`], 2
/// [`RepeatForm::PerTlbi`].
static REPEAT_TLBI: AtomicU8 = AtomicU8::new(0);

/// Turns erratum 4118414's workaround on (in `form`) or off. Called at boot before other CPUs
/// run, and by the flush bench between its measurements, with no flush in flight anywhere.
pub fn set_repeat_tlbi(form: Option<RepeatForm>) {
    let v = match form {
        None => 0,
        Some(RepeatForm::PerCompletion) => 1,
        Some(RepeatForm::PerTlbi) => 2,
    };
    REPEAT_TLBI.store(v, Ordering::Relaxed);
}

/// Erratum 4118414's workaround, if it is on.
pub fn repeat_tlbi() -> Option<RepeatForm> {
    match REPEAT_TLBI.load(Ordering::Relaxed) {
        1 => Some(RepeatForm::PerCompletion),
        2 => Some(RepeatForm::PerTlbi),
        _ => None,
    }
}

/// What this module tells an observer (the flush-coverage sanitizer, `mm::audit`): every TLBI
/// before it executes, every `DSB` after it executed, and every TTBR0 load before it happens.
/// Each report and its instruction run with IRQs masked, so no interrupt handler's own
/// maintenance can fall between them: the observer can never credit a TLBI that has not run
/// yet (an interrupting `DSB` would otherwise complete it in its eyes), nor a DSB before it
/// happened, nor miss a CPU that loaded a space before it was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbEvent {
    /// This CPU is about to issue `op` with `scope`.
    Issue(TlbiOp, Scope),
    /// This CPU executed a data synchronization barrier.
    Barrier(Barrier),
    /// This CPU is about to load TTBR0 with the table at `root` and `asid` (the empty table and
    /// ASID 0 when it leaves an address space).
    LoadTtbr0 {
        /// Physical address of the level-0 table.
        root: u64,
        /// The ASID in TTBR0[63:48].
        asid: u16,
    },
}

/// The data synchronization barriers this module executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// `DSB ISHST`: earlier stores (page-table writes among them) are visible to every CPU's
    /// table walks.
    StoreBroadcast,
    /// `DSB NSHST`: earlier stores are visible to this CPU's table walks.
    StoreLocal,
    /// `DSB ISH`: every earlier access and every TLBI this CPU issued has completed in the
    /// inner-shareable domain.
    FullBroadcast,
    /// `DSB NSH`: as `DSB ISH` for this CPU only; completes its non-broadcast TLBIs.
    FullLocal,
}

/// The observer, a `fn(TlbEvent)` stored as a pointer; null when none (the common case costs
/// one relaxed load per TLBI or barrier).
static OBSERVER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs `observer`, called on the executing CPU for every [`TlbEvent`] from now on, with
/// IRQs masked. It must not issue TLB maintenance or load TTBR0 itself. Called once at boot,
/// before other CPUs run.
pub fn set_observer(observer: fn(TlbEvent)) {
    OBSERVER.store(observer as *mut (), Ordering::Release);
}

fn observer() -> Option<fn(TlbEvent)> {
    let f = OBSERVER.load(Ordering::Acquire);
    // SAFETY: the only non-null value ever stored is a `fn(TlbEvent)` (`set_observer`).
    (!f.is_null()).then(|| unsafe { core::mem::transmute::<*mut (), fn(TlbEvent)>(f) })
}

/// Runs `instruction` with `before` reported before it and `after` after it, IRQs masked
/// across the three when an observer is installed (see [`TlbEvent`]).
#[inline(always)]
pub(crate) fn observed(
    before: Option<TlbEvent>,
    instruction: impl FnOnce(),
    after: Option<TlbEvent>,
) {
    if let Some(TlbEvent::Barrier(b)) = after {
        broadside_base::events::mark(broadside_base::events::Kind::Barrier, b as u64, 0);
        if matches!(b, Barrier::StoreBroadcast | Barrier::FullBroadcast) {
            // The inner-shareable barriers make this CPU's earlier stores visible to every
            // CPU: with `weak=on`, the emulated store buffer drains here (the NSH forms
            // complete accesses for this CPU only and drain nothing).
            broadside_base::weak::drain();
        }
    }
    if let Some(TlbEvent::LoadTtbr0 { root, asid }) = before {
        broadside_base::events::mark(broadside_base::events::Kind::Ttbr0, root, asid as u64);
    }
    match observer() {
        None => instruction(),
        Some(f) => {
            let irq = broadside_base::irq::save_and_mask();
            if let Some(e) = before {
                f(e);
            }
            instruction();
            if let Some(e) = after {
                f(e);
            }
            broadside_base::irq::restore(irq);
        }
    }
}

/// Which TLBs an invalidation reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every CPU in the inner-shareable domain (the `...IS` forms, completed by `DSB ISH`).
    Broadcast,
    /// This CPU only (the plain forms, completed by `DSB NSH`).
    Local,
}

/// Issues one TLBI. No barriers: callers order it with [`begin`] and [`complete`].
#[inline(always)]
fn issue(op: TlbiOp, scope: Scope) {
    issue_once(op, scope);
    if scope == Scope::Broadcast && repeat_tlbi() == Some(RepeatForm::PerTlbi) {
        dsb_ish();
        issue_once(op, scope);
        stats::count(Counter::ErratumTlbiRepeats);
    }
}

fn issue_once(op: TlbiOp, scope: Scope) {
    broadside_base::events::mark(
        broadside_base::events::Kind::Tlbi,
        op.operand().unwrap_or(0),
        op_code(op, scope),
    );
    observed(
        Some(TlbEvent::Issue(op, scope)),
        || issue_instruction(op, scope),
        None,
    );
    stats::count(Counter::TlbiOps);
    if op.is_range() {
        stats::count(Counter::TlbiRangeOps);
    }
    if matches!(op, TlbiOp::Aside1 { .. }) {
        stats::count(Counter::TlbiAsidOps);
    }
    if scope == Scope::Local {
        stats::count(Counter::TlbiLocalOps);
    }
}

/// The op's number in the event log: its position in [`TlbiOp`]'s list, plus 16 when local.
fn op_code(op: TlbiOp, scope: Scope) -> u64 {
    let kind = match op {
        TlbiOp::Vae1 { .. } => 1,
        TlbiOp::Vale1 { .. } => 2,
        TlbiOp::Rvae1 { .. } => 3,
        TlbiOp::Rvale1 { .. } => 4,
        TlbiOp::Aside1 { .. } => 5,
        TlbiOp::Vmalle1 => 6,
        TlbiOp::Vaae1 { .. } => 7,
        TlbiOp::Vaale1 { .. } => 8,
    };
    kind + if scope == Scope::Local { 16 } else { 0 }
}

#[inline(always)]
fn issue_instruction(op: TlbiOp, scope: Scope) {
    macro_rules! tlbi {
        ($insn:literal, $x:expr) => {
            // SAFETY: TLB invalidation only discards cached translations.
            unsafe { asm!(concat!("tlbi ", $insn, ", {}"), in(reg) $x, options(nostack, preserves_flags)) }
        };
        ($insn:literal) => {
            // SAFETY: as above.
            unsafe { asm!(concat!("tlbi ", $insn), options(nostack, preserves_flags)) }
        };
    }
    // The range forms (FEAT_TLBIRANGE) are written as `SYS` so no assembler extension is needed:
    // RVAE1IS = SYS #0, C8, C2, #1; RVALE1IS = SYS #0, C8, C2, #5; RVAE1 = SYS #0, C8, C6, #1;
    // RVALE1 = SYS #0, C8, C6, #5 (Arm ARM C5.5, TLBI instructions).
    macro_rules! sys {
        ($crm:literal, $op2:literal, $x:expr) => {
            // SAFETY: as above; only emitted when FEAT_TLBIRANGE is present.
            unsafe {
                asm!(concat!("sys #0, c8, ", $crm, ", #", $op2, ", {}"), in(reg) $x,
                     options(nostack, preserves_flags))
            }
        };
    }
    match (op, scope) {
        (TlbiOp::Vae1 { operand }, Scope::Broadcast) => tlbi!("vae1is", operand),
        (TlbiOp::Vae1 { operand }, Scope::Local) => tlbi!("vae1", operand),
        // Erratum 4118414's repeat, written as Linux writes it (the operand register is XZR).
        (TlbiOp::Vale1 { operand: 0 }, Scope::Broadcast) => tlbi!("vale1is, xzr"),
        (TlbiOp::Vale1 { operand }, Scope::Broadcast) => tlbi!("vale1is", operand),
        (TlbiOp::Vale1 { operand }, Scope::Local) => tlbi!("vale1", operand),
        (TlbiOp::Rvae1 { operand }, Scope::Broadcast) => sys!("c2", "1", operand),
        (TlbiOp::Rvae1 { operand }, Scope::Local) => sys!("c6", "1", operand),
        (TlbiOp::Rvale1 { operand }, Scope::Broadcast) => sys!("c2", "5", operand),
        (TlbiOp::Rvale1 { operand }, Scope::Local) => sys!("c6", "5", operand),
        (TlbiOp::Aside1 { operand }, Scope::Broadcast) => tlbi!("aside1is", operand),
        (TlbiOp::Aside1 { operand }, Scope::Local) => tlbi!("aside1", operand),
        (TlbiOp::Vmalle1, Scope::Broadcast) => tlbi!("vmalle1is"),
        (TlbiOp::Vmalle1, Scope::Local) => tlbi!("vmalle1"),
        (TlbiOp::Vaae1 { operand }, Scope::Broadcast) => tlbi!("vaae1is", operand),
        (TlbiOp::Vaae1 { operand }, Scope::Local) => tlbi!("vaae1", operand),
        (TlbiOp::Vaale1 { operand }, Scope::Broadcast) => tlbi!("vaale1is", operand),
        (TlbiOp::Vaale1 { operand }, Scope::Local) => tlbi!("vaale1", operand),
    }
}

/// Makes this CPU's earlier stores visible to the table walkers (and everything else) that
/// `scope` reaches: `DSB ISHST` / `DSB NSHST`. Before TLBIs, so that no walk after them can
/// cache the old entry again; before an SGI that announces data (`gic::send_sgi`).
#[inline(always)]
pub fn store_barrier(scope: Scope) {
    let (instruction, barrier): (fn(), _) = match scope {
        // SAFETY: barriers only.
        Scope::Broadcast => (
            || unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) },
            Barrier::StoreBroadcast,
        ),
        // SAFETY: barriers only.
        Scope::Local => (
            || unsafe { asm!("dsb nshst", options(nostack, preserves_flags)) },
            Barrier::StoreLocal,
        ),
    };
    observed(None, instruction, Some(TlbEvent::Barrier(barrier)));
}

/// Makes page-table stores visible to the table walkers that `scope` reaches, before TLBIs
/// tell them to re-walk ([`store_barrier`]).
#[inline(always)]
pub fn begin(scope: Scope) {
    store_barrier(scope);
}

/// Waits until every TLBI this CPU issued has completed on every CPU `scope` reaches
/// (`DSB ISH` / `DSB NSH`). After it, no CPU can use a translation those TLBIs removed.
///
/// The broadcast form is the only completion of broadcast TLBIs, and with erratum 4118414 it
/// runs the workaround ([`set_repeat_tlbi`]): after the `DSB ISH`, `TLBI VALE1IS, XZR` and a
/// second `DSB ISH` (counted in `erratum_tlbi_repeats`, and in `tlbi_ops` and `dsb_ish` as the
/// instructions they are). An address space that may run on other CPUs also needs
/// `mm::tlb`'s erratum 4193714 IPI after this.
#[inline(always)]
pub fn complete(scope: Scope) {
    match scope {
        Scope::Broadcast => {
            dsb_ish();
            if repeat_tlbi() == Some(RepeatForm::PerCompletion) {
                // Invalidates nothing in use (VA 0 of ASID 0); on an affected CPU, its
                // completion makes the completion before it hold for every write through the
                // entries that one removed.
                issue_once(TlbiOp::Vale1 { operand: 0 }, Scope::Broadcast);
                dsb_ish();
                stats::count(Counter::ErratumTlbiRepeats);
            }
        }
        Scope::Local => observed(
            None,
            // SAFETY: barrier only.
            || unsafe { asm!("dsb nsh", options(nostack, preserves_flags)) },
            Some(TlbEvent::Barrier(Barrier::FullLocal)),
        ),
    }
}

/// Issues one `DSB ISH` and counts it (`dsb_ish`). Every `DSB ISH` the kernel executes goes
/// through here, so the counter is the number of these barriers, whatever they were for:
/// completing broadcast TLBIs ([`complete`], twice with erratum 4118414's repeat), ordering an
/// activation before its walks ([`order_before_walks`]), or completing this CPU's own accesses
/// for erratum 4193714 ([`complete_accesses`]). A `DSB ISH` waits for every earlier memory access and every TLBI,
/// IC and DC of this CPU to complete in the inner-shareable domain (Arm ARM B2.3, "Data
/// Synchronization Barrier"), which on hardware is the cost worth counting; `DSB ISHST`,
/// `DSB NSH` and `DMB` are other barriers and are not counted.
#[inline(always)]
fn dsb_ish() {
    observed(
        None,
        // SAFETY: barrier only.
        || unsafe { asm!("dsb ish", options(nostack, preserves_flags)) },
        Some(TlbEvent::Barrier(Barrier::FullBroadcast)),
    );
    stats::count(Counter::DsbIsh);
}

/// Issues every TLBI of `plan` after [`begin`], without completing them: the caller batches
/// several plans and ends with one [`complete`] (Linux's `__flush_tlb_range_nosync` and
/// `arch_tlbbatch_flush`).
pub fn issue_plan_nosync(plan: &FlushPlan, scope: Scope) {
    begin(scope);
    for op in plan.ops() {
        issue(op, scope);
    }
}

/// Issues `plan`'s TLBIs with `scope` after a `DSB ISHST`, without completing them: a
/// deferred batch's page. Its clear is published to every CPU's walker even when the TLBI is
/// local (a space that ran only here), because the batch may be completed for it by another
/// CPU's broadcast (`flush_tlb_batched_pending`), which must be ordered after the clear.
pub fn issue_plan_nosync_published(plan: &FlushPlan, scope: Scope) {
    store_barrier(Scope::Broadcast);
    for op in plan.ops() {
        issue(op, scope);
    }
}

/// `bug=tlbi-before-store-barrier` only: issues `plan`'s TLBIs, *then* the store barrier; the
/// caller completes them ([`complete`]). A walk between a TLBI and the barrier may read the old
/// entry and cache it again after the TLBI has passed: the order the flush-coverage sanitizer
/// must refuse to credit. Never used otherwise.
pub fn issue_plan_before_store_barrier(plan: &FlushPlan, scope: Scope) {
    for op in plan.ops() {
        issue(op, scope);
    }
    store_barrier(scope);
}

/// Issues and completes `plan`.
pub fn flush_plan(plan: &FlushPlan, scope: Scope) {
    issue_plan_nosync(plan, scope);
    complete(scope);
}

/// Issues and completes `plan` for kernel mappings this CPU may be executing or using, and
/// resynchronises this CPU's instruction stream (`ISB`).
pub fn flush_kernel_plan(plan: &FlushPlan) {
    flush_plan(plan, Scope::Broadcast);
    // SAFETY: barrier only.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

/// Orders this CPU's earlier stores before its later loads and table walks (`DSB ISH`, then
/// `ISB`). Used when a CPU publishes that it is about to use an address space before loading
/// TTBR0, so a flusher that reads the CPU set after changing the tables cannot miss it.
pub fn order_before_walks() {
    dsb_ish();
    // SAFETY: barrier only. The ISB makes the next table walk (after the TTBR0 write that
    // follows) start after the DSB completed.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

/// Completes every memory access this CPU made so far, in the inner-shareable domain
/// (`DSB ISH`): what erratum 4193714's IPI makes a CPU that runs a space do, and what a CPU
/// leaving a space does while that erratum is in force, so that no access through a
/// translation another CPU has just invalidated is still outstanding.
pub fn complete_accesses() {
    dsb_ish();
}

/// Orders this CPU's earlier stores before its later loads (`DMB ISH`). A flusher changes the
/// tables, then reads which CPUs the space has been active on; paired with
/// [`order_before_walks`] on the activating CPU, one of the two must see the other's store.
pub fn order_stores_before_loads() {
    /// The event log's number for `DMB ISH` (after [`Barrier`]'s four).
    const DMB_ISH: u64 = 4;
    broadside_base::events::mark(broadside_base::events::Kind::Barrier, DMB_ISH, 0);
    // With `weak=on`, the emulated store buffer drains: the stores before the DMB are visible
    // to every CPU before any load after it is made.
    broadside_base::weak::drain();
    // SAFETY: barrier only.
    unsafe { asm!("dmb ish", options(nostack, preserves_flags)) };
}

/// Issues and completes one TLBI on this CPU only (`DSB NSHST; TLBI ...; DSB NSH`): how a
/// spurious permission fault drops the stale entry it faulted on (Linux's
/// `local_flush_tlb_page_nonotify`). No `ISB`: the retried access is an explicit data access
/// after the `DSB`, and the exception return (or fix-up) before it is context-synchronising.
pub fn flush_one_local(op: TlbiOp) {
    begin(Scope::Local);
    issue(op, Scope::Local);
    complete(Scope::Local);
}

/// Issues one local TLBI (for the IPI baseline's handler, between [`begin`] and [`complete`]).
pub fn issue_one_local(op: TlbiOp) {
    issue(op, Scope::Local);
}

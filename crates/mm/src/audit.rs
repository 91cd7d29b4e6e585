//! The kernel side of the flush-coverage sanitizer (`audit=on`): feeds the portable
//! [`Sanitizer`] with what this kernel actually does, and turns its verdicts into detections.
//!
//! - **Observed, not told.** `arch::aarch64::tlb` reports every TLBI before it issues it, every
//!   `DSB` after it executed, and every TTBR0 load before it happens, each with IRQs masked
//!   across the report and the instruction ([`TlbEvent`]); [`observe`] hands them to the
//!   sanitizer on the CPU that executed them. The ASID allocator reports each rollover.
//! - **Clears and changes.** The page-table code calls [`record_clear`], [`record_table`] or
//!   [`record_change`] (through `AddressSpace`, which names the space's registration) right
//!   after it clears, unhooks or rewrites a valid entry: the gather for every leaf it unmaps and
//!   every table it unhooks or unshares, `protect` and migration for every leaf they rewrite,
//!   adoption for the block it replaces. Kernel (TTBR1) entries are never cleared after boot
//!   (`memory::kmap` only adds mappings), so there is nothing to record for them.
//! - **Checks.** Every frame is checked before it is poisoned and freed
//!   (`aspace::release_data_frame`, `aspace::free_table_page`), before the gather hands it to
//!   the table-free path, and before a shared table is adopted; every operation before it
//!   returns; an unshared table before the object lock that protects it is dropped.
//!
//! Spaces register at creation ([`register_space`]) so that their TTBR0 loads are recognised,
//! and unregister at the end of their teardown.
//!
//! # Memory
//! Every table is sized at [`init`] from the RAM and the CPU count ([`config_for`]); a run that
//! cannot afford them exits 2 naming what they need. When more obligations are open at once
//! than the piece budget allows, the sanitizer records fewer (`audit_dropped`) and says so once
//! on the console; when more spaces exist than the registry holds, clears of the newest are owed
//! on the CPUs the kernel recorded for them (also said once).
//!
//! # Violations
//! Each counts its detector (`flush_gap_detected`, `asid_reuse_detected`,
//! `bbm_violation_detected`) through `stats::detected` and prints one line from the
//! never-inlined [`report`], where a debugger stops. After [`MAX_REPORTED`] the sanitizer
//! disarms: the run has failed, and later reports would repeat the first ones at the cost of
//! scans over every obligation a planted bug leaves open. `workload::run` turns any detection
//! into exit 1.
//!
//! Sits on `sanitizer`.

use crate::sanitizer::{
    Barrier, Change, Check, Clear, Cleared, Config, CpuMask, Holds, LeafRun, OldAccess, OpId, Owed,
    Sanitizer, Scope, SpaceSlot, StalePermissions, Violation, decode,
};
use broadside_arch::PhysAddr;
use broadside_arch::aarch64::tlb::{self, TlbEvent};
use broadside_base::config::MAX_CPUS;
use broadside_base::irq;
use broadside_base::stats::{self, Counter};
use broadside_platform::kprintln;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use spin::Once;

static SANITIZER: Once<Sanitizer> = Once::new();
/// Stale restrictive entries left by upgrades that issued no TLBI ([`StalePermissions`]).
static PERMISSIONS: Once<StalePermissions> = Once::new();
static ENABLED: AtomicBool = AtomicBool::new(false);
static NEXT_OP: AtomicU64 = AtomicU64::new(1);
static REPORTED: AtomicU32 = AtomicU32::new(0);
static SAID_DROPPED: AtomicBool = AtomicBool::new(false);
static SAID_UNREGISTERED: AtomicBool = AtomicBool::new(false);

/// Violations reported before the sanitizer disarms.
pub const MAX_REPORTED: u32 = 8;

/// The RAM the sanitizer may spend on open obligations: 1/32 of RAM, between 1 and 32 MiB.
const PIECE_BUDGET_DIVISOR: u64 = 32;
const MIB: u64 = 1 << 20;

/// The sizes for `cpus` CPUs and `ram_bytes` of RAM from `ram_base`: a counter per 4 KiB frame,
/// a registry of one space per 256 KiB of RAM (at least 256, at most 4096), and 1/32 of RAM (1
/// to 32 MiB) for open obligations.
pub fn config_for(cpus: usize, ram_base: u64, ram_bytes: u64) -> Config {
    let piece_bytes = (ram_bytes / PIECE_BUDGET_DIVISOR).clamp(MIB, 32 * MIB) as usize;
    Config {
        cpus,
        frames_base: ram_base,
        frames: (ram_bytes >> 12) as usize,
        max_spaces: ((ram_bytes >> 18) as usize).clamp(256, 4096),
        obligation_bytes: piece_bytes,
    }
}

/// Starts the sanitizer for CPUs `0..cpus` over the RAM at `ram_base` when `enabled`. Call
/// once on the boot CPU before any address space exists, and before
/// [`crate::aspace::init_asids`] (whose rollovers it observes). A machine too small for its
/// tables exits 2, naming what they need.
pub fn init(enabled: bool, cpus: usize, ram_base: u64, ram_bytes: u64) {
    if !enabled {
        return;
    }
    let config = config_for(cpus, ram_base, ram_bytes);
    match Sanitizer::new(config) {
        Ok(s) => {
            SANITIZER.call_once(|| s);
            PERMISSIONS.call_once(|| StalePermissions::new(cpus));
        }
        Err(e) => broadside_platform::exit::config_error(format_args!(
            "error: audit: its {} need {} KiB more than the heap has ({} KiB of tables in all \
             for {cpus} CPUs and {} MiB of RAM): boot with more memory or audit=off",
            e.what,
            e.bytes / 1024,
            config.bytes() / 1024,
            ram_bytes / MIB
        )),
    }
    tlb::set_observer(observe);
    ENABLED.store(true, Ordering::Release);
}

/// The CPUs have `errata` (`errata=`, or from MIDR_EL1): from now on the sanitizer credits a
/// broadcast completion only once its workaround ran ([`Sanitizer::set_errata`]), whatever the
/// kernel does about it (a planted `bug=erratum-no-repeat` skips the workaround, not the
/// erratum). Call after [`init`], before any address space exists.
pub fn model_errata(errata: broadside_arch::errata::Errata) {
    if let Some(s) = SANITIZER.get() {
        s.set_errata(errata);
    }
}

/// With `weak=on`: stores reach memory only when their CPU drains its emulated store buffer
/// (`broadside_base::weak`), so the sanitizer learns when each clear became visible (the
/// drain hook) and owes it on the CPUs that loaded its space before then. Call after [`init`],
/// before any space exists.
pub fn stores_delayed() {
    if let Some(s) = SANITIZER.get() {
        s.set_stores_delayed();
        broadside_base::weak::set_drain_hook(drained);
    }
}

/// The drain hook: `cpu`'s earlier stores are visible (called with IRQs masked). A drain
/// inside one of the sanitizer's own calls on this CPU (its allocations take kernel locks,
/// whose release drains) is stamped now and told when that call returns: the sanitizer's
/// locks are not re-entrant.
fn drained(cpu: usize) {
    let Some(s) = SANITIZER.get() else { return };
    let at = s.now();
    if INSIDE[cpu].load(Ordering::Relaxed) {
        let _ = PENDING_DRAIN[cpu].compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
        return;
    }
    INSIDE[cpu].store(true, Ordering::Relaxed);
    s.stores_visible(cpu, at);
    INSIDE[cpu].store(false, Ordering::Relaxed);
}

/// Per CPU: inside a call of the sanitizer (IRQs masked, so only this CPU's own code nests).
static INSIDE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per CPU: the stamp of the first drain that happened inside a call of the sanitizer, not yet
/// told to it (0: none).
static PENDING_DRAIN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Runs `f` as one call of the sanitizer on `cpu` (IRQs masked by the caller), then tells it of
/// a drain that happened meanwhile.
fn inside<R>(s: &Sanitizer, cpu: usize, f: impl FnOnce() -> R) -> R {
    let nested = INSIDE[cpu].swap(true, Ordering::Relaxed);
    let r = f();
    if !nested {
        let pending = PENDING_DRAIN[cpu].swap(0, Ordering::Relaxed);
        if pending != 0 {
            s.stores_visible(cpu, pending);
        }
        INSIDE[cpu].store(false, Ordering::Relaxed);
    }
    r
}

/// Whether `audit=on`.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Runs `f` on the sanitizer with IRQs masked (its locks are not IRQ-safe, and an IPI
/// handler's TLBIs are reported on the CPU it interrupts). Only called once [`init`] ran.
fn with<R>(f: impl FnOnce(&Sanitizer, usize) -> R) -> R {
    let s = SANITIZER.get().expect("audit: sanitizer not initialised");
    let irq = irq::save_and_mask();
    let cpu = broadside_base::cpu_id();
    let r = inside(s, cpu, || f(s, cpu));
    irq::restore(irq);
    r
}

/// A fresh operation id: one per gather, `protect`, migration or adoption.
pub fn begin_op() -> OpId {
    OpId(NEXT_OP.fetch_add(1, Ordering::Relaxed))
}

/// Registers a new space whose level-0 table is `root`, so the sanitizer recognises its TTBR0
/// loads. `None` with the audit off, or when the registry is full (said once: that space's
/// clears are then owed on the CPUs the kernel recorded for it).
pub fn register_space(id: u64, root: PhysAddr) -> Option<SpaceSlot> {
    if !enabled() {
        return None;
    }
    let slot = with(|s, _| s.register_space(id, root.as_u64()));
    if slot.is_none() && !SAID_UNREGISTERED.swap(true, Ordering::Relaxed) {
        kprintln!(
            "audit: space {id} not registered: the registry is full; clears of such spaces are \
             owed on the CPUs the kernel recorded for them"
        );
    }
    slot
}

/// Forgets a registered space at the end of its teardown.
pub fn unregister_space(slot: SpaceSlot) {
    if enabled() {
        with(|s, _| s.unregister_space(slot));
    }
}

/// Records one clear (see `AddressSpace::audit_clear`, which describes the space's side).
pub fn record_clear(clear: &Clear) {
    if !enabled() {
        return;
    }
    let dropped = with(|s, cpu| {
        s.record(cpu, clear);
        s.dropped()
    });
    if dropped > 0 {
        note_dropped();
    }
}

/// Records a run of leaves one operation cleared (see `MmuGather`, which batches them).
///
/// `buffered`: the leaves' stores may still wait in this CPU's emulated store buffer.
pub fn record_leaves(run: &LeafRun<'_>, buffered: bool) {
    if !enabled() {
        return;
    }
    let dropped = with(|s, cpu| {
        s.record_run_buffered(cpu, run, buffered);
        s.dropped()
    });
    if dropped > 0 {
        note_dropped();
    }
}

/// Records a valid leaf rewritten in place: an upgrade owes nothing, a downgrade is an
/// obligation, a change that needed break-before-make is a violation.
pub fn record_change(change: &Change) {
    if !enabled() {
        return;
    }
    if let Err(v) = with(|s, cpu| s.change(cpu, change)) {
        report(&v);
    }
}

/// A leaf of `size` bytes at `va` (level `level`) of the space running as `asid` was upgraded
/// in place with no TLBI, from an entry that allowed `old`: each CPU of `cpus` may still hold
/// the old entry, and fault through it where the new one allows the access.
pub fn record_unflushed_upgrade(
    cpus: CpuMask,
    asid: u16,
    va: u64,
    level: u8,
    size: u64,
    old: OldAccess,
) {
    if let Some(p) = PERMISSIONS.get() {
        let irq = irq::save_and_mask();
        p.upgrade(cpus, asid, va, level, size, old);
        irq::restore(irq);
    }
}

/// Whether this CPU may still hold an entry for `va` under `asid` that forbids the access (a
/// write if `write`) although the tables now allow it: where hardware may take a spurious
/// permission fault, which QEMU never takes (its TLB re-walks on any permission miss). Always
/// `false` with the audit off.
pub fn may_fault_spuriously(asid: u16, va: u64, write: bool) -> bool {
    let Some(p) = PERMISSIONS.get() else {
        return false;
    };
    let irq = irq::save_and_mask();
    let r = p.faults(broadside_base::cpu_id(), asid, va, write);
    irq::restore(irq);
    r
}

/// What an unhooked table at `level` still held, read from the table itself (not taken from the
/// caller: a caller that wrongly believes it empty is what the sanitizer is for). `entries` are
/// its raw descriptors.
pub fn table_holds(entries: impl Iterator<Item = u64>, level: u8) -> Holds {
    // Bits [1:0]: 0b11 is a table below level 3 and a page at it; 0b01 is a block at levels 1
    // and 2 and reserved (a fault, never cached) at 0 and 3.
    let (table, leaf) = match level {
        3 => (None, Some(0b11)),
        0 => (Some(0b11), None),
        _ => (Some(0b11), Some(0b01)),
    };
    let mut holds = Holds::Nothing;
    for raw in entries {
        let low = raw & 0b11;
        if Some(low) == table {
            return Holds::Tables;
        }
        if Some(low) == leaf {
            holds = Holds::Leaves;
        }
    }
    holds
}

/// Records an unhooked table (see [`record_clear`]).
pub fn record_table(
    op: OpId,
    space: u64,
    owed: Owed,
    va: u64,
    level: u8,
    table: u64,
    holds: Holds,
) {
    record_clear(&Clear {
        op,
        space,
        owed,
        entry: Cleared::Table {
            va,
            level,
            table,
            holds,
        },
    });
}

/// Says once on the console that the piece budget filled (the count is published at the end).
fn note_dropped() {
    if !SAID_DROPPED.load(Ordering::Relaxed) {
        let st = with(|s, _| s.stats());
        if st.dropped > 0 && !SAID_DROPPED.swap(true, Ordering::Relaxed) {
            kprintln!(
                "audit: its obligation budget is full ({} open): further clears are counted in \
                 audit_dropped, not checked, until it drains",
                st.open
            );
        }
    }
}

/// Checks that `frame` may be freed, poisoned, reused or adopted now.
pub fn check_free(frame: PhysAddr) {
    check(Check::Free(frame.as_u64()));
}

/// Checks that `frame` (a shared table) may be reused by another space: called before the
/// object lock that keeps it from being adopted is dropped.
pub fn check_reuse(frame: PhysAddr) {
    check(Check::Reuse(frame.as_u64()));
}

/// Checks that operation `op` may return: none of its obligations is open.
pub fn check_return(op: OpId) {
    check(Check::Return(op));
}

/// Checks that operation `op`, over `[start, end)` of the space `space_id`, may return: no
/// obligation in that range is open, whichever operation (on whichever CPU) recorded it — a
/// deferred TLB batch's pages among them (`tlbbatch`).
pub fn check_range(op: OpId, space_id: u64, start: u64, end: u64) {
    check(Check::Range {
        op,
        space: space_id,
        start,
        end,
    });
}

fn check(what: Check) {
    if !enabled() {
        return;
    }
    stats::count(Counter::FlushChecks);
    // The fast path, without masking IRQs: nearly every check finds nothing owed.
    let s = SANITIZER.get().expect("audit: sanitizer not initialised");
    let may_fail = match what {
        Check::Free(frame) | Check::Reuse(frame) => s.may_owe_frame(frame),
        Check::Return(_) => s.may_owe_op(broadside_base::cpu_id()),
        Check::Range { .. } => s.may_owe_any(),
        Check::Load { .. } => false,
    };
    if !may_fail {
        return;
    }
    if let Err(v) = with(|s, cpu| s.check(cpu, what)) {
        report(&v);
    }
}

/// Counts and prints one violation; disarms the sanitizer after [`MAX_REPORTED`]. Never
/// inlined: it is the sanitizer's report site, where a debugger stops (`break
/// broadside_mm::audit::report`, then `print *v`; or at `stats::detected` with every other
/// detector, as `scripts/replay.sh` does) with the caller's frame — the free, reuse, return,
/// load or change that found it — one `up` away.
#[inline(never)]
fn report(v: &Violation) {
    let counter = match v {
        Violation::FlushGap { .. } => Counter::FlushGapDetected,
        Violation::RolloverFlushSkipped { .. } | Violation::AsidReused { .. } => {
            Counter::AsidReuseDetected
        }
        Violation::BreakBeforeMake { .. } => Counter::BbmViolationDetected,
    };
    stats::detected(counter);
    let n = REPORTED.fetch_add(1, Ordering::Relaxed);
    if n < MAX_REPORTED {
        kprintln!("audit: cpu{}: {v}", broadside_base::cpu_id());
    }
    if n + 1 == MAX_REPORTED {
        with(|s, _| s.disarm());
        kprintln!(
            "audit: disarmed after {MAX_REPORTED} violations (the run has failed; later ones \
             would repeat them)"
        );
    }
}

/// The TLB module's observer: hands each event to the sanitizer on the CPU that executed it.
/// Called with IRQs masked, around the instruction.
fn observe(event: TlbEvent) {
    let Some(s) = SANITIZER.get() else { return };
    let cpu = broadside_base::cpu_id();
    inside(s, cpu, || observe_on(s, cpu, event));
}

fn observe_on(s: &Sanitizer, cpu: usize, event: TlbEvent) {
    match event {
        TlbEvent::Issue(op, scope) => {
            let scope = match scope {
                tlb::Scope::Broadcast => Scope::InnerShareable,
                tlb::Scope::Local => Scope::Local(cpu),
            };
            let inv = decode(op, scope);
            s.issue(cpu, inv);
            if let Some(p) = PERMISSIONS.get() {
                p.invalidate(cpu, &inv);
            }
        }
        TlbEvent::Barrier(b) => s.barrier(
            cpu,
            match b {
                tlb::Barrier::StoreBroadcast => Barrier::StoreIs,
                tlb::Barrier::StoreLocal => Barrier::StoreLocal,
                tlb::Barrier::FullBroadcast => Barrier::FullIs,
                tlb::Barrier::FullLocal => Barrier::FullLocal,
            },
        ),
        TlbEvent::LoadTtbr0 { root, asid } => {
            if asid != 0 {
                stats::count(Counter::Ttbr0LoadsChecked);
            }
            if let Some(v) = s.load_ttbr0(cpu, root, asid) {
                report(&v);
            }
        }
    }
}

/// The ASID allocator's rollover observer (installed by `aspace::init_asids` when auditing).
pub(crate) fn rollover(kept: &dyn Fn(usize) -> Option<u16>) {
    with(|s, _| s.rollover(kept));
}

/// Violations reported so far: a workload that sees one stops early (the run has failed, and a
/// planted flush bug left running goes on to corrupt what it frees).
pub fn violations() -> u32 {
    REPORTED.load(Ordering::Relaxed)
}

/// What the sanitizer counted so far (`None` with the audit off): for self-tests, which measure
/// a scenario by the difference of two.
pub fn stats() -> Option<crate::sanitizer::Stats> {
    enabled().then(|| with(|s, _| s.stats()))
}

/// Publishes what the sanitizer counted into the summary's counters (call before the summary).
pub fn publish_stats() {
    if !enabled() {
        return;
    }
    let st = with(|s, _| s.stats());
    let have = stats::read(Counter::FlushObligations);
    stats::add(Counter::FlushObligations, st.recorded.saturating_sub(have));
    let have = stats::read(Counter::FlushDeferred);
    stats::add(Counter::FlushDeferred, st.deferred.saturating_sub(have));
    let have = stats::read(Counter::AuditDropped);
    stats::add(Counter::AuditDropped, st.dropped.saturating_sub(have));
}

//! The kernel side of the flush-coverage sanitizer (`audit=on`): feeds the portable
//! [`Sanitizer`](crate::sanitizer::Sanitizer) with what this kernel actually does, and turns
//! its verdicts into `flush_gap_detected`.
//!
//! - **Clears.** The page-table code calls `AddressSpace::audit_clear` (which reads the space's
//!   ASID and CPUs and calls [`record`]) right after it clears or weakens a valid entry: the
//!   gather for every leaf it unmaps and every table it unhooks or unshares,
//!   `protect` for every leaf whose permissions it rewrites, adoption for the block it
//!   replaces. Kernel (TTBR1) entries are never cleared after boot (`memory::kmap` only adds
//!   mappings), so there is nothing to record for them.
//! - **Invalidations.** `arch::aarch64::tlb` reports every TLBI before it issues it and every
//!   completing `DSB` after it executed ([`TlbEvent`]); [`observe`] decodes them on the CPU that
//!   issued them. The IPI baseline needs nothing special: each target's local TLBIs and
//!   `DSB NSH` are reported on the target, so they discharge for that target only.
//! - **Rollovers.** The ASID allocator reports each rollover with the ASID every CPU keeps.
//! - **Checks.** Every frame is checked before it is poisoned and freed
//!   (`aspace::release_data_frame`, `aspace::free_table_page`), before the gather hands it to
//!   the table-free path, and before a shared table is adopted; every operation (one gather,
//!   one `protect`, one adoption) before it returns; an unshared table before the object lock
//!   that protects it is dropped.
//!
//! A violation counts `flush_gap_detected`, prints one line (the first few; every one is
//! counted) and is forgotten, so it is reported once. The workload's outcome turns any gap into
//! exit 1. Every call serialises on one IRQ-safe lock: correct first, and measured
//! (README, "The flush-coverage sanitizer").
//!
//! Sits on `sanitizer`.

use crate::sanitizer::{Check, Clear, OpId, Sanitizer, Scope, Violation, decode};
use broadside_arch::PhysAddr;
use broadside_arch::aarch64::tlb::{self, TlbEvent};
use broadside_base::IrqSpinlock;
use broadside_base::stats::{self, Counter};
use broadside_platform::kprintln;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);
static STATE: IrqSpinlock<Option<Sanitizer>> = IrqSpinlock::new(None);
static NEXT_OP: AtomicU64 = AtomicU64::new(1);
static PRINTED: AtomicU32 = AtomicU32::new(0);

/// Violations printed in full; later ones are only counted.
const MAX_PRINTED: u32 = 8;

/// Starts the sanitizer for CPUs `0..cpus` when `enabled`. Call once on the boot CPU before any
/// address space exists, and before [`crate::aspace::init_asids`] (whose rollovers it observes).
pub fn init(enabled: bool, cpus: usize) {
    if !enabled {
        return;
    }
    *STATE.lock() = Some(Sanitizer::new(cpus));
    tlb::set_observer(observe);
    ENABLED.store(true, Ordering::Release);
}

/// Whether `audit=on`.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A fresh operation id: one per gather, `protect` or adoption.
pub fn begin_op() -> OpId {
    OpId(NEXT_OP.fetch_add(1, Ordering::Relaxed))
}

/// Records one clear (see `AddressSpace::audit_clear`, which describes the space's side).
pub fn record(clear: &Clear) {
    if !enabled() {
        return;
    }
    let recorded = with(|s| s.record(clear));
    stats::add(Counter::FlushObligations, recorded as u64);
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

fn check(what: Check) {
    if !enabled() {
        return;
    }
    stats::count(Counter::FlushChecks);
    let violation = with(|s| {
        let v = s.check(what);
        if v.is_err() {
            s.forget(what);
        }
        v
    });
    if let Err(v) = violation {
        report_gap(&v);
    }
}

/// Counts and prints one flush gap. Never inlined: it is the sanitizer's report site, where a
/// debugger stops (`break broadside_mm::audit::report_gap`, then `print *v`; or at
/// `stats::detected` with every other detector, as `scripts/replay.sh` does) with the caller's
/// frame — the free, reuse or return that found the gap — one `up` away.
#[inline(never)]
fn report_gap(v: &Violation) {
    stats::detected(Counter::FlushGapDetected);
    let n = PRINTED.fetch_add(1, Ordering::Relaxed);
    if n < MAX_PRINTED {
        kprintln!("audit: cpu{}: {v}", broadside_base::cpu_id());
    } else if n == MAX_PRINTED {
        kprintln!("audit: further flush gaps are counted, not printed");
    }
}

/// Runs `f` on the sanitizer under its lock. Only called once [`init`] has installed it.
fn with<R>(f: impl FnOnce(&mut Sanitizer) -> R) -> R {
    let mut guard = STATE.lock();
    f(guard.as_mut().expect("audit: sanitizer not initialised"))
}

/// The TLB module's observer: decodes each TLBI on the CPU that issues it.
fn observe(event: TlbEvent) {
    let cpu = broadside_base::cpu_id();
    with(|s| match event {
        TlbEvent::Issue(op, scope) => {
            let scope = match scope {
                tlb::Scope::Broadcast => Scope::InnerShareable,
                tlb::Scope::Local => Scope::Local(cpu),
            };
            s.issue(cpu, decode(op, scope));
        }
        TlbEvent::Complete(tlb::Scope::Broadcast) => s.dsb(cpu),
        TlbEvent::Complete(tlb::Scope::Local) => s.dsb_local(cpu),
    });
}

/// The ASID allocator's rollover observer (installed by `aspace::init_asids` when auditing).
pub(crate) fn rollover(kept: &dyn Fn(usize) -> Option<u16>) {
    with(|s| s.rollover(kept));
}

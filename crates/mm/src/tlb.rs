//! TLB shootdown policy for address spaces: which invalidations a change needs and how they
//! reach the other CPUs — broadcast TLBI (`flush=tlbi`, the default) or IPIs (`flush=ipi`, the
//! x86-style baseline). The instructions themselves are in `arch::aarch64::tlb`.
//!
//! Mirrors Linux's `flush_tlb_range` / `flush_tlb_mm` (arch/arm64/include/asm/tlbflush.h):
//! - a space only ever active on this CPU is flushed locally (Linux's TLBF_NOBROADCAST);
//! - without FEAT_TLBIRANGE, ranges of 512 or more strides become one ASID flush;
//! - a flush after freeing tables must hit the walk caches (`VAE1`, never `VALE1`; [rule 5](broadside_base::rules#rule-5)).
//!
//! The IPI baseline sends one SGI to each CPU the space has been active on (every CPU when
//! tables were freed, since any CPU's walk cache may hold them), carrying the whole request; each
//! target performs the same plan locally and acknowledges; the initiator waits. While it waits
//! it serves requests aimed at itself, so two CPUs flushing each other never deadlock.
//!
//! Errata (`errata=`, or the boot CPU's MIDR: `broadside_arch::errata`): every completion of a
//! space's broadcast TLBIs is [`complete`], so each workaround lives in one place — erratum
//! 4118414's repeat inside it, in `arch::aarch64::tlb::complete` (the instructions stay in that
//! module), and erratum 4193714's IPI after it: an SGI to every other CPU that runs the space
//! now, each of which completes its own accesses (`DSB ISH`) and acknowledges, the flusher
//! waiting for all of them as for a sync.
//!
//! Sits on `aspace` (the space's CPUs and ASID), `gather_range` (`FlushCoverage`) and
//! `fault_inject`.

use crate::aspace::AddressSpace;
use crate::fault_inject::planted;
pub use crate::gather_range::FlushCoverage;
use crate::settings::{Bug, FlushMode};
use broadside_arch::VirtAddr;
use broadside_arch::aarch64::gic;
pub use broadside_arch::aarch64::tlb::Scope;
use broadside_arch::aarch64::tlb::{self, RepeatForm};
use broadside_arch::errata::Errata;
use broadside_arch::pte::PAGE_SIZE;
use broadside_arch::tlbi::{
    FlushPlan, FlushRequest, TlbFeatures, TlbiOp, plan_range_flush, tlbi_asid_operand,
};
use broadside_base::config::MAX_CPUS;
use broadside_base::stats::{self, Counter};
use broadside_smp::{self as smp, ipi};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use spin::Once;

/// Run-wide TLB policy, fixed at boot from the CPU's features. The planted bugs this module
/// obeys are asked of [`fault_inject::planted`] where each one acts: `skip-tlbi` (no
/// invalidation), `local-tlbi` (the initiator's TLB only), `leaf-only-flush` (freed tables
/// flushed leaf-only, against [rule 5](broadside_base::rules#rule-5)), `wrong-asid` (an ASID
/// one bit off), `no-dsb` (TLBIs left uncompleted), `narrow-range` (a range one page short),
/// `tlbi-before-store-barrier` (the `DSB ISHST` after the TLBIs).
pub struct TlbPolicy {
    /// FEAT_TLBIRANGE and FEAT_TTL, from the ID registers.
    pub features: TlbFeatures,
    /// The errata in force (`errata=`, or from MIDR_EL1), whether or not a planted bug skips
    /// a workaround (`bug=erratum-no-repeat`, `bug=erratum-no-dvmsync`).
    pub errata: Errata,
}

static POLICY: Once<TlbPolicy> = Once::new();

/// Erratum 4193714's workaround runs: [`complete`] interrupts the space's running CPUs.
static DVMSYNC_IPI: AtomicBool = AtomicBool::new(false);

/// `flush=`: 0 broadcast TLBI, 1 the IPI baseline. Apart from the policy because
/// `workload=scale-bench` measures both in one boot.
static FLUSH_MODE: AtomicU8 = AtomicU8::new(0);

/// Fixes the policy and the errata workarounds; called once at boot, after
/// `fault_inject::init` and before any space exists or another CPU runs.
pub fn init(features: TlbFeatures, mode: FlushMode, errata: Errata) {
    set_flush_mode(mode);
    tlb::set_repeat_tlbi(
        (errata.repeat_tlbi && !planted(Bug::ErratumNoRepeat)).then_some(RepeatForm::PerCompletion),
    );
    let dvmsync = errata.dvmsync_ipi && !planted(Bug::ErratumNoDvmsync);
    DVMSYNC_IPI.store(dvmsync, Ordering::Relaxed);
    crate::aspace::track_running(dvmsync);
    POLICY.call_once(|| TlbPolicy { features, errata });
}

/// Runs erratum 4118414's workaround in `form` whatever the CPU model, and has the audit
/// model the erratum; `None` returns to the boot's errata. For `workload=flush-bench`, which
/// measures the per-TLBI form against the per-completion one: only between measurements, with
/// no flush in flight on any CPU.
pub fn force_repeat_tlbi(form: Option<RepeatForm>) {
    let boot = policy().errata;
    let errata = Errata {
        repeat_tlbi: form.is_some() || boot.repeat_tlbi,
        ..boot
    };
    let form = form.or(boot.repeat_tlbi.then_some(RepeatForm::PerCompletion));
    tlb::set_repeat_tlbi(form.filter(|_| !planted(Bug::ErratumNoRepeat)));
    crate::audit::model_errata(errata);
}

/// Whether erratum 4193714's workaround runs (the erratum is in force and
/// `bug=erratum-no-dvmsync` is not planted).
pub fn dvmsync_ipi() -> bool {
    DVMSYNC_IPI.load(Ordering::Relaxed)
}

/// The errata in force, once [`init`] ran.
pub fn errata() -> Option<Errata> {
    POLICY.get().map(|p| p.errata)
}

/// Switches between broadcast TLBI and the IPI baseline at run time. Only while no flush is
/// in flight on any CPU (the scale bench switches between measurements, with the other CPUs
/// idle).
pub fn set_flush_mode(mode: FlushMode) {
    let v = match mode {
        FlushMode::Tlbi => 0,
        FlushMode::Ipi => 1,
    };
    FLUSH_MODE.store(v, Ordering::Relaxed);
}

/// The flush mode in force (`flush=`, or the scale bench's current strategy).
pub fn flush_mode() -> FlushMode {
    match FLUSH_MODE.load(Ordering::Relaxed) {
        1 => FlushMode::Ipi,
        _ => FlushMode::Tlbi,
    }
}

/// The policy. Panics before [`init`].
pub fn policy() -> &'static TlbPolicy {
    POLICY.get().expect("TLB policy not initialised")
}

/// What one flush did, so callers (the gather's walk-cache check, self-tests) can verify it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushRecord {
    /// Any TLBI was leaf-only (VALE1/RVALE1).
    pub leaf_only: bool,
    /// TLBIs issued on this CPU.
    pub ops: u32,
    /// Whether it was broadcast, local or by IPI.
    pub how: FlushHow,
    /// What the invalidation covered.
    pub coverage: FlushCoverage,
}

/// How a flush reached the CPUs that may cache the translations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushHow {
    /// No flush: the space never ran, or `bug=skip-tlbi`.
    #[default]
    Nothing,
    /// Inner-shareable TLBIs, completed by `DSB ISH`.
    Broadcast,
    /// Non-broadcast TLBIs: the space only ever ran on this CPU.
    Local,
    /// The IPI baseline: each target ran the TLBIs locally and acknowledged.
    Ipi,
}

fn scope_for(space: &AddressSpace) -> Scope {
    if planted(Bug::LocalTlbi) || space.only_active_on(broadside_base::cpu_id()) {
        Scope::Local
    } else {
        Scope::Broadcast
    }
}

/// Invalidates `[start, end)` of `space` in steps of `stride`. `last_level_only` says only leaf
/// entries changed (no table was freed or unshared); `level_hint` is the level of those leaves.
pub fn flush_tlb_range(
    space: &AddressSpace,
    start: VirtAddr,
    end: VirtAddr,
    stride: u64,
    last_level_only: bool,
    level_hint: Option<u8>,
) -> FlushRecord {
    stats::count(Counter::Flushes);
    let p = policy();
    let Some(asid) = asid_after_table_stores(space) else {
        // Never active anywhere: no TLB can hold its translations.
        return FlushRecord::default();
    };
    let last_level_only = last_level_only || planted(Bug::LeafOnlyFlush);
    let (start, mut end) = (start.as_u64(), end.as_u64());
    if planted(Bug::NarrowRange) {
        end = (end - PAGE_SIZE).max(start);
    }
    let req = FlushRequest {
        start,
        end,
        stride,
        asid,
        last_level_only,
        level_hint,
    };
    let plan = plan_range_flush(&req, p.features);
    let mut record = execute(space, &plan, !last_level_only);
    if record.how != FlushHow::Nothing {
        record.coverage = match plan {
            FlushPlan::Ops(_) => FlushCoverage::Range {
                start,
                end,
                stride,
                level_hint,
            },
            FlushPlan::WholeAsid(_) | FlushPlan::WholeTlb(_) => FlushCoverage::WholeAsid,
        };
    }
    record
}

/// Invalidates every translation of `space` (one ASID flush): Linux's `flush_tlb_mm`.
pub fn flush_tlb_mm(space: &AddressSpace) -> FlushRecord {
    stats::count(Counter::Flushes);
    let Some(asid) = asid_after_table_stores(space) else {
        return FlushRecord::default();
    };
    let plan = FlushPlan::WholeAsid(TlbiOp::Aside1 {
        operand: tlbi_asid_operand(asid),
    });
    let mut record = execute(space, &plan, true);
    if record.how != FlushHow::Nothing {
        record.coverage = FlushCoverage::WholeAsid;
    }
    record
}

/// Invalidates the 4 KiB page at `va` of `space` everywhere without waiting: `DSB ISHST;
/// TLBI VALE1IS` and no completing `DSB` (Linux's `arch_tlbbatch_add_pending` /
/// `__flush_tlb_page_nosync`), or the local forms for a space only ever active on this CPU.
/// The caller completes it with [`complete`] on this same CPU: a `DSB` completes only
/// the TLBIs of the CPU that executes it. Returns the scope issued (none for a space that
/// never ran).
pub fn flush_tlb_page_nosync(space: &AddressSpace, va: VirtAddr) -> Option<Scope> {
    let asid = asid_after_table_stores(space)?;
    let scope = scope_for(space);
    let req = FlushRequest {
        start: va.align_down(PAGE_SIZE).as_u64(),
        end: va.align_down(PAGE_SIZE).as_u64() + PAGE_SIZE,
        stride: PAGE_SIZE,
        asid,
        last_level_only: true,
        level_hint: Some(3),
    };
    tlb::issue_plan_nosync_published(&plan_range_flush(&req, policy().features), scope);
    Some(scope)
}

/// Makes sure no TLBI of another CPU's deferred batch for `space` is still incomplete before
/// the caller (an unmap or `protect`, holding the space's lock) changes the tables and
/// returns: if one is pending, the whole space is invalidated again here, completed by this
/// CPU's own `DSB` (Linux's `flush_tlb_batched_pending`, as fixed by 4b634918384c). When only
/// this CPU's own batch is pending, its `DSB` is enough. Every pending owner counts: two
/// batches may hold the space at once.
pub fn flush_tlb_batched_pending(space: &AddressSpace) {
    if planted(Bug::BatchPendingIgnored) {
        return;
    }
    let mut owners = space.take_batch_owners();
    if owners.is_empty() {
        return;
    }
    stats::count(Counter::BatchPendingFlushes);
    owners.remove(broadside_base::cpu_id());
    if owners.is_empty() || planted(Bug::BatchDrainOtherCpu) {
        // Completes this CPU's TLBIs: its own batch's, when only this CPU's is pending; with
        // the planted bug, nothing of the other owners'.
        complete(&[space], Scope::Broadcast);
    } else {
        // Another CPU's batch: a `DSB` here completes none of its TLBIs, so the space is
        // invalidated again, completed by this CPU (which also completes its own batch's).
        flush_tlb_mm(space);
    }
}

/// Drops this CPU's stale entry for `va` in `space`, a leaf at `level`: one `TLBI VALE1` (at
/// any address inside a block, which hits the whole block entry; with the level as a TTL hint
/// where FEAT_TTL allows it) completed by `DSB NSH`. No other CPU is told: the entry allows
/// more than the one this CPU faulted on (Linux's `flush_tlb_fix_spurious_fault`).
/// `bug=spurious-no-local-tlbi` issues nothing. Returns whether a TLBI was issued.
pub fn flush_tlb_fix_spurious_fault(space: &AddressSpace, va: VirtAddr, level: u8) -> bool {
    if planted(Bug::SpuriousNoLocalTlbi) {
        return false;
    }
    let Some(asid) = space.asid_number() else {
        return false;
    };
    let ttl =
        (policy().features.ttl && broadside_arch::tlbi::is_hintable_level(level)).then_some(level);
    let operand = broadside_arch::tlbi::tlbi_vaddr(va.align_down(PAGE_SIZE).as_u64(), asid, ttl);
    tlb::flush_one_local(TlbiOp::Vale1 { operand });
    true
}

/// The space's ASID, read only after the caller's table stores are ordered before it
/// (store -> load: `DMB ISH`), and so is the CPU set `execute` reads next.
/// `AddressSpace::activate` publishes its CPU and the ASID with a `DSB ISH` before its first
/// walk: either this load sees them and the flush reaches that CPU, or that CPU's walks see the
/// new entries. Without the barrier the load could be satisfied before the table stores are
/// visible, skip the flush, and leave a CPU holding the old translation.
fn asid_after_table_stores(space: &AddressSpace) -> Option<u16> {
    if !planted(Bug::FlushNoDmb) {
        tlb::order_stores_before_loads();
    }
    let asid = space.asid_number()?;
    Some(if planted(Bug::WrongAsid) {
        asid ^ 1
    } else {
        asid
    })
}

fn execute(space: &AddressSpace, plan: &FlushPlan, tables_freed: bool) -> FlushRecord {
    let leaf_only = plan.ops().any(|op| op.is_leaf_only());
    let ops = plan.op_count() as u32;
    if planted(Bug::SkipTlbi) {
        tlb::begin(Scope::Broadcast);
        return FlushRecord {
            leaf_only,
            ops: 0,
            how: FlushHow::Nothing,
            coverage: FlushCoverage::Nothing,
        };
    }
    if flush_mode() == FlushMode::Ipi && !planted(Bug::LocalTlbi) {
        return ipi_shootdown(space, plan, tables_freed);
    }
    let scope = scope_for(space);
    flush_plan(Some(space), plan, scope);
    FlushRecord {
        leaf_only,
        ops,
        how: if scope == Scope::Broadcast {
            FlushHow::Broadcast
        } else {
            FlushHow::Local
        },
        coverage: FlushCoverage::Nothing,
    }
}

/// Issues and completes `plan` (for `space`, when it is a space's) on the CPUs `scope` reaches,
/// as the planted bugs of this layer say: `no-dsb` leaves the TLBIs uncompleted,
/// `tlbi-before-store-barrier` issues them before the store barrier that makes the clears
/// visible to table walkers.
fn flush_plan(space: Option<&AddressSpace>, plan: &FlushPlan, scope: Scope) {
    if planted(Bug::NoDsb) {
        tlb::issue_plan_nosync(plan, scope);
        return;
    }
    if planted(Bug::TlbiBeforeStoreBarrier) {
        tlb::issue_plan_before_store_barrier(plan, scope);
    } else {
        tlb::issue_plan_nosync(plan, scope);
    }
    complete(space.as_slice(), scope);
}

/// Completes this CPU's TLBIs of `scope`: the one completion of a space's TLB maintenance, with
/// every erratum workaround in force. Broadcast: `DSB ISH` and erratum 4118414's repeat (in
/// `arch::aarch64::tlb::complete`), then erratum 4193714's IPI to the other CPUs that run
/// `space` now ([`dvmsync`]). Local: `DSB NSH` (no erratum concerns a local TLBI).
pub fn complete(spaces: &[&AddressSpace], scope: Scope) {
    tlb::complete(scope);
    if scope == Scope::Broadcast && DVMSYNC_IPI.load(Ordering::Relaxed) {
        for space in spaces {
            dvmsync(space);
        }
    }
}

// ---- IPI baseline ------------------------------------------------------------------------

/// A shootdown request, one per initiating CPU.
#[repr(align(64))]
struct ShootdownRequest {
    /// The plan, stored op by op (at most `MAX_OPS`; a larger plan is sent as a whole-ASID flush).
    ops: [AtomicU64; MAX_OPS],
    kinds: [AtomicU8; MAX_OPS],
    count: AtomicU32,
    /// Targets that have not acknowledged yet.
    pending: AtomicU32,
}

const MAX_OPS: usize = 8;

static REQUESTS: [ShootdownRequest; MAX_CPUS] = [const {
    ShootdownRequest {
        ops: [const { AtomicU64::new(0) }; MAX_OPS],
        kinds: [const { AtomicU8::new(0) }; MAX_OPS],
        count: AtomicU32::new(0),
        pending: AtomicU32::new(0),
    }
}; MAX_CPUS];

/// For each target CPU: which initiators have a request for it (bit per CPU).
static INBOX: [[AtomicU64; MAX_CPUS / 64]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; MAX_CPUS / 64] }; MAX_CPUS];

/// Sync requests (table-free / unshare synchronisation): the same inbox scheme, ack only.
static SYNC_INBOX: [[AtomicU64; MAX_CPUS / 64]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; MAX_CPUS / 64] }; MAX_CPUS];
static SYNC_PENDING: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Erratum 4193714 requests: the same inbox scheme; the target completes its accesses
/// (`DSB ISH`), then acknowledges.
static DVMSYNC_INBOX: [[AtomicU64; MAX_CPUS / 64]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; MAX_CPUS / 64] }; MAX_CPUS];
static DVMSYNC_PENDING: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

fn op_kind(op: TlbiOp) -> u8 {
    match op {
        TlbiOp::Vae1 { .. } => 1,
        TlbiOp::Vale1 { .. } => 2,
        TlbiOp::Rvae1 { .. } => 3,
        TlbiOp::Rvale1 { .. } => 4,
        TlbiOp::Aside1 { .. } => 5,
        TlbiOp::Vmalle1 => 6,
        TlbiOp::Vaae1 { .. } => 7,
        TlbiOp::Vaale1 { .. } => 8,
    }
}

fn op_from(kind: u8, operand: u64) -> TlbiOp {
    match kind {
        1 => TlbiOp::Vae1 { operand },
        2 => TlbiOp::Vale1 { operand },
        3 => TlbiOp::Rvae1 { operand },
        4 => TlbiOp::Rvale1 { operand },
        5 => TlbiOp::Aside1 { operand },
        7 => TlbiOp::Vaae1 { operand },
        8 => TlbiOp::Vaale1 { operand },
        _ => TlbiOp::Vmalle1,
    }
}

fn ipi_shootdown(space: &AddressSpace, plan: &FlushPlan, tables_freed: bool) -> FlushRecord {
    let me = broadside_base::cpu_id();
    let req = &REQUESTS[me];
    // The local part first, with the same plan.
    flush_plan(None, plan, Scope::Local);
    let leaf_only = plan.ops().any(|op| op.is_leaf_only());
    let mut n = 0;
    if plan.op_count() <= MAX_OPS {
        for op in plan.ops() {
            req.ops[n].store(op.operand().unwrap_or(0), Ordering::Relaxed);
            req.kinds[n].store(op_kind(op), Ordering::Relaxed);
            n += 1;
        }
    } else if let Some(asid) = space.asid_number() {
        req.ops[0].store(tlbi_asid_operand(asid), Ordering::Relaxed);
        req.kinds[0].store(op_kind(TlbiOp::Aside1 { operand: 0 }), Ordering::Relaxed);
        n = 1;
    }
    req.count.store(n as u32, Ordering::Relaxed);
    // Targets: every CPU the space was active on, or every online CPU when tables were freed
    // (their walk caches may hold the freed tables even if the space never ran there).
    let is_target = |c: &&broadside_base::percpu::PerCpu| {
        c.index != me && (tables_freed || space.was_active_on(c.index))
    };
    // The targets are read once. Counting them and then sending to `is_target` again read
    // `cpus_ever` twice: a CPU that loaded the space in between got an SGI it was not counted
    // for, its acknowledgement took `pending` below zero (it wrapped), and the initiator
    // waited forever (seen in stress with flush=ipi: 2 IPIs sent, 1 counted). A CPU that loads
    // the space after this read needs no flush: `asid_after_table_stores` orders our table
    // stores before the read, and its activation orders its walks after its `cpus_ever` bit.
    let mut target_mask = [0u64; MAX_CPUS / 64];
    let mut targets = 0u32;
    for c in smp::online_cpus().filter(is_target) {
        target_mask[c.index / 64] |= 1 << (c.index % 64);
        targets += 1;
    }
    let is_counted = |i: usize| target_mask[i / 64] & (1 << (i % 64)) != 0;
    // Set before the first SGI goes out, so no acknowledgement can arrive before it.
    req.pending.store(targets, Ordering::Relaxed);
    for c in smp::online_cpus().filter(|c| is_counted(c.index)) {
        INBOX[c.index][me / 64].fetch_or(1 << (me % 64), Ordering::Release);
        gic::send_sgi(ipi::SGI_TLB_SHOOTDOWN, c.mpidr.load(Ordering::Relaxed));
        stats::count(Counter::IpisSent);
    }
    if targets > 0 {
        stats::count(Counter::SyncWaits);
    }
    while req.pending.load(Ordering::Acquire) != 0 {
        serve_ipi_requests();
        broadside_base::hint::cpu_relax();
    }
    FlushRecord {
        leaf_only,
        ops: plan.op_count() as u32,
        how: FlushHow::Ipi,
        coverage: FlushCoverage::Nothing,
    }
}

/// The SGI_TLB_SHOOTDOWN and SGI_SYNC handler body, also run by waiting initiators: performs
/// every pending request aimed at this CPU and acknowledges it.
pub fn serve_ipi_requests() {
    let me = broadside_base::cpu_id();
    for word in 0..MAX_CPUS / 64 {
        let mut bits = INBOX[me][word].swap(0, Ordering::Acquire);
        while bits != 0 {
            let from = word * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let req = &REQUESTS[from];
            let n = req.count.load(Ordering::Relaxed) as usize;
            tlb::begin(Scope::Local);
            for i in 0..n {
                let op = op_from(
                    req.kinds[i].load(Ordering::Relaxed),
                    req.ops[i].load(Ordering::Relaxed),
                );
                tlb::issue_one_local(op);
            }
            tlb::complete(Scope::Local);
            req.pending.fetch_sub(1, Ordering::Release);
        }
        let mut bits = SYNC_INBOX[me][word].swap(0, Ordering::Acquire);
        while bits != 0 {
            let from = word * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            SYNC_PENDING[from].fetch_sub(1, Ordering::Release);
        }
        let mut bits = DVMSYNC_INBOX[me][word].swap(0, Ordering::Acquire);
        if bits != 0 {
            // One barrier answers every initiator: each one's completion came before its SGI.
            tlb::complete_accesses();
        }
        while bits != 0 {
            let from = word * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            DVMSYNC_PENDING[from].fetch_sub(1, Ordering::Release);
        }
    }
}

/// Erratum 4193714's workaround, after a completion of `space`'s broadcast TLBIs: an SGI to
/// every other CPU that runs `space` now ([`AddressSpace::running_cpus`], read once, after the
/// completion), each of which completes its own accesses (`DSB ISH`) and acknowledges; this CPU
/// waits for all of them, serving requests meanwhile (as [`sync_all_cpus`] does). A CPU that
/// starts running the space after the read walks the new tables; one that left it completed its
/// accesses before it left the set.
fn dvmsync(space: &AddressSpace) {
    let me = broadside_base::cpu_id();
    let running = space.running_cpus();
    if !smp::online_cpus().any(|c| c.index != me && running.contains(c.index)) {
        return;
    }
    send_sync_and_wait(
        &DVMSYNC_INBOX,
        &DVMSYNC_PENDING,
        |cpu| running.contains(cpu),
        Some(Counter::ErratumDvmsyncIpis),
    );
}

/// Sends `SGI_SYNC` to every other online CPU that `is_target` accepts, with this CPU's bit set
/// in its `inbox`, and waits until each acknowledged through this CPU's `pending`, serving
/// requests meanwhile (another CPU may be waiting on this one). Counts each SGI in `ipis_sent`
/// (and in `also`), and the wait in `sync_waits`. The two syncs ([`sync_all_cpus`] and erratum
/// 4193714's [`dvmsync`]) differ only in their targets and in what a target does on receipt.
fn send_sync_and_wait(
    inbox: &[[AtomicU64; MAX_CPUS / 64]; MAX_CPUS],
    pending: &[AtomicU32; MAX_CPUS],
    is_target: impl Fn(usize) -> bool,
    also: Option<Counter>,
) {
    let me = broadside_base::cpu_id();
    let targets = || smp::online_cpus().filter(|c| c.index != me && is_target(c.index));
    // Set before the first SGI goes out, so no acknowledgement can arrive before it.
    pending[me].store(targets().count() as u32, Ordering::Relaxed);
    for c in targets() {
        inbox[c.index][me / 64].fetch_or(1 << (me % 64), Ordering::Release);
        gic::send_sgi(ipi::SGI_SYNC, c.mpidr.load(Ordering::Relaxed));
        stats::count(Counter::IpisSent);
        if let Some(k) = also {
            stats::count(k);
        }
    }
    stats::count(Counter::SyncWaits);
    while pending[me].load(Ordering::Acquire) != 0 {
        serve_ipi_requests();
        broadside_base::hint::cpu_relax();
    }
}

/// The SGI handler for shootdowns and syncs.
pub fn ipi_handler() {
    stats::count(Counter::SgisReceived);
    serve_ipi_requests();
}

/// Sends a sync IPI to every other online CPU and waits until each has taken it. A CPU takes an
/// IRQ only with IRQs unmasked, i.e. outside any lockless walk, so when this returns no walk that
/// began before the call is still running (Linux's `tlb_remove_table_sync_one`).
pub fn sync_all_cpus() {
    stats::count(Counter::TableSyncs);
    send_sync_and_wait(&SYNC_INBOX, &SYNC_PENDING, |_| true, None);
}

/// Registers the shootdown and sync handlers on `cpu`.
pub fn register_ipis(cpu: usize) {
    use arm_gic::IntId;
    gic::enable_private(IntId::sgi(ipi::SGI_TLB_SHOOTDOWN), cpu, ipi_handler);
    gic::enable_private(IntId::sgi(ipi::SGI_SYNC), cpu, ipi_handler);
}

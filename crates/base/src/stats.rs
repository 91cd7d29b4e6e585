//! Event counters: per-CPU, summed over CPUs in the `summary:` line.
//!
//! Each counter is a relaxed per-CPU atomic, so counting costs one uncontended atomic add and
//! never adds ordering to the code being measured. Names are published in the summary: once a
//! name is out, keep it.

use crate::config::MAX_CPUS;
use core::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, $kind:ident; )*) => {
        /// A counter published in the summary.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter { $( $(#[$doc])* $variant, )* }

        impl Counter {
            /// Every counter, in summary order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The snake_case name in the summary.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }

            /// How per-CPU values combine.
            pub const fn aggregate(self) -> Aggregate {
                match self { $(Counter::$variant => Aggregate::$kind,)* }
            }
        }
    };
}

/// How a counter's per-CPU values combine into the summary value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// The sum over CPUs (event counts).
    Sum,
    /// The largest value on any CPU (maxima, such as the longest grace period).
    Max,
}

counters! {
    /// Timer interrupts taken.
    TimerTicks => "timer_ticks", Sum;
    /// IRQs with no registered handler.
    SpuriousIrqs => "spurious_irqs", Sum;
    /// SGIs received (any purpose).
    SgisReceived => "sgis_received", Sum;
    /// Expected faults recovered through the fix-up table.
    FaultsFixedUp => "faults_fixed_up", Sum;
    /// TLBI instructions issued (every kind).
    TlbiOps => "tlbi_ops", Sum;
    /// Range TLBIs (RVAE1IS/RVALE1IS).
    TlbiRangeOps => "tlbi_range_ops", Sum;
    /// Whole-ASID TLBIs (ASIDE1IS).
    TlbiAsidOps => "tlbi_asid_ops", Sum;
    /// Non-broadcast TLBIs (the space was only ever active on this CPU, or IPI-driven).
    TlbiLocalOps => "tlbi_local_ops", Sum;
    /// Every `DSB ISH` executed: broadcast-TLBI completions and activation-before-walk barriers,
    /// and with an erratum workaround its repeats' barriers and its IPI targets' barriers too.
    DsbIsh => "dsb_ish", Sum;
    /// Erratum 4118414 (`errata=repeat-tlbi`): the extra `TLBI VALE1IS, XZR; DSB ISH` run after
    /// a completing `DSB ISH`, once per completion. Each also counts one in `tlbi_ops` and one in
    /// `dsb_ish`.
    ErratumTlbiRepeats => "erratum_tlbi_repeats", Sum;
    /// Erratum 4193714 (`errata=dvmsync-ipi`): IPIs sent after a completion to the CPUs running
    /// the space, each waited for. Also counted in `ipis_sent`.
    ErratumDvmsyncIpis => "erratum_dvmsync_ipis", Sum;
    /// SGIs sent for TLB shootdown or table-free synchronisation.
    IpisSent => "ipis_sent", Sum;
    /// Flush requests (ranges, ASIDs) made of the TLB layer.
    Flushes => "flushes", Sum;
    /// ASID generation rollovers.
    AsidRollovers => "asid_rollovers", Sum;
    /// Pages (4 KiB units) mapped into address spaces.
    PagesMapped => "pages_mapped", Sum;
    /// Pages (4 KiB units) unmapped from address spaces.
    PagesUnmapped => "pages_unmapped", Sum;
    /// Page-table pages freed back to the allocator.
    TablesFreed => "tables_freed", Sum;
    /// Reads of poison through a translation that should have been invalidated.
    StaleTlbDetected => "stale_tlb_detected", Sum;
    /// Grace periods completed.
    GracePeriods => "grace_periods", Sum;
    /// RCU callbacks invoked.
    RcuCallbacks => "rcu_callbacks", Sum;
    /// The longest grace period seen, in timer ticks.
    RcuMaxGpTicks => "rcu_max_gp_ticks", Max;
    /// Synchronous IPI broadcasts waiting for every CPU (table-free and unshare syncs).
    TableSyncs => "table_syncs", Sum;
    /// Table frees that fell back to invalidate + sync + free because no batch could be had.
    TableFreeFallbacks => "table_free_fallbacks", Sum;
    /// mmu_gather operations started.
    Gathers => "gathers", Sum;
    /// Flushes issued by gathers.
    GatherFlushes => "gather_flushes", Sum;
    /// Lockless walks started.
    WalkerWalks => "walker_walks", Sum;
    /// Lockless walks that pinned a page.
    WalkerPins => "walker_pins", Sum;
    /// Lockless walks that backed out because an entry changed under them.
    WalkerRetries => "walker_retries", Sum;
    /// Lockless walks that found no mapping.
    WalkerNotPresent => "walker_not_present", Sum;
    /// Use-after-free detections (poison, stale table metadata, wrong stamp).
    UafDetected => "uaf_detected", Sum;
    /// Flushes that covered freed or unshared tables with leaf-only TLBIs.
    LeafOnlyFlushDetected => "leaf_only_flush_detected", Sum;
    /// Level-2 tables unshared.
    TablesUnshared => "tables_unshared", Sum;
    /// Synchronous waits (any CPU spinning on other CPUs' acknowledgements).
    SyncWaits => "sync_waits", Sum;
    /// Gathers finished with a fully unshared table never flushed under the object lock.
    UnshareFlushMissed => "unshare_flush_missed", Sum;
    /// 4 KiB pages moved to another frame by page migration (break, invalidate, copy, make).
    PagesMigrated => "pages_migrated", Sum;
    /// Toucher probes: reads of stamped pages through the MMU (stress).
    Touches => "touches", Sum;
    /// Mutator operations started (stress): unmap/remap, protect, block, sparse, sharing and
    /// replace cycles. The work a run did, for comparing runs of equal length.
    MutatorOps => "mutator_ops", Sum;
    /// Seeded yield points that yielded (`yield_points=on`; see `broadside_base::hint`).
    YieldPoints => "yield_points", Sum;
    /// Self-test scenarios that failed a check (each also prints its name).
    SelftestFailures => "selftest_failures", Sum;
    /// Flush obligations the sanitizer recorded (`audit=on`): one per cleared or weakened leaf,
    /// one or two per unhooked table. Non-zero in a passing run shows the audit ran.
    FlushObligations => "flush_obligations", Sum;
    /// Frees, reuses and returns the sanitizer found with an obligation still open.
    FlushGapDetected => "flush_gap_detected", Sum;
    /// Sanitizer checks made: frames checked before their free or reuse, operations checked
    /// before they returned.
    FlushChecks => "flush_checks", Sum;
    /// Obligations a check let go because every CPU still holding them owed an ASID rollover's
    /// local flush and did not run their ASID: each is checked again at that CPU's next TTBR0
    /// load.
    FlushDeferred => "flush_deferred", Sum;
    /// TTBR0 loads of a user ASID the sanitizer checked (rollover flush done, no ASID reused,
    /// no deferred entry made usable). Non-zero in a passing run shows it looked.
    Ttbr0LoadsChecked => "ttbr0_loads_checked", Sum;
    /// Obligations the sanitizer could not record because its piece budget (sized at boot) or
    /// memory ran out: it checked less, and says so. Zero in a run it checked fully.
    AuditDropped => "audit_dropped", Sum;
    /// TTBR0 loads that made another space's entries, or entries a rollover flush should have
    /// removed, usable under the loaded ASID (`asid rollover:` and `asid reuse:` reports).
    AsidReuseDetected => "asid_reuse_detected", Sum;
    /// Valid leaves rewritten in place where break-before-make was required
    /// (`break-before-make:` reports).
    BbmViolationDetected => "bbm_violation_detected", Sum;
    /// Stores the weak-memory emulation held in a CPU's store buffer (`weak=on`; see
    /// `broadside_base::weak`). Non-zero in a passing run shows it reordered.
    WeakStoresBuffered => "weak_stores_buffered", Sum;
    /// Loads of the emulated locations made while the CPU still held older stores to other
    /// locations: the store → load reorderings the emulation produced (`weak=on`).
    WeakLoadsReordered => "weak_loads_reordered", Sum;
    /// A CPU left an address space's activation gate after its destroyer had found the gate
    /// drained: it was inside while the space was torn down.
    GateBreachDetected => "gate_breach_detected", Sum;
    /// The lockless walker kept a pin on a page that was unmapped between its load of the entry
    /// and its pin (the re-check, or the back-out, was skipped).
    StalePinDetected => "stale_pin_detected", Sum;
    /// A frame freed while already free, or a reference dropped from a count of zero.
    DoubleFreeDetected => "double_free_detected", Sum;
    /// `map_object` broke its contract in stress: it mapped into a space whose destroy had
    /// begun, or failed and left one of the object's tables hooked in a space that does not
    /// list the object.
    MapContractDetected => "map_contract_detected", Sum;
    /// An unmap or teardown reached a table its space does not own (a shared table left
    /// hooked): it was left alone rather than freed under its other users.
    ForeignTableDetected => "foreign_table_detected", Sum;
    /// `protect` calls whose every change was a permission upgrade: they issued no TLBI (a
    /// stale, more restrictive entry can only fault, and the fault is fixed locally).
    UpgradesUnflushed => "upgrades_unflushed", Sum;
    /// Permission faults on an entry that already allowed the access (a stale, more
    /// restrictive TLB entry), fixed by a local invalidation of the one VA and a retry.
    SpuriousFaultsFixed => "spurious_faults_fixed", Sum;
    /// A CPU took permission fault after permission fault on one VA whose entry allows the
    /// access, without progress: a spurious-fault handler that does not invalidate.
    FaultLoopDetected => "fault_loop_detected", Sum;
    /// Pages unmapped into a deferred TLB batch (reclaim): a `TLBI VALE1IS` each, with no
    /// `DSB` of their own (Linux's `arch_tlbbatch_add_pending`).
    BatchedPages => "batched_pages", Sum;
    /// Deferred batches completed by one `DSB ISH` on the CPU that issued their TLBIs
    /// (`arch_tlbbatch_flush`): `dsb_ish` per batched page is 1 / batch size.
    BatchFlushes => "batch_flushes", Sum;
    /// An unmap or `protect` found another CPU's batch pending on its space and invalidated
    /// the space again before going on (Linux's `flush_tlb_batched_pending`).
    BatchPendingFlushes => "batch_pending_flushes", Sum;
}

/// Number of counters.
pub const COUNTERS: usize = Counter::ALL.len();

#[repr(align(64))]
struct CpuCounters([AtomicU64; COUNTERS]);

static COUNTS: [CpuCounters; MAX_CPUS] =
    [const { CpuCounters([const { AtomicU64::new(0) }; COUNTERS]) }; MAX_CPUS];

/// Adds one to `c` on this CPU.
#[inline(always)]
pub fn count(c: Counter) {
    add(c, 1);
}

/// Counts one detection: a detector found what it exists to catch (a stale TLB entry, a
/// use-after-free, a leaf-only flush of freed tables, a missed unshare flush, a failed self-test
/// check). Never inlined: it is the one place every detector reports through, so a debugger
/// stops at any detection with one breakpoint (`scripts/replay.sh` sets it; the caller's frame
/// is the detector, with its state).
#[inline(never)]
pub fn detected(c: Counter) {
    add(c, 1);
    crate::events::mark(crate::events::Kind::Detection, c as u64, 0);
}

/// Adds `n` to `c` on this CPU.
#[inline(always)]
pub fn add(c: Counter, n: u64) {
    COUNTS[crate::cpu_id()].0[c as usize].fetch_add(n, Ordering::Relaxed);
}

/// Raises `c` on this CPU to at least `v` (for [`Aggregate::Max`] counters).
pub fn record_max(c: Counter, v: u64) {
    COUNTS[crate::cpu_id()].0[c as usize].fetch_max(v, Ordering::Relaxed);
}

/// The value of `c` on `cpu`.
pub fn read_cpu(c: Counter, cpu: usize) -> u64 {
    COUNTS[cpu].0[c as usize].load(Ordering::Relaxed)
}

/// The value of `c` over all CPUs.
pub fn read(c: Counter) -> u64 {
    let values = COUNTS
        .iter()
        .map(|cpu| cpu.0[c as usize].load(Ordering::Relaxed));
    match c.aggregate() {
        Aggregate::Sum => values.sum(),
        Aggregate::Max => values.max().unwrap_or(0),
    }
}

/// A snapshot of every counter, for measuring a phase as the difference of two snapshots.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot(pub [u64; COUNTERS]);

impl Snapshot {
    /// Every counter's current value (summed or maxed over CPUs).
    pub fn take() -> Self {
        let mut s = [0; COUNTERS];
        for c in Counter::ALL {
            s[*c as usize] = read(*c);
        }
        Self(s)
    }

    /// The value of `c` in this snapshot.
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// Counts since `earlier` (for Max counters, the later value).
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut d = [0; COUNTERS];
        for c in Counter::ALL {
            let i = *c as usize;
            d[i] = match c.aggregate() {
                Aggregate::Sum => self.0[i].wrapping_sub(earlier.0[i]),
                Aggregate::Max => self.0[i],
            };
        }
        Snapshot(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        for (i, a) in Counter::ALL.iter().enumerate() {
            assert!(
                a.name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            );
            for b in &Counter::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
            assert_eq!(Counter::ALL[*a as usize], *a);
        }
    }

    #[test]
    fn sum_and_max_aggregate() {
        let before = Snapshot::take();
        add(Counter::TablesUnshared, 5);
        COUNTS[3].0[Counter::TablesUnshared as usize].fetch_add(2, Ordering::Relaxed);
        record_max(Counter::RcuMaxGpTicks, 7);
        record_max(Counter::RcuMaxGpTicks, 3);
        let d = Snapshot::take().since(&before);
        assert_eq!(d.get(Counter::TablesUnshared), 7);
        assert!(read(Counter::RcuMaxGpTicks) >= 7);
    }
}

//! `workload=flush-bench`: what each way of flushing less saves per operation, against the path
//! it replaced, in one boot. `scripts/bench.sh --flush` runs it at 4, 64 and 512 CPUs and
//! charts it.
//!
//! Each feature is one operation, run once unmeasured and then [`ROUNDS`] times per path, on the
//! boot CPU, in a space that has run on every CPU (so every flush must reach them all):
//!
//! | feature   | operation                                | `old` path                    | `new` path                            |
//! |-----------|------------------------------------------|-------------------------------|---------------------------------------|
//! | `upgrade` | [`PAGES`] pages read-only → read-write   | flushed like a downgrade      | no TLBI (a stale entry faults, fixed locally) |
//! | `batch`   | reclaim [`PAGES`] single pages           | a flush, and its `DSB`, per page | one `TLBI` per page, one `DSB ISH` per batch |
//! | `repeat`  | `batch`'s new path, with erratum 4118414's workaround forced on | `DSB ISH` and the TLBI again after every TLBI (Linux before a8f78680ee6b) | one `TLBI VALE1IS, XZR; DSB ISH` per completion |
//!
//! The other CPUs are idle: every count is exact and a function of the CPU count and the CPU
//! model alone (and of `errata=`: with erratum 4118414 in force, `upgrade` and `batch` carry its
//! repeat too, once per completion). `ticks_per_op` is CNTVCT ticks: under `--deterministic` (what `bench.sh --flush`
//! uses) virtual time, a fixed number of instructions; otherwise QEMU TCG host time. Neither is
//! hardware time: on hardware the `DSB ISH` that the batch saves is most of a reclaim's flush
//! (95% on Kunpeng 920, Linux 43b3dfdd0455), and QEMU completes a broadcast TLBI at once.
//!
//! The new upgrade path moves a cost rather than removing it: a CPU that still holds a
//! read-only entry takes one spurious fault on its next write and drops the entry with one local
//! TLBI. QEMU's TLB takes no such fault (it re-walks on a permission miss), so it is not in these
//! counts; the audit's model of it, and its counts, are in the self-test and stress.

use super::Outcome;
use super::sizing::{self, free_memory, refuse};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use broadside_arch::VirtAddr;
use broadside_arch::aarch64::cpu;
use broadside_arch::aarch64::tlb::RepeatForm;
use broadside_arch::pte::{Attributes, PAGE_SIZE};
use broadside_base::percpu::Role;
use broadside_base::stats::{Counter, Snapshot};
use broadside_mm::aspace::AddressSpace;
use broadside_mm::gather::MmuGather;
use broadside_mm::mprotect;
use broadside_mm::tlb;
use broadside_mm::tlbbatch::TlbBatch;
use broadside_platform::boot_info::BootInfo;
use broadside_platform::kprintln;
use broadside_smp as smp;
use broadside_summary::json::JsonObject;

/// Operations per path: the per-op figures are totals over this many.
pub const ROUNDS: u64 = 8;
/// Pages each operation covers (within one level-3 table, no table freed).
pub const PAGES: u64 = 64;

const BASE: VirtAddr = VirtAddr::new(0x80_0000_0000);
const MIB: u64 = 1 << 20;

/// The figures per op, as (summary name, counter).
const PER_OP: [(&str, Counter); 5] = [
    ("tlbi_ops_per_op", Counter::TlbiOps),
    ("dsb_ish_per_op", Counter::DsbIsh),
    ("ipis_sent_per_op", Counter::IpisSent),
    ("sync_waits_per_op", Counter::SyncWaits),
    ("tlbi_local_ops_per_op", Counter::TlbiLocalOps),
];

/// A feature and its two paths.
#[derive(Clone, Copy)]
enum Feature {
    Upgrade,
    Batch,
    Repeat,
}

impl Feature {
    const ALL: [Feature; 3] = [Feature::Upgrade, Feature::Batch, Feature::Repeat];

    fn name(self) -> &'static str {
        match self {
            Feature::Upgrade => "upgrade",
            Feature::Batch => "batch",
            Feature::Repeat => "repeat",
        }
    }
}

struct PathResult {
    feature: Feature,
    new: bool,
    /// Totals over the measured rounds, in [`PER_OP`]'s order.
    totals: [u64; PER_OP.len()],
    ticks: u64,
}

impl PathResult {
    /// `k`'s total over the rounds (one of [`PER_OP`]'s counters).
    fn total(&self, k: Counter) -> u64 {
        PER_OP
            .iter()
            .position(|&(_, c)| c == k)
            .map_or(0, |i| self.totals[i])
    }
}

/// Measures every feature's old and new path and reports their costs per op.
pub fn run(info: &'static BootInfo) -> Outcome {
    let (free, ram) = free_memory(info);
    let need = need_bytes();
    if free < need {
        refuse("flush-bench", "the operations", need, free, ram);
    }
    kprintln!(
        "flush-bench: {} CPUs, {ROUNDS} ops per path; upgrade = {PAGES} pages read-only -> read-write, batch = reclaim {PAGES} pages, repeat = batch with erratum 4118414's workaround; the other CPUs idle; ticks are QEMU time, not hardware time",
        smp::online_count()
    );
    let this = smp::this_cpu();
    this.set_role(Role::Bench);
    let space = Arc::new(must("the space", AddressSpace::new));
    {
        let _g = space.lock.lock();
        // One page more than the operations touch: it keeps their level-3 table from emptying,
        // so that no path frees tables (and flushes walk caches) in some rounds and not others.
        must("the pages", || {
            space
                .map_pages(BASE, PAGES + 1, Attributes::user_data_rw())
                .filter(|&n| n == PAGES + 1)
        });
    }
    super::activate_everywhere(&space);
    let mut results = Vec::new();
    for feature in Feature::ALL {
        for new in [false, true] {
            results.push(measure(&space, feature, new));
        }
    }
    mprotect::set_flush_upgrades(false);
    space.destroy();
    this.set_role(Role::None);
    report(&results)
}

fn need_bytes() -> u64 {
    (PAGES + 1) * PAGE_SIZE + 4 * MIB
}

fn must<T>(what: &str, alloc: impl FnMut() -> Option<T>) -> T {
    sizing::must("flush-bench", what, need_bytes, alloc)
}

/// Runs `feature`'s operation `ROUNDS` times on its `new` or old path; only the operation is
/// measured (the set-up each needs, a downgrade or a remap, is not).
fn measure(space: &Arc<AddressSpace>, feature: Feature, new: bool) -> PathResult {
    mprotect::set_flush_upgrades(!new);
    if let Feature::Repeat = feature {
        tlb::force_repeat_tlbi(Some(if new {
            RepeatForm::PerCompletion
        } else {
            RepeatForm::PerTlbi
        }));
    }
    let mut totals = [0; PER_OP.len()];
    let mut ticks = 0;
    for round in 0..=ROUNDS {
        prepare(space, feature);
        let before = Snapshot::take();
        let t0 = cpu::counter();
        operate(space, feature, new);
        let t = cpu::counter() - t0;
        // Round 0 is the unmeasured one (first-use costs).
        if round > 0 {
            let d = Snapshot::take().since(&before);
            for (total, &(_, k)) in totals.iter_mut().zip(&PER_OP) {
                *total += d.get(k);
            }
            ticks += t;
        }
    }
    if let Feature::Repeat = feature {
        tlb::force_repeat_tlbi(None);
    }
    PathResult {
        feature,
        new,
        totals,
        ticks,
    }
}

/// What an operation starts from: the pages read-only (upgrade), or mapped (batch).
fn prepare(space: &AddressSpace, feature: Feature) {
    let _g = space.lock.lock();
    match feature {
        Feature::Upgrade => {
            space
                .protect(BASE, BASE + PAGES * PAGE_SIZE, Attributes::user_data_ro())
                .expect("protect of the bench's own pages");
        }
        Feature::Batch | Feature::Repeat => {
            // Reclaimed pages are mapped again (the ones still mapped are left as they are).
            for k in 0..PAGES {
                let va = BASE + k * PAGE_SIZE;
                if space.lookup(va).is_none() {
                    must("a page", || {
                        space.map_pages(va, 1, Attributes::user_data_rw())
                    });
                }
            }
        }
    }
}

fn operate(space: &Arc<AddressSpace>, feature: Feature, new: bool) {
    match feature {
        Feature::Upgrade => {
            let _g = space.lock.lock();
            space
                .protect(BASE, BASE + PAGES * PAGE_SIZE, Attributes::user_data_rw())
                .expect("protect of the bench's own pages");
        }
        // For `repeat` only the workaround's form differs between the paths.
        Feature::Batch if new => reclaim_batched(space),
        Feature::Repeat => reclaim_batched(space),
        Feature::Batch => {
            // The path before batching: each page unmapped and flushed on its own
            // (`ptep_clear_flush`).
            for k in 0..PAGES {
                let va = BASE + k * PAGE_SIZE;
                let _g = space.lock.lock();
                let mut gather = MmuGather::new_range(space);
                gather.unmap(va, va + PAGE_SIZE);
                gather.finish();
            }
        }
    }
}

/// Reclaims the [`PAGES`] pages in one batch: a TLBI per page, one completion.
fn reclaim_batched(space: &Arc<AddressSpace>) {
    let mut batch = TlbBatch::new();
    for k in 0..PAGES {
        batch.unmap_page(space, BASE + k * PAGE_SIZE);
    }
    batch.flush();
}

fn path_name(r: &PathResult) -> String {
    alloc::format!("{}-{}", r.feature.name(), if r.new { "new" } else { "old" })
}

fn summary_members(results: &[PathResult]) -> Result<String, core::fmt::Error> {
    let mut json = String::new();
    let mut members = JsonObject::members(&mut json);
    let mut modes = members.object("modes")?;
    for r in results {
        let mut mode = modes.object(&path_name(r))?;
        for (name, k) in PER_OP {
            mode.u64(name, r.total(k) / ROUNDS)?;
        }
        mode.u64("ticks_per_op", r.ticks / ROUNDS)?
            .u64("ops", ROUNDS)?;
        mode.finish()?;
    }
    modes.finish()?;
    members
        .object("flush_bench")?
        .u64("ops", ROUNDS)?
        .u64("pages", PAGES)?
        .u64("counter_hz", cpu::counter_frequency())?;
    drop(members);
    Ok(json)
}

fn report(results: &[PathResult]) -> Outcome {
    kprintln!(
        "flush-bench: {:<12} {:>15} {:>14} {:>16} {:>17} {:>21} {:>13}",
        "path",
        "tlbi_ops_per_op",
        "dsb_ish_per_op",
        "ipis_sent_per_op",
        "sync_waits_per_op",
        "tlbi_local_ops_per_op",
        "ticks_per_op"
    );
    for r in results {
        let c = |k| r.total(k) / ROUNDS;
        kprintln!(
            "flush-bench: {:<12} {:>15} {:>14} {:>16} {:>17} {:>21} {:>13}",
            path_name(r),
            c(Counter::TlbiOps),
            c(Counter::DsbIsh),
            c(Counter::IpisSent),
            c(Counter::SyncWaits),
            c(Counter::TlbiLocalOps),
            r.ticks / ROUNDS
        );
    }
    for pair in results.chunks(2) {
        if let [old, new] = pair {
            kprintln!(
                "flush-bench: {}: new/old ticks per op {:.3}, dsb_ish per op {} -> {}",
                old.feature.name(),
                new.ticks as f64 / old.ticks.max(1) as f64,
                old.total(Counter::DsbIsh) / ROUNDS,
                new.total(Counter::DsbIsh) / ROUNDS
            );
        }
    }
    let json = summary_members(results).expect("a String takes every write");
    let mut out = Outcome::from_checks(true);
    out.extra_json = Some(json);
    out
}

//! `workload=scale-bench`: what each shootdown and sync strategy costs per operation, as the
//! machine grows. `scripts/bench.sh --scale` runs it at 1, 2, 4, ... 512 CPUs and charts it.
//!
//! One fixed mix of operations — one *op* — is run once unmeasured and then [`ROUNDS`] times per
//! strategy on the boot CPU, in a parent space that has run on every CPU (as a process whose threads ran
//! everywhere):
//!
//! 1. a permission change: 512 pages (one level-3 table) made read-only (a leaf-only flush);
//! 2. an unmap of that range, which frees its level-3, level-2 and level-1 tables (a flush that
//!    covers walk caches, then the tables wait for walkers);
//! 3. a fork and exit over shared tables: a child shares the parent's [`SHARED_GIB`] level-2
//!    tables of a shared object, runs once, and exits, which fully unshares them (the parent is
//!    their last other user).
//!
//! The strategies, each a setting of the `flush=`, `tablefree=` and `unshare=` mechanisms that
//! `stress` and `unshare-bench` use (switched between measurements, never during one):
//!
//! | strategy    | flush | tablefree    | unshare     |
//! |-------------|-------|--------------|-------------|
//! | `tlbi`      | tlbi  | rcu          | recheck     |
//! | `ipi`       | ipi   | rcu          | recheck     |
//! | `sync-each` | tlbi  | sync-each    | sync-each   |
//! | `sync-last` | tlbi  | sync-batch   | sync-last   |
//! | `recheck`   | tlbi  | rcu          | recheck     |
//!
//! `tlbi` against `ipi` is the shootdown alone (nothing else sends an IPI). `sync-each`,
//! `sync-last` and `recheck` are the walker synchronisations of freed and unshared tables: an
//! IPI sync per table (Linux before the mmu_gather fix), one per batch and only for the last
//! sharer (the fix), none (broadside's re-checking walker, whose tables wait for a grace period
//! instead). `recheck` is the configuration of `tlbi` seen from the sync side; both are measured,
//! and their counts agree.
//!
//! The other CPUs are idle: they answer IPIs and take ticks, nothing more, so every count is
//! exact and a function of the CPU count alone. Per-op figures are totals over the rounds
//! divided by [`ROUNDS`]; the totals are reported too. `ticks_per_op` is CNTVCT ticks under QEMU
//! TCG: wall time on the host, not hardware time.

use super::Outcome;
use super::sizing::{self, free_memory, refuse};
use crate::settings::settings;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use broadside_arch::VirtAddr;
use broadside_arch::aarch64::cpu;
use broadside_arch::pte::{Attributes, L2_BLOCK_SIZE, PAGE_SIZE};
use broadside_base::percpu::Role;
use broadside_base::stats::{Counter, Snapshot};
use broadside_mm::aspace::AddressSpace;
use broadside_mm::gather::MmuGather;
use broadside_mm::mm_types::SharedObject;
use broadside_mm::settings::{FlushMode, TableFreeMode, UnshareMode};
use broadside_mm::shared;
use broadside_mm::{table_free, tlb, unshare_sync};
use broadside_platform::boot_info::BootInfo;
use broadside_platform::kprintln;
use broadside_smp as smp;
use broadside_summary::json::JsonObject;

/// Rounds of the mix per strategy: the per-op figures are totals over this many.
pub const ROUNDS: u64 = 8;
/// Level-2 tables of the shared object that each fork shares and each exit unshares.
pub const SHARED_GIB: u64 = 4;
/// Pages the permission change and the unmap cover: one full level-3 table.
pub const PAGES: u64 = 512;

/// The private range: its own level-1 entry, so its unmap frees a level-3, a level-2 and a
/// level-1 table.
const PAGES_BASE: VirtAddr = VirtAddr::new(0x80_0000_0000);
/// The shared object, in another level-0 entry.
const OBJECT_BASE: VirtAddr = VirtAddr::new(0x100_0000_0000);
/// Physical 2 MiB frames behind the object's blocks.
const OBJECT_FRAMES: usize = 1;
const MIB: u64 = 1 << 20;

/// One strategy: its name and the three mechanisms' settings.
#[derive(Clone, Copy)]
struct Strategy {
    name: &'static str,
    flush: FlushMode,
    tablefree: TableFreeMode,
    unshare: UnshareMode,
}

const STRATEGIES: [Strategy; 5] = [
    Strategy {
        name: "tlbi",
        flush: FlushMode::Tlbi,
        tablefree: TableFreeMode::Rcu,
        unshare: UnshareMode::Recheck,
    },
    Strategy {
        name: "ipi",
        flush: FlushMode::Ipi,
        tablefree: TableFreeMode::Rcu,
        unshare: UnshareMode::Recheck,
    },
    Strategy {
        name: "sync-each",
        flush: FlushMode::Tlbi,
        tablefree: TableFreeMode::SyncEach,
        unshare: UnshareMode::SyncEach,
    },
    Strategy {
        name: "sync-last",
        flush: FlushMode::Tlbi,
        tablefree: TableFreeMode::SyncBatch,
        unshare: UnshareMode::SyncLast,
    },
    Strategy {
        name: "recheck",
        flush: FlushMode::Tlbi,
        tablefree: TableFreeMode::Rcu,
        unshare: UnshareMode::Recheck,
    },
];

/// The per-op figures, as (summary name, counter).
const PER_OP: [(&str, Counter); 4] = [
    ("ipis_sent_per_op", Counter::IpisSent),
    ("tlbi_ops_per_op", Counter::TlbiOps),
    ("dsb_ish_per_op", Counter::DsbIsh),
    ("sync_waits_per_op", Counter::SyncWaits),
];

/// Totals reported beside the per-op figures.
/// (`tables_freed` is not among them: with `tablefree=rcu` a table counts as freed when its
/// grace period ends, which may fall after the measurement.)
const TOTALS: [Counter; 8] = [
    Counter::IpisSent,
    Counter::TlbiOps,
    Counter::DsbIsh,
    Counter::SyncWaits,
    Counter::TableSyncs,
    Counter::TablesUnshared,
    Counter::UafDetected,
    Counter::LeafOnlyFlushDetected,
];

struct StrategyResult {
    strategy: Strategy,
    counts: Snapshot,
    ticks: u64,
}

/// Runs the mix once per strategy on the boot CPU and reports each strategy's costs per op.
pub fn run(info: &'static BootInfo) -> Outcome {
    let (free, ram) = free_memory(info);
    let need = need_bytes();
    if free < need {
        refuse("scale-bench", "the mix", need, free, ram);
    }
    kprintln!(
        "scale-bench: {} CPUs, {ROUNDS} ops per strategy; one op = protect {PAGES} pages, unmap them (3 tables freed), fork+exit over {SHARED_GIB} shared level-2 tables; the other CPUs idle; ticks are QEMU TCG time, not hardware time",
        smp::online_count()
    );
    // On this CPU alone: the others stay in their idle loop (the point is what the strategies
    // cost the CPUs that are not involved), from which each measurement's `run_on_all`
    // (activating its spaces everywhere) wakes them.
    let this = smp::this_cpu();
    this.set_role(Role::Bench);
    let results: Vec<StrategyResult> = STRATEGIES.into_iter().map(measure).collect();
    this.set_role(Role::None);
    // Back to what the arguments asked for.
    tlb::set_flush_mode(settings().mm.flush);
    table_free::set_mode(settings().mm.tablefree);
    unshare_sync::set_mode(settings().mm.unshare);
    report(&results)
}

/// Memory the mix needs at once: the object's frame and tables, the pages, two spaces' upper
/// tables, and a reserve for gather batches and tables waiting for their grace period.
fn need_bytes() -> u64 {
    OBJECT_FRAMES as u64 * L2_BLOCK_SIZE + SHARED_GIB * PAGE_SIZE + PAGES * PAGE_SIZE + 8 * MIB
}

/// An allocation the mix cannot go without ([`sizing::must`]): sized at start, so a failure
/// means the memory estimate was wrong.
fn must<T>(what: &str, alloc: impl FnMut() -> Option<T>) -> T {
    sizing::must("scale-bench", what, need_bytes, alloc)
}

/// Runs the mix `ROUNDS` times under `strategy`.
fn measure(strategy: Strategy) -> StrategyResult {
    tlb::set_flush_mode(strategy.flush);
    table_free::set_mode(strategy.tablefree);
    unshare_sync::set_mode(strategy.unshare);
    // Table frees of the previous strategy finish first, so they are not counted here.
    broadside_sync::rcu_kernel::barrier();

    let obj = must("the shared object", || {
        SharedObject::new(SHARED_GIB, OBJECT_FRAMES)
    });
    let parent = Arc::new(must("the parent", AddressSpace::new));
    must("the parent's mapping", || {
        shared::map_object(&parent, &obj, OBJECT_BASE).ok()
    });
    // The parent has run on every CPU: its flushes must reach them all.
    super::activate_everywhere(&parent);

    // One op unmeasured, so that first-use costs (heap growth, the first ASIDs) fall outside.
    one_op(&parent);
    broadside_sync::rcu_kernel::barrier();

    let before = Snapshot::take();
    let t0 = cpu::counter();
    for _ in 0..ROUNDS {
        one_op(&parent);
    }
    let ticks = cpu::counter() - t0;
    let counts = Snapshot::take().since(&before);

    shared::unmap_object(&parent, &obj, OBJECT_BASE);
    parent.destroy();
    drop(obj);
    broadside_sync::rcu_kernel::barrier();
    StrategyResult {
        strategy,
        counts,
        ticks,
    }
}

/// One op of the mix.
fn one_op(parent: &Arc<AddressSpace>) {
    let end = PAGES_BASE + PAGES * PAGE_SIZE;
    {
        let _g = parent.lock.lock();
        must("the pages", || {
            parent
                .map_pages(PAGES_BASE, PAGES, Attributes::user_data_rw())
                .filter(|&n| n == PAGES)
        });
        // A permission change: every page read-only (nothing shared in this range, nothing
        // partial, the space is live: it cannot be refused).
        parent
            .protect(PAGES_BASE, end, Attributes::user_data_ro())
            .expect("protect of the bench's own pages");
        // The unmap: the pages and the level-3, -2 and -1 tables that held them.
        let mut gather = MmuGather::new_range(parent);
        gather.unmap(PAGES_BASE, end);
        gather.finish();
    }
    // Fork and exit over the shared tables.
    let child = must("a child", AddressSpace::new);
    must("the child's mapping", || {
        shared::fork_objects(parent, &child).ok()
    });
    if child.activate() {
        child.deactivate();
    }
    child.destroy();
}

/// The summary's members: `modes` (per strategy: the per-op figures, `ops`, and the totals
/// behind them) and `scale` (the mix's size and the counter frequency).
fn summary_members(results: &[StrategyResult]) -> Result<String, core::fmt::Error> {
    let mut json = String::new();
    let mut members = JsonObject::members(&mut json);
    let mut modes = members.object("modes")?;
    for r in results {
        let c = |k| r.counts.get(k);
        let mut mode = modes.object(r.strategy.name)?;
        for (name, k) in PER_OP {
            mode.u64(name, c(k) / ROUNDS)?;
        }
        mode.u64("ticks_per_op", r.ticks / ROUNDS)?
            .u64("ops", ROUNDS)?;
        for k in TOTALS {
            mode.u64(k.name(), c(k))?;
        }
        mode.finish()?;
    }
    modes.finish()?;
    members
        .object("scale")?
        .u64("ops", ROUNDS)?
        .u64("pages", PAGES)?
        .u64("shared_gib", SHARED_GIB)?
        .u64("counter_hz", cpu::counter_frequency())?;
    drop(members);
    Ok(json)
}

fn report(results: &[StrategyResult]) -> Outcome {
    kprintln!(
        "scale-bench: {:<10} {:>16} {:>15} {:>14} {:>17} {:>12} {:>14}",
        "strategy",
        "ipis_sent_per_op",
        "tlbi_ops_per_op",
        "dsb_ish_per_op",
        "sync_waits_per_op",
        "table_syncs",
        "ticks_per_op"
    );
    let mut ok = true;
    for r in results {
        let c = |k| r.counts.get(k);
        kprintln!(
            "scale-bench: {:<10} {:>16} {:>15} {:>14} {:>17} {:>12} {:>14}",
            r.strategy.name,
            c(Counter::IpisSent) / ROUNDS,
            c(Counter::TlbiOps) / ROUNDS,
            c(Counter::DsbIsh) / ROUNDS,
            c(Counter::SyncWaits) / ROUNDS,
            c(Counter::TableSyncs),
            r.ticks / ROUNDS
        );
        ok &= c(Counter::UafDetected) == 0 && c(Counter::LeafOnlyFlushDetected) == 0;
    }
    let json = summary_members(results).expect("a String takes every write");
    kprintln!(
        "scale-bench: per-op figures are totals / {ROUNDS}; ticks are CNTVCT at {} Hz under QEMU TCG, not hardware time",
        cpu::counter_frequency()
    );
    let mut out = Outcome::from_checks(ok);
    out.extra_json = Some(json);
    out
}

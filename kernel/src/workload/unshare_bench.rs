//! `workload=unshare-bench`: the scenario of Linux's fix for excessive IPI broadcasts when
//! unsharing PMD tables, measured for all three `unshare=` modes side by side in one boot.
//!
//! A parent maps a shared object over `tables=` level-2 tables (1 GiB each), forks `children=`
//! children (each shares every table), the children exit (each unshares every table; the last
//! one leaves the parent alone, fully unsharing them), then the parent unmaps (the last user:
//! the tables are freed). Walker CPUs run lockless walks over the live spaces throughout and
//! load them into TTBR0 now and then, as the processes' threads would.
//!
//! Once the last child has exited, the parent — now the only user of every table — adopts
//! some of them (`adopt_if_exclusive`: it takes the table over as its own and installs a private
//! 2 MiB block in it) while the walkers keep walking the tables through every space. A walker
//! that raced with a child's unshare and is still inside a table when the parent adopts it finds
//! a table of another space, or pins the parent's private block: `uaf_detected`. Without the
//! adoption a missing unshare sync (`bug=unshare-no-sync`) would have nothing to break. How many
//! tables are adopted is fixed at start from the free memory (each adoption takes a 2 MiB
//! frame): all of them when memory allows.
//!
//! Reported per mode: IPIs, syncs, TLBIs, DSBs, synchronous waits, grace periods, tables
//! unshared, use-after-free detections, tables adopted, and CNTVCT ticks per fork+exit and per
//! unmap. The adoptions' own flushes are not part of the scenario Linux's fix is about: they are
//! taken out of the mode's counts and reported alone (`adopt_tlbi_ops`), and their time is in
//! neither tick figure. Times are QEMU TCG wall time, not hardware time: compare them only as
//! ratios within one boot.

use super::Outcome;
use super::sizing::{self, free_memory, refuse};
use crate::settings::settings;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use broadside_arch::VirtAddr;
use broadside_arch::aarch64::cpu;
use broadside_arch::pte::{L1_BLOCK_SIZE, L2_BLOCK_SIZE, PAGE_SIZE};
use broadside_base::IrqSpinlock;
use broadside_base::percpu::Role;
use broadside_base::stats::{Counter, Snapshot};
use broadside_mm::aspace::AddressSpace;
use broadside_mm::mm_types::SharedObject;
use broadside_mm::settings::UnshareMode;
use broadside_mm::shared;
use broadside_mm::unshare_sync;
use broadside_mm::walker::{self, WalkConfig, WalkOutcome};
use broadside_platform::boot_info::BootInfo;
use broadside_platform::kprintln;
use broadside_smp as smp;
use broadside_summary::json::JsonObject;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const OBJECT_BASE: VirtAddr = VirtAddr::new(0x100_0000_0000);
/// Physical 2 MiB frames behind the object: the blocks alias them.
const OBJECT_FRAMES: usize = 4;
const MIB: u64 = 1 << 20;

/// Counters the adoptions add that belong to them, not to the unshare being measured (their
/// break-before-make flushes).
const ADOPTION_COSTS: [Counter; 9] = [
    Counter::TlbiOps,
    Counter::TlbiRangeOps,
    Counter::TlbiAsidOps,
    Counter::TlbiLocalOps,
    Counter::DsbIsh,
    Counter::Flushes,
    Counter::IpisSent,
    Counter::SyncWaits,
    Counter::TableSyncs,
];

const MODES: [UnshareMode; 3] = [
    UnshareMode::SyncEach,
    UnshareMode::SyncLast,
    UnshareMode::Recheck,
];

/// The counters reported per mode, in order.
const REPORTED: [Counter; 8] = [
    Counter::IpisSent,
    Counter::TableSyncs,
    Counter::TlbiOps,
    Counter::DsbIsh,
    Counter::SyncWaits,
    Counter::GracePeriods,
    Counter::TablesUnshared,
    Counter::UafDetected,
];

struct Bench {
    live: IrqSpinlock<Vec<Arc<AddressSpace>>>,
    stop: AtomicBool,
    tables: u64,
    children: u32,
    seed: u64,
    /// Tables the parent adopts after the last child exits, in every mode.
    adopt: u64,
    results: IrqSpinlock<Vec<ModeResult>>,
    walks: AtomicU64,
}

struct ModeResult {
    mode: UnshareMode,
    counts: Snapshot,
    tables_adopted: u64,
    adopt_tlbi_ops: u64,
    ticks_per_fork_exit: u64,
    ticks_per_unmap: u64,
}

/// Frames the scenario needs besides the adopted blocks: the object's frames and tables, each
/// space's level-0 and level-1 tables, and a reserve for gather batches and tables waiting for
/// their grace period.
fn base_need(tables: u64, children: u32) -> u64 {
    OBJECT_FRAMES as u64 * L2_BLOCK_SIZE
        + tables * PAGE_SIZE
        + (children as u64 + 1) * 4 * PAGE_SIZE
        + 4 * MIB
}

/// Runs the fork/exit/unmap scenario once per unshare mode and reports each mode's costs.
pub fn run(info: &'static BootInfo) -> Outcome {
    let tables = settings().workload.tables as u64;
    let (free, ram) = free_memory(info);
    // Each adoption installs a 2 MiB block: adopt every table if half of what is left after the
    // rest of the scenario holds their blocks, else as many as fit (the other half stays free,
    // so no allocation of the measured path runs short and falls back to another flush method).
    let base = base_need(tables, settings().workload.children);
    let adopt = (free.saturating_sub(base) / 2 / L2_BLOCK_SIZE).min(tables);
    if adopt == 0 {
        refuse(
            "unshare-bench",
            "the object, the spaces and one adopted block",
            base + 2 * L2_BLOCK_SIZE,
            free,
            ram,
        );
    }
    let bench = Bench {
        live: IrqSpinlock::new(Vec::new()),
        stop: AtomicBool::new(false),
        tables,
        children: settings().workload.children,
        seed: settings().base.seed,
        adopt,
        results: IrqSpinlock::new(Vec::new()),
        walks: AtomicU64::new(0),
    };
    kprintln!(
        "unshare-bench: {} level-2 tables ({} GiB shared), {} children, {} walker CPU(s), {} table(s) adopted after the last child exits ({} MiB free); times are QEMU ticks, not hardware time",
        bench.tables,
        bench.tables,
        bench.children,
        smp::online_count() - 1,
        bench.adopt,
        free / MIB
    );
    smp::work::run_on_all(|cpu| cpu_main(cpu, &bench));
    unshare_sync::set_mode(settings().mm.unshare);
    report(&bench)
}

/// An allocation the scenario cannot go without ([`sizing::must`]): the start-up sizing should
/// make it succeed.
fn must<T>(bench: &Bench, what: &str, alloc: impl FnMut() -> Option<T>) -> T {
    let need = || base_need(bench.tables, bench.children) + bench.adopt * L2_BLOCK_SIZE;
    sizing::must("unshare-bench", what, need, alloc)
}

fn cpu_main(cpu_index: usize, bench: &Bench) {
    let this = smp::this_cpu();
    if cpu_index == 0 {
        this.set_role(Role::Bench);
        for mode in MODES {
            measure(bench, mode);
        }
        bench.stop.store(true, Ordering::Release);
    } else {
        this.set_role(Role::Walker);
        walker_loop(bench, cpu_index);
    }
    this.set_role(Role::None);
}

fn walker_loop(bench: &Bench, cpu_index: usize) {
    let mut rng = broadside_base::rng::Rng::from_state(
        (bench.seed ^ 0x2545_f491_4f6c_dd1d).wrapping_mul(cpu_index as u64 + 1),
    );
    let mut next = || rng.next_u64();
    while !bench.stop.load(Ordering::Acquire) {
        let space = {
            let live = bench.live.lock();
            if live.is_empty() {
                None
            } else {
                Some(live[(next() % live.len() as u64) as usize].clone())
            }
        };
        if let Some(space) = space {
            if next() % 8 == 0 && space.activate() {
                space.deactivate();
            }
            // The mode changes between measurements: read it for every walk.
            let cfg = WalkConfig {
                mask_irqs: true,
                recheck_upper: unshare_sync::walker_rechecks_upper(),
                bugs: broadside_mm::settings::Bugs::NONE,
            };
            let va = OBJECT_BASE + next() % (bench.tables * L1_BLOCK_SIZE / PAGE_SIZE) * PAGE_SIZE;
            if let WalkOutcome::UseAfterFree(what) = walker::walk_and_pin(&space, va, cfg, 0) {
                kprintln!(
                    "unshare-bench: DETECTED: walker: space {} va {va:#x}: {what}",
                    space.id
                );
            }
            bench.walks.fetch_add(1, Ordering::Relaxed);
        }
        broadside_sync::rcu_kernel::quiescent();
        smp::this_cpu().heartbeat.fetch_add(1, Ordering::Relaxed);
    }
}

/// Loads `space` into TTBR0 once on this CPU, as a new process runs before it exits, so its
/// flushes have an ASID to invalidate in every mode alike.
fn run_once(space: &AddressSpace) {
    if space.activate() {
        space.deactivate();
    }
}

/// Runs the scenario once in `mode` and records its counts and times.
fn measure(bench: &Bench, mode: UnshareMode) {
    unshare_sync::set_mode(mode);
    // Let table frees of the previous mode finish, so they are not counted here.
    broadside_sync::rcu_kernel::barrier();
    broadside_sync::rcu_kernel::publish_stats();
    let before = Snapshot::take();
    let obj = must(bench, "the shared object", || {
        SharedObject::new(bench.tables, OBJECT_FRAMES)
    });
    let parent = Arc::new(must(bench, "the parent", AddressSpace::new));
    must(bench, "the parent's mapping", || {
        shared::map_object(&parent, &obj, OBJECT_BASE).ok()
    });
    run_once(&parent);
    bench.live.lock().push(parent.clone());

    let t0 = cpu::counter();
    let mut children = Vec::new();
    for _ in 0..bench.children {
        let child = Arc::new(must(bench, "a child", AddressSpace::new));
        must(bench, "a child's mapping", || {
            shared::fork_objects(&parent, &child).ok()
        });
        run_once(&child);
        bench.live.lock().push(child.clone());
        children.push(child);
    }
    for child in children {
        bench.live.lock().retain(|s| !Arc::ptr_eq(s, &child));
        child.destroy();
    }
    let t1 = cpu::counter();
    // The last child is gone: the parent is every table's only user and may take them over.
    // The walkers are still walking the parent (and any child they still hold).
    let adopt_start = Snapshot::take();
    let tables_adopted = adopt_tables(bench, &parent, &obj);
    let adopt_costs = Snapshot::take().since(&adopt_start);
    let t1_unmap = cpu::counter();
    shared::unmap_object(&parent, &obj, OBJECT_BASE);
    let t2 = cpu::counter();
    bench.live.lock().clear();
    parent.destroy();
    drop(obj);
    broadside_sync::rcu_kernel::barrier();
    broadside_sync::rcu_kernel::publish_stats();
    let mut counts = Snapshot::take().since(&before);
    for k in ADOPTION_COSTS {
        counts.0[k as usize] = counts.0[k as usize].saturating_sub(adopt_costs.get(k));
    }
    bench.results.lock().push(ModeResult {
        mode,
        counts,
        tables_adopted,
        adopt_tlbi_ops: adopt_costs.get(Counter::TlbiOps),
        ticks_per_fork_exit: (t1 - t0) / bench.children.max(1) as u64,
        ticks_per_unmap: t2 - t1_unmap,
    });
}

/// The parent adopts `bench.adopt` tables, spread evenly over the object, each with its private
/// block in a slot drawn from the seed. Returns how many it adopted: every one of them, unless
/// a table was not exclusively the parent's (which the scenario rules out).
fn adopt_tables(bench: &Bench, parent: &AddressSpace, obj: &Arc<SharedObject>) -> u64 {
    let mut rng = broadside_base::rng::Rng::from_state(bench.seed ^ 0x5851_f42d_4c95_7f2d);
    let mut adopted = 0;
    for i in 0..bench.adopt {
        let gib = i * bench.tables / bench.adopt;
        let slot = rng.below(512) as usize;
        if shared::adopt_if_exclusive(parent, obj, OBJECT_BASE, gib, slot) {
            adopted += 1;
        }
    }
    adopted
}

/// The summary's members: `modes` (per mode: the counters, the adoptions and the ticks) and
/// `bench` (the scenario's size, the walks made, the counter frequency).
fn summary_members(bench: &Bench, results: &[ModeResult]) -> Result<String, core::fmt::Error> {
    let mut json = String::new();
    let mut members = JsonObject::members(&mut json);
    let mut modes = members.object("modes")?;
    for r in results {
        let mut mode = modes.object(r.mode.name())?;
        for k in REPORTED {
            mode.u64(k.name(), r.counts.get(k))?;
        }
        mode.u64("tables_adopted", r.tables_adopted)?
            .u64("adopt_tlbi_ops", r.adopt_tlbi_ops)?
            .u64("ticks_per_fork_exit", r.ticks_per_fork_exit)?
            .u64("ticks_per_unmap", r.ticks_per_unmap)?;
        mode.finish()?;
    }
    modes.finish()?;
    members
        .object("bench")?
        .u64("tables", bench.tables)?
        .u64("children", bench.children as u64)?
        .u64("adopt", bench.adopt)?
        .u64("walks", bench.walks.load(Ordering::Relaxed))?
        .u64("counter_hz", cpu::counter_frequency())?;
    drop(members);
    Ok(json)
}

fn report(bench: &Bench) -> Outcome {
    let results = bench.results.lock();
    kprintln!(
        "unshare-bench: {:<10} {:>9} {:>11} {:>9} {:>8} {:>10} {:>13} {:>15} {:>12} {:>14} {:>18} {:>15}",
        "mode",
        "ipis_sent",
        "table_syncs",
        "tlbi_ops",
        "dsb_ish",
        "sync_waits",
        "grace_periods",
        "tables_unshared",
        "uaf_detected",
        "tables_adopted",
        "ticks_per_fork_exit",
        "ticks_per_unmap"
    );
    let mut ok = true;
    for r in results.iter() {
        let c = |k| r.counts.get(k);
        kprintln!(
            "unshare-bench: {:<10} {:>9} {:>11} {:>9} {:>8} {:>10} {:>13} {:>15} {:>12} {:>14} {:>18} {:>15}",
            r.mode.name(),
            c(Counter::IpisSent),
            c(Counter::TableSyncs),
            c(Counter::TlbiOps),
            c(Counter::DsbIsh),
            c(Counter::SyncWaits),
            c(Counter::GracePeriods),
            c(Counter::TablesUnshared),
            c(Counter::UafDetected),
            r.tables_adopted,
            r.ticks_per_fork_exit,
            r.ticks_per_unmap
        );
        // An adoption that did not happen means the scenario did not run as planned, and the
        // use-after-free check had less to catch than it claims.
        ok &= c(Counter::UafDetected) == 0
            && c(Counter::StaleTlbDetected) == 0
            && r.tables_adopted == bench.adopt;
    }
    let json = summary_members(bench, &results).expect("a String takes every write");
    kprintln!(
        "unshare-bench: ticks are CNTVCT at {} Hz under QEMU TCG: compare modes as ratios, not as hardware times",
        cpu::counter_frequency()
    );
    let mut out = Outcome::from_checks(ok);
    out.extra_json = Some(json);
    out
}

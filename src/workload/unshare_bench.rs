//! `workload=unshare-bench`: the scenario of Linux's fix for excessive IPI broadcasts when
//! unsharing PMD tables, measured for all three `unshare=` modes side by side in one boot.
//!
//! A parent maps a shared object over `tables=` level-2 tables (1 GiB each), forks `children=`
//! children (each shares every table), the children exit (each unshares every table; the last
//! one leaves the parent alone, fully unsharing them), then the parent unmaps (the last user:
//! the tables are freed). Walker CPUs run lockless walks over the live spaces throughout and
//! load them into TTBR0 now and then, as the processes' threads would.
//!
//! Reported per mode: IPIs, syncs, TLBIs, DSBs, synchronous waits, grace periods, tables
//! unshared, use-after-free detections, and CNTVCT ticks per fork+exit and per unmap. Times are
//! QEMU TCG wall time, not hardware time: compare them only as ratios within one boot.

use super::{Outcome, role};
use crate::arch::aarch64::cpu;
use crate::kernel::BootInfo;
use crate::kprintln;
use crate::mm::aspace::AddressSpace;
use crate::mm::pte::{L1_BLOCK_SIZE, PAGE_SIZE};
use crate::mm::shared::{self, SharedObject};
use crate::mm::walker::{self, WalkConfig, WalkOutcome};
use crate::platform::bootargs::UnshareMode;
use crate::smp;
use crate::stats::{Counter, Snapshot};
use crate::sync::IrqSpinlock;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const OBJECT_BASE: u64 = 0x100_0000_0000;
/// Physical 2 MiB frames behind the object: the blocks alias them.
const OBJECT_FRAMES: usize = 4;

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
    results: IrqSpinlock<Vec<ModeResult>>,
    walks: AtomicU64,
}

struct ModeResult {
    mode: UnshareMode,
    counts: Snapshot,
    ticks_per_fork_exit: u64,
    ticks_per_unmap: u64,
}

pub fn run(info: &'static BootInfo) -> Outcome {
    let bench = Bench {
        live: IrqSpinlock::new(Vec::new()),
        stop: AtomicBool::new(false),
        tables: info.args.tables as u64,
        children: info.args.children,
        seed: info.args.seed,
        results: IrqSpinlock::new(Vec::new()),
        walks: AtomicU64::new(0),
    };
    kprintln!(
        "unshare-bench: {} level-2 tables ({} GiB shared), {} children, {} walker CPU(s); times are QEMU ticks, not hardware time",
        bench.tables,
        bench.tables,
        bench.children,
        smp::online_count() - 1
    );
    smp::work::run_on_all(cpu_main, &bench as *const Bench as usize);
    shared::set_mode(info.args.unshare);
    report(&bench)
}

fn cpu_main(cpu_index: usize, arg: usize) {
    // SAFETY: `run` passes its `Bench`, which outlives `run_on_all`.
    let bench = unsafe { &*(arg as *const Bench) };
    let this = smp::this_cpu();
    if cpu_index == 0 {
        this.role.store(role::BENCH, Ordering::Relaxed);
        for mode in MODES {
            measure(bench, mode);
        }
        bench.stop.store(true, Ordering::Release);
    } else {
        this.role.store(role::WALKER, Ordering::Relaxed);
        walker_loop(bench, cpu_index);
    }
    this.role.store(role::NONE, Ordering::Relaxed);
}

fn walker_loop(bench: &Bench, cpu_index: usize) {
    let mut rng = crate::rng::Rng::from_state(
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
                recheck_upper: shared::walker_rechecks_upper(),
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
        crate::sync::rcu_kernel::quiescent();
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
    shared::set_mode(mode);
    // Let table frees of the previous mode finish, so they are not counted here.
    crate::sync::rcu_kernel::barrier();
    crate::sync::rcu_kernel::publish_stats();
    let before = Snapshot::take();
    let obj = SharedObject::new(bench.tables, OBJECT_FRAMES).expect("out of memory for the object");
    let parent = Arc::new(AddressSpace::new().expect("out of memory"));
    shared::map_object(&parent, &obj, OBJECT_BASE).expect("out of memory");
    run_once(&parent);
    bench.live.lock().push(parent.clone());

    let t0 = cpu::counter();
    let mut children = Vec::new();
    for _ in 0..bench.children {
        let child = Arc::new(AddressSpace::new().expect("out of memory"));
        shared::fork_objects(&parent, &child).expect("out of memory");
        run_once(&child);
        bench.live.lock().push(child.clone());
        children.push(child);
    }
    for child in children {
        bench.live.lock().retain(|s| !Arc::ptr_eq(s, &child));
        child.destroy();
    }
    let t1 = cpu::counter();
    shared::unmap_object(&parent, &obj, OBJECT_BASE);
    let t2 = cpu::counter();
    bench.live.lock().clear();
    parent.destroy();
    drop(obj);
    crate::sync::rcu_kernel::barrier();
    crate::sync::rcu_kernel::publish_stats();
    let counts = Snapshot::take().since(&before);
    bench.results.lock().push(ModeResult {
        mode,
        counts,
        ticks_per_fork_exit: (t1 - t0) / bench.children.max(1) as u64,
        ticks_per_unmap: t2 - t1,
    });
}

fn report(bench: &Bench) -> Outcome {
    let results = bench.results.lock();
    kprintln!(
        "unshare-bench: {:<10} {:>9} {:>11} {:>9} {:>8} {:>10} {:>13} {:>15} {:>12} {:>18} {:>15}",
        "mode",
        "ipis_sent",
        "table_syncs",
        "tlbi_ops",
        "dsb_ish",
        "sync_waits",
        "grace_periods",
        "tables_unshared",
        "uaf_detected",
        "ticks_per_fork_exit",
        "ticks_per_unmap"
    );
    let mut ok = true;
    let mut json = String::from("\"modes\":{");
    for (i, r) in results.iter().enumerate() {
        let c = |k| r.counts.get(k);
        kprintln!(
            "unshare-bench: {:<10} {:>9} {:>11} {:>9} {:>8} {:>10} {:>13} {:>15} {:>12} {:>18} {:>15}",
            r.mode.name(),
            c(Counter::IpisSent),
            c(Counter::TableSyncs),
            c(Counter::TlbiOps),
            c(Counter::DsbIsh),
            c(Counter::SyncWaits),
            c(Counter::GracePeriods),
            c(Counter::TablesUnshared),
            c(Counter::UafDetected),
            r.ticks_per_fork_exit,
            r.ticks_per_unmap
        );
        ok &= c(Counter::UafDetected) == 0 && c(Counter::StaleTlbDetected) == 0;
        if i > 0 {
            json.push(',');
        }
        let _ = write!(json, "\"{}\":{{", r.mode.name());
        for k in REPORTED {
            let _ = write!(json, "\"{}\":{},", k.name(), c(k));
        }
        let _ = write!(
            json,
            "\"ticks_per_fork_exit\":{},\"ticks_per_unmap\":{}}}",
            r.ticks_per_fork_exit, r.ticks_per_unmap
        );
    }
    json.push('}');
    let _ = write!(
        json,
        ",\"bench\":{{\"tables\":{},\"children\":{},\"walks\":{},\"counter_hz\":{}}}",
        bench.tables,
        bench.children,
        bench.walks.load(Ordering::Relaxed),
        cpu::counter_frequency()
    );
    kprintln!(
        "unshare-bench: ticks are CNTVCT at {} Hz under QEMU TCG: compare modes as ratios, not as hardware times",
        cpu::counter_frequency()
    );
    let mut out = Outcome::from_checks(ok);
    out.extra_json = Some(json);
    out
}

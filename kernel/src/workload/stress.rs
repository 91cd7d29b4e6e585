//! `workload=stress`: CPUs in three roles hammer shared address spaces for `seconds=`.
//!
//! - Touchers load a space into TTBR0 and read (and, where writable, increment) stamped pages
//!   through the MMU. Reading poison or another page's stamp means a translation survived its
//!   flush: `stale_tlb_detected`.
//! - Mutators unmap and remap ranges (freeing emptied level-1..3 tables), map and unmap 2 MiB
//!   blocks, change protection (a write landing after a read-only change completed is also a
//!   stale-TLB detection), and destroy and recreate whole spaces.
//! - Walkers run the lockless walker over random VAs of live and dying spaces, pinning frames;
//!   a freed table or frame seen by a walk is `uaf_detected`.
//!
//! Faults on unmapped or read-only pages are expected and recovered through the fix-up table.
//! CPU 0 prints a progress line each second. The run fails (exit 1) on any detection, and stops
//! at once when the flush-coverage audit reports a violation.
//!
//! Memory: the run sizes its regions to the free memory it finds at start ([`Layout`]), and
//! refuses with exit 2, naming the memory it needs, when even the smallest layout does not fit.
//! Running out of memory later (the mutators' footprint moves with timing) is expected: a map
//! that fails is backed off from (the cycle is skipped, a partly populated space stays in use)
//! and counted in the summary's `stress.map_backoffs`.

use super::Outcome;
use super::settings::WorkloadArgs;
use super::sizing::{free_memory, refuse};
use crate::settings::settings;
use alloc::sync::Arc;
use alloc::vec::Vec;
use broadside_arch::aarch64::cpu;
use broadside_arch::aarch64::exception::probe_read;
use broadside_arch::pte::{Attributes, DescriptorKind, L1_BLOCK_SIZE, L2_BLOCK_SIZE, PAGE_SIZE};
use broadside_arch::{PhysAddr, VirtAddr};
use broadside_base::IrqSpinlock;
use broadside_base::hint::QuietMutex;
use broadside_base::percpu::Role;
use broadside_base::rng::Rng;
use broadside_base::stats::{self, Counter};
use broadside_memory::frame;
use broadside_mm::aspace::{
    AddressSpace, MapError, SpaceState, StampCheck, WRITE_COUNTER_WORD, check_stamp,
};
use broadside_mm::fault_inject;
use broadside_mm::gather::MmuGather;
use broadside_mm::migrate::MigrateError;
use broadside_mm::mm_types::SharedObject;
use broadside_mm::shared;
use broadside_mm::walker::{self, WalkConfig, WalkOutcome};
use broadside_platform::boot_info::BootInfo;
use broadside_platform::kprintln;
use broadside_smp as smp;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Address spaces shared by all roles.
const SPACES: usize = 4;
/// The slot whose space a mutator replaces by an exec cycle (a small fresh process), where the
/// other slots' spaces are replaced whole and seldom.
const EXEC_SLOT: usize = 0;
/// The pages an exec'd process maps (from the start of region A).
const EXEC_PAGES: u64 = 128;
/// Region A: 4 KiB pages over `Layout::pages_chunks` level-3 tables.
const PAGES_BASE: VirtAddr = VirtAddr::new(0x4000_0000);
/// Region B: `Layout::blocks` 2 MiB block slots, half of them mapped at start.
const BLOCKS_BASE: VirtAddr = VirtAddr::new(0x8000_0000);
/// Region C: a few pages under their own level-1, -2 and -3 tables (a different level-0 slot),
/// mapped and unmapped whole so all three tables are freed each time.
const SPARSE_BASE: VirtAddr = VirtAddr::new(0x80_0000_0000);
const SPARSE_PAGES: u64 = 8;
/// Region D (`sharing=on`): a shared object of `Layout::object_gib` GiB, each GiB one shared
/// level-2 table, mapped by every space at the same VA.
const SHARED_BASE: VirtAddr = VirtAddr::new(0x100_0000_0000);
const MIB: u64 = 1 << 20;

/// The sizes of the regions, chosen at start from the free memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    /// Region A: 2 MiB chunks of 4 KiB pages (one level-3 table each).
    pages_chunks: u64,
    /// Region B: 2 MiB block slots.
    blocks: u64,
    /// Region D: GiB of the shared object (shared level-2 tables).
    object_gib: u64,
    /// Physical 2 MiB frames behind the shared object.
    object_frames: usize,
}

impl Layout {
    /// Largest first. The first is the layout every run had before sizing existed, so runs with
    /// enough memory (the default 1 GiB) make the same random choices for a seed as before.
    const CHOICES: [Layout; 5] = [
        Layout::new(4, 4, 4, 4),
        Layout::new(2, 4, 4, 2),
        Layout::new(2, 2, 2, 1),
        Layout::new(1, 2, 2, 1),
        Layout::new(1, 2, 1, 1),
    ];

    const fn new(pages_chunks: u64, blocks: u64, object_gib: u64, object_frames: usize) -> Self {
        Self {
            pages_chunks,
            blocks,
            object_gib,
            object_frames,
        }
    }

    fn pages_len(&self) -> u64 {
        self.pages_chunks * L2_BLOCK_SIZE
    }

    /// Bytes of frames this layout can hold at once, at worst.
    ///
    /// Per space: every page of region A and every block slot of region B mapped, plus its
    /// tables and region C (32 pages is generous). `replace_space` builds the new space before
    /// it destroys the old one, so one space more than `SPACES` can exist. With sharing: the
    /// object's frames and tables, and in each space one private 2 MiB block per GiB of the
    /// object (a space that adopts a fully unshared table installs one). On top, a reserve for
    /// what is in flight: tables waiting for their grace period, gather batches, frames a walker
    /// still pins.
    fn footprint(&self, sharing: bool) -> u64 {
        const TABLES_AND_SPARSE: u64 = 32 * PAGE_SIZE;
        const RESERVE: u64 = 4 * MIB;
        let spaces = SPACES as u64 + 1;
        let per_space = (self.pages_chunks + self.blocks) * L2_BLOCK_SIZE + TABLES_AND_SPARSE;
        let object = if sharing {
            self.object_frames as u64 * L2_BLOCK_SIZE
                + self.object_gib * PAGE_SIZE
                + spaces * self.object_gib * L2_BLOCK_SIZE
        } else {
            0
        };
        spaces * per_space + object + RESERVE
    }

    /// The largest layout that fits in `free` bytes, or the smallest layout's footprint.
    fn choose(free: u64, sharing: bool) -> Result<Layout, u64> {
        Self::CHOICES
            .iter()
            .find(|l| l.footprint(sharing) <= free)
            .copied()
            .ok_or(Self::CHOICES[Self::CHOICES.len() - 1].footprint(sharing))
    }
}

/// This CPU's stream of random choices for the run.
fn cpu_rng(seed: u64, cpu: usize) -> Rng {
    Rng::from_state((seed ^ 0xd1b5_4a32_d192_ed03).wrapping_mul(2 * cpu as u64 + 1))
}

/// State shared by the CPUs of one run.
struct Shared {
    spaces: [IrqSpinlock<Option<Arc<AddressSpace>>>; SPACES],
    stop: AtomicBool,
    deadline: u64,
    seed: u64,
    roles: [Role; broadside_base::config::MAX_CPUS],
    walk_cfg: WalkConfig,
    layout: Layout,
    object: Option<Arc<SharedObject>>,
    /// Maps that failed for want of memory and were backed off from.
    map_backoffs: AtomicU64,
    first_reports: AtomicU64,
    /// The range a mutator is unmapping now, which walkers chase (see [`Hot`]).
    hot: Hot,
    /// The slot an exec cycle filled last, plus one (0: none yet): touchers favour it, so its
    /// first activations race the new process's own unmaps.
    fresh: AtomicUsize,
    /// Walkers idling until a mutator starts emptying a table (bit per CPU index, the first 64):
    /// the mutator kicks them, and each walks the table's last page as the unmap goes on.
    idle_walkers: AtomicU64,
    /// The space a mutator is destroying now: touchers try to map the shared object into it
    /// (with sharing on), as a thread of another process maps into one that is exiting.
    doomed: QuietMutex<Option<Arc<AddressSpace>>>,
    /// Walks begun by kicked walkers (see [`heat`]).
    woken: AtomicU64,
    /// Activations by touchers: an exec cycle's unmaps wait for one (see [`exec_cycle`]).
    activations: AtomicU64,
    /// The pages a mutator made writable again last (space id, first VA, pages), with no
    /// TLBI: touchers write there, where a CPU may still hold the read-only entry (a spurious
    /// permission fault, fixed locally by `fault::write_user`).
    upgraded: QuietMutex<Option<(u64, VirtAddr, u64)>>,
    /// A page a toucher's reclaim batch holds now, its TLBIs issued and not completed: the
    /// mutator unmaps or protects around it (an unmap racing a pending batch, which must flush
    /// the space: `tlb::flush_tlb_batched_pending`).
    reclaimed: QuietMutex<Option<(Arc<AddressSpace>, VirtAddr)>>,
    /// Mutator cycles run around a pending batch's page (the reclaimer waits for one).
    reclaim_races: AtomicU64,
}

/// Where a mutator unmaps now: the space, the first VA and the page count. Walkers pick their
/// VAs there half of the time, so a walk's load, pin and re-check meet the clears, flushes and
/// frees of the same pages (rule 4's windows) rather than by chance.
///
/// A `QuietMutex`: its release drains nothing with `weak=on`, so a walker that has just left
/// idle can read it without making its own buffered stores visible (nothing stored under it
/// is a store the emulation buffers).
struct Hot {
    range: QuietMutex<Option<HotRange>>,
}

#[derive(Clone)]
struct HotRange {
    space: Arc<AddressSpace>,
    va: VirtAddr,
    pages: u64,
    /// The unmap empties the tables under the range (the sparse region, a teardown): they are
    /// freed after the next grace period.
    empties_tables: bool,
}

/// Why the stress roles do not fit the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RolesError {
    /// `total` CPUs asked for (`given`: by `mutators=`/`touchers=`/`walkers=`) but only `cpus`
    /// are online.
    TooMany {
        /// The roles' total.
        total: usize,
        /// Whether the arguments gave any role count.
        given: bool,
        /// CPUs online.
        cpus: usize,
    },
    /// `mutators=0`: nothing would change the spaces.
    NoMutator,
}

impl core::fmt::Display for RolesError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::TooMany { total, given, cpus } => write!(
                f,
                "{} = {total} exceeds the {cpus} online CPUs",
                if given {
                    "mutators+touchers+walkers"
                } else {
                    "roles"
                }
            ),
            Self::NoMutator => f.write_str("mutators=0: a stress run needs at least one mutator"),
        }
    }
}

/// The most mutators a run gets unless `mutators=` asks for more: a quarter of the CPUs up to
/// 64 CPUs, then no more. Every flush a mutator issues is a broadcast TLBI, which QEMU's TCG
/// performs by stopping every vCPU until each has flushed, so the cost of the mutators grows
/// as their number times the CPU count. Measured on a 2-core host: 128 CPUs with 32 mutators
/// and 256 with 64 kept vCPUs from running (and from taking their tick) for 9-15 s, past the
/// watchdog's stall limit; 256 CPUs with 16 mutators pass in 22 s of wall time.
const MAX_DEFAULT_MUTATORS: usize = 16;

/// Role counts from the arguments or the CPU count.
fn roles(a: &WorkloadArgs, cpus: usize) -> Result<(usize, usize, usize), RolesError> {
    let given = [a.mutators, a.touchers, a.walkers];
    let walkers = a.walkers.map_or(
        if cpus >= 3 {
            cpus / 4 + usize::from(cpus == 3)
        } else {
            0
        },
        |w| w as usize,
    );
    if cpus < 3 && given.iter().all(|g| g.is_none()) {
        // Combined roles (see `run`): one mutator, and the toucher and walker share CPUs.
        return Ok((1, 1, 1));
    }
    let mutators = a
        .mutators
        .map_or((cpus / 4).clamp(1, MAX_DEFAULT_MUTATORS), |m| m as usize);
    let touchers = a
        .touchers
        .map_or(cpus.saturating_sub(mutators + walkers).max(1), |t| {
            t as usize
        });
    if mutators + touchers + walkers > cpus {
        return Err(RolesError::TooMany {
            total: mutators + touchers + walkers,
            given: given.iter().any(|g| g.is_some()),
            cpus,
        });
    }
    if mutators == 0 {
        return Err(RolesError::NoMutator);
    }
    Ok((mutators, touchers, walkers))
}

/// Runs the stress for `seconds=` on every CPU and judges it by its detectors.
pub fn run(info: &'static BootInfo) -> Outcome {
    let cpus = smp::online_count();
    let (mutators, touchers, walkers) = match roles(&settings().workload, cpus) {
        Ok(r) => r,
        Err(e) => broadside_platform::exit::config_error(format_args!("error: bootargs: {e}")),
    };
    let mut role_of = [Role::None; broadside_base::config::MAX_CPUS];
    // With fewer than 3 CPUs and no roles given, CPUs take several roles in turn, so every
    // role still runs (on 1 CPU this exercises the local-flush path too).
    let a = &settings().workload;
    let combined = a.mutators.is_none() && a.touchers.is_none() && a.walkers.is_none() && cpus < 3;
    for (i, c) in smp::online_cpus().enumerate() {
        role_of[c.index] = if combined && cpus == 1 {
            Role::Everything
        } else if combined && i == 1 {
            Role::TouchWalk
        } else if i < mutators {
            Role::Mutator
        } else if i < mutators + touchers {
            Role::Toucher
        } else if i < mutators + touchers + walkers {
            Role::Walker
        } else {
            Role::None
        };
    }
    let (free, ram) = free_memory(info);
    let layout = match Layout::choose(free, settings().workload.sharing) {
        Ok(l) => l,
        Err(need) => refuse(
            "stress",
            if settings().workload.sharing {
                "its smallest layout with sharing=on"
            } else {
                "its smallest layout"
            },
            need,
            free,
            ram,
        ),
    };
    kprintln!(
        "stress: {} MiB free of {} MiB RAM: {} KiB of pages and {} block slots per space{}",
        free / MIB,
        ram / MIB,
        layout.pages_len() / 1024,
        layout.blocks,
        if settings().workload.sharing {
            alloc::format!(
                ", a {} GiB shared object over {} frames",
                layout.object_gib,
                layout.object_frames
            )
        } else {
            alloc::string::String::new()
        }
    );
    kprintln!(
        "stress: {} s, seed {}, {mutators} mutator(s), {touchers} toucher(s), {walkers} walker(s), flush={}, tablefree={}, sharing={}, unshare={}",
        settings().workload.seconds,
        settings().base.seed,
        settings().mm.flush.name(),
        settings().mm.tablefree.name(),
        if settings().workload.sharing {
            "on"
        } else {
            "off"
        },
        settings().mm.unshare.name()
    );
    let shared = Shared {
        spaces: [const { IrqSpinlock::new(None) }; SPACES],
        stop: AtomicBool::new(false),
        deadline: cpu::counter() + settings().workload.seconds as u64 * cpu::counter_frequency(),
        seed: settings().base.seed,
        roles: role_of,
        walk_cfg: WalkConfig::for_run(settings().mm.bugs),
        layout,
        object: None,
        map_backoffs: AtomicU64::new(0),
        first_reports: AtomicU64::new(0),
        hot: Hot {
            range: QuietMutex::new(None),
        },
        fresh: AtomicUsize::new(0),
        idle_walkers: AtomicU64::new(0),
        doomed: QuietMutex::new(None),
        woken: AtomicU64::new(0),
        activations: AtomicU64::new(0),
        upgraded: QuietMutex::new(None),
        reclaimed: QuietMutex::new(None),
        reclaim_races: AtomicU64::new(0),
    };
    // The layout was sized to the free memory, so these only fail if the estimate is wrong;
    // even then the run goes on with what it has (a slot left empty is skipped by every role).
    let mut shared = shared;
    if settings().workload.sharing {
        match SharedObject::new(layout.object_gib, layout.object_frames) {
            Some(obj) => shared.object = Some(obj),
            None => refuse(
                "stress",
                "the shared object",
                layout.footprint(true),
                free,
                ram,
            ),
        }
    }
    prologue(&shared);
    for slot in &shared.spaces {
        *slot.lock() = new_populated_space(&shared);
    }
    smp::work::run_on_all(|cpu| cpu_main(cpu, &shared));
    // Tear down what is left, then let every queued table free run. Each space leaves its slot
    // before it is destroyed: the slot's lock masks IRQs, and a destroy may wait for other CPUs
    // (the table-free fallback's IPI sync, the drain of CPUs that still have it loaded).
    for slot in &shared.spaces {
        let taken = slot.lock().take();
        if let Some(s) = taken {
            s.destroy();
        }
    }
    broadside_sync::rcu_kernel::barrier();
    broadside_sync::rcu_kernel::publish_stats();
    let stale = stats::read(Counter::StaleTlbDetected);
    let uaf = stats::read(Counter::UafDetected);
    let leaf_only = stats::read(Counter::LeafOnlyFlushDetected);
    let flush_missed = stats::read(Counter::UnshareFlushMissed);
    let stale_pin = stats::read(Counter::StalePinDetected);
    let gate_breach = stats::read(Counter::GateBreachDetected);
    let double_free = stats::read(Counter::DoubleFreeDetected);
    let map_contract = stats::read(Counter::MapContractDetected);
    let foreign = stats::read(Counter::ForeignTableDetected);
    let fault_loop = stats::read(Counter::FaultLoopDetected);
    let backoffs = shared.map_backoffs.load(Ordering::Relaxed);
    kprintln!(
        "stress: done: {} touches, stale_tlb_detected={stale}, uaf_detected={uaf}, leaf_only_flush_detected={leaf_only}, unshare_flush_missed={flush_missed}, stale_pin_detected={stale_pin}, gate_breach_detected={gate_breach}, double_free_detected={double_free}, map_contract_detected={map_contract}, foreign_table_detected={foreign}, fault_loop_detected={fault_loop}, spurious_faults_fixed={}, map_backoffs={backoffs}",
        stats::read(Counter::Touches),
        stats::read(Counter::SpuriousFaultsFixed)
    );
    if broadside_base::weak::enabled() {
        kprintln!(
            "stress: weak memory: {} stores buffered, {} loads passed older stores",
            stats::read(Counter::WeakStoresBuffered),
            stats::read(Counter::WeakLoadsReordered)
        );
    }
    let mut out = Outcome::from_checks(
        stale == 0
            && uaf == 0
            && leaf_only == 0
            && flush_missed == 0
            && stale_pin == 0
            && gate_breach == 0
            && double_free == 0
            && map_contract == 0
            && foreign == 0
            && fault_loop == 0,
    );
    out.extra_json = Some(alloc::format!(
        "\"stress\":{{\"free_mib\":{},\"pages_per_space\":{},\"block_slots\":{},\"object_gib\":{},\"map_backoffs\":{backoffs}}}",
        free / MIB,
        layout.pages_len() / PAGE_SIZE,
        layout.blocks,
        if settings().workload.sharing {
            layout.object_gib
        } else {
            0
        },
    ));
    out
}

impl Shared {
    /// Notes a map that failed for want of memory; the caller skips the rest of its cycle.
    fn backoff(&self) {
        self.map_backoffs.fetch_add(1, Ordering::Relaxed);
    }
}

/// A space with its private regions populated and, with sharing on, the shared object mapped
/// (sharing its level-2 tables with the other spaces: a fork). None only if not even the space
/// could be had; a space that ran out of memory while it was being populated is returned as it
/// is (partly mapped regions are as good a target as full ones).
fn new_populated_space(shared: &Shared) -> Option<Arc<AddressSpace>> {
    let Some(s) = AddressSpace::new() else {
        shared.backoff();
        return None;
    };
    if let Some(obj) = &shared.object
        && shared::map_object(&s, obj, SHARED_BASE) == Err(MapError::OutOfMemory)
    {
        shared.backoff();
    }
    {
        let _g = s.lock.lock();
        let l = &shared.layout;
        let populated = s
            .map_pages(
                PAGES_BASE,
                l.pages_len() / PAGE_SIZE,
                Attributes::user_data_rw(),
            )
            .is_some()
            && (0..l.blocks.div_ceil(2)).all(|b| {
                s.map_block(BLOCKS_BASE + b * L2_BLOCK_SIZE, Attributes::user_data_rw())
                    .is_some()
            });
        if !populated {
            shared.backoff();
        }
    }
    Some(Arc::new(s))
}

fn cpu_main(cpu_index: usize, shared: &Shared) {
    let r = shared.roles[cpu_index];
    if r == Role::None {
        // More CPUs than roles: nothing to do here. Back to the idle loop, which `run_on_all`
        // wakes again (a CPU idling in this loop instead slept through the end of the run:
        // with tickless idle nothing woke it to see `stop`).
        return;
    }
    let this = smp::this_cpu();
    this.set_role(r);
    let mut rng = cpu_rng(shared.seed, cpu_index);
    let mut next_progress = cpu::counter() + cpu::counter_frequency();
    let mut second = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        match r {
            Role::Mutator => mutate(shared, &mut rng),
            Role::Toucher => touch(shared, &mut rng),
            Role::Walker => walk(shared, &mut rng),
            Role::TouchWalk => {
                touch(shared, &mut rng);
                walk(shared, &mut rng);
            }
            Role::Everything => {
                mutate(shared, &mut rng);
                touch(shared, &mut rng);
                walk(shared, &mut rng);
            }
            Role::None | Role::Selftest | Role::Bench => {
                unreachable!("stress gives every CPU it keeps a stress role")
            }
        }
        this.heartbeat.fetch_add(1, Ordering::Relaxed);
        broadside_sync::rcu_kernel::quiescent();
        if cpu_index == 0 {
            let now = cpu::counter();
            if now >= next_progress {
                second += 1;
                next_progress += cpu::counter_frequency();
                progress(shared, second);
            }
            if now >= shared.deadline {
                shared.stop.store(true, Ordering::Release);
            }
            // The audit found a violation: the run has failed. Stop before the planted bug
            // behind it (a frame freed while still cached) corrupts what it freed.
            if broadside_mm::audit::violations() > 0 && !shared.stop.load(Ordering::Relaxed) {
                kprintln!("stress: stopping early: the audit found a violation");
                shared.stop.store(true, Ordering::Release);
            }
            // So did a protocol detector (a breached gate, a stale pin, a double free): stop
            // for the same reason.
            if shared.first_reports.load(Ordering::Relaxed) == 0
                && [
                    Counter::GateBreachDetected,
                    Counter::StalePinDetected,
                    Counter::DoubleFreeDetected,
                    Counter::MapContractDetected,
                    Counter::ForeignTableDetected,
                    Counter::FaultLoopDetected,
                ]
                .iter()
                .any(|&c| stats::read(c) > 0)
                && !shared.stop.load(Ordering::Relaxed)
            {
                kprintln!("stress: stopping early: a protocol detector fired");
                shared.stop.store(true, Ordering::Release);
            }
        }
    }
    this.set_role(Role::None);
}

fn progress(shared: &Shared, second: u64) {
    broadside_sync::rcu_kernel::publish_stats();
    kprintln!(
        "stress: t={second}s touches={} unmapped={} tables_freed={} walks={} pins={} gps={} stale={} uaf={} map_backoffs={}",
        stats::read(Counter::Touches),
        stats::read(Counter::PagesUnmapped),
        stats::read(Counter::TablesFreed),
        stats::read(Counter::WalkerWalks),
        stats::read(Counter::WalkerPins),
        stats::read(Counter::GracePeriods),
        stats::read(Counter::StaleTlbDetected),
        stats::read(Counter::UafDetected),
        shared.map_backoffs.load(Ordering::Relaxed),
    );
}

/// Takes a reference to a random space, if its slot holds one.
fn pick(shared: &Shared, rng: &mut Rng) -> (usize, Option<Arc<AddressSpace>>) {
    let i = rng.below(SPACES as u64) as usize;
    (i, shared.spaces[i].lock().clone())
}

/// A random VA in any region (the shared one only with sharing on).
fn random_va(shared: &Shared, rng: &mut Rng) -> VirtAddr {
    let l = &shared.layout;
    match rng.below(if shared.object.is_some() { 11 } else { 8 }) {
        0..=4 => PAGES_BASE + rng.below(l.pages_len() / PAGE_SIZE) * PAGE_SIZE,
        5 | 6 => BLOCKS_BASE + rng.below(l.blocks * L2_BLOCK_SIZE / PAGE_SIZE) * PAGE_SIZE,
        7 => SPARSE_BASE + rng.below(SPARSE_PAGES) * PAGE_SIZE,
        _ => object_va(shared, rng),
    }
}

/// A random page of the shared object's region.
fn object_va(shared: &Shared, rng: &mut Rng) -> VirtAddr {
    SHARED_BASE + rng.below(shared.layout.object_gib * L1_BLOCK_SIZE / PAGE_SIZE) * PAGE_SIZE
}

/// The shared object's owner tag if `va` is in its region.
fn object_at(shared: &Shared, va: VirtAddr) -> Option<u64> {
    let obj = shared.object.as_ref()?;
    (SHARED_BASE..SHARED_BASE + shared.layout.object_gib * L1_BLOCK_SIZE)
        .contains(&va)
        .then(|| obj.owner_tag())
}

fn report(shared: &Shared, what: core::fmt::Arguments<'_>) {
    if shared.first_reports.fetch_add(1, Ordering::Relaxed) < 5 {
        kprintln!(
            "stress: DETECTED on cpu{}: {what}",
            broadside_base::cpu_id()
        );
    }
}

// ---- touchers ----------------------------------------------------------------------------

/// VAs a toucher keeps re-probing while it stays in a space.
const WORKING_SET: usize = 32;
/// How long a toucher stays in one space: 2 to 10 ms of counter time (virtual time under
/// `-icount`), many mutator cycles.
const STAY_US: (u64, u64) = (2_000, 8_000);

/// Loads a space and stays in it, re-probing a working set of VAs round after round (one VA
/// replaced per round), so the translations this CPU's TLB caches live across the mutators'
/// changes as they would on hardware.
///
/// Why stay: QEMU drops a vCPU's whole TLB whenever the ASID in TTBR0 changes, so a toucher that
/// switched spaces after a short burst could only ever see a stale entry inside that burst. A
/// stale entry here lives until this CPU leaves the space, or a flush that QEMU applies covers
/// it (a missing or non-broadcast flush is what the detector is for).
///
/// It leaves early when the space stops being Live: `AddressSpace::destroy` waits for every
/// CPU that has the space loaded, so a toucher that stayed on would stall `replace_space`.
/// The key under which an exec cycle waits for a toucher's activation of `space`.
fn activation_key(space: &AddressSpace) -> u64 {
    (1 << 62) | space.id
}

/// Activates `space` on this CPU (false if its destroy has begun), then hands the turn to a
/// mutator waiting for an activation of it (deterministic runs): its unmap then reads the
/// space's CPUs while this CPU's new bit may still wait in the store buffer (`weak=on`), the
/// window the activation's `DSB` closes (`bug=activate-no-dsb` leaves it open).
fn activated(shared: &Shared, space: &AddressSpace) -> bool {
    if !space.activate() {
        return false;
    }
    shared.activations.fetch_add(1, Ordering::AcqRel);
    broadside_base::hint::yield_point_watched(
        broadside_base::hint::Site::Activate,
        activation_key(space),
    );
    true
}

fn touch(shared: &Shared, rng: &mut Rng) {
    // Half the time the space an exec cycle made last, whose first activations race its unmaps.
    let fresh = shared.fresh.load(Ordering::Acquire);
    let space = if fresh > 0 && rng.below(2) == 0 {
        shared.spaces[fresh - 1].lock().clone()
    } else {
        pick(shared, rng).1
    };
    let Some(space) = space else {
        return;
    };
    if rng.below(4) == 0 {
        race_doomed(shared);
    }
    // Now and then this CPU reclaims, as kswapd would: pages of many spaces in one deferred
    // TLB batch.
    if rng.below(16) == 0 {
        reclaim(shared, rng);
    }
    // A process's thread maps the shared object now and then (with sharing on), racing the
    // mutators' destroys and unshares of the same space (the teardown race of rule 6).
    if let Some(obj) = &shared.object
        && rng.below(4) == 0
        && !space
            .objects
            .lock()
            .iter()
            .any(|(o, _)| Arc::ptr_eq(o, obj))
        && map_object_under_pressure(shared, &space, obj, rng) == Err(MapError::OutOfMemory)
    {
        shared.backoff();
    }
    if !activated(shared, &space) {
        return;
    }
    let hz = cpu::counter_frequency();
    let until = cpu::counter() + hz * (STAY_US.0 + rng.below(STAY_US.1)) / 1_000_000;
    let mut set = [VirtAddr::ZERO; WORKING_SET];
    for va in &mut set {
        *va = random_va(shared, rng);
    }
    let this = smp::this_cpu();
    'stay: loop {
        for &va in &set {
            if space.state() != SpaceState::Live || shared.stop.load(Ordering::Relaxed) {
                break 'stay;
            }
            probe(shared, &space, va, rng);
        }
        set[rng.below(WORKING_SET as u64) as usize] = random_va(shared, rng);
        // Half the rounds write where a mutator has just made pages writable again, with no
        // TLBI: this CPU may still hold their read-only entries.
        let upgraded = *shared.upgraded.lock();
        if let Some((id, start, pages)) = upgraded
            && id == space.id
            && rng.below(2) == 0
        {
            set[rng.below(WORKING_SET as u64) as usize] = start + rng.below(pages) * PAGE_SIZE;
        }
        // The working set is walked and cached; this CPU's stores of the round (its bit in
        // `cpus_ever` after an activation, with `weak=on`) may still wait in its store buffer
        // until the quiescent state below, whose locks drain it. A stall here holds that open.
        broadside_base::hint::yield_point(broadside_base::hint::Site::Activate);
        // As the main loop does between calls: the watchdog watches the heartbeat, and the
        // quiescent state lets grace periods (and this CPU's table frees) go on.
        this.heartbeat.fetch_add(1, Ordering::Relaxed);
        broadside_sync::rcu_kernel::quiescent();
        // A YIELD per round (32 probes): under deterministic mode (one host thread for every
        // vCPU, round-robin) a vCPU that yields forfeits the rest of its turn, so CPUs that
        // yield often (lock waits, the walker's hold) advanced one step per round while a
        // toucher, the one role whose loop reached no YIELD/WFI/WFE, used a full budget every
        // round. In about one seed in ten the mutator and walker all but stopped and the run
        // missed its deadline (exit 4); with this yield 76 of 76 seeds finished. On hardware
        // it is a hint, nothing more. Not `cpu::relax`, which would also drain this CPU's
        // emulated store buffer (`weak=on`): a toucher waits for nobody here. The yield point
        // after it may stall, with this CPU's first walks of the space behind it.
        broadside_base::hint::yield_now();
        if cpu::counter() >= until {
            break;
        }
        // Now and then this thread is switched out and back in: another activation, which may
        // race a destroy of the space (the activation gate). Not often: QEMU drops a vCPU's
        // TLB when its ASID changes, so every switch also ends the stale entries the probe
        // looks for (one round in two made the probe miss `bug=skip-tlbi` in 4 of 8 seeds).
        if rng.below(8) == 0 {
            space.deactivate();
            broadside_base::hint::yield_point(broadside_base::hint::Site::Activate);
            if !activated(shared, &space) {
                return;
            }
        }
    }
    space.deactivate();
}

/// Reads `va`'s stamp through the MMU and checks it; half the time also increments the page's
/// write counter (which must not move while the page is read-only: `protect_cycle`).
fn probe(shared: &Shared, space: &AddressSpace, va: VirtAddr, rng: &mut Rng) {
    // The probes recover from translation and permission faults.
    let read = (probe_read(va), probe_read(va + 8));
    stats::count(Counter::Touches);
    let (Ok(w0), Ok(w1)) = read else { return };
    match check_stamp(w0, w1, space.id, va, object_at(shared, va)) {
        StampCheck::Ok => {}
        bad => {
            stats::detected(Counter::StaleTlbDetected);
            report(
                shared,
                format_args!(
                    "space {} va {va:#x} read {bad:?} ({w0:#x}, {w1:#x})",
                    space.id
                ),
            );
            return;
        }
    }
    if rng.below(2) == 0 {
        let counter = va + (WRITE_COUNTER_WORD as u64) * 8;
        // A write to a read-only page faults and is recovered; one through a stale read-only
        // entry of a page made writable again faults spuriously and is retried.
        if let Ok(v) = probe_read(counter) {
            let _ = broadside_mm::fault::write_user(space, counter, v + 1);
        }
    }
}

// ---- walkers -----------------------------------------------------------------------------

fn walk(shared: &Shared, rng: &mut Rng) {
    let (_, Some(picked)) = pick(shared, rng) else {
        return;
    };
    for _ in 0..16 {
        // Half the walks chase the range a mutator is unmapping now; the others favour the
        // regions whose tables are freed or unshared most often.
        let (space, va) = match hot_target(shared, rng) {
            Some(target) if rng.below(2) == 0 => target,
            _ => (
                picked.clone(),
                match rng.below(5) {
                    0 | 1 if shared.object.is_some() => object_va(shared, rng),
                    0 | 1 => SPARSE_BASE + rng.below(SPARSE_PAGES) * PAGE_SIZE,
                    _ => random_va(shared, rng),
                },
            ),
        };
        // Hold the walk for up to ~8 ms, as a walk over a long range would: long enough that a
        // grace period ending mid-walk (bug=walker-irqs-on) or a table freed without one
        // (bug=free-tables-now) is seen while the walk still reads the table.
        let hold = cpu::counter_frequency() * rng.below(8000) / 1_000_000;
        // Half the walks come right after a short idle (until the next tick), as a reader CPU's
        // do between bursts of work: RCU then sees the CPU in an extended quiescent state, and
        // the walk races the grace periods that began while it slept (rule 3; the EQS handshake
        // of `sync::rcu`, which `bug=rcu-snapshot-early` breaks). Such a walk is made on waking,
        // before the interrupt that woke the CPU is taken, so that nothing between leaving idle
        // and the walk takes a lock (whose release would drain, with `weak=on`, the store that
        // left idle).
        if rng.below(2) == 0
            && let Some((space, va, out)) = wake_walk(shared)
        {
            report_walk(shared, &space, va, out);
            continue;
        }
        let out = walker::walk_and_pin(&space, va, shared.walk_cfg, hold);
        report_walk(shared, &space, va, out);
    }
}

/// Ticks a walker idles at most waiting for a mutator to start emptying a table.
const WAKE_WAIT_TICKS: u32 = 8;

/// A walk right after an idle: idles until a mutator starts emptying the sparse region of a
/// space (it kicks the idle walkers), for at most [`WAKE_WAIT_TICKS`] ticks, then walks that
/// region's last page (which the unmap reaches last, so the walk finds it and holds its table
/// while the unmap unhooks it and queues its free). The walk is made on waking, before the
/// interrupt that woke the CPU is taken, so nothing between leaving idle and the walk takes a
/// lock (whose release would drain, with `weak=on`, the store that left idle). `None` if no
/// mutator came.
fn wake_walk(shared: &Shared) -> Option<(Arc<AddressSpace>, VirtAddr, WalkOutcome)> {
    let me = broadside_base::cpu_id();
    let bit = 1u64.checked_shl(me as u32).filter(|_| me < 64)?;
    shared.idle_walkers.fetch_or(bit, Ordering::AcqRel);
    let mut walked = None;
    for _ in 0..WAKE_WAIT_TICKS {
        let stop = || shared.stop.load(Ordering::Relaxed);
        // Sleep at most a millisecond per round (counter ticks), so that a kick is met soon.
        let ms = cpu::counter_frequency() / 1000;
        walked = broadside_sync::wait::idle_then(stop, ms, || {
            if shared.idle_walkers.load(Ordering::Acquire) & bit != 0 {
                return None; // not kicked: a tick
            }
            let h = shared.hot.range.lock().clone()?;
            shared.woken.fetch_add(1, Ordering::AcqRel);
            broadside_base::hint::yield_point(broadside_base::hint::Site::IdleWake);
            // If the unmap empties the page's table: held long enough for the unmap to reach
            // the page, unhook the table, and a grace period to end and free it (30 ms).
            let held = if h.empties_tables {
                cpu::counter_frequency() * 3 / 100
            } else {
                cpu::counter_frequency() / 1000
            };
            // The last mapped page of the range (a walk holds its tables only once it pins):
            // a few pages back from the end, 1/16 of the range apart, until one is mapped.
            let stride = (h.pages / 16).max(1);
            let mut walked = None;
            for k in 0..16u64.min(h.pages) {
                let va = h.va + (h.pages - 1 - k * stride) * PAGE_SIZE;
                let out = walker::walk_and_pin(&h.space, va, shared.walk_cfg, held);
                let found = out != WalkOutcome::NotPresent;
                walked = Some((h.space.clone(), va, out));
                if found {
                    break;
                }
            }
            walked
        });
        if walked.is_some() || stop() || shared.idle_walkers.load(Ordering::Acquire) & bit == 0 {
            break;
        }
    }
    shared.idle_walkers.fetch_and(!bit, Ordering::AcqRel);
    walked
}

/// Reports what a walk found that it must not (a use-after-free, a stale pin).
fn report_walk(shared: &Shared, space: &AddressSpace, va: VirtAddr, out: WalkOutcome) {
    match out {
        WalkOutcome::UseAfterFree(what) => report(
            shared,
            format_args!("walker: space {} va {va:#x}: {what}", space.id),
        ),
        WalkOutcome::StalePin => report(
            shared,
            format_args!(
                "walker: space {} va {va:#x}: kept its pin on a page unmapped before the pin took effect",
                space.id
            ),
        ),
        _ => {}
    }
}

/// A page of the range a mutator is unmapping now, and its space.
fn hot_target(shared: &Shared, rng: &mut Rng) -> Option<(Arc<AddressSpace>, VirtAddr)> {
    let h = shared.hot.range.lock().clone()?;
    // Half the time its last page, which the unmap clears last: a walk that loads its entry
    // is then most likely still ahead of the clear, so its pin and re-check race the clear,
    // the flush and the free.
    let page = if rng.below(2) == 0 {
        h.pages - 1
    } else {
        rng.below(h.pages)
    };
    Some((h.space, h.va + page * PAGE_SIZE))
}

/// Makes `[start, end)` of `space` the range walkers chase (see [`Hot`]), and wakes the walkers
/// that idle to race the unmap about to start.
fn heat(
    shared: &Shared,
    space: &Arc<AddressSpace>,
    start: VirtAddr,
    end: VirtAddr,
    empties_tables: bool,
) {
    *shared.hot.range.lock() = Some(HotRange {
        space: space.clone(),
        va: start,
        pages: (end - start) / PAGE_SIZE,
        empties_tables,
    });
    if shared.idle_walkers.load(Ordering::Acquire) != 0 {
        let idle = shared.idle_walkers.swap(0, Ordering::AcqRel);
        let woken = shared.woken.load(Ordering::Acquire);
        for cpu in (0..64).filter(|c| idle & (1 << c) != 0) {
            smp::work::kick(cpu);
        }
        // Let them start their walks before the unmap does (at most 200 us): with one host
        // thread for every vCPU, this CPU would otherwise finish a short unmap before a kicked
        // CPU ran at all, and every such walk would find the range already gone. Then a burst
        // of yields, in which each walker loads its leaf.
        let target = woken + u64::from(idle.count_ones());
        let until = cpu::counter() + cpu::counter_frequency() / 5000;
        while shared.woken.load(Ordering::Acquire) < target && cpu::counter() < until {
            broadside_base::hint::yield_now();
        }
        for _ in 0..broadside_base::hint::MAX_BURST {
            broadside_base::hint::yield_now();
        }
    }
}

fn spin_us(us: u64) {
    let end = cpu::counter() + cpu::counter_frequency() * us / 1_000_000;
    while cpu::counter() < end {
        cpu::relax();
    }
}

// ---- mutators ----------------------------------------------------------------------------

/// Pages one reclaim takes, at most.
const RECLAIM_PAGES: u64 = 16;
/// How long a reclaim holds its batch pending for a mutator cycle to meet it, at most (a
/// mutator cycle takes about 10 ms of virtual time in a deterministic 4-CPU run).
const RECLAIM_HOLD_US: u64 = 20_000;

/// Unmaps up to [`RECLAIM_PAGES`] private pages of random spaces into one deferred TLB batch
/// (one `TLBI VALE1IS` each, no `DSB`), holds the batch pending until a mutator has unmapped or
/// protected around one of its pages (or a while has passed), then completes it with one
/// `DSB ISH` and frees the pages.
fn reclaim(shared: &Shared, rng: &mut Rng) {
    let mut batch = broadside_mm::tlbbatch::TlbBatch::new();
    let mut last = None;
    for _ in 0..RECLAIM_PAGES {
        let (_, Some(space)) = pick(shared, rng) else {
            continue;
        };
        let va = PAGES_BASE + rng.below(shared.layout.pages_len() / PAGE_SIZE) * PAGE_SIZE;
        if batch.unmap_page(&space, va) {
            last = Some((space, va));
        }
    }
    if last.is_some() {
        let races = shared.reclaim_races.load(Ordering::Acquire);
        *shared.reclaimed.lock() = last;
        let hz = cpu::counter_frequency();
        let until =
            cpu::counter() + hz * (RECLAIM_HOLD_US / 4 + rng.below(RECLAIM_HOLD_US)) / 1_000_000;
        while cpu::counter() < until
            && shared.reclaim_races.load(Ordering::Acquire) == races
            && !shared.stop.load(Ordering::Relaxed)
        {
            broadside_base::hint::pause();
        }
        *shared.reclaimed.lock() = None;
    }
    batch.flush();
}

/// A mutator cycle around a pending reclaim batch's page: unmap and map again a few pages
/// holding it, or make them read-only and writable again. Either must complete the batch's
/// TLBIs for the space before it returns.
fn race_reclaim(shared: &Shared, rng: &mut Rng) -> bool {
    let Some((space, va)) = shared.reclaimed.lock().clone() else {
        return false;
    };
    // From the batch's page on: the cycle's own flush covers the pages after it (those it
    // cleared or changed) but not that one, which only the pending batch's TLBI names.
    let pages = shared.layout.pages_len() / PAGE_SIZE;
    let first = (va - PAGES_BASE) / PAGE_SIZE;
    let start = va;
    let n = 1 + rng.below(8).min(pages - 1 - first);
    if rng.below(2) == 0 {
        unmap_range(shared, &space, start, start + n * PAGE_SIZE);
        map_pages_or_back_off(shared, &space, start, n);
    } else {
        let _g = space.lock.lock();
        if space
            .protect(start, start + n * PAGE_SIZE, Attributes::user_data_ro())
            .is_ok()
        {
            let _ = space.protect(start, start + n * PAGE_SIZE, Attributes::user_data_rw());
        }
    }
    shared.reclaim_races.fetch_add(1, Ordering::Release);
    true
}

fn mutate(shared: &Shared, rng: &mut Rng) {
    if rng.below(3) == 0 && race_reclaim(shared, rng) {
        stats::count(Counter::MutatorOps);
        return;
    }
    let (slot, Some(space)) = pick(shared, rng) else {
        return;
    };
    stats::count(Counter::MutatorOps);
    if let Some(obj) = &shared.object
        && rng.below(3) == 0
    {
        return share_cycle(shared, &space, obj, rng);
    }
    match rng.below(100) {
        0..=24 => unmap_remap_pages(shared, &space, rng),
        25..=29 => migrate_cycle(shared, &space, rng),
        30..=41 => unmap_remap_chunk(shared, &space, rng),
        42..=56 => protect_cycle(shared, &space, rng),
        57..=66 => block_cycle(shared, &space, rng),
        67..=77 => sparse_cycle(shared, &space),
        78..=97 => {
            drop(space);
            // Bound first: the slot's lock must not be held across the cycle, which takes it.
            let old = shared.spaces[EXEC_SLOT].lock().clone();
            if let Some(old) = old {
                exec_cycle(shared, EXEC_SLOT, old, rng);
            }
        }
        _ => {
            if let Some(fresh) = new_populated_space(shared)
                && !replace_space(shared, slot, space, fresh.clone())
            {
                fresh.destroy();
            }
        }
    }
}

fn unmap_range(shared: &Shared, space: &Arc<AddressSpace>, start: VirtAddr, end: VirtAddr) {
    heat(shared, space, start, end, start == SPARSE_BASE);
    let _g = space.lock.lock();
    let mut gather = MmuGather::new_range(space);
    gather.unmap(start, end);
    gather.finish();
}

/// Maps `count` pages at `va`; out of memory, backs off (what was mapped stays mapped, the rest
/// stays a hole that touchers fault on and a later cycle fills).
fn map_pages_or_back_off(shared: &Shared, space: &AddressSpace, va: VirtAddr, count: u64) {
    let _g = space.lock.lock();
    if space
        .map_pages(va, count, Attributes::user_data_rw())
        .is_none()
    {
        shared.backoff();
    }
}

fn unmap_remap_pages(shared: &Shared, space: &Arc<AddressSpace>, rng: &mut Rng) {
    let n = 1 + rng.below(64);
    let first = rng.below(shared.layout.pages_len() / PAGE_SIZE - n);
    let start = PAGES_BASE + first * PAGE_SIZE;
    unmap_range(shared, space, start, start + n * PAGE_SIZE);
    map_pages_or_back_off(shared, space, start, n);
}

/// Moves a few random pages of region A to new frames (page migration: break, invalidate,
/// copy, make). Pages not mapped just now, or the space dying, are passed over; out of memory,
/// backs off.
fn migrate_cycle(shared: &Shared, space: &AddressSpace, rng: &mut Rng) {
    let _g = space.lock.lock();
    for _ in 0..1 + rng.below(8) {
        let va = PAGES_BASE + rng.below(shared.layout.pages_len() / PAGE_SIZE) * PAGE_SIZE;
        if space.migrate_page(va) == Err(MigrateError::OutOfMemory) {
            shared.backoff();
            return;
        }
    }
}

fn unmap_remap_chunk(shared: &Shared, space: &Arc<AddressSpace>, rng: &mut Rng) {
    let start = PAGES_BASE + rng.below(shared.layout.pages_chunks) * L2_BLOCK_SIZE;
    unmap_range(shared, space, start, start + L2_BLOCK_SIZE);
    map_pages_or_back_off(shared, space, start, L2_BLOCK_SIZE / PAGE_SIZE);
}

/// Makes a range read-only, checks that no write lands after the change completed, then makes
/// it writable again.
fn protect_cycle(shared: &Shared, space: &AddressSpace, rng: &mut Rng) {
    let n = 1 + rng.below(32);
    let start = PAGES_BASE + rng.below(shared.layout.pages_len() / PAGE_SIZE - n) * PAGE_SIZE;
    let end = start + n * PAGE_SIZE;
    let _g = space.lock.lock();
    if space
        .protect(start, end, Attributes::user_data_ro())
        .is_err()
    {
        // Destroy has begun (region A holds only pages, so nothing else is refused): nothing
        // changed, and touchers still inside may write. Nothing to check.
        return;
    }
    // The flush has completed: from here on no write may reach these pages.
    let mut snapshot: Vec<(VirtAddr, PhysAddr, u64)> = Vec::new();
    let mut va = start;
    while va < end {
        if let Some((d, 3)) = space.lookup(va)
            && let DescriptorKind::Page { pa, .. } = d.kind(3)
        {
            snapshot.push((va, pa, frame::read_word(pa, WRITE_COUNTER_WORD)));
        }
        va += PAGE_SIZE;
    }
    // Give touchers on other CPUs time to try their writes.
    spin_us(200 + rng.below(300));
    for (va, pa, before) in snapshot {
        let now = frame::read_word(pa, WRITE_COUNTER_WORD);
        if now != before {
            stats::detected(Counter::StaleTlbDetected);
            report(
                shared,
                format_args!(
                    "space {} va {va:#x}: write landed after read-only flush ({before} -> {now})",
                    space.id
                ),
            );
        }
    }
    // Cannot be refused: the state changes only under the lock this function holds. An
    // upgrade: no TLBI, and touchers now write where CPUs may hold the read-only entries.
    let _ = space.protect(start, end, Attributes::user_data_rw());
    *shared.upgraded.lock() = Some((space.id, start, n));
}

fn block_cycle(shared: &Shared, space: &Arc<AddressSpace>, rng: &mut Rng) {
    let va = BLOCKS_BASE + rng.below(shared.layout.blocks) * L2_BLOCK_SIZE;
    let mapped = space.lookup(va).is_some();
    if mapped {
        unmap_range(shared, space, va, va + L2_BLOCK_SIZE);
    } else {
        let _g = space.lock.lock();
        if space.map_block(va, Attributes::user_data_rw()).is_none() {
            shared.backoff();
        }
    }
}

/// Maps region C if it is unmapped, else unmaps all of it (freeing its level-3, -2 and -1
/// tables).
fn sparse_cycle(shared: &Shared, space: &Arc<AddressSpace>) {
    if space.lookup(SPARSE_BASE).is_some() {
        unmap_range(
            shared,
            space,
            SPARSE_BASE,
            SPARSE_BASE + SPARSE_PAGES * PAGE_SIZE,
        );
    } else {
        map_pages_or_back_off(shared, space, SPARSE_BASE, SPARSE_PAGES);
    }
}

/// Each kind of flush once, on one space that has run on every CPU, before the random mix starts and
/// before any other space maps the object: a small unmap that frees its tables (a short range
/// flush that must reach walk caches), a permission change over a block and pages (a mixed
/// range: page stride, no level hint), a page migration (break-before-make), an ASID rollover
/// every CPU must flush for before its next switch, and with sharing the last sharer
/// of a table alone in its gather (changing one GiB's protection while no other space maps
/// it), then of the rest (its destroy). The mix reaches these only by chance — a last sharer
/// is usually unsharing other GiBs too, whose wider flush hides a narrow one, small frees
/// are often merged into an ASID-wide flush, and rollovers need `asid_bits=` — so the audit
/// checks each of them in every run, whatever the seed.
fn prologue(shared: &Shared) {
    let Some(space) = AddressSpace::new().map(Arc::new) else {
        shared.backoff();
        return;
    };
    let mapped = shared
        .object
        .as_ref()
        .is_none_or(|obj| shared::map_object(&space, obj, SHARED_BASE).is_ok());
    if mapped {
        // Every CPU runs it once, so each flush below must reach them all.
        super::activate_everywhere(&space);
        sparse_cycle(shared, &space); // maps the sparse pages, and their tables
        sparse_cycle(shared, &space); // unmaps them: every table on the way is freed
        // A block and four pages right after it, then one protect over both: a mixed range,
        // whose flush must step by the page and carry no level hint.
        map_pages_or_back_off(shared, &space, BLOCKS_BASE + L2_BLOCK_SIZE, 4);
        {
            let _g = space.lock.lock();
            if space
                .map_block(BLOCKS_BASE, Attributes::user_data_rw())
                .is_none()
            {
                shared.backoff();
            }
            let end = BLOCKS_BASE + L2_BLOCK_SIZE + 4 * PAGE_SIZE;
            let _ = space.protect(BLOCKS_BASE, end, Attributes::user_data_ro());
            // Out of memory, nothing moves: only the migration's check is lost.
            let _ = space.migrate_page(BLOCKS_BASE + L2_BLOCK_SIZE);
        }
        // A rollover, then every CPU switches: each must flush first.
        broadside_mm::aspace::asid_allocator().force_rollover();
        super::activate_everywhere(&space);
        if let Some(obj) = &shared.object {
            // Out of memory for the private copy only leaves the GiB unmapped: the unshare ran.
            let ro = Attributes::user_data_ro();
            let _ = shared::protect_object_gib(&space, obj, SHARED_BASE, 0, ro);
        }
    }
    space.destroy();
}

/// Takes the space out of its slot, puts a fresh one in, and destroys the old one (which waits
/// for touchers still using it). Out of memory, the old space stays.
/// A process execs: a fresh space replaces the one in `slot` (which is destroyed), runs on this
/// CPU first (so it is active nowhere else, and its flushes may be local), and unmaps and
/// remaps its pages a few times while the touchers, which favour it, load it for the first
/// time. Those first activations race its unmaps: the handshake of `cpus_ever` (a flusher's
/// `DMB` against an activation's `DSB`), and the activation gate against the destroy.
fn exec_cycle(shared: &Shared, slot: usize, old: Arc<AddressSpace>, rng: &mut Rng) {
    // A small process: its first EXEC_PAGES pages, so that an exec is cheap and frequent.
    let Some(fresh) = AddressSpace::new().map(Arc::new) else {
        shared.backoff();
        return;
    };
    map_pages_or_back_off(shared, &fresh, PAGES_BASE, EXEC_PAGES);
    let active = fresh.activate();
    if !swap_space(shared, slot, &old, fresh.clone()) {
        if active {
            fresh.deactivate();
        }
        fresh.destroy();
        return;
    }
    shared.fresh.store(slot + 1, Ordering::Release);
    for _ in 0..8 {
        let n = 1 + rng.below(16);
        let start = PAGES_BASE + rng.below(EXEC_PAGES - n) * PAGE_SIZE;
        // Deterministic runs: sometimes wait for a toucher to activate the new process, so
        // that the unmap races its activation (see [`activated`]).
        let seen = shared.activations.load(Ordering::Acquire);
        broadside_base::hint::yield_point_until(
            broadside_base::hint::Site::Activate,
            activation_key(&fresh),
            || shared.activations.load(Ordering::Acquire) != seen,
        );
        unmap_range(shared, &fresh, start, start + n * PAGE_SIZE);
        map_pages_or_back_off(shared, &fresh, start, n);
    }
    if active {
        fresh.deactivate();
    }
    // The old process goes last: its destroy waits for the CPUs still in it, and the fresh
    // one's first unmaps should not. Its teardown frees every table: walkers race it.
    heat(
        shared,
        &old,
        PAGES_BASE,
        PAGES_BASE + EXEC_PAGES * PAGE_SIZE,
        true,
    );
    destroy_doomed(shared, &old);
}

/// Puts `fresh` in `slot` if `old` is still there; returns whether it did (the caller then owns
/// the destroy of `old`).
fn swap_space(
    shared: &Shared,
    slot: usize,
    old: &Arc<AddressSpace>,
    fresh: Arc<AddressSpace>,
) -> bool {
    let mut s = shared.spaces[slot].lock();
    match s.as_ref() {
        Some(cur) if Arc::ptr_eq(cur, old) => {
            *s = Some(fresh);
            true
        }
        _ => false, // another mutator replaced it first
    }
}

/// Puts `fresh` in `slot` in place of `old` and destroys `old`; returns false (destroying
/// nothing) if another mutator replaced `old` first.
fn replace_space(
    shared: &Shared,
    slot: usize,
    old: Arc<AddressSpace>,
    fresh: Arc<AddressSpace>,
) -> bool {
    // Spaces have no Drop: the one taken out of the slot must be destroyed, or its tables and
    // frames would leak (the caller destroys `fresh` if it did not go in).
    let replaced = swap_space(shared, slot, &old, fresh);
    if replaced {
        destroy_doomed(shared, &old);
    }
    replaced
}

/// Maps the shared object into `space`; one time in four, one of its first three table
/// allocations fails, as under memory pressure: a failure half-way must undo what the call
/// hooked (`bug=map-object-no-undo` leaves it, and the teardown then meets a shared table it
/// does not own).
fn map_object_under_pressure(
    shared: &Shared,
    space: &AddressSpace,
    obj: &Arc<SharedObject>,
    rng: &mut Rng,
) -> Result<(), MapError> {
    // The map builds a table for each GiB no space shares now. Failing the last of those
    // builds makes the failure come half-way whenever a GiB before it is hooked already (the
    // path `map_object` must undo); otherwise one of its first three allocations.
    let missing = obj.share_counts().iter().filter(|c| c.is_none()).count() as u64;
    if rng.below(4) != 0 && (missing == 0 || rng.below(2) == 0) {
        return shared::map_object(space, obj, SHARED_BASE);
    }
    let skip = match missing {
        0 => rng.below(3),
        n => n - 1 + rng.below(2),
    };
    fault_inject::fail_table_allocs(skip as u32, 1);
    let result = shared::map_object(space, obj, SHARED_BASE);
    fault_inject::clear_table_alloc_failures();
    // A map that failed half-way must have undone what it hooked: destroy unshares only the
    // objects a space lists, so a table left hooked would be torn down under its other users.
    if result == Err(MapError::OutOfMemory)
        && let Some(gib) = shared::hooked_but_unlisted(space, obj, SHARED_BASE)
    {
        stats::detected(Counter::MapContractDetected);
        report(
            shared,
            format_args!(
                "map_object: space {} failed out of memory and left GiB {gib} of the object hooked, unlisted",
                space.id
            ),
        );
    }
    result
}

/// The key under which touchers wait for a destroy to begin (see [`race_doomed`]).
const DOOMED_KEY: u64 = 1 << 61;

/// Destroys `old` as the space touchers race to activate or map into (see
/// [`Shared::doomed`]); in deterministic runs, hands the turn to touchers waiting for that first.
fn destroy_doomed(shared: &Shared, old: &Arc<AddressSpace>) {
    *shared.doomed.lock() = Some(old.clone());
    broadside_base::hint::yield_point_watched(broadside_base::hint::Site::MapRace, DOOMED_KEY);
    old.destroy();
    *shared.doomed.lock() = None;
}

/// A thread of a process that another CPU is destroying: waits (in deterministic runs, for at
/// most a stall) for a destroy to begin, then activates that space, racing the destroy's close
/// of its gate (an activation stalls inside the gate until it closes), or with sharing on, one
/// time in two, maps the shared object into it ([`map_into_doomed`]).
fn race_doomed(shared: &Shared) {
    broadside_base::hint::yield_point_until(
        broadside_base::hint::Site::MapRace,
        DOOMED_KEY,
        || shared.doomed.lock().is_some(),
    );
    if let Some(obj) = &shared.object
        && broadside_base::hint::coin()
    {
        return map_into_doomed(shared, obj);
    }
    let Some(space) = shared.doomed.lock().clone() else {
        return;
    };
    if activated(shared, &space) {
        space.deactivate();
    }
}

/// A thread maps the shared object into the space a mutator is destroying, waiting (in
/// deterministic runs) for the destroy to have unshared the space's objects: a map that gets
/// in after that step and before the teardown is one the teardown would reach as a shared
/// table (`bug=map-dying`). The map must be refused once the destroy has begun.
fn map_into_doomed(shared: &Shared, obj: &Arc<SharedObject>) {
    let Some(space) = shared.doomed.lock().clone() else {
        return;
    };
    let dying = || space.state() != SpaceState::Live && space.objects.lock().is_empty();
    broadside_base::hint::yield_point_until(
        broadside_base::hint::Site::MapRace,
        space.teardown_watch_key(),
        dying,
    );
    let was_dying = space.state() != SpaceState::Live;
    if shared::map_object(&space, obj, SHARED_BASE).is_ok() && was_dying {
        stats::detected(Counter::MapContractDetected);
        report(
            shared,
            format_args!(
                "map_object: mapped the object into space {}, whose destroy had begun",
                space.id
            ),
        );
    }
}

// ---- sharing (sharing=on) ----------------------------------------------------------------

/// Unmaps the shared object from `space` (unsharing its tables) if it maps it, then lets any
/// space left as the only user of a table take it over and install a private block in it, as
/// the last sharer may; maps it again (sharing) otherwise. Sometimes changes the protection of
/// one GiB instead (which unshares it too).
fn share_cycle(shared: &Shared, space: &Arc<AddressSpace>, obj: &Arc<SharedObject>, rng: &mut Rng) {
    let mapped = space
        .objects
        .lock()
        .iter()
        .any(|(o, _)| Arc::ptr_eq(o, obj));
    if !mapped {
        if map_object_under_pressure(shared, space, obj, rng) == Err(MapError::OutOfMemory) {
            shared.backoff();
        }
        return;
    }
    if rng.below(4) == 0 {
        let gib = rng.below(shared.layout.object_gib);
        if shared::protect_object_gib(space, obj, SHARED_BASE, gib, Attributes::user_data_ro())
            == Err(MapError::OutOfMemory)
        {
            shared.backoff();
        }
        return;
    }
    // Walkers chase the unshare: one that holds a shared table as this space lets go of it is
    // what the walker sync after a full unshare (`unshare=sync-last`) exists for.
    let end = SHARED_BASE + shared.layout.object_gib * L1_BLOCK_SIZE;
    heat(shared, space, SHARED_BASE, end, true);
    shared::unmap_object(space, obj, SHARED_BASE);
    for slot in &shared.spaces {
        let Some(other) = slot.lock().clone() else {
            continue;
        };
        // Out of memory for the private block, an adoption still takes the table over and
        // leaves the slot empty (see `adopt_if_exclusive`): nothing to back off from here.
        for gib in 0..shared.layout.object_gib {
            shared::adopt_if_exclusive(&other, obj, SHARED_BASE, gib, rng.below(512) as usize);
        }
    }
}

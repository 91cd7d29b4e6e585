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
use super::sizing::{free_memory, refuse};
use alloc::sync::Arc;
use alloc::vec::Vec;
use broadside_arch::aarch64::cpu;
use broadside_arch::aarch64::exception::{probe_read, probe_write_user};
use broadside_arch::pte::{Attributes, DescriptorKind, L1_BLOCK_SIZE, L2_BLOCK_SIZE, PAGE_SIZE};
use broadside_arch::{PhysAddr, VirtAddr};
use broadside_base::IrqSpinlock;
use broadside_base::percpu::Role;
use broadside_base::rng::Rng;
use broadside_base::stats::{self, Counter};
use broadside_memory::frame;
use broadside_mm::aspace::{
    AddressSpace, MapError, SpaceState, StampCheck, WRITE_COUNTER_WORD, check_stamp,
};
use broadside_mm::gather::MmuGather;
use broadside_mm::migrate::MigrateError;
use broadside_mm::mm_types::SharedObject;
use broadside_mm::shared;
use broadside_mm::walker::{self, WalkConfig, WalkOutcome};
use broadside_platform::boot_info::BootInfo;
use broadside_platform::kprintln;
use broadside_smp as smp;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Address spaces shared by all roles.
const SPACES: usize = 4;
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
fn roles(info: &BootInfo, cpus: usize) -> Result<(usize, usize, usize), RolesError> {
    let a = &info.args;
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
    let (mutators, touchers, walkers) = match roles(info, cpus) {
        Ok(r) => r,
        Err(e) => broadside_platform::exit::config_error(format_args!("error: bootargs: {e}")),
    };
    let mut role_of = [Role::None; broadside_base::config::MAX_CPUS];
    // With fewer than 3 CPUs and no roles given, CPUs take several roles in turn, so every
    // role still runs (on 1 CPU this exercises the local-flush path too).
    let a = &info.args;
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
    let layout = match Layout::choose(free, info.args.sharing) {
        Ok(l) => l,
        Err(need) => refuse(
            "stress",
            if info.args.sharing {
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
        if info.args.sharing {
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
        info.args.seconds,
        info.args.seed,
        info.args.flush.name(),
        info.args.tablefree.name(),
        if info.args.sharing { "on" } else { "off" },
        info.args.unshare.name()
    );
    let shared = Shared {
        spaces: [const { IrqSpinlock::new(None) }; SPACES],
        stop: AtomicBool::new(false),
        deadline: cpu::counter() + info.args.seconds as u64 * cpu::counter_frequency(),
        seed: info.args.seed,
        roles: role_of,
        walk_cfg: WalkConfig::for_run(info.args.bugs),
        layout,
        object: None,
        map_backoffs: AtomicU64::new(0),
        first_reports: AtomicU64::new(0),
    };
    // The layout was sized to the free memory, so these only fail if the estimate is wrong;
    // even then the run goes on with what it has (a slot left empty is skipped by every role).
    let mut shared = shared;
    if info.args.sharing {
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
    let backoffs = shared.map_backoffs.load(Ordering::Relaxed);
    kprintln!(
        "stress: done: {} touches, stale_tlb_detected={stale}, uaf_detected={uaf}, leaf_only_flush_detected={leaf_only}, unshare_flush_missed={flush_missed}, map_backoffs={backoffs}",
        stats::read(Counter::Touches)
    );
    let mut out =
        Outcome::from_checks(stale == 0 && uaf == 0 && leaf_only == 0 && flush_missed == 0);
    out.extra_json = Some(alloc::format!(
        "\"stress\":{{\"free_mib\":{},\"pages_per_space\":{},\"block_slots\":{},\"object_gib\":{},\"map_backoffs\":{backoffs}}}",
        free / MIB,
        layout.pages_len() / PAGE_SIZE,
        layout.blocks,
        if info.args.sharing {
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
fn touch(shared: &Shared, rng: &mut Rng) {
    let (_, Some(space)) = pick(shared, rng) else {
        return;
    };
    if !space.activate() {
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
        // it is a hint, nothing more.
        cpu::relax();
        if cpu::counter() >= until {
            break;
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
        // A write to a read-only page faults and is recovered.
        if let Ok(v) = probe_read(counter) {
            let _ = probe_write_user(counter, v + 1);
        }
    }
}

// ---- walkers -----------------------------------------------------------------------------

fn walk(shared: &Shared, rng: &mut Rng) {
    let (_, Some(space)) = pick(shared, rng) else {
        return;
    };
    for _ in 0..16 {
        // Walks favour the regions whose tables are freed or unshared most often.
        let va = match rng.below(5) {
            0 | 1 if shared.object.is_some() => object_va(shared, rng),
            0 | 1 => SPARSE_BASE + rng.below(SPARSE_PAGES) * PAGE_SIZE,
            _ => random_va(shared, rng),
        };
        // Hold the walk for up to ~8 ms, as a walk over a long range would: long enough that a
        // grace period ending mid-walk (bug=walker-irqs-on) or a table freed without one
        // (bug=free-tables-now) is seen while the walk still reads the table.
        let hold = cpu::counter_frequency() * rng.below(8000) / 1_000_000;
        let out = walker::walk_and_pin(&space, va, shared.walk_cfg, hold);
        if let WalkOutcome::UseAfterFree(what) = out {
            report(
                shared,
                format_args!("walker: space {} va {va:#x}: {what}", space.id),
            );
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

fn mutate(shared: &Shared, rng: &mut Rng) {
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
        0..=29 => unmap_remap_pages(shared, &space, rng),
        30..=34 => migrate_cycle(shared, &space, rng),
        35..=49 => unmap_remap_chunk(shared, &space, rng),
        50..=69 => protect_cycle(shared, &space, rng),
        70..=84 => block_cycle(shared, &space, rng),
        85..=97 => sparse_cycle(shared, &space),
        _ => replace_space(shared, slot, space),
    }
}

fn unmap_range(space: &AddressSpace, start: VirtAddr, end: VirtAddr) {
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

fn unmap_remap_pages(shared: &Shared, space: &AddressSpace, rng: &mut Rng) {
    let n = 1 + rng.below(64);
    let first = rng.below(shared.layout.pages_len() / PAGE_SIZE - n);
    let start = PAGES_BASE + first * PAGE_SIZE;
    unmap_range(space, start, start + n * PAGE_SIZE);
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

fn unmap_remap_chunk(shared: &Shared, space: &AddressSpace, rng: &mut Rng) {
    let start = PAGES_BASE + rng.below(shared.layout.pages_chunks) * L2_BLOCK_SIZE;
    unmap_range(space, start, start + L2_BLOCK_SIZE);
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
    // Cannot be refused: the state changes only under the lock this function holds.
    let _ = space.protect(start, end, Attributes::user_data_rw());
}

fn block_cycle(shared: &Shared, space: &AddressSpace, rng: &mut Rng) {
    let va = BLOCKS_BASE + rng.below(shared.layout.blocks) * L2_BLOCK_SIZE;
    let mapped = space.lookup(va).is_some();
    if mapped {
        unmap_range(space, va, va + L2_BLOCK_SIZE);
    } else {
        let _g = space.lock.lock();
        if space.map_block(va, Attributes::user_data_rw()).is_none() {
            shared.backoff();
        }
    }
}

/// Maps region C if it is unmapped, else unmaps all of it (freeing its level-3, -2 and -1
/// tables).
fn sparse_cycle(shared: &Shared, space: &AddressSpace) {
    if space.lookup(SPARSE_BASE).is_some() {
        unmap_range(space, SPARSE_BASE, SPARSE_BASE + SPARSE_PAGES * PAGE_SIZE);
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
    let Some(space) = AddressSpace::new() else {
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
fn replace_space(shared: &Shared, slot: usize, old: Arc<AddressSpace>) {
    let Some(fresh) = new_populated_space(shared) else {
        return;
    };
    let replaced = {
        let mut s = shared.spaces[slot].lock();
        match s.as_ref() {
            Some(cur) if Arc::ptr_eq(cur, &old) => {
                *s = Some(fresh.clone());
                true
            }
            _ => false, // another mutator replaced it first
        }
    };
    // Spaces have no Drop: whichever one is not in the slot now must be destroyed, or its
    // tables and frames would leak.
    if replaced {
        old.destroy();
    } else {
        fresh.destroy();
    }
}

// ---- sharing (sharing=on) ----------------------------------------------------------------

/// Unmaps the shared object from `space` (unsharing its tables) if it maps it, then lets any
/// space left as the only user of a table take it over and install a private block in it, as
/// the last sharer may; maps it again (sharing) otherwise. Sometimes changes the protection of
/// one GiB instead (which unshares it too).
fn share_cycle(shared: &Shared, space: &AddressSpace, obj: &Arc<SharedObject>, rng: &mut Rng) {
    let mapped = space
        .objects
        .lock()
        .iter()
        .any(|(o, _)| Arc::ptr_eq(o, obj));
    if !mapped {
        if shared::map_object(space, obj, SHARED_BASE) == Err(MapError::OutOfMemory) {
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

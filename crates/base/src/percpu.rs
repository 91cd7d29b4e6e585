//! Per-CPU state: one cache-line-aligned record per logical CPU, found through TPIDR_EL1 (which
//! holds the CPU's index). Everything here is atomic so other CPUs, the watchdog and the
//! debugger can read it at any time.

use crate::config::MAX_CPUS;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// What a CPU is doing, for the watchdog's report and `bs-cpus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CpuState {
    /// Not started (or not in the DTB).
    Offline = 0,
    /// Started through PSCI, not yet taking work.
    Booting = 1,
    /// Waiting for work (in WFI: an extended quiescent state for RCU).
    Idle = 2,
    /// Running posted work.
    Working = 3,
    /// Stopped for good: another CPU is ending the run.
    Parked = 4,
}

impl CpuState {
    /// The state stored as `v` (`Offline` for a number no state has).
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Booting,
            2 => Self::Idle,
            3 => Self::Working,
            4 => Self::Parked,
            _ => Self::Offline,
        }
    }

    /// The name the watchdog and `bs-cpus` print.
    pub fn name(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Booting => "booting",
            Self::Idle => "idle",
            Self::Working => "working",
            Self::Parked => "parked",
        }
    }
}

/// What a CPU does in a workload (`PerCpu::role`), for the watchdog's report and `bs-cpus`,
/// which reads the names from this type's debug info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// No role: idle, or between workloads.
    None = 0,
    /// Running the self-test on the boot CPU.
    Selftest = 1,
    /// Reading and writing stamped pages through the MMU (stress).
    Toucher = 2,
    /// Changing address spaces: unmap, remap, protect, share, destroy (stress).
    Mutator = 3,
    /// Running the lockless walker (stress, benches).
    Walker = 4,
    /// Driving a benchmark.
    Bench = 5,
    /// Touching and walking in turn (stress on 2 CPUs).
    TouchWalk = 6,
    /// Mutating, touching and walking in turn (stress on 1 CPU).
    Everything = 7,
}

impl Role {
    /// Every role, by number.
    pub const ALL: [Role; 8] = [
        Self::None,
        Self::Selftest,
        Self::Toucher,
        Self::Mutator,
        Self::Walker,
        Self::Bench,
        Self::TouchWalk,
        Self::Everything,
    ];

    /// The role stored as `v` (`None` for a number no role has).
    pub fn from_u8(v: u8) -> Self {
        Self::ALL.get(v as usize).copied().unwrap_or(Self::None)
    }

    /// The name printed by the watchdog.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Selftest => "selftest",
            Self::Toucher => "toucher",
            Self::Mutator => "mutator",
            Self::Walker => "walker",
            Self::Bench => "bench",
            Self::TouchWalk => "toucher+walker",
            Self::Everything => "mutator+toucher+walker",
        }
    }
}

/// One CPU's record.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PerCpu {
    /// Logical index (DTB order).
    pub index: usize,
    /// MPIDR affinity.
    pub mpidr: AtomicU64,
    /// Set once the CPU has come online (its GIC interface and timer are up).
    pub online: AtomicBool,
    /// A `CpuState`.
    pub state: AtomicU8,
    /// The workload role: a [`Role`] (use [`PerCpu::role`] and [`PerCpu::set_role`]).
    pub role: AtomicU8,
    /// Timer ticks taken.
    pub ticks: AtomicU64,
    /// Counter value at the last tick (watchdog: a CPU whose ticks stop is stuck with IRQs
    /// masked).
    pub last_tick_at: AtomicU64,
    /// Where the last tick interrupted this CPU (its ELR): the watchdog prints it, so a CPU
    /// that takes ticks but makes no progress (a livelock) is named with the code it loops in.
    pub last_tick_pc: AtomicU64,
    /// Bumped by workload loops: progress the watchdog can see.
    pub heartbeat: AtomicU64,
    /// ESR of the last fault a probe on this CPU recovered from.
    pub last_fault_esr: AtomicU64,
    /// FAR of that fault.
    pub last_fault_far: AtomicU64,
    /// Inside a lockless walk (an RCU read-side section), for the debugger.
    pub in_walker: AtomicBool,
    /// Pending cross-CPU work (0: none): `smp::work`'s trampoline for the posted closure, a
    /// `fn(usize, usize)` as usize.
    pub work_fn: AtomicUsize,
    /// The address of the posted closure, the trampoline's second argument.
    pub work_arg: AtomicUsize,
    /// Bumped when the posted work finished.
    pub work_done: AtomicU64,
    /// Counter value when work was last posted here (the watchdog's lost-wakeup check: work
    /// still pending long after this was posted is work the CPU slept through).
    pub work_posted_at: AtomicU64,
    /// Kick SGIs taken: how `run_on_all` wakes this CPU for posted work.
    pub kicks: AtomicU64,
}

impl PerCpu {
    const fn new(index: usize) -> Self {
        Self {
            index,
            mpidr: AtomicU64::new(0),
            online: AtomicBool::new(false),
            state: AtomicU8::new(CpuState::Offline as u8),
            role: AtomicU8::new(0),
            ticks: AtomicU64::new(0),
            last_tick_at: AtomicU64::new(0),
            last_tick_pc: AtomicU64::new(0),
            heartbeat: AtomicU64::new(0),
            last_fault_esr: AtomicU64::new(0),
            last_fault_far: AtomicU64::new(0),
            in_walker: AtomicBool::new(false),
            work_fn: AtomicUsize::new(0),
            work_arg: AtomicUsize::new(0),
            work_done: AtomicU64::new(0),
            work_posted_at: AtomicU64::new(0),
            kicks: AtomicU64::new(0),
        }
    }

    /// What this CPU is doing.
    pub fn state(&self) -> CpuState {
        CpuState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Records what this CPU is doing.
    pub fn set_state(&self, s: CpuState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// This CPU's workload role.
    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Relaxed))
    }

    /// Sets this CPU's workload role.
    pub fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
    }

    /// Whether this CPU has come online.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }
}

/// Every CPU's record, indexed by logical CPU number.
#[unsafe(no_mangle)]
pub static PERCPU: [PerCpu; MAX_CPUS] = {
    let mut a = [const { PerCpu::new(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        a[i].index = i;
        i += 1;
    }
    a
};

/// CPUs that have come online.
static ONLINE: AtomicUsize = AtomicUsize::new(0);

/// This CPU's record.
#[inline(always)]
pub fn this_cpu() -> &'static PerCpu {
    &PERCPU[crate::cpu_id()]
}

/// CPU `i`'s record.
pub fn cpu(i: usize) -> &'static PerCpu {
    &PERCPU[i]
}

/// Marks the calling CPU online.
pub fn mark_online() {
    let c = this_cpu();
    c.set_state(CpuState::Idle);
    c.online.store(true, Ordering::Release);
    ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// How many CPUs are online.
pub fn online_count() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// The online CPUs' records.
pub fn online_cpus() -> impl Iterator<Item = &'static PerCpu> {
    PERCPU.iter().filter(|c| c.is_online())
}

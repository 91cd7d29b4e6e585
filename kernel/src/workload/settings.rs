//! The workloads' kernel arguments: what runs (`workload=`), for how long (`seconds=`), stress's
//! roles and shared object (`walkers=`, `touchers=`, `mutators=`, `sharing=`), the unshare
//! bench's size (`tables=`, `children=`), and the kernel's own planted bugs (`bug=`: its failure
//! paths). A new workload setting is a field and a row here.

use broadside_base::args::{ArgGroup, Flags, Key};
use broadside_base::{arg_enum, enum_key, int_key, on_off_key};

arg_enum! {
    /// What the kernel runs after boot (`workload=`).
    pub enum Workload {
        /// A short, narrated run of every mechanism.
        Demo = "demo",
        /// Deterministic self-tests of each layer.
        Selftest = "selftest",
        /// Walkers, touchers and mutators racing for `seconds=`.
        Stress = "stress",
        /// Measures the unshare strategies side by side.
        UnshareBench = "unshare-bench",
        /// One fixed mix of unmap, fork/exit over shared tables and protect, once per
        /// shootdown and sync strategy, as counts per operation.
        ScaleBench = "scale-bench",
        /// What each way of flushing less saves per operation against the path it replaced:
        /// permission upgrades without a flush, deferred TLB batches.
        FlushBench = "flush-bench",
    }
}

arg_enum! {
    /// A failure the kernel itself plants (`bug=`): the negative controls of its own failure
    /// paths.
    pub enum Bug {
        /// Panic on the boot CPU once the workload starts (tests the panic path, exit 3).
        Panic = "panic",
        /// Take an unexpected data abort once the workload starts (the exception path, exit 3).
        Fault = "fault",
        /// Execute one FP/SIMD instruction once the workload starts: the soft-float kernel
        /// leaves CPACR_EL1.FPEN = 0b00, so it must trap with a named report (exit 3).
        Fp = "fp",
        /// Spin forever with IRQs masked on the last CPU (the watchdog path, exit 4).
        Hang = "hang",
        /// Spin forever with IRQs masked on the boot CPU while the others idle (the watchdog's
        /// scan must still run, from the idle CPUs' slow tick: exit 4).
        HangBoot = "hang-boot",
        /// The last secondary CPU waits `cpus_wait_ms` plus a second before coming online, so
        /// the boot CPU's wait must time out and name it (the late-CPU path, exit 4).
        LateCpu = "late-cpu",
    }
}

/// The workloads' settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadArgs {
    /// `workload=` [demo].
    pub workload: Workload,
    /// `seconds=`: how long a timed workload runs, 0..=86400 [10].
    pub seconds: u32,
    /// `sharing=on|off`: whether stress's address spaces share level-2 tables [off].
    pub sharing: bool,
    /// `walkers=`: lockless walker threads, 0..=512 [None: chosen from the CPU count].
    pub walkers: Option<u32>,
    /// `touchers=`: threads that fault pages in, 0..=512 [None: chosen from the CPU count].
    pub touchers: Option<u32>,
    /// `mutators=`: threads that unmap, remap and free, 0..=512 [None: chosen from the CPU count].
    pub mutators: Option<u32>,
    /// `tables=`: how many page tables the unshare bench populates, 1..=512 [64].
    pub tables: u32,
    /// `children=`: how many child address spaces the unshare bench creates, 1..=256 [8].
    pub children: u32,
    /// The kernel's bugs of `bug=` [none].
    pub bugs: Flags<Bug>,
}

impl ArgGroup for WorkloadArgs {
    const DEFAULT: WorkloadArgs = WorkloadArgs {
        workload: Workload::Demo,
        seconds: 10,
        sharing: false,
        walkers: None,
        touchers: None,
        mutators: None,
        tables: 64,
        children: 8,
        bugs: Flags::NONE,
    };

    const KEYS: &'static [Key<WorkloadArgs>] = &[
        enum_key!("workload", Workload, |a, v| a.workload = v),
        int_key!("seconds", 0..=86400, |a, n| a.seconds = n),
        on_off_key!("sharing", |a, v| a.sharing = v),
        int_key!("walkers", 0..=512, |a, n| a.walkers = Some(n)),
        int_key!("touchers", 0..=512, |a, n| a.touchers = Some(n)),
        int_key!("mutators", 0..=512, |a, n| a.mutators = Some(n)),
        int_key!("tables", 1..=512, |a, n| a.tables = n),
        int_key!("children", 1..=256, |a, n| a.children = n),
    ];

    const BUGS: &'static [&'static str] = Bug::NAMES;

    fn plant(&mut self, index: usize) -> bool {
        self.bugs.insert_index(index)
    }

    fn planted(&self, index: usize) -> bool {
        self.bugs.has_index(index)
    }
}

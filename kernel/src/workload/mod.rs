//! Workloads (`workload=`), the hooks they give the kernel's tick and idle paths, and the
//! outcome every run ends with.

use broadside_base::ExitCode;

#[cfg(target_arch = "aarch64")]
pub mod demo;
#[cfg(target_arch = "aarch64")]
pub mod flush_bench;
#[cfg(target_arch = "aarch64")]
pub mod scale_bench;
#[cfg(target_arch = "aarch64")]
pub mod selftest;
pub mod settings;
#[cfg(target_arch = "aarch64")]
pub mod sizing;
#[cfg(target_arch = "aarch64")]
pub mod stress;
#[cfg(target_arch = "aarch64")]
pub mod summary;
#[cfg(target_arch = "aarch64")]
pub mod unshare_bench;

#[cfg(target_arch = "aarch64")]
pub use hw::*;

/// How a run ended: the exit code and anything the workload adds to the summary.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code.
    pub code: ExitCode,
    /// Extra members for the summary object, already JSON (`"modes":{...}`), without braces.
    pub extra_json: Option<alloc::string::String>,
}

impl Outcome {
    /// A pass (exit code 0).
    pub fn pass() -> Self {
        Self::fail_with_code(ExitCode::Pass)
    }

    /// A failed check (exit code 1).
    pub fn check_failed() -> Self {
        Self::fail_with_code(ExitCode::CheckFailed)
    }

    /// An end with `code` and nothing added to the summary.
    pub fn fail_with_code(code: ExitCode) -> Self {
        Self {
            code,
            extra_json: None,
        }
    }

    /// Pass if `ok`, else a failed check.
    pub fn from_checks(ok: bool) -> Self {
        if ok {
            Self::pass()
        } else {
            Self::check_failed()
        }
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.code.passed()
    }
}

#[cfg(target_arch = "aarch64")]
mod hw {
    use super::Outcome;
    use super::settings::{Workload, WorkloadArgs};
    use crate::settings::settings;
    use broadside_platform::boot_info::BootInfo;

    /// Runs the workload the arguments name on the boot CPU (which farms work out to the others).
    pub fn run(info: &'static BootInfo) -> Outcome {
        // Working, for the watchdog: a boot CPU stuck with IRQs masked is then named by the
        // others' ticks (idle ones keep a slow tick for this).
        let this = broadside_smp::this_cpu();
        this.set_state(broadside_smp::CpuState::Working);
        plant_fatal_bugs();
        let outcome = match settings().workload.workload {
            Workload::Demo => super::demo::run(info),
            Workload::Selftest => super::selftest::run(info),
            Workload::Stress => super::stress::run(info),
            Workload::UnshareBench => super::unshare_bench::run(info),
            Workload::ScaleBench => super::scale_bench::run(info),
            Workload::FlushBench => super::flush_bench::run(info),
        };
        this.set_state(broadside_smp::CpuState::Idle);
        audit_verdict(outcome)
    }

    /// Activates `space` on every online CPU and back, so it counts as active on all of them
    /// (as a process whose threads ran everywhere): its flushes must then reach every CPU.
    pub fn activate_everywhere(space: &broadside_mm::aspace::AddressSpace) {
        broadside_smp::work::run_on_all(|_| {
            if space.activate() {
                space.deactivate();
            }
        });
    }

    /// With `audit=on`, any violation the sanitizer found fails the run, whatever the
    /// workload's own checks said; the line shows the audit looked (how many obligations it
    /// recorded, checks and TTBR0 loads it made).
    fn audit_verdict(mut outcome: Outcome) -> Outcome {
        use broadside_base::stats::{self, Counter};
        if !broadside_mm::audit::enabled() {
            return outcome;
        }
        broadside_mm::audit::publish_stats();
        let found = [
            Counter::FlushGapDetected,
            Counter::AsidReuseDetected,
            Counter::BbmViolationDetected,
        ]
        .map(stats::read);
        broadside_platform::kprintln!(
            "audit: {} flush obligations recorded, {} checks, {} TTBR0 loads checked, {} deferred, {} dropped, flush_gap_detected={} asid_reuse_detected={} bbm_violation_detected={}",
            stats::read(Counter::FlushObligations),
            stats::read(Counter::FlushChecks),
            stats::read(Counter::Ttbr0LoadsChecked),
            stats::read(Counter::FlushDeferred),
            stats::read(Counter::AuditDropped),
            found[0],
            found[1],
            found[2],
        );
        if found.iter().any(|&n| n > 0) && outcome.passed() {
            outcome.code = broadside_base::ExitCode::CheckFailed;
        }
        outcome
    }

    /// `bug=panic`, `bug=fault`, `bug=fp`, `bug=hang` and `bug=hang-boot`: the negative controls of the kernel's
    /// own failure paths (exit 3 with a report, exit 4 with every CPU's state).
    fn plant_fatal_bugs() {
        use super::settings::Bug;
        let bugs = settings().workload.bugs;
        if bugs.has(Bug::Panic) {
            panic!("bug=panic: a deliberate panic");
        }
        if bugs.has(Bug::Fault) {
            let v = broadside_arch::aarch64::exception::load_from_unmapped();
            panic!("bug=fault: read {v:#x} from an unmapped address");
        }
        if bugs.has(Bug::Fp) {
            // CPACR_EL1.FPEN = 0b00: the instruction traps before it completes.
            broadside_arch::aarch64::exception::execute_fp_instruction();
            panic!("bug=fp: an FP/SIMD instruction ran although CPACR_EL1.FPEN = 0b00");
        }
        if bugs.has(Bug::HangBoot) {
            // The boot CPU spins with IRQs masked while every other CPU idles, tickless but for
            // the slow tick that keeps the watchdog's scan going: that tick must name it.
            broadside_base::irq::mask();
            loop {
                broadside_base::hint::cpu_relax();
            }
        }
        if bugs.has(Bug::Hang) {
            // The last CPU spins with IRQs masked while the others wait for it with IRQs on.
            // Its ticks stop, and the watchdog's stall check (not the run's deadline) must name
            // it within the stall limit: `scripts/test.sh` runs this with a far deadline.
            let last = broadside_base::percpu::online_cpus()
                .map(|c| c.index)
                .max()
                .unwrap_or(0);
            broadside_smp::work::run_on_all(|cpu| {
                if cpu == last {
                    broadside_base::irq::mask();
                    loop {
                        broadside_base::hint::cpu_relax();
                    }
                }
            });
        }
    }

    /// The watchdog limit when `timeout=` is not given: generous for the workload's length.
    pub fn default_timeout(args: &WorkloadArgs) -> u32 {
        match args.workload {
            Workload::Demo | Workload::Selftest => 120,
            _ => args.seconds.saturating_mul(3).saturating_add(120),
        }
    }
}

//! The ways out of a run. Each ends with the `summary:` line (printed by a reporter the
//! kernel's top installs, since only it knows every counter's source) and the exit code
//! through semihosting (or PSCI SYSTEM_OFF when the host has no semihosting).

use crate::kprintln;
use broadside_arch::aarch64::{cpu, semihosting};
use broadside_base::ExitCode;
use broadside_base::percpu::{self, CpuState};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Once;

/// Prints the `summary:` line of a run ending with `code`; `extra_json` holds members a workload
/// adds (`"modes":{...}`), already JSON, without braces.
pub type Reporter = fn(code: ExitCode, extra_json: Option<&str>);

static REPORTER: Once<Reporter> = Once::new();
/// Set by the first CPU to start exiting; any other CPU that tries to exit parks instead.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Installs the summary reporter (once, at boot).
pub fn set_reporter(reporter: Reporter) {
    REPORTER.call_once(|| reporter);
}

/// Prints the summary for `code` and exits with it. Only the first CPU to get here prints; any
/// other parks.
pub fn finish(code: ExitCode, extra_json: Option<&str>) -> ! {
    if EXITING.swap(true, Ordering::AcqRel) {
        park();
    }
    if let Some(report) = REPORTER.get() {
        report(code, extra_json);
    }
    semihosting::exit(code.code())
}

/// Stops this CPU for good (another CPU is exiting).
pub fn park() -> ! {
    broadside_base::irq::mask();
    percpu::this_cpu().set_state(CpuState::Parked);
    loop {
        cpu::wfi();
    }
}

/// A configuration error after the console is up: the message, the summary, exit 2.
pub fn config_error(msg: core::fmt::Arguments<'_>) -> ! {
    kprintln!("{msg}");
    finish(ExitCode::BadConfig, None)
}

//! The `summary:` line: the last thing the kernel prints, one JSON object on one line, with the
//! fields every run has (`workload`, `result`, `cpus`, `boot_el`, `tlbi_range`, `seconds`,
//! `seed`, `counters`), the arguments' modes and the errata in force (`errata`), and what the
//! workload adds. This module only gathers the values; the
//! line is written by [`broadside_summary::write_summary`], the writer the host's typed reader
//! is tested against. Straight to the console with no allocation, so it works on the panic and
//! watchdog paths too.

use broadside_base::ExitCode;
use broadside_base::stats::{self, Counter};
use broadside_platform::boot_info::BootInfo;
use broadside_platform::console;
use broadside_summary::{Header, write_summary};

/// Prints the summary of a run ending with `code`; `extra_json` holds the workload's members.
pub fn emit(info: Option<&BootInfo>, code: ExitCode, extra_json: Option<&str>) {
    let args = crate::settings::settings_opt()
        .copied()
        .unwrap_or(<crate::settings::Settings as broadside_base::args::ArgSet>::DEFAULT);
    let bugs = args.bugs();
    // The errata in force, by name, without allocating (this runs on the panic path too).
    let mut names = [""; broadside_arch::errata::Errata::NAMES.len()];
    let errata = broadside_mm::tlb::errata().map(|e| {
        let mut n = 0;
        for name in e.names() {
            names[n] = name;
            n += 1;
        }
        n
    });
    let header = Header {
        workload: args.workload.workload.name(),
        passed: code.passed(),
        exit_code: code as u8,
        cpus: broadside_base::percpu::online_count() as u64,
        boot_el: info.map_or(0, |i| i.boot_el),
        tlbi_range: info.is_some_and(|i| i.features.tlbi_range),
        seconds: args.workload.seconds as u64,
        seed: args.base.seed,
        flush: Some(args.mm.flush.name()),
        tablefree: Some(args.mm.tablefree.name()),
        bug: Some(&bugs),
        errata: errata.map(|n| &names[..n]),
    };
    let counters = Counter::ALL.iter().map(|c| (c.name(), stats::read(*c)));
    console::with_console_forced(|out| {
        let _ = write_summary(out, &header, counters, extra_json);
    });
}

/// The summary for a run that ended before its arguments were understood (exit 2): no
/// arguments, no counters.
pub fn emit_minimal(boot_el: u64, cpus: usize) {
    let header = Header {
        workload: "none",
        passed: false,
        exit_code: ExitCode::BadConfig as u8,
        cpus: cpus.min(1) as u64,
        boot_el,
        tlbi_range: broadside_arch::aarch64::cpu::CpuFeatures::read().tlbi_range,
        seconds: 0,
        seed: 0,
        flush: None,
        tablefree: None,
        bug: None,
        errata: None,
    };
    console::with_console_forced(|out| {
        let _ = write_summary(out, &header, core::iter::empty(), None);
    });
}

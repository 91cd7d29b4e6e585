//! The `summary:` line: the last thing the kernel prints, one JSON object on one line, with the
//! fields every run has (`workload`, `result`, `cpus`, `boot_el`, `tlbi_range`, `seconds`,
//! `seed`, `counters`) and what the workload adds. Written straight to the console with no
//! allocation, so it works on the panic and watchdog paths too.

use broadside_base::ExitCode;
use broadside_base::stats::{self, Counter};
use broadside_platform::boot_info::BootInfo;
use broadside_platform::console;
use broadside_summary::json::JsonObject;
use core::fmt::{self, Write};

fn write_summary(
    out: &mut dyn Write,
    info: Option<&BootInfo>,
    code: ExitCode,
    extra_json: Option<&str>,
) -> fmt::Result {
    out.write_str("summary: ")?;
    let mut o = JsonObject::new(out)?;
    let args = info.map(|i| i.args).unwrap_or_default();
    o.str("workload", args.workload.name())?;
    o.str("result", if code.passed() { "pass" } else { "fail" })?;
    o.u64("exit_code", code.code() as u64)?;
    o.u64("cpus", broadside_base::percpu::online_count() as u64)?;
    o.u64("boot_el", info.map_or(0, |i| i.boot_el))?;
    o.bool("tlbi_range", info.is_some_and(|i| i.features.tlbi_range))?;
    o.u64("seconds", args.seconds as u64)?;
    o.u64("seed", args.seed)?;
    o.str("flush", args.flush.name())?;
    o.str("tablefree", args.tablefree.name())?;
    o.display("bug", args.bugs)?;
    {
        let mut c = o.object("counters")?;
        for counter in Counter::ALL {
            c.u64(counter.name(), stats::read(*counter))?;
        }
        c.finish()?;
    }
    if let Some(extra) = extra_json {
        o.raw_members(extra)?;
    }
    o.finish()?;
    out.write_str("\n")
}

/// Prints the summary of a run ending with `code`; `extra_json` holds the workload's members.
pub fn emit(info: Option<&BootInfo>, code: ExitCode, extra_json: Option<&str>) {
    console::with_console_forced(|out| {
        let _ = write_summary(out, info, code, extra_json);
    });
}

/// The summary for a run that ended before its arguments were understood (exit 2).
pub fn emit_minimal(boot_el: u64, cpus: usize) {
    console::with_console_forced(|out| {
        let _ = (|| -> fmt::Result {
            out.write_str("summary: ")?;
            let mut o = JsonObject::new(out)?;
            o.str("workload", "none")?;
            o.str("result", "fail")?;
            o.u64("exit_code", ExitCode::BadConfig.code() as u64)?;
            o.u64("cpus", cpus.min(1) as u64)?;
            o.u64("boot_el", boot_el)?;
            o.bool(
                "tlbi_range",
                broadside_arch::aarch64::cpu::CpuFeatures::read().tlbi_range,
            )?;
            o.u64("seconds", 0)?;
            o.u64("seed", 0)?;
            o.object("counters")?.finish()?;
            o.finish()?;
            out.write_str("\n")
        })();
    });
}

//! The writer of the summary line, shared by every exit path of the kernel.

use crate::json::JsonObject;
use core::fmt::{self, Display, Write};

/// What the summary line starts with; the JSON object follows on the same line.
pub const PREFIX: &str = "summary: ";

/// The fields every summary has, in the order they are written.
///
/// `flush`, `tablefree` and `bug` are `None` only for a run that ended before its arguments were
/// understood (exit 2 from a bad `bootargs`), which then reports no arguments at all; `errata`
/// is `None` then too, and for a run that ended before its TLB policy was fixed.
pub struct Header<'a> {
    /// The workload's name (`demo`, `selftest`, `stress`, ...; `none` before arguments).
    pub workload: &'a str,
    /// Whether the run passed: written as `"result":"pass"` or `"fail"`.
    pub passed: bool,
    /// The exit code the host will see (0..=4, the design's contract).
    pub exit_code: u8,
    /// CPUs online.
    pub cpus: u64,
    /// The exception level the kernel was entered at (0 if not known yet).
    pub boot_el: u64,
    /// Whether the CPU has FEAT_TLBIRANGE.
    pub tlbi_range: bool,
    /// The `seconds=` argument.
    pub seconds: u64,
    /// The `seed=` argument.
    pub seed: u64,
    /// The `flush=` mode's name.
    pub flush: Option<&'a str>,
    /// The `tablefree=` mode's name.
    pub tablefree: Option<&'a str>,
    /// The planted bugs (`bug=`), rendered by their `Display` (a comma list, or empty).
    pub bug: Option<&'a dyn Display>,
    /// The CPU errata whose workarounds are in force (`errata=`, or from MIDR_EL1), by name;
    /// `None` when not known yet (an exit before the TLB policy was fixed).
    pub errata: Option<&'a [&'a str]>,
}

/// Writes one summary line to `out`: [`PREFIX`], the object with `header`'s fields, a
/// `counters` object with `counters` in their order, then `extra_json` (already-rendered members
/// such as `"modes":{...}`, no braces) as it is, and a newline.
///
/// Never allocates. A write error stops the line where it happened (the objects still close
/// themselves) and is returned.
pub fn write_summary<'c>(
    out: &mut dyn Write,
    header: &Header<'_>,
    counters: impl IntoIterator<Item = (&'c str, u64)>,
    extra_json: Option<&str>,
) -> fmt::Result {
    out.write_str(PREFIX)?;
    let mut o = JsonObject::new(&mut *out)?;
    o.str("workload", header.workload)?;
    o.str("result", if header.passed { "pass" } else { "fail" })?;
    o.u64("exit_code", u64::from(header.exit_code))?;
    o.u64("cpus", header.cpus)?;
    o.u64("boot_el", header.boot_el)?;
    o.bool("tlbi_range", header.tlbi_range)?;
    o.u64("seconds", header.seconds)?;
    o.u64("seed", header.seed)?;
    if let Some(flush) = header.flush {
        o.str("flush", flush)?;
    }
    if let Some(tablefree) = header.tablefree {
        o.str("tablefree", tablefree)?;
    }
    if let Some(bug) = header.bug {
        o.display("bug", bug)?;
    }
    if let Some(errata) = header.errata {
        o.str_array("errata", errata.iter().copied())?;
    }
    {
        let mut c = o.object("counters")?;
        for (name, value) in counters {
            c.u64(name, value)?;
        }
        c.finish()?;
    }
    if let Some(extra) = extra_json {
        o.raw_members(extra)?;
    }
    o.finish()?;
    out.write_str("\n")
}

//! The kernel's own failure paths (negative controls of the reports): a panic, a fault and an
//! FP/SIMD instruction end with exit 3 and a report; a hung CPU is caught by the watchdog's stall
//! detector (also when it is the only CPU at work and the others idle), and a CPU that sleeps
//! through the kick for its work by the lost-wakeup check, exit 4.
//!
//! The watchdog's checks are judged by their timing, so they boot `--deterministic`: QEMU's
//! clock then counts instructions, the report's figures are virtual milliseconds, the same on
//! every host however loaded, and the bounds below are the watchdog's design (a scan every
//! 50 ms, an idle CPU's slow tick every half limit), not a guess at a machine's speed.

use broadside_tests::{Boot, Run};
use regex::Regex;

#[test]
fn panic_reports_message_location_cpu_and_backtrace() {
    Boot::new("bug=panic")
        .smp(2)
        .args("bug=panic")
        .expect_exit(3)
        .line("message, location, CPU", r"^PANIC on cpu0: bug=panic")
        .line("backtrace", r"^  backtrace:")
        .check("summary says fail", |s| !s.passed() && s.exit_code == 3);
}

#[test]
fn fault_reports_the_decoded_syndrome() {
    Boot::new("bug=fault")
        .smp(2)
        .args("bug=fault")
        .expect_exit(3)
        .line(
            "decoded syndrome",
            r"data abort from the current EL, translation fault",
        )
        .line("FAR of the access", r"FAR 0xffffe00000000000")
        .line("registers", r"^  x0 ");
}

/// The kernel is soft-float and leaves CPACR_EL1.FPEN = 0b00: one FP/SIMD instruction must trap
/// (ESR EC 0x07) and be named as such, not run or die anonymously.
#[test]
fn fp_instruction_traps_and_is_named() {
    Boot::new("bug=fp")
        .smp(2)
        .args("bug=fp")
        .expect_exit(3)
        .line(
            "FP/SIMD trap named",
            r"EC 0x07 FP/SIMD instruction trapped: the kernel is built soft-float \(CPACR_EL1\.FPEN=0\)",
        )
        .line(
            "fatal synchronous exception",
            r"^FATAL: unexpected synchronous exception on cpu0",
        )
        .check("summary says fail", |s| !s.passed() && s.exit_code == 3);
}

/// The watchdog's scan interval (`broadside_smp::watchdog::SCAN_EVERY_MS`).
const SCAN_EVERY_MS: u64 = 50;

/// The figures of a watchdog report, in virtual milliseconds.
#[derive(Debug)]
struct Report {
    /// How long the named CPU had gone without a tick, or without starting its posted work.
    ago_ms: u64,
    /// The stall limit in force.
    limit_ms: u64,
    /// When, after the watchdog was armed, it fired.
    armed_ms: u64,
}

/// The first console line matching `regex` (named groups `ago`, `limit`, `armed`), parsed.
fn report(run: &Run, what: &str, regex: &str) -> Report {
    let re = Regex::new(regex).expect("a valid regex");
    let caps = run
        .stdout
        .lines()
        .find_map(|l| re.captures(l))
        .unwrap_or_else(|| run.fail(&format!("{what}: no line matches /{regex}/")));
    let n = |g: &str| caps[g].parse::<u64>().expect("a number");
    Report {
        ago_ms: n("ago"),
        limit_ms: n("limit"),
        armed_ms: n("armed"),
    }
}

/// Asserts that the watchdog named the stall past its limit, by `slack_ms` at most, and within
/// 10 virtual seconds of arming: long before the run's deadline (timeout=60), so the check, not
/// the deadline, ended the run.
fn prompt(run: &Run, r: &Report, slack_ms: u64) {
    if !(r.limit_ms < r.ago_ms && r.ago_ms <= r.limit_ms + slack_ms) {
        run.fail(&format!(
            "named {} ms after the last sign of life: expected more than the limit ({} ms) by {slack_ms} ms at most",
            r.ago_ms, r.limit_ms
        ));
    }
    if r.armed_ms >= 10_000 {
        run.fail(&format!(
            "fired {} ms after the watchdog was armed: expected within 10 s",
            r.armed_ms
        ));
    }
}

/// The run's deadline is far (timeout=60): the stall detector, not the deadline, must end the
/// run, naming the CPU that stopped taking ticks at the first scan past the limit. cpu0 keeps
/// ticking, so a scan runs every 50 ms: named within two scans of the limit.
#[test]
fn hang_is_caught_by_the_stall_detector() {
    let run = Boot::new("bug=hang (watchdog)")
        .opts("--deterministic --smp 2")
        .args("bug=hang timeout=60")
        .expect_exit(4);
    let r = report(
        &run,
        "the stall detector names cpu1",
        r"^watchdog: cpu1 stopped taking timer ticks: last tick (?<ago>[0-9]+) ms ago \(limit (?<limit>[0-9]+) ms\), (?<armed>[0-9]+) ms after the watchdog was armed, [0-9]+ ms before the run deadline",
    );
    prompt(&run, &r, 2 * SCAN_EVERY_MS);
    run.line(
        "then every CPU's state",
        r"^watchdog: cpu1 .*state=working .*last_tick=[0-9]+ms_ago",
    )
    .check("summary says fail", |s| !s.passed() && s.exit_code == 4);
}

/// The boot CPU hangs with IRQs masked while every other CPU idles. Idle CPUs are tickless but
/// for a slow tick every half limit, and that tick must run the watchdog's scan and name cpu0:
/// within half a limit and a scan past the limit. (Before the slow tick nothing ran the scan:
/// such a hang was silent until the host's timeout.)
///
/// At icount shift 10 (a microsecond per instruction), not the default 3: the one running CPU
/// spins on YIELD, each of which hands QEMU's single thread round the idle vCPUs, so at shift 3
/// the 2.4 virtual seconds to the report took 143 s of host time (shift 10: 2 s).
#[test]
fn boot_cpu_hang_is_named_by_the_idle_cpus() {
    let run = Boot::new("bug=hang-boot (watchdog)")
        .opts("--deterministic=10 --smp 4")
        .args("bug=hang-boot timeout=60")
        .expect_exit(4);
    let r = report(
        &run,
        "the stall detector names cpu0, seen by an idle CPU",
        r"^watchdog: cpu0 stopped taking timer ticks: last tick (?<ago>[0-9]+) ms ago \(limit (?<limit>[0-9]+) ms\), (?<armed>[0-9]+) ms after the watchdog was armed, [0-9]+ ms before the run deadline \(seen by cpu[1-3]\)$",
    );
    prompt(&run, &r, r.limit_ms / 2 + SCAN_EVERY_MS);
    run.line("cpu0 was working", r"^watchdog: cpu0 .*state=working ")
        .check("summary says fail", |s| !s.passed() && s.exit_code == 4);
}

/// `bug=idle-lost-wakeup`: secondaries look for work with IRQs on and take the kick before they
/// sleep, so they sleep with their work posted. The lost-wakeup check must name one of them at
/// the first scan past the limit (cpu0 keeps ticking: a scan every 50 ms), long before the
/// deadline. (The race behind it hung a CI run: the stress prologue's `run_on_all` waited for a
/// CPU that had slept through its kick.)
#[test]
fn lost_wakeup_is_named_by_the_watchdog() {
    let run = Boot::new("bug=idle-lost-wakeup (watchdog)")
        .opts("--deterministic --smp 4")
        .args("workload=stress seconds=2 bug=idle-lost-wakeup timeout=60")
        .expect_exit(4);
    let r = report(
        &run,
        "a CPU named for the work it did not start",
        r"^watchdog: cpu[1-3] has not started the work posted to it (?<ago>[0-9]+) ms ago \(limit (?<limit>[0-9]+) ms\): it slept through its kick \(a lost wakeup\), (?<armed>[0-9]+) ms after the watchdog was armed",
    );
    prompt(&run, &r, 2 * SCAN_EVERY_MS);
    run.line(
        "it took its kick and is idle with the work still posted",
        r"^watchdog: cpu[1-3] .*state=idle .*kicks=1 work=posted ",
    )
    .check("summary says fail", |s| !s.passed() && s.exit_code == 4);
}

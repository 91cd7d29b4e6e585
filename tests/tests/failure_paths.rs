//! The kernel's own failure paths (negative controls of the reports): a panic, a fault and an
//! FP/SIMD instruction end with exit 3 and a report; a hung CPU is caught by the watchdog's stall
//! detector (also when it is the only CPU at work and the others idle), and a CPU that sleeps
//! through the kick for its work by the lost-wakeup check, exit 4.

use broadside_tests::Boot;
use std::time::Duration;

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

/// The run's deadline is far (timeout=60): the stall detector, not the deadline, must end the
/// run, naming the CPU that stopped taking ticks within seconds (a 4-digit "ms after ... armed").
/// Alone on the machine: the detector's timing is what is checked.
#[test]
fn hang_is_caught_by_the_stall_detector() {
    let run = Boot::new("bug=hang (watchdog)")
        .smp(2)
        .args("bug=hang timeout=60")
        .exclusive()
        .expect_exit(4);
    run.line(
        "the stall detector names cpu1",
        r"^watchdog: cpu1 stopped taking timer ticks: last tick [0-9]+ ms ago \(limit [0-9]+ ms\)",
    )
    .line(
        "within 10 s of arming, long before the deadline",
        r"stopped taking timer ticks: .*, [0-9]{1,4} ms after the watchdog was armed, [0-9]{5,} ms before the run deadline",
    )
    .line(
        "then every CPU's state",
        r"^watchdog: cpu1 .*state=working .*last_tick=[0-9]+ms_ago",
    )
    .check("summary says fail", |s| !s.passed() && s.exit_code == 4);
    if run.elapsed >= Duration::from_secs(40) {
        run.fail("the deadline, not the stall detector, ended it (the host waited 40 s or more)");
    }
}

/// The boot CPU hangs with IRQs masked while every other CPU idles. Idle CPUs are tickless but
/// for a slow tick, and that tick must run the watchdog's scan and name cpu0. (Before the slow
/// tick nothing ran the scan: such a hang was silent until the host's timeout.)
#[test]
fn boot_cpu_hang_is_named_by_the_idle_cpus() {
    let run = Boot::new("bug=hang-boot (watchdog)")
        .smp(4)
        .args("bug=hang-boot timeout=60")
        .expect_exit(4);
    run.line(
        "the stall detector names cpu0, seen by an idle CPU",
        r"^watchdog: cpu0 stopped taking timer ticks: .*ms before the run deadline \(seen by cpu[1-3]\)$",
    )
    .line("cpu0 was working", r"^watchdog: cpu0 .*state=working ")
    .check("summary says fail", |s| !s.passed() && s.exit_code == 4);
    if run.elapsed >= Duration::from_secs(40) {
        run.fail("the deadline, not the stall detector, ended it (the host waited 40 s or more)");
    }
}

/// `bug=idle-lost-wakeup`: secondaries look for work with IRQs on and take the kick before they
/// sleep, so they sleep with their work posted. The lost-wakeup check must name one of them,
/// long before the deadline. (The race behind it hung a CI run: the stress prologue's
/// `run_on_all` waited for a CPU that had slept through its kick.)
#[test]
fn lost_wakeup_is_named_by_the_watchdog() {
    let run = Boot::new("bug=idle-lost-wakeup (watchdog)")
        .smp(4)
        .args("workload=stress seconds=2 bug=idle-lost-wakeup timeout=60")
        .expect_exit(4);
    run.line(
        "a CPU named for the work it did not start",
        r"^watchdog: cpu[1-3] has not started the work posted to it [0-9]+ ms ago \(limit [0-9]+ ms\): it slept through its kick \(a lost wakeup\)",
    )
    .line(
        "it took its kick and is idle with the work still posted",
        r"^watchdog: cpu[1-3] .*state=idle .*kicks=1 work=posted ",
    )
    .check("summary says fail", |s| !s.passed() && s.exit_code == 4);
    if run.elapsed >= Duration::from_secs(40) {
        run.fail(
            "the deadline, not the lost-wakeup check, ended it (the host waited 40 s or more)",
        );
    }
}

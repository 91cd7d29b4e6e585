//! Foundation boots: the machines and CPU counts the kernel must come up on, and the way out
//! without semihosting.

use broadside_tests::Boot;

#[test]
fn default_demo_on_4_cpus() {
    Boot::new("default (demo, 4 CPUs)")
        .expect_exit(0)
        .check("4 CPUs at EL1, pass", |s| {
            s.cpus == 4 && s.passed() && s.boot_el == 1 && s.workload == "demo"
        });
}

#[test]
fn smp_1() {
    Boot::new("smp 1")
        .smp(1)
        .expect_exit(0)
        .check("1 CPU", |s| s.cpus == 1 && s.passed());
}

#[test]
fn smp_8_el2_selftest() {
    Boot::new("smp 8, EL2, selftest")
        .smp(8)
        .opts("--el2")
        .args("workload=selftest")
        .expect_exit(0)
        .check("8 CPUs entered at EL2", |s| {
            s.cpus == 8 && s.boot_el == 2 && s.workload == "selftest"
        });
}

#[test]
fn cortex_a72_has_no_tlbi_range() {
    Boot::new("cortex-a72")
        .cpu("cortex-a72")
        .smp(2)
        .expect_exit(0)
        .check("no FEAT_TLBIRANGE", |s| !s.tlbi_range && s.cpus == 2);
}

#[test]
fn max_has_tlbi_range() {
    Boot::new("max has FEAT_TLBIRANGE")
        .smp(2)
        .args("workload=selftest")
        .expect_exit(0)
        .check("tlbi_range", |s| s.tlbi_range);
}

/// 64 vCPUs on the host's few cores: tens of seconds.
#[test]
#[ignore = "long: 64 vCPUs"]
fn smp_64_selftest() {
    Boot::new("smp 64 selftest")
        .smp(64)
        .opts("--timeout 120")
        .args("workload=selftest")
        .exclusive()
        .expect_exit(0)
        .check("64 CPUs, ticks and SGIs on all", |s| {
            s.cpus == 64 && s.counter("sgis_received") >= 63 && s.counter("timer_ticks") >= 128
        });
}

/// The boot CPU's wait for secondaries times out and names the late one.
#[test]
fn secondaries_late_are_named() {
    // `bug=late-cpu` holds the last CPU back for cpus_wait_ms + 1 s, so the boot CPU's wait
    // times out on every boot. (A real 64-CPU boot with cpus_wait_ms=1 was used before: it
    // depended on QEMU being slower than 1 ms, and once all 64 CPUs made it.)
    let run = Boot::new("a late secondary (bug=late-cpu cpus_wait_ms=100)")
        .smp(4)
        .args("workload=selftest bug=late-cpu cpus_wait_ms=100")
        .expect_exit(4);
    run.line(
        "names the missing CPU",
        r"1 CPU\(s\) did not come online within 100 ms: cpu3",
    );
    run.line(
        "the watchdog reports it",
        r"^watchdog: CPUs did not come online",
    );
}

// QEMU without semihosting: the kernel's probe finds none and powers off through PSCI, which can
// only say 0; the console still carries the result.

#[test]
fn selftest_without_semihosting_powers_off_with_psci() {
    Boot::new("selftest without semihosting")
        .smp(2)
        .opts("--no-semihosting")
        .args("workload=selftest")
        .expect_exit(0)
        .check("summary pass", |s| s.passed());
}

#[test]
fn bad_arguments_without_semihosting() {
    Boot::new("bad arguments without semihosting")
        .smp(2)
        .opts("--no-semihosting")
        .args("bogus=1")
        .expect_exit(0)
        .line("error printed", r"^error: bootargs: bogus=1")
        .check("the summary still says 2", |s| {
            s.exit_code == 2 && !s.passed()
        });
}

//! The teardown-race and sharing controls (issue 9): each planted bug is caught by its selftest
//! scenario on the first try, on both TLBI paths: with FEAT_TLBIRANGE (`-cpu max`) and without
//! (`cortex-a72`). The scenarios do not depend on timing. Plus the gather's fallbacks when batch
//! allocations fail, and the livelock a gather without its embedded batch falls into.

use broadside_tests::Boot;

/// `workload=selftest bug=BUG` on `cpu` fails exactly the check named `check`.
fn selftest_control(bug: &str, cpu: &str, check: &str) {
    selftest_control_failing(bug, cpu, &[check]);
}

/// `workload=selftest bug=BUG` on `cpu` fails exactly the checks named in `checks`.
fn selftest_control_failing(bug: &str, cpu: &str, checks: &[&str]) {
    let run = Boot::new(&format!("selftest bug={bug} ({cpu})"))
        .smp(2)
        .cpu(cpu)
        .args(&format!("workload=selftest bug={bug}"))
        .expect_exit(1);
    for check in checks {
        run.line(
            "names the failed check",
            &format!("^selftest: {}: FAIL: ", regex::escape(check)),
        );
    }
    run.check("exactly those checks failed", |s| {
        s.counter("selftest_failures") == checks.len() as u64 && !s.passed()
    });
}

const MAP_DYING: &str = "no mapping enters a space once its destroy has begun";
const LAST_SHARER: &str = "the last sharer's flush covers every block of the freed table";
const PROTECT: &str = "protect over pages and blocks flushes every leaf; partial blocks refused";
const NO_UNDO: &str = "map_object out of memory half-way undoes its sharing";
const FLUSH_LATE: &str = "a full unshare is flushed under the object lock";
const WALK_FREE: &str = "a table freed under a lockless walk waits for the walk";
const WALK_UNSHARE: &str = "a full unshare waits for walkers before the table changes hands";
// bug=unshare-flush-late skips the whole flush_unshared_tables under the object lock, the
// walker sync with it, so the scripted unshare walk catches it as well.

// The lockless-walk controls: a walker on CPU 1 holds its walk for 300 ms while CPU 0 frees
// (or unshares and hands over) the table it is in. A grace period or an IPI sync takes a few
// milliseconds when nothing holds it up, so the planted bug is caught on every boot.

#[test]
fn walker_irqs_on() {
    selftest_control_failing("walker-irqs-on", "max", &[WALK_FREE, WALK_UNSHARE]);
}

#[test]
fn free_tables_now() {
    selftest_control("free-tables-now", "max", WALK_FREE);
}

#[test]
fn unshare_no_sync() {
    selftest_control("unshare-no-sync", "max", WALK_UNSHARE);
}

#[test]
fn free_tables_now_cortex_a72() {
    selftest_control("free-tables-now", "cortex-a72", WALK_FREE);
}

#[test]
fn map_dying_max() {
    selftest_control("map-dying", "max", MAP_DYING);
}

#[test]
fn map_dying_cortex_a72() {
    selftest_control("map-dying", "cortex-a72", MAP_DYING);
}

#[test]
fn last_sharer_narrow_flush_max() {
    selftest_control("last-sharer-narrow-flush", "max", LAST_SHARER);
}

#[test]
fn last_sharer_narrow_flush_cortex_a72() {
    selftest_control("last-sharer-narrow-flush", "cortex-a72", LAST_SHARER);
}

#[test]
fn protect_wide_stride_max() {
    selftest_control("protect-wide-stride", "max", PROTECT);
}

#[test]
fn protect_wide_stride_cortex_a72() {
    selftest_control("protect-wide-stride", "cortex-a72", PROTECT);
}

#[test]
fn map_object_no_undo_max() {
    selftest_control("map-object-no-undo", "max", NO_UNDO);
}

#[test]
fn map_object_no_undo_cortex_a72() {
    selftest_control("map-object-no-undo", "cortex-a72", NO_UNDO);
}

#[test]
fn unshare_flush_late_max() {
    selftest_control_failing("unshare-flush-late", "max", &[FLUSH_LATE, WALK_UNSHARE]);
}

#[test]
fn unshare_flush_late_cortex_a72() {
    selftest_control_failing(
        "unshare-flush-late",
        "cortex-a72",
        &[FLUSH_LATE, WALK_UNSHARE],
    );
}

#[test]
fn selftest_passes_every_scenario() {
    Boot::new("selftest passes every scenario (cortex-a72, 2 CPUs)")
        .smp(2)
        .cpu("cortex-a72")
        .args("workload=selftest")
        .expect_exit(0)
        .check("no check failed", |s| s.counter("selftest_failures") == 0)
        .line(
            "all ran",
            r"^selftest: 21 of 21 checks passed, 0 skipped, 0 failed",
        );
}

#[test]
fn selftest_on_one_cpu_skips_only_the_scenarios_that_need_a_second_cpu() {
    Boot::new("selftest on 1 CPU (cortex-a72)")
        .smp(1)
        .cpu("cortex-a72")
        .args("workload=selftest")
        .expect_exit(0)
        .line(
            "the walker scenarios say why they were skipped",
            r"^selftest: a table freed under a lockless walk waits for the walk: skipped \(needs a second CPU",
        )
        .line(
            "so does the errata scenario (no broadcast flush on one CPU)",
            r"^selftest: errata workarounds run once per completion, IPIs to the CPUs running the space: skipped \(a broadcast flush",
        )
        .line(
            "everything else ran",
            r"^selftest: 17 of 21 checks passed, 4 skipped, 0 failed",
        );
}

#[test]
fn selftest_with_a_planted_bug_says_what_it_skipped() {
    Boot::new("selftest with a planted bug says what it skipped")
        .smp(2)
        .args("workload=selftest bug=map-dying")
        .expect_exit(1)
        .line(
            "skipped, not ok",
            r"^selftest: TLB flush of 512 pages: exact TLBI and DSB counts: skipped \(",
        );
}

/// Without its embedded batch a gather cannot progress once batch allocations fail: the CPU
/// livelocks and the watchdog ends the run.
#[test]
#[ignore = "long: waits for the watchdog (timeout=10)"]
fn selftest_gather_no_local_batch_livelocks() {
    Boot::new("selftest bug=gather-no-local-batch (watchdog)")
        .smp(2)
        .args("workload=selftest bug=gather-no-local-batch timeout=10")
        .expect_exit(4)
        .line("the watchdog fired", r"^watchdog: ");
}

#[test]
#[ignore = "long: a 4-second stress"]
fn stress_fail_alloc_1000_takes_the_fallbacks() {
    Boot::new("stress fail_alloc=1000")
        .smp(4)
        .args("workload=stress seconds=4 fail_alloc=1000")
        .expect_exit(0)
        .check("the fallbacks ran, nothing detected", |s| {
            s.counter("table_free_fallbacks") > 0
                && s.counter("gathers") > 0
                && s.counter("stale_tlb_detected") == 0
                && s.counter("uaf_detected") == 0
        });
}

#[test]
#[ignore = "long: a 4-second stress"]
fn stress_fail_alloc_1000_sharing() {
    Boot::new("stress fail_alloc=1000 sharing=on")
        .smp(4)
        .args("workload=stress seconds=4 fail_alloc=1000 sharing=on")
        .expect_exit(0)
        .check(
            "the fallbacks ran, tables unshared, nothing detected",
            |s| {
                s.counter("table_free_fallbacks") > 0
                    && s.counter("tables_unshared") > 0
                    && s.counter("stale_tlb_detected") == 0
                    && s.counter("uaf_detected") == 0
            },
        );
}

#[test]
#[ignore = "long: waits for the watchdog (timeout=12)"]
fn stress_fail_alloc_1000_gather_no_local_batch_livelocks() {
    Boot::new("stress fail_alloc=1000 bug=gather-no-local-batch (watchdog)")
        .smp(4)
        .args("workload=stress seconds=4 fail_alloc=1000 bug=gather-no-local-batch timeout=12")
        .expect_exit(4)
        .line("the watchdog fired", r"^watchdog: ");
}

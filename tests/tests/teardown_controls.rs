//! The teardown-race and sharing controls (issue 9): each planted bug is caught by its selftest
//! scenario on the first try, on both TLBI paths: with FEAT_TLBIRANGE (`-cpu max`) and without
//! (`cortex-a72`). The scenarios do not depend on timing. Plus the gather's fallbacks when batch
//! allocations fail, and the livelock a gather without its embedded batch falls into.

use broadside_tests::Boot;

/// `workload=selftest bug=BUG` on `cpu` fails exactly the check named `check`.
fn selftest_control(bug: &str, cpu: &str, check: &str) {
    Boot::new(&format!("selftest bug={bug} ({cpu})"))
        .smp(2)
        .cpu(cpu)
        .args(&format!("workload=selftest bug={bug}"))
        .expect_exit(1)
        .line(
            "names the failed check",
            &format!("^selftest: {}: FAIL: ", regex::escape(check)),
        )
        .check("one check failed", |s| {
            s.counter("selftest_failures") == 1 && !s.passed()
        });
}

const MAP_DYING: &str = "no mapping enters a space once its destroy has begun";
const LAST_SHARER: &str = "the last sharer's flush covers every block of the freed table";
const PROTECT: &str = "protect over pages and blocks flushes every leaf; partial blocks refused";
const NO_UNDO: &str = "map_object out of memory half-way undoes its sharing";
const FLUSH_LATE: &str = "a full unshare is flushed under the object lock";

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
    selftest_control("unshare-flush-late", "max", FLUSH_LATE);
}

#[test]
fn unshare_flush_late_cortex_a72() {
    selftest_control("unshare-flush-late", "cortex-a72", FLUSH_LATE);
}

#[test]
fn selftest_passes_every_scenario() {
    Boot::new("selftest passes every scenario (cortex-a72, 1 CPU)")
        .smp(1)
        .cpu("cortex-a72")
        .args("workload=selftest")
        .expect_exit(0)
        .check("no check failed or skipped", |s| {
            s.counter("selftest_failures") == 0
        })
        .line(
            "all ran",
            r"^selftest: 14 of 14 checks passed, 0 skipped, 0 failed",
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

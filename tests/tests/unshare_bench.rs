//! The unshare bench's exact counts: with 8 CPUs, 32 shared tables and 4 children, each mode
//! synchronises exactly as the fix (Linux's "mm/hugetlb: fix excessive IPI broadcasts when
//! unsharing PMD tables using mmu_gather") predicts.

use broadside_tests::Boot;

#[test]
#[ignore = "long: the unshare bench on 8 CPUs"]
fn unshare_bench_exact_counts() {
    let (tables, children, others) = (32, 4, 7);
    let run = Boot::new("unshare-bench, 8 CPUs")
        .smp(8)
        .args(&format!(
            "workload=unshare-bench tables={tables} children={children}"
        ))
        .expect_exit(0);
    run.check("all three modes", |s| {
        let modes = s.modes.as_ref().expect("a modes member");
        modes.keys().map(String::as_str).collect::<Vec<_>>()
            == ["recheck", "sync-each", "sync-last"]
    })
    .check(
        "sync-each: one sync per table per child, each reaching the 7 other CPUs",
        |s| {
            s.mode_counter("sync-each", "table_syncs") == children * tables
                && s.mode_counter("sync-each", "ipis_sent") == others * children * tables
        },
    )
    .check("sync-last: one sync in all", |s| {
        s.mode_counter("sync-last", "table_syncs") == 1
    })
    .check("recheck: no sync, no IPI", |s| {
        s.mode_counter("recheck", "table_syncs") == 0 && s.mode_counter("recheck", "ipis_sent") == 0
    })
    .check(
        "every mode unshared every table, adopted them all, no detection",
        |s| {
            s.bench.as_ref().expect("a bench member").adopt == tables
                && ["sync-each", "sync-last", "recheck"].iter().all(|m| {
                    s.mode_counter(m, "tables_unshared") == children * tables
                        && s.mode_counter(m, "uaf_detected") == 0
                        && s.mode_counter(m, "tables_adopted") == tables
                })
        },
    );
}

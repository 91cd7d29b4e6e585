//! Scale: CPUs beyond QEMU virt's first GIC redistributor region, and what each shootdown and
//! sync strategy costs per operation as the CPU count grows (`workload=scale-bench`).

use broadside_tests::{Boot, Summary};

const STRATEGIES: [&str; 5] = ["tlbi", "ipi", "sync-each", "sync-last", "recheck"];

/// Every per-op figure is a total over `ops` divided by it; checks that no remainder was lost.
fn per_op_is_exact(s: &Summary, mode: &str) -> bool {
    let ops = s.mode_counter(mode, "ops");
    ops == 8
        && [
            ("ipis_sent_per_op", "ipis_sent"),
            ("tlbi_ops_per_op", "tlbi_ops"),
            ("dsb_ish_per_op", "dsb_ish"),
            ("sync_waits_per_op", "sync_waits"),
        ]
        .iter()
        .all(|(per_op, total)| s.mode_counter(mode, per_op) * ops == s.mode_counter(mode, total))
}

/// The exact costs of one op (protect 512 pages, unmap them freeing 3 tables, fork+exit over 4
/// shared level-2 tables) with `cpus` CPUs on `-cpu max` (FEAT_TLBIRANGE: one TLBI per flush).
/// Four flushes per op; `ipi` sends each to the other CPUs, and each of them runs the TLBI.
/// `sync-each` synchronises per table (the 3 unmapped, the 4 unshared, the child's 2 own upper
/// tables: 9), `sync-last` per batch (unmap, full unshare, exit: 3); each sync reaches every
/// other CPU.
fn check_scale_bench(cpus: u64) {
    let others = cpus - 1;
    let run = Boot::new(&format!("scale-bench, {cpus} CPUs"))
        .smp(cpus as u32)
        .args("workload=scale-bench")
        .expect_exit(0);
    run.check("every strategy, each per-op figure exact", |s| {
        let modes = s.modes.as_ref().expect("a modes member");
        modes.len() == STRATEGIES.len()
            && STRATEGIES
                .iter()
                .all(|m| modes.contains_key(*m) && per_op_is_exact(s, m))
    })
    .check(
        "tlbi: no IPI, no wait, 4 broadcast TLBIs and 3 DSB ISH per op",
        |s| {
            s.mode_counter("tlbi", "ipis_sent_per_op") == 0
                && s.mode_counter("tlbi", "sync_waits_per_op") == 0
                && s.mode_counter("tlbi", "tlbi_ops_per_op") == 4
                && s.mode_counter("tlbi", "dsb_ish_per_op") == 3
        },
    )
    .check("ipi: 4 shootdowns per op, each to every other CPU", |s| {
        s.mode_counter("ipi", "ipis_sent_per_op") == 4 * others
            && s.mode_counter("ipi", "tlbi_ops_per_op") == 4 * cpus
            && s.mode_counter("ipi", "sync_waits_per_op") == 4
    })
    .check("sync-each: 9 syncs per op, each to every other CPU", |s| {
        s.mode_counter("sync-each", "table_syncs") == 9 * 8
            && s.mode_counter("sync-each", "ipis_sent_per_op") == 9 * others
            && s.mode_counter("sync-each", "sync_waits_per_op") == 9
    })
    .check("sync-last: 3 syncs per op, each to every other CPU", |s| {
        s.mode_counter("sync-last", "table_syncs") == 3 * 8
            && s.mode_counter("sync-last", "ipis_sent_per_op") == 3 * others
    })
    .check(
        "recheck: no sync, and tlbi's counts (the same configuration)",
        |s| {
            s.mode_counter("recheck", "table_syncs") == 0
                && [
                    "ipis_sent",
                    "tlbi_ops",
                    "dsb_ish",
                    "sync_waits",
                    "tables_unshared",
                ]
                .iter()
                .all(|k| s.mode_counter("recheck", k) == s.mode_counter("tlbi", k))
        },
    )
    .check(
        "every strategy unshared 4 tables per op, nothing detected",
        |s| {
            STRATEGIES.iter().all(|m| {
                s.mode_counter(m, "tables_unshared") == 4 * 8
                    && s.mode_counter(m, "uaf_detected") == 0
                    && s.mode_counter(m, "leaf_only_flush_detected") == 0
            })
        },
    );
}

#[test]
fn scale_bench_exact_counts_4_cpus() {
    check_scale_bench(4);
}

#[test]
fn scale_bench_exact_counts_16_cpus() {
    check_scale_bench(16);
}

/// QEMU virt has room for 123 redistributors in its first region; CPUs 123 and up have theirs
/// in a second one. 160 CPUs come online, take timer ticks and IPIs, and pass the self-test.
/// Under `run.sh --deterministic` a tick is a fixed number of instructions, so `ticks_per_op`
/// is a cost that can be compared: two boots print the same figures; `tlbi` and `recheck`, one
/// configuration measured twice in a boot, agree within 1%; and at 64 CPUs every strategy that
/// interrupts the other CPUs costs more than `tlbi` (docs/benchmarks.md quotes the ratios
/// from docs/data/scale-icount.jsonl, with the commit they were measured at), while `tlbi`'s
/// own cost stays within 3% of its 1-CPU figure. That figure is exact for one binary but moves with
/// the kernel's memory layout: a change to code that runs only after the measurement (the
/// summary's JSON writer) took the 64-CPU/1-CPU difference from 0.25% to 1.49%, so the bound
/// leaves room for that and still sits well below the 6% of the cheapest interrupting strategy.
#[test]
fn scale_bench_ticks_are_reproducible_and_ordered_under_icount() {
    let ticks = |cpus: u32| {
        let run = Boot::new(&format!("scale-bench --deterministic, {cpus} CPUs"))
            .smp(cpus)
            .opts("--deterministic")
            // A measurement, not a search: no yield points, whose stalls and PCT yields
            // would add their own virtual time to the operations measured.
            .args("workload=scale-bench yield_points=off")
            .expect_exit(0);
        let s = run.summary();
        STRATEGIES.map(|m| s.mode_counter(m, "ticks_per_op"))
    };
    let [tlbi, ipi, sync_each, sync_last, recheck] = ticks(64);
    assert_eq!(
        ticks(64),
        [tlbi, ipi, sync_each, sync_last, recheck],
        "a second boot differs"
    );
    let within_1_percent = |a: u64, b: u64| a.abs_diff(b) * 100 <= a.max(b);
    assert!(
        within_1_percent(tlbi, recheck),
        "tlbi {tlbi} vs recheck {recheck}"
    );
    assert!(
        ipi > tlbi && sync_each > tlbi && sync_last > tlbi,
        "64 CPUs: {tlbi} {ipi} {sync_each} {sync_last}"
    );
    let [tlbi_1, ..] = ticks(1);
    let within_3_percent = |a: u64, b: u64| a.abs_diff(b) * 100 <= 3 * a.max(b);
    assert!(
        within_3_percent(tlbi, tlbi_1),
        "tlbi at 1 CPU {tlbi_1}, at 64 {tlbi}"
    );
}

#[test]
fn boot_160_cpus_across_two_redistributor_regions() {
    Boot::new("smp 160, demo (two redistributor regions)")
        .smp(160)
        .exclusive()
        .expect_exit(0)
        .line(
            "the DTB names two regions",
            r"GICv3 .* 2 redistributor region\(s\)",
        )
        .line("all 160 online", r"160 CPUs online")
        .check("160 CPUs, pass", |s| s.cpus == 160 && s.passed());
}

/// Every vCPU QEMU virt allows (GICv3: 512).
#[test]
#[ignore = "long: 512 vCPUs on the host's cores (4-12 s, 33-46 s before tickless idle)"]
fn boot_512_cpus_selftest() {
    Boot::new("smp 512, selftest")
        .smp(512)
        .exclusive()
        .args("workload=selftest")
        .expect_exit(0)
        .line("all 512 online", r"512 CPUs online")
        .check("512 CPUs, every self-test passed", |s| {
            s.cpus == 512 && s.passed() && s.counter("selftest_failures") == 0
        });
}

/// `scripts/scale_chart.py` (what `bench.sh --scale` charts with) on two boots' summaries: a
/// table row per CPU count and strategy, and a chart with a panel per per-op figure and a line
/// per strategy in each. No QEMU: the summaries are written here.
#[test]
fn scale_chart_tabulates_and_draws_every_strategy() {
    let dir = std::env::temp_dir().join(format!("bs-scale-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut raw = String::new();
    for cpus in [2u64, 8] {
        let modes: Vec<String> = STRATEGIES
            .iter()
            .enumerate()
            .map(|(i, m)| {
                format!(
                    "\"{m}\":{{\"ipis_sent_per_op\":{},\"tlbi_ops_per_op\":4,\"dsb_ish_per_op\":3,\"sync_waits_per_op\":{i},\"ticks_per_op\":{}}}",
                    i as u64 * (cpus - 1),
                    1000 * cpus + i as u64
                )
            })
            .collect();
        raw.push_str(&format!(
            "{{\"workload\":\"scale-bench\",\"cpus\":{cpus},\"wall_s\":1,\"modes\":{{{}}}}}\n",
            modes.join(",")
        ));
    }
    std::fs::write(dir.join("raw.jsonl"), raw).unwrap();
    let out = std::process::Command::new("python3")
        .arg(broadside_tests::repo_root().join("scripts/scale_chart.py"))
        .arg(&dir)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(dir.join("scale.md")).unwrap();
    let svg = std::fs::read_to_string(dir.join("scale.svg")).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    for m in STRATEGIES {
        assert!(md.contains(&format!("| 2 | {m} |")), "{md}");
        assert!(md.contains(&format!("| 8 | {m} |")), "{md}");
        assert!(svg.contains(&format!(">{m}</text>")), "legend lacks {m}");
    }
    // ipi's row at 8 CPUs: 7 IPIs per op, ticks 1.00x of tlbi's plus 1 tick.
    assert!(
        md.contains("| 8 | ipi | 7 | 4 | 3 | 1 | 8001 | 1.00x | 1 |"),
        "{md}"
    );
    // Five panels, each with one line per strategy.
    assert_eq!(svg.matches("<path ").count(), 5 * STRATEGIES.len());
    for fig in [
        "ipis_sent_per_op",
        "tlbi_ops_per_op",
        "dsb_ish_per_op",
        "sync_waits_per_op",
        "ticks_per_op",
    ] {
        assert!(svg.contains(&format!(">{fig}</text>")), "no panel {fig}");
    }
}

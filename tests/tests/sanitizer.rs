//! The flush-coverage sanitizer (`audit=`, issues 10 and 17): every planted flush, ASID and
//! break-before-make bug is caught by the audit in `workload=stress sharing=on`, on `-cpu max`
//! (range TLBIs) and on `cortex-a72` (none), at 1, 4 and 8 CPUs, and in `workload=selftest`;
//! every positive run — in every workload, rollovers, the IPI baseline and small memories
//! included — shows the audit looked (`flush_obligations`, `flush_checks`,
//! `ttbr0_loads_checked`) and found nothing.
//!
//! The sanitizer checks each free, reuse, return, TTBR0 load and in-place change against what
//! it observed, so a planted bug is caught at the first operation it breaks, whatever the
//! timing: no control here needs a race to happen, and none runs exclusive. The fast set
//! (every bug at 4 CPUs on `-cpu max`, and in the self-test) runs with every `cargo test`; the
//! rest of the matrix is `#[ignore]`d (the long step of `scripts/test.sh`).

use broadside_tests::{Boot, Summary};

/// How a planted bug's first report reads: the counter it raises, and what its first `audit:`
/// line ends with (a flush gap's diagnosis, which depends on which operation trips first) or
/// starts with (the ASID and break-before-make reports).
struct Control {
    bug: &'static str,
    counter: &'static str,
    first: &'static [&'static str],
}

const fn gap(bug: &'static str, first: &'static [&'static str]) -> Control {
    Control {
        bug,
        counter: "flush_gap_detected",
        first,
    }
}

const CONTROLS: &[Control] = &[
    gap("skip-tlbi", &["[NothingIssued]"]),
    gap("local-tlbi", &["[CpusMissed]"]),
    gap("leaf-only-flush", &["[WalkCacheKept]"]),
    gap("last-sharer-narrow-flush", &["[RangeMissed]"]),
    // With FEAT_TTL the hint names the block's level; without, the 2 MiB stride steps over the
    // pages after the first.
    gap(
        "protect-wide-stride",
        &["[WrongLevel]", "[RangeMissed]", "[NothingIssued]"],
    ),
    gap("wrong-asid", &["[WrongAsid]"]),
    // protect skips the flush of a downgrade, taking it for an upgrade.
    gap("downgrade-as-upgrade", &["[NothingIssued]"]),
    gap("no-dsb", &["[NotCompleted]"]),
    // A one-page range stopped a page short is empty: nothing is issued for it.
    gap("narrow-range", &["[NothingIssued]", "[RangeMissed]"]),
    gap("tlbi-before-store-barrier", &["[NotOrdered]"]),
    // The teardown's ASID flush keeps the global entries.
    gap("global-user-leaf", &["[WrongAsid]"]),
    Control {
        bug: "rollover-skip-flush",
        counter: "asid_reuse_detected",
        first: &["asid rollover: cpu"],
    },
    Control {
        bug: "bbm-skip",
        counter: "bbm_violation_detected",
        first: &["break-before-make: space"],
    },
];

/// The stress run every control plants its bug into.
const STRESS: &str = "workload=stress seconds=1 sharing=on";

/// Nothing found, and the audit demonstrably ran.
fn audited_clean(s: &Summary) -> bool {
    s.counter("flush_gap_detected") == 0
        && s.counter("asid_reuse_detected") == 0
        && s.counter("bbm_violation_detected") == 0
        && s.counter("flush_obligations") > 0
        && s.counter("flush_checks") > 0
}

/// `c.bug` planted in `args` on `cpu` with `smp` CPUs: exit 1, its counter raised, and the
/// first `audit:` report reads as `c.first` says.
fn caught(c: &Control, args: &str, cpu: &str, smp: u32) {
    let run = Boot::new(&format!("audit bug={} smp={smp} ({cpu}) {args}", c.bug))
        .smp(smp)
        .cpu(cpu)
        .args(&format!("{args} bug={}", c.bug))
        .expect_exit(1);
    run.check(&format!("{} > 0", c.counter), |s| s.counter(c.counter) > 0);
    let first = run
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("audit: cpu")
                .and_then(|l| l.split_once(": "))
        })
        .map(|(_, report)| report)
        .unwrap_or_else(|| run.fail("no audit: report line"));
    if !c
        .first
        .iter()
        .any(|f| first.ends_with(f) || first.starts_with(f))
    {
        run.fail(&format!(
            "first report {first:?}: expected one of {:?}",
            c.first
        ));
    }
    if c.counter == "flush_gap_detected" {
        run.line(
            "the report names space, ASID, range, level, need and issue",
            r"^audit: cpu\d+: flush gap: (free of 0x[0-9a-f]+|reuse of 0x[0-9a-f]+|op \d+ returned|cpu \d+ loaded asid \d+): space \d+ (asid \d+|global|untracked-asid) va 0x[0-9a-f]+\.\.0x[0-9a-f]+ level \d needs (leaf|walk-cache) invalidation on cpus \{[0-9,]+\}; issued: ",
        );
    }
}

/// Every control in stress on `cpu` with `smp` CPUs. On one CPU `local-tlbi` plants nothing (a
/// local TLBI is the right one there): it must pass with the audit clean. A TLBI before the
/// store barrier does apply on one CPU, since an exec cycle's mutator runs in the space it
/// changes: its own walks may refetch the old entry after a TLBI the clear was not ordered
/// before.
fn matrix(cpu: &str, smp: u32) {
    for c in CONTROLS {
        if smp == 1 && c.bug == "local-tlbi" {
            Boot::new(&format!("audit bug={} smp=1 ({cpu}) cannot apply", c.bug))
                .smp(1)
                .cpu(cpu)
                .args(&format!("{STRESS} bug={}", c.bug))
                .expect_exit(0)
                .check("audited, clean", audited_clean);
            continue;
        }
        if smp == 1 && c.bug == "tlbi-before-store-barrier" {
            // On one CPU it is caught only once an exec cycle's mutator runs in the space it
            // changes (its own walks refetch the entry): in a 1-second run on the host's clock
            // that happened in some runs and not others (2 of 3 missed it). Deterministic, with
            // a seed whose run reaches it: seeds 2 and 3 do, seed 1 does not.
            let run = Boot::new(&format!(
                "audit bug={} smp=1 ({cpu}) deterministic seed 2",
                c.bug
            ))
            .smp(1)
            .cpu(cpu)
            .opts("--deterministic")
            .args(&format!("{STRESS} seed=2 bug={}", c.bug))
            .expect_exit(1);
            run.check("flush_gap_detected > 0", |s| {
                s.counter("flush_gap_detected") > 0
            });
            run.line(
                "the first report: not ordered after the clear",
                r"^audit: cpu0: flush gap: .*\[NotOrdered\]$",
            );
            continue;
        }
        caught(c, STRESS, cpu, smp);
    }
}

#[test]
fn every_bug_caught_at_4_cpus_max() {
    matrix("max", 4);
}

#[test]
#[ignore = "long: sanitizer matrix"]
fn every_bug_caught_at_1_cpu_max() {
    matrix("max", 1);
}

#[test]
#[ignore = "long: sanitizer matrix"]
fn every_bug_caught_at_8_cpus_max() {
    matrix("max", 8);
}

#[test]
#[ignore = "long: sanitizer matrix"]
fn every_bug_caught_at_1_cpu_cortex_a72() {
    matrix("cortex-a72", 1);
}

#[test]
#[ignore = "long: sanitizer matrix"]
fn every_bug_caught_at_4_cpus_cortex_a72() {
    matrix("cortex-a72", 4);
}

#[test]
#[ignore = "long: sanitizer matrix"]
fn every_bug_caught_at_8_cpus_cortex_a72() {
    matrix("cortex-a72", 8);
}

/// Issue 17's four controls, each caught on its first occurrence in the self-test's scripted
/// scenarios too (a rollover between a clear and its flush, a migration, every flush and
/// teardown), on both machines.
#[test]
fn issue_17_controls_caught_in_the_selftest() {
    for cpu in ["max", "cortex-a72"] {
        for c in CONTROLS.iter().filter(|c| {
            [
                "rollover-skip-flush",
                "tlbi-before-store-barrier",
                "global-user-leaf",
                "bbm-skip",
            ]
            .contains(&c.bug)
        }) {
            caught(c, "workload=selftest", cpu, 4);
        }
    }
}

#[test]
fn selftest_is_audited_and_clean() {
    Boot::new("audit selftest")
        .args("workload=selftest")
        .expect_exit(0)
        .check("audited, clean, and it deferred across the scripted rollover", |s| {
            audited_clean(s) && s.counter("flush_deferred") > 0 && s.counter("ttbr0_loads_checked") > 0
        })
        .line(
            "the audit's closing line",
            r"^audit: \d+ flush obligations recorded, \d+ checks, \d+ TTBR0 loads checked, \d+ deferred, 0 dropped, flush_gap_detected=0 asid_reuse_detected=0 bbm_violation_detected=0$",
        )
        .line(
            "the scripted rollover changed the space's ASID",
            r"^selftest:   asid \d+ -> Some\(\d+\) across a rollover: [1-9]\d* deferred",
        );
}

#[test]
fn stress_with_sharing_is_audited_and_clean_on_both_machines() {
    for cpu in ["max", "cortex-a72"] {
        Boot::new(&format!("audit stress sharing ({cpu})"))
            .smp(4)
            .cpu(cpu)
            .args("workload=stress seconds=2 sharing=on")
            .expect_exit(0)
            .check(
                "audited, clean, it unshared, migrated and rolled over",
                |s| {
                    audited_clean(s)
                        && s.counter("tables_unshared") > 0
                        && s.counter("pages_migrated") > 0
                        && s.counter("asid_rollovers") >= 1
                        && s.counter("ttbr0_loads_checked") > 0
                },
            );
    }
}

#[test]
fn stress_ipi_baseline_is_audited_and_clean() {
    // The IPI baseline discharges per target CPU: each target's local TLBIs and DSB NSH, after
    // the DSB ISHST before the SGI made the clears visible to its walks.
    Boot::new("audit stress ipi")
        .smp(4)
        .args("workload=stress seconds=2 sharing=on flush=ipi")
        .expect_exit(0)
        .check("audited, clean, with IPIs", |s| {
            audited_clean(s) && s.counter("ipis_sent") > 0
        });
}

/// Issue 17's defect 1: two-bit ASIDs on two CPUs roll over every ~150 ms, and a space's ASID
/// changes between a clear and its flush; the audit defers what the other CPU can only use after
/// its own rollover flush, instead of reporting a false gap (seen once in CI), and checks that
/// flush at its next TTBR0 load.
#[test]
fn stress_across_asid_rollovers_is_audited_and_clean() {
    for seed in 1..=3 {
        Boot::new(&format!("audit stress asid_bits=2 seed={seed}"))
            .smp(2)
            .args(&format!(
                "workload=stress seconds=2 sharing=on asid_bits=2 seed={seed}"
            ))
            .expect_exit(0)
            .check("audited, clean, across many rollovers", |s| {
                audited_clean(s)
                    && s.counter("asid_rollovers") > 2
                    && s.counter("ttbr0_loads_checked") > 0
            });
    }
}

/// The same under deterministic runs, 20 seeds through `scripts/explore.sh` (each seed another
/// interleaving of the rollovers with the clears and flushes): every one passes.
#[test]
#[ignore = "long: 20 deterministic boots"]
fn explore_twenty_seeds_of_the_rollover_stress() {
    let out = broadside_tests::run_script(
        "scripts/explore.sh",
        &[
            "--seeds",
            "20",
            "--smp",
            "2",
            "--",
            "workload=stress",
            "seconds=2",
            "sharing=on",
            "asid_bits=2",
        ],
        std::time::Duration::from_secs(600),
    );
    assert_eq!(
        out.code,
        Some(0),
        "explore found a failing seed:\n{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn audit_off_records_and_checks_nothing() {
    Boot::new("audit=off")
        .smp(4)
        .args(&format!("{STRESS} audit=off"))
        .expect_exit(0)
        .check("nothing recorded or checked", |s| {
            s.counter("flush_obligations") == 0
                && s.counter("flush_checks") == 0
                && s.counter("ttbr0_loads_checked") == 0
                && s.counter("flush_gap_detected") == 0
                && s.counter("touches") > 0
        });
}

/// `audit=on` works in every workload, with its memory sized at boot: the unshare bench's
/// 64 GiB object at 8 CPUs (it once ran the audit out of memory: a panic), the scale bench, and
/// stress in 128 MiB.
#[test]
fn the_audit_works_in_every_workload() {
    Boot::new("unshare-bench default audit")
        .smp(2)
        .args("workload=unshare-bench tables=8 children=2")
        .expect_exit(0)
        .check("audit off by default", |s| {
            s.counter("flush_obligations") == 0
        });
    Boot::new("unshare-bench 64 GiB audit=on")
        .smp(8)
        .args("workload=unshare-bench audit=on")
        .expect_exit(0)
        .check("audited, clean, nothing dropped", |s| {
            audited_clean(s) && s.counter("audit_dropped") == 0
        });
    Boot::new("stress 128M audit=on")
        .smp(4)
        .mem("128M")
        .args("workload=stress seconds=2 sharing=on")
        .expect_exit(0)
        .check("audited, clean", audited_clean);
    Boot::new("scale-bench 64 CPUs audit=on")
        .smp(64)
        .args("workload=scale-bench audit=on")
        .expect_exit(0)
        .check("audited, clean", audited_clean);
}

#[test]
#[ignore = "long: 512 CPUs"]
fn the_audit_works_at_512_cpus() {
    Boot::new("scale-bench 512 CPUs audit=on")
        .smp(512)
        .args("workload=scale-bench audit=on")
        .expect_exit(0)
        .check("audited, clean", audited_clean);
}

//! Deferred TLB batches for reclaim (issue 19, part 2): one `TLBI VALE1IS` per page and one
//! `DSB ISH` per batch, on the CPU that owns it; an unmap or `protect` that finds another CPU's
//! batch pending on its space invalidates the space again before it returns
//! (`flush_tlb_batched_pending`). The audit checks each unmap and `protect` against every open
//! obligation in its range.
//!
//! Controls: `bug=batch-drain-other-cpu` (the pending batch "completed" by a `DSB ISH` on the
//! wrong CPU: Linux 4b634918384c's bug), `bug=batch-pending-ignored`, and
//! `bug=batch-owner-overwritten` (one owner per space, so a second batch's completion hid the
//! first's), each a flush gap that names the owner's uncompleted TLBI. The self-test scripts the race; stress runs it under
//! `--deterministic` with fixed seeds.

use broadside_tests::Boot;

const BUGS: [&str; 3] = [
    "batch-drain-other-cpu",
    "batch-pending-ignored",
    "batch-owner-overwritten",
];

/// The bugs fixed seeds of stress catch. `batch-owner-overwritten` needs two CPUs reclaiming
/// from one space with an unmap of it between their completions: an 8-CPU host-time stress run
/// found it, seeds 1-3 under `--deterministic` do not reach it, and the self-test scripts it.
const STRESS_BUGS: [&str; 2] = ["batch-drain-other-cpu", "batch-pending-ignored"];

/// The gap a planted bug leaves: the unmap returned while the owner's TLBI had no `DSB`.
const GAP: &str = r"^audit: cpu\d+: flush gap: op \d+ returned: space \d+ asid \d+ va 0x[0-9a-f]+\.\.0x[0-9a-f]+ level 3 needs leaf invalidation on cpus \{[0-9,]+\}; issued: vale1is on cpu \d+ asid \d+( ttl 3)? \(no dsb\) \[NotCompleted\]$";

#[test]
fn the_selftest_batch_costs_one_dsb_for_32_pages_and_the_race_reflushes() {
    for cpu in ["max", "cortex-a72"] {
        Boot::new(&format!("tlb batch selftest ({cpu})"))
            .cpu(cpu)
            .args("workload=selftest")
            .expect_exit(0)
            .line(
                "32 TLBIs and one DSB ISH for 32 pages",
                r"^selftest:   reclaim batch: 32 pages: tlbi_ops=32 dsb_ish=1 batched_pages=32 batch_flushes=1$",
            )
            .line(
                "the scripted race passed",
                r"^selftest: a deferred TLB batch: one DSB ISH for all its pages; an unmap racing it re-flushes: ok$",
            );
    }
}

#[test]
fn each_batch_bug_is_a_flush_gap_in_the_selftest() {
    for cpu in ["max", "cortex-a72"] {
        for bug in BUGS {
            Boot::new(&format!("{bug} selftest ({cpu})"))
                .cpu(cpu)
                .args(&format!("workload=selftest bug={bug}"))
                .expect_exit(1)
                .line("the owner's uncompleted TLBI named", GAP)
                .check("flush_gap_detected > 0", |s| {
                    s.counter("flush_gap_detected") > 0
                });
        }
    }
}

/// Stress: touchers reclaim, the mutator unmaps and protects around pending batches.
#[test]
fn stress_batches_and_reflushes_on_both_machines() {
    for (cpu, smp, seed) in [("max", 4, 1), ("cortex-a72", 4, 3), ("max", 8, 3)] {
        Boot::new(&format!("tlb batch stress ({cpu}, {smp} CPUs) seed {seed}"))
            .opts("--deterministic")
            .cpu(cpu)
            .smp(smp)
            .args(&format!("workload=stress seconds=2 seed={seed}"))
            .expect_exit(0)
            .check(
                "batches flushed, fewer than one DSB per page, pending batches met",
                |s| {
                    let (pages, batches) = (s.counter("batched_pages"), s.counter("batch_flushes"));
                    batches > 0
                        && pages > batches
                        && s.counter("batch_pending_flushes") > 0
                        && s.counter("flush_gap_detected") == 0
                },
            );
    }
}

#[test]
fn stress_catches_each_batch_bug() {
    for (cpu, smp, seed) in [("max", 4, 1), ("cortex-a72", 4, 3), ("max", 8, 3)] {
        for bug in STRESS_BUGS {
            Boot::new(&format!("{bug} stress ({cpu}, {smp} CPUs) seed {seed}"))
                .opts("--deterministic")
                .cpu(cpu)
                .smp(smp)
                .args(&format!("workload=stress seconds=2 seed={seed} bug={bug}"))
                .expect_exit(1)
                .line("the owner's uncompleted TLBI named", GAP);
        }
    }
}

/// `workload=flush-bench`'s counts are exact: per op, an upgrade of 64 pages costs 1 TLBI (a
/// range op; 64 by-VA ops without FEAT_TLBIRANGE) and 1 `DSB ISH` on the old path and nothing
/// on the new; a reclaim of 64 pages costs 64 TLBIs either way, and 64 `DSB ISH` on the old path
/// against 1 on the new; the same batch with erratum 4118414's workaround costs 64 TLBIs more
/// and 64 `DSB ISH` more when it repeats after every TLBI (the old form), and 1 more of each when
/// it repeats once per completion.
#[test]
fn flush_bench_counts_are_exact() {
    for (cpu, upgrade_tlbis) in [("max", 1), ("cortex-a72", 64)] {
        let run = Boot::new(&format!("flush-bench ({cpu})"))
            .cpu(cpu)
            .opts("--deterministic")
            .args("workload=flush-bench yield_points=off")
            .expect_exit(0);
        let s = run.summary();
        let mode = |m: &str, k: &str| s.mode_counter(m, k);
        for (m, tlbi, dsb) in [
            ("upgrade-old", upgrade_tlbis, 1),
            ("upgrade-new", 0, 0),
            ("batch-old", 64, 64),
            ("batch-new", 64, 1),
            ("repeat-old", 128, 65),
            ("repeat-new", 65, 2),
        ] {
            let got = (mode(m, "tlbi_ops_per_op"), mode(m, "dsb_ish_per_op"));
            if got != (tlbi, dsb) || mode(m, "ipis_sent_per_op") != 0 {
                run.fail(&format!(
                    "{m}: (tlbi, dsb_ish) per op {got:?}, expected {:?}",
                    (tlbi, dsb)
                ));
            }
        }
        for (feature, what) in [
            (
                "batch",
                "the batch took no less virtual time than the page-by-page path",
            ),
            (
                "repeat",
                "the repeat per completion took no less virtual time than per TLBI",
            ),
        ] {
            let ticks = |path: &str| mode(&format!("{feature}-{path}"), "ticks_per_op");
            if ticks("new") >= ticks("old") {
                run.fail(what);
            }
        }
        // The bench forced the workaround for `repeat` only, and turned it off again: 64 + 1
        // repeats in each of its 8 measured rounds and the unmeasured one, no other.
        let repeats = s.counter("erratum_tlbi_repeats");
        if repeats != (64 + 1) * 9 {
            run.fail(&format!(
                "erratum_tlbi_repeats {repeats}, expected 585: the repeat feature's alone"
            ));
        }
    }
}

/// The audit credits erratum 4118414's workaround in either form: `workload=flush-bench` with
/// `audit=on` runs the per-TLBI repeat (the bench's old path) and the per-completion one, each
/// flush checked, and passes. A model that knew only the kernel's `TLBI VALE1IS, XZR` would
/// report every old-path flush as `[RepeatMissing]`.
#[test]
fn the_audit_credits_the_per_tlbi_repeat_form() {
    let run = Boot::new("flush-bench audited")
        .opts("--deterministic")
        .args("workload=flush-bench yield_points=off audit=on")
        .expect_exit(0);
    let s = run.summary();
    if s.counter("flush_checks") == 0 || s.counter("erratum_tlbi_repeats") == 0 {
        run.fail("the audit checked no flush, or no repeat ran");
    }
}

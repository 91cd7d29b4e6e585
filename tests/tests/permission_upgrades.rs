//! Permission upgrades with no broadcast (issue 19, part 1): `protect` that only adds
//! permissions issues no TLBI; a write through a CPU's stale read-only entry takes a spurious
//! permission fault, fixed with one local `TLBI VALE1` and retried. QEMU never takes such a
//! fault (its TLB re-walks on a permission miss), so with the audit on its model of stale
//! restrictive entries says where hardware may, and the fault path runs there.
//!
//! Controls: `bug=spurious-no-local-tlbi` (the handler retries without the TLBI: a fault loop,
//! named as one) and `bug=downgrade-as-upgrade` (a downgrade left unflushed: the audit's flush
//! gap, also in `sanitizer.rs`'s matrix). Deterministic runs, fixed seeds: no timing needed.

use broadside_tests::Boot;

/// The self-test's scenario: a downgrade flushed, an upgrade with 0 TLBIs, and two spurious
/// faults (a page and a 2 MiB block, one entry each) fixed with two local TLBIs.
#[test]
fn the_selftest_upgrade_flushes_nothing_and_fixes_each_leaf_once() {
    for cpu in ["max", "cortex-a72"] {
        Boot::new(&format!("upgrade selftest ({cpu})"))
            .cpu(cpu)
            .args("workload=selftest")
            .expect_exit(0)
            .line(
                "the scenario ran and counted",
                r"^selftest:   upgrade: 0 TLBIs; 2 spurious faults fixed with 2 local TLBIs$",
            )
            .check("one unflushed upgrade, no loop", |s| {
                s.counter("upgrades_unflushed") >= 1 && s.counter("fault_loop_detected") == 0
            });
    }
}

#[test]
fn a_handler_without_its_local_tlbi_is_a_fault_loop_in_the_selftest() {
    for cpu in ["max", "cortex-a72"] {
        Boot::new(&format!("spurious-no-local-tlbi selftest ({cpu})"))
            .cpu(cpu)
            .args("workload=selftest bug=spurious-no-local-tlbi")
            .expect_exit(1)
            .line(
                "named as a fault loop on the first write",
                r"^fault loop: cpu 0 took 16 permission faults in a row on va 0x40000008 of space \d+, whose entry allows the write: the stale entry was never invalidated$",
            )
            .check("fault_loop_detected > 0, nothing fixed", |s| {
                s.counter("fault_loop_detected") > 0 && s.counter("spurious_faults_fixed") == 0
            });
    }
}

#[test]
fn a_downgrade_taken_for_an_upgrade_is_a_flush_gap_in_the_selftest() {
    Boot::new("downgrade-as-upgrade selftest")
        .args("workload=selftest bug=downgrade-as-upgrade")
        .expect_exit(1)
        .line(
            "the audit reports the unflushed downgrade when protect returns",
            r"^audit: cpu\d+: flush gap: op \d+ returned: space \d+ asid \d+ va 0x[0-9a-f]+\.\.0x[0-9a-f]+ level \d needs leaf invalidation on cpus \{[0-9,]+\}; issued: nothing \[NothingIssued\]$",
        );
}

/// Stress mixes downgrades and upgrades (`protect_cycle`), and touchers write where pages were
/// just made writable: spurious faults are taken and fixed, none loops, the audit is clean.
#[test]
fn stress_fixes_spurious_faults_on_both_machines() {
    for (cpu, seed) in [("max", 1), ("max", 2), ("cortex-a72", 3)] {
        Boot::new(&format!("upgrade stress ({cpu}) seed {seed}"))
            .opts("--deterministic")
            .cpu(cpu)
            .args(&format!("workload=stress seconds=2 seed={seed}"))
            .expect_exit(0)
            .check("upgrades unflushed, spurious faults fixed, no loop", |s| {
                s.counter("upgrades_unflushed") > 0
                    && s.counter("spurious_faults_fixed") > 0
                    && s.counter("fault_loop_detected") == 0
                    && s.counter("flush_gap_detected") == 0
            });
    }
}

#[test]
fn stress_names_the_fault_loop_of_a_handler_without_its_tlbi() {
    for (cpu, seed) in [("max", 1), ("max", 2), ("cortex-a72", 3)] {
        Boot::new(&format!("spurious-no-local-tlbi stress ({cpu}) seed {seed}"))
            .opts("--deterministic")
            .cpu(cpu)
            .args(&format!(
                "workload=stress seconds=2 seed={seed} bug=spurious-no-local-tlbi"
            ))
            .expect_exit(1)
            .line(
                "a fault loop, not a watchdog",
                r"^fault loop: cpu \d+ took 16 permission faults in a row on va 0x[0-9a-f]+ of space \d+",
            )
            .check("fault_loop_detected > 0", |s| {
                s.counter("fault_loop_detected") > 0
            });
    }
}

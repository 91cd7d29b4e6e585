//! Kernel infrastructure: what `dsb_ish` counts. It counts every DSB ISH, not only TLBI
//! completions: on one CPU every TLBI is local (no completion DSB ISH), yet each address-space
//! activation issues one before its first walk.

use broadside_tests::Boot;

#[test]
fn dsb_ish_counts_activation_barriers_on_1_cpu() {
    Boot::new("dsb_ish counts activation barriers (smp 1)")
        .smp(1)
        .args("workload=selftest")
        .expect_exit(0)
        .check("all TLBIs local, dsb_ish > 0", |s| {
            s.counter("tlbi_ops") > 0
                && s.counter("tlbi_local_ops") == s.counter("tlbi_ops")
                && s.counter("dsb_ish") >= 1
        })
        .line(
            "the exact-count unmap still sees no DSB ISH",
            r"512-page unmap: .* local=1 dsb_ish=0([^0-9]|$)",
        );
}

#[test]
fn dsb_ish_on_4_cpus() {
    Boot::new("dsb_ish on 4 CPUs (selftest)")
        .smp(4)
        .args("workload=selftest")
        .expect_exit(0)
        .check("more DSB ISH than flushes (activations count too)", |s| {
            // Local TLBIs: each CPU's flush after the scripted ASID rollover, and the flushes of
            // the spaces that ran on CPU 0 alone (the rollover scenario's ASID takers).
            s.counter("asid_rollovers") == 1
                && (4..s.counter("tlbi_ops")).contains(&s.counter("tlbi_local_ops"))
                && s.counter("dsb_ish") > s.counter("flushes")
        })
        .line(
            "the 512-page unmap: one range TLBI, one DSB ISH",
            r"512-page unmap: tlbi_ops=1 range=1 asid=0 local=0 dsb_ish=1([^0-9]|$)",
        );
}

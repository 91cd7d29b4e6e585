//! Memory pressure: out of memory is an expected condition, never a panic. A workload sizes
//! itself to the free memory it finds (and backs off from maps that fail mid-run), or refuses at
//! start with exit 2 and one line naming the memory it needs. The sizes below all fit a smaller
//! layout, so they pass.

use broadside_tests::{Boot, Summary};

/// No detector fired, and the flush audit (on in stress and the self-test) looked.
fn no_detection(s: &Summary) -> bool {
    s.counter("stale_tlb_detected") == 0
        && s.counter("uaf_detected") == 0
        && s.counter("leaf_only_flush_detected") == 0
        && s.counter("flush_gap_detected") == 0
        && (s.workload == "unshare-bench" || s.counter("flush_obligations") > 0)
}

fn stress_sized_down(mem: &str) {
    Boot::new(&format!("stress at --mem {mem}"))
        .smp(4)
        .mem(mem)
        .args("workload=stress seconds=3")
        .expect_exit(0)
        .check("sized below the 1 GiB layout, touches, no detection", |s| {
            s.stress
                .as_ref()
                .is_some_and(|st| st.pages_per_space < 2048)
                && s.counter("touches") > 0
                && s.counter("pages_unmapped") > 0
                && no_detection(s)
        });
}

fn stress_sharing_sized_down(mem: &str) {
    Boot::new(&format!("stress sharing=on at --mem {mem}"))
        .smp(4)
        .mem(mem)
        .args("workload=stress seconds=3 sharing=on")
        .expect_exit(0)
        .check("sized down, tables unshared, touches, no detection", |s| {
            s.stress.as_ref().is_some_and(|st| st.object_gib < 4)
                && s.counter("tables_unshared") > 0
                && s.counter("touches") > 0
                && no_detection(s)
        });
}

fn unshare_bench_adopts_fewer(mem: &str) {
    Boot::new(&format!("unshare-bench at --mem {mem}"))
        .smp(4)
        .mem(mem)
        .args("workload=unshare-bench")
        .expect_exit(0)
        .check(
            "fewer adoptions than tables, every mode adopted them all, no detection",
            |s| {
                let adopt = s.bench.as_ref().expect("a bench member").adopt;
                let modes = s.modes.as_ref().expect("a modes member");
                0 < adopt
                    && adopt < 64
                    && modes.values().all(|m| {
                        m.get("tables_adopted") == Some(&adopt) && m.get("uaf_detected") == Some(&0)
                    })
            },
        );
}

#[test]
#[ignore = "long: a 3-second stress"]
fn stress_at_64m() {
    stress_sized_down("64M");
}

#[test]
#[ignore = "long: a 3-second stress"]
fn stress_sharing_at_64m() {
    stress_sharing_sized_down("64M");
}

#[test]
#[ignore = "long: the unshare bench"]
fn unshare_bench_at_64m() {
    unshare_bench_adopts_fewer("64M");
}

#[test]
#[ignore = "long: a 3-second stress"]
fn stress_at_96m() {
    stress_sized_down("96M");
}

#[test]
#[ignore = "long: a 3-second stress"]
fn stress_sharing_at_96m() {
    stress_sharing_sized_down("96M");
}

#[test]
#[ignore = "long: the unshare bench"]
fn unshare_bench_at_96m() {
    unshare_bench_adopts_fewer("96M");
}

#[test]
fn stress_sharing_refuses_at_40m() {
    Boot::new("stress sharing=on refuses at --mem 40M")
        .smp(4)
        .mem("40M")
        .args("workload=stress seconds=3 sharing=on")
        .expect_exit(2)
        .line(
            "names the memory it needs",
            r"^error: stress: needs [0-9]+ MiB of free memory .*--mem [0-9]+M or more",
        );
}

#[test]
fn unshare_bench_refuses_at_24m() {
    Boot::new("unshare-bench refuses at --mem 24M")
        .smp(4)
        .mem("24M")
        .args("workload=unshare-bench tables=512")
        .expect_exit(2)
        .line(
            "names the memory it needs",
            r"^error: unshare-bench: needs [0-9]+ MiB of free memory .*--mem [0-9]+M or more",
        );
}

/// Touchers stay in one space across the mutators' changes (QEMU drops a vCPU's TLB whenever the
/// ASID in TTBR0 changes), so a missing TLBI is seen tens of times over a few runs, not once or
/// twice. Deterministic, with fixed seeds: each count is a function of the seed and the build
/// (28, 12, 1 and 31 for seeds 1-4 when this was written; one seed varies from 1 to 40 as the
/// schedules change, so the bound is on the four together). The old form, 100 or more in 3 s of
/// host time, held only on a quiet host and failed with as few as 16 under load.
#[test]
#[ignore = "long: four 3-second stress runs"]
fn skip_tlbi_is_seen_many_times() {
    let mut total = 0;
    for seed in 1..=4 {
        let run = Boot::new(&format!(
            "stress bug=skip-tlbi: touchers see stale entries (seed {seed})"
        ))
        .smp(4)
        .opts("--deterministic")
        .args(&format!(
            "workload=stress seconds=3 bug=skip-tlbi audit=off seed={seed}"
        ))
        .expect_exit(1);
        run.check("a stale-TLB detection, and touches", |s| {
            s.counter("stale_tlb_detected") > 0 && s.counter("touches") > 0
        });
        total += run.summary().counter("stale_tlb_detected");
    }
    assert!(
        total >= 20,
        "{total} stale-TLB detections over seeds 1-4, expected 20 or more"
    );
}

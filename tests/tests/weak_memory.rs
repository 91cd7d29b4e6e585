//! Exploring what QEMU's memory order hides (issue 18): with `weak=on` each CPU's stores in the
//! barrier protocols wait in an emulated store buffer until a barrier on that CPU drains it, so
//! a removed barrier leaves a store invisible exactly where hardware may. Each planted barrier
//! bug is caught by `explore.sh` within 5 seeds with `weak=on` and passes without it; each race
//! control and each step of the walker's protocol is caught within 5 seeds; a correct weak run
//! passes and shows that the buffers were used (a model that buffered nothing would pass too).
//!
//! The seeds are not the ones the catch rates were measured on (docs/weak-memory.md), so these
//! tests check the rate, not a remembered seed.

use broadside_tests::{Boot, repo_root, run_script};
use std::time::Duration;

/// The planted barrier bugs: each removes one barrier of a store→load order the protocols rest
/// on, invisible to QEMU (which runs loads and stores in the host's order).
const BARRIER_BUGS: [&str; 4] = [
    "flush-no-dmb",
    "activate-no-dsb",
    "rcu-snapshot-early",
    "gate-no-fence",
];

/// Every control explore must catch in stress within 5 seeds: the races (with the sharing they
/// need), the barrier bugs (with `weak=on`) and the walker's three steps.
const CONTROLS: [(&str, &str); 12] = [
    ("free-tables-now", ""),
    ("walker-irqs-on", ""),
    ("unshare-no-sync", "sharing=on"),
    ("map-dying", "sharing=on"),
    ("map-object-no-undo", "sharing=on"),
    ("flush-no-dmb", "weak=on"),
    ("activate-no-dsb", "weak=on"),
    ("rcu-snapshot-early", "weak=on"),
    ("gate-no-fence", "weak=on"),
    ("walker-pin-dying", "weak=on"),
    ("walker-no-recheck", "weak=on"),
    ("walker-no-backout", "weak=on"),
];

/// Runs `explore.sh --seeds 5 --first-seed first` over stress with `extra` and `bug`, and
/// returns its stdout and exit code.
fn explore5(first: u64, extra: &str, bug: Option<&str>) -> (String, Option<i32>) {
    let first = first.to_string();
    let mut args = vec![
        "--seeds",
        "5",
        "--first-seed",
        &first,
        "--",
        "workload=stress",
        "seconds=2",
    ];
    args.extend(extra.split_whitespace());
    let bug_arg = bug.map(|b| format!("bug={b}"));
    if let Some(b) = &bug_arg {
        args.push(b);
    }
    let out = run_script("scripts/explore.sh", &args, Duration::from_secs(600));
    (out.stdout, out.code)
}

/// A correct run with `weak=on` passes, and its stores did wait in the buffers and its loads
/// were forwarded past them: the model was exercised, not merely switched on.
#[test]
fn a_weak_run_buffers_stores_and_passes() {
    let run = Boot::new("weak-on-correct")
        .opts("--deterministic")
        .args("workload=stress seconds=2 weak=on seed=7 timeout=30")
        .expect_exit(0);
    run.line(
        "the weak-memory line",
        r"stress: weak memory: [1-9][0-9]* stores buffered",
    )
    .check("stores buffered", |s| {
        s.counter("weak_stores_buffered") > 1000
    })
    .check("loads passed older stores", |s| {
        s.counter("weak_loads_reordered") > 0
    })
    .check("no protocol detector fired", |s| {
        s.counter("gate_breach_detected") == 0
            && s.counter("stale_pin_detected") == 0
            && s.counter("double_free_detected") == 0
            && s.counter("flush_gap_detected") == 0
    })
    .check("walks pinned pages", |s| s.counter("walker_pins") > 0);
}

/// Without `weak=on` nothing is buffered: the counters stay 0 (the model costs nothing when
/// off, and the positive run above is not counting something else).
#[test]
fn without_weak_nothing_is_buffered() {
    Boot::new("weak-off-correct")
        .opts("--deterministic")
        .args("workload=stress seconds=1 seed=7 timeout=30")
        .expect_exit(0)
        .check("no store buffered", |s| {
            s.counter("weak_stores_buffered") == 0
        })
        .check("no load reordered", |s| {
            s.counter("weak_loads_reordered") == 0
        });
}

/// Each control is caught by explore within 5 seeds, with a detector (exit 1), never a hang.
#[test]
#[ignore = "long: 12 explore campaigns"]
fn explore_catches_every_control_within_five_seeds() {
    let logs = repo_root().join("target/boot-logs");
    std::fs::create_dir_all(&logs).expect("target/boot-logs");
    let mut missed = Vec::new();
    for (bug, extra) in CONTROLS {
        let (out, code) = explore5(201, extra, Some(bug));
        let caught = code == Some(1)
            && out.contains("reproduce: ")
            && out.lines().any(|l| l.contains("fail (check)"));
        if !caught {
            missed.push(format!("{bug} [{extra}] (exit {code:?}):\n{out}"));
        }
    }
    assert!(
        missed.is_empty(),
        "explore missed (or did not end with a detection):\n{}",
        missed.join("\n")
    );
}

/// The barrier bugs are invisible without the emulated store buffers: 5 seeds each pass.
/// That is the point of `weak=on`; if one of these starts failing, the bug it plants is no
/// longer a pure barrier bug (or QEMU's order changed) and its control must be revisited.
#[test]
#[ignore = "long: 4 explore campaigns"]
fn barrier_bugs_pass_without_weak() {
    for bug in BARRIER_BUGS {
        let (out, code) = explore5(201, "", Some(bug));
        assert_eq!(code, Some(0), "bug={bug} without weak=on:\n{out}");
    }
}

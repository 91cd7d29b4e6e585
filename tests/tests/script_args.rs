//! The scripts' own arguments: an unknown option, a missing value, a number that is not one or is
//! out of range, a file that is not there. Each is one `error: SCRIPT: ...` line and exit 2 (the
//! contract for bad arguments), before anything is built or booted.
//!
//! The scripts run with stand-ins for cargo, QEMU and gdb first on PATH. A stand-in records its
//! call and fails, so a case that got past the checks to a build or a boot fails here even if the
//! script then exits 2 for another reason (`kernel build failed`), and no case boots. QEMU's
//! `-cpu help` goes to the real QEMU: `--cpu` is checked against its list.

use broadside_tests::{Output, repo_root, run_timed};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// (script, its arguments, what its error line must say after `error: SCRIPT: `).
type Case = (&'static str, &'static [&'static str], &'static str);

#[rustfmt::skip]
const CASES: &[Case] = &[
    // run.sh: the options every booting script shares with it.
    ("run.sh", &["--smp", "513", "--", "workload=demo"], "--smp 513: a CPU count from 1 to 512"),
    ("run.sh", &["--smp", "0"], "--smp 0: a CPU count from 1 to 512"),
    ("run.sh", &["--smp", "four"], "--smp four: a CPU count"),
    ("run.sh", &["--smp", "-1"], "--smp -1: a CPU count"),
    ("run.sh", &["--smp"], "--smp needs a value"),
    ("run.sh", &["--smp", "--el2"], "--smp needs a value"),
    ("run.sh", &["--smp", "--", "workload=demo"], "--smp needs a value"),
    ("run.sh", &["--mem", "0"], "--mem 0: a RAM size"),
    ("run.sh", &["--mem", "1X"], "--mem 1X: a RAM size"),
    ("run.sh", &["--mem"], "--mem needs a value"),
    ("run.sh", &["--timeout", "0"], "--timeout 0: seconds, 1 or more"),
    ("run.sh", &["--timeout", "10s"], "--timeout 10s: seconds"),
    ("run.sh", &["--kernel", "/nonexistent/elf"], "--kernel /nonexistent/elf: no such file"),
    ("run.sh", &["--cpu", "cortex-a27"], "--cpu cortex-a27: not a CPU model"),
    ("run.sh", &["--cpu"], "--cpu needs a value"),
    ("run.sh", &["--deterministic=x", "--", "workload=demo"], "--deterministic=x: an icount shift from 0 to 10"),
    ("run.sh", &["--deterministic=11"], "from 0 to 10"),
    ("run.sh", &["--bogus"], "unknown option --bogus"),
    ("run.sh", &["workload=demo"], "unknown option workload=demo"),
    // gdb.sh
    ("gdb.sh", &["--smp", "513"], "--smp 513: a CPU count from 1 to 512"),
    ("gdb.sh", &["--mem", "x"], "--mem x: a RAM size"),
    ("gdb.sh", &["--timeout", "0"], "--timeout 0: seconds"),
    ("gdb.sh", &["--cpu", "nope"], "--cpu nope: not a CPU model"),
    ("gdb.sh", &["--batch"], "--batch needs a value"),
    ("gdb.sh", &["--batch", "/nonexistent"], "--batch /nonexistent: no such file"),
    ("gdb.sh", &["--deterministic=99"], "from 0 to 10"),
    ("gdb.sh", &["--bogus"], "unknown option --bogus"),
    // replay.sh
    ("replay.sh", &[], "give the kernel arguments"),
    ("replay.sh", &["--rr", "--", "workload=stress"], "--rr needs --smp 1"),
    ("replay.sh", &["--batch", "/nonexistent", "--", "workload=stress"], "no such file"),
    ("replay.sh", &["--batch"], "--batch needs a value"),
    ("replay.sh", &["--at", "x", "--", "workload=stress"], "--at x: an event number"),
    ("replay.sh", &["--at", "0", "--", "workload=stress"], "--at 0: an event number, 1 or more"),
    ("replay.sh", &["--at"], "--at needs a value"),
    ("replay.sh", &["--back", "0", "--", "workload=stress"], "--back 0: a count of events"),
    ("replay.sh", &["--at", "5", "--back", "3", "--", "workload=stress"], "exclude each other"),
    ("replay.sh", &["--smp", "513", "--", "workload=stress"], "--smp 513: a CPU count"),
    ("replay.sh", &["--mem", "0", "--", "workload=stress"], "--mem 0: a RAM size"),
    ("replay.sh", &["--timeout", "x", "--", "workload=stress"], "--timeout x: seconds"),
    ("replay.sh", &["--cpu", "nope", "--", "workload=stress"], "--cpu nope: not a CPU model"),
    ("replay.sh", &["--deterministic=11", "--", "workload=stress"], "from 0 to 10"),
    ("replay.sh", &["--bogus"], "unknown option --bogus"),
    // explore.sh: its own numbers, and run.sh's options checked before any seed runs.
    ("explore.sh", &["--seeds", "0", "--", "workload=stress"], "--seeds 0: a count of seeds"),
    ("explore.sh", &["--seeds", "x", "--", "workload=stress"], "--seeds x"),
    ("explore.sh", &["--seeds"], "--seeds needs a value"),
    ("explore.sh", &["--first-seed", "x", "--", "workload=stress"], "--first-seed x: a decimal seed"),
    ("explore.sh", &["--first-seed", "1234567890123456789", "--", "workload=stress"], "at most 18 digits"),
    ("explore.sh", &["--jobs", "0", "--", "workload=stress"], "--jobs 0: a count of runs at once"),
    ("explore.sh", &["--logs"], "--logs needs a value"),
    ("explore.sh", &["--", "workload=stress", "seed=3"], "seed=3"),
    ("explore.sh", &["--bogus"], "unknown option --bogus"),
    ("explore.sh", &[], "give the kernel arguments"),
    ("explore.sh", &["--deterministic=11", "--", "workload=stress"], "from 0 to 10"),
    ("explore.sh", &["--smp", "513", "--", "workload=stress"], "--smp 513: a CPU count"),
    ("explore.sh", &["--mem", "0", "--", "workload=stress"], "--mem 0: a RAM size"),
    ("explore.sh", &["--timeout", "0", "--", "workload=stress"], "--timeout 0: seconds"),
    ("explore.sh", &["--cpu", "nope", "--", "workload=stress"], "--cpu nope: not a CPU model"),
    // bench.sh
    ("bench.sh", &["--cpus", "1 513"], "--cpus 513: a CPU count from 1 to 512"),
    ("bench.sh", &["--cpus", "x"], "--cpus x: a CPU count"),
    ("bench.sh", &["--cpus"], "--cpus needs a value"),
    ("bench.sh", &["--tables", "16 0"], "--tables 0: a count of level-2 tables"),
    ("bench.sh", &["--children", "x"], "--children x: a count of children"),
    ("bench.sh", &["--flush", "--scale"], "--scale and --flush are two benches: give one"),
    ("bench.sh", &["--flush", "--tables", "16"], "not --scale's or --flush's"),
    ("bench.sh", &["--scale", "--tables", "16"], "not --scale's"),
    ("bench.sh", &["--deterministic"], "--deterministic goes with --scale"),
    ("bench.sh", &["--scale", "--deterministic=11"], "from 0 to 10"),
    ("bench.sh", &["--out"], "--out needs a value"),
    ("bench.sh", &["--replot"], "--replot needs a value"),
    ("bench.sh", &["--bogus"], "unknown option --bogus"),
    // stress.sh
    ("stress.sh", &["--results"], "--results needs a value"),
    ("stress.sh", &["--bogus"], "unknown option --bogus"),
    ("stress.sh", &["--quick", "--long"], "--quick and --long exclude each other"),
    // gdb-check.sh and test.sh take options too.
    ("gdb-check.sh", &["--bogus"], "unknown option --bogus"),
    ("gdb-check.sh", &["--keep", "--bogus"], "unknown option --bogus"),
    ("test.sh", &["--bogus"], "unknown option --bogus"),
    ("test.sh", &["--quick", "--bogus"], "unknown option --bogus"),
];

/// A directory of stand-ins for the commands that build or boot, each appending its call to the
/// file `$BS_STAND_IN_LOG` and failing.
fn stand_ins() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = repo_root().join("target/script-args");
        std::fs::create_dir_all(&dir).expect("create the stand-ins' directory");
        let real_qemu = on_path("qemu-system-aarch64").unwrap_or_default();
        for name in ["cargo", "qemu-system-aarch64", "qemu-img", "gdb-multiarch"] {
            // Only QEMU's model list goes through: it builds nothing and boots nothing.
            let pass = if name == "qemu-system-aarch64" && !real_qemu.as_os_str().is_empty() {
                format!(
                    "case \" $* \" in *' help '*) exec '{}' \"$@\" ;; esac\n",
                    real_qemu.display()
                )
            } else {
                String::new()
            };
            let body =
                format!("#!/bin/sh\n{pass}echo \"{name} $*\" >>\"$BS_STAND_IN_LOG\"\nexit 97\n");
            // Written aside and renamed over: another test process may be running the old one.
            let new = dir.join(format!(".{name}.{}", std::process::id()));
            std::fs::write(&new, body).expect("write a stand-in");
            let mut perms = std::fs::metadata(&new).expect("stand-in").permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            std::fs::set_permissions(&new, perms).expect("make a stand-in executable");
            std::fs::rename(&new, dir.join(name)).expect("put a stand-in in place");
        }
        dir
    })
}

/// The first `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs scripts/SCRIPT with `args`, the stand-ins first on PATH; returns what it did and the
/// stand-ins' calls it made.
fn run(script: &str, args: &[&str]) -> (Output, String) {
    // A log per run: the tests of this file run at once.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let dir = stand_ins();
    let log = dir.join(format!(
        "calls-{}-{}.log",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&log);
    let path = std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("a PATH");
    let mut cmd = Command::new(repo_root().join("scripts").join(script));
    cmd.args(args)
        .env("PATH", path)
        .env("BS_STAND_IN_LOG", &log);
    let out = run_timed(script, cmd, Duration::from_secs(60));
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    (out, calls)
}

#[test]
fn bad_arguments_exit_2_with_our_message_before_any_build_or_boot() {
    let mut bad = Vec::new();
    for &(script, args, what) in CASES {
        let (out, calls) = run(script, args);
        let want = format!("error: {script}: ");
        let named = out
            .stderr
            .lines()
            .any(|l| l.starts_with(&want) && l.contains(what));
        if out.code != Some(2) || !named || !calls.is_empty() {
            bad.push(format!(
                "scripts/{script} {args:?}: exit {:?}, want 2 and a line `{want}...{what}...`{}\n  stderr: {}",
                out.code,
                if calls.is_empty() {
                    String::new()
                } else {
                    format!("; it got to a build or boot: {}", calls.trim_end())
                },
                out.stderr.trim_end().replace('\n', "\n          "),
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} cases:\n{}",
        bad.len(),
        CASES.len(),
        bad.join("\n")
    );
}

/// The control: good arguments get past the checks to the build, where the cargo stand-in stops
/// them. Without it, the cases above could pass because the stand-ins were never reached.
#[test]
fn good_arguments_reach_the_build() {
    for (script, args) in [
        (
            "run.sh",
            &[
                "--smp",
                "512",
                "--mem",
                "1.5G",
                "--cpu",
                "cortex-a72",
                "--timeout",
                "5",
                "--",
                "workload=demo",
            ][..],
        ),
        (
            "explore.sh",
            &["--seeds", "1", "--smp", "1", "--", "workload=demo"][..],
        ),
    ] {
        let (out, calls) = run(script, args);
        assert!(
            calls.starts_with("cargo build --release -p broadside"),
            "scripts/{script} {args:?} did not reach the build (calls: {calls:?}):\n{}",
            out.stderr
        );
    }
}

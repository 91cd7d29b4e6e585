//! The GDB helpers: their pure decoders' host tests (Python's unittest, no gdb or QEMU), a
//! backtrace at `kernel_main` through `scripts/gdb.sh --batch`, and `scripts/gdb-check.sh`,
//! which checks every helper against live kernels.

use broadside_tests::{repo_root, run_script, run_timed};
use std::process::Command;
use std::time::Duration;

/// The decoders of scripts/gdb/broadside/{pte,sysregs,text,kernel}.py: descriptor decoding,
/// index math, output formats, and their agreement with the kernel's Rust sources.
#[test]
fn gdb_helpers_host_unit_tests() {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "unittest",
        "discover",
        "-s",
        "scripts/gdb/tests",
        "-t",
        "scripts/gdb",
    ]);
    let out = run_timed("gdb helpers unittest", cmd, Duration::from_secs(300));
    assert_eq!(
        out.code,
        Some(0),
        "python3 -m unittest discover -s scripts/gdb/tests -t scripts/gdb failed:\n{}{}",
        out.stdout,
        out.stderr
    );
}

/// `break kernel_main`, `continue`, `bt`: the backtrace shows kernel_main.
#[test]
#[ignore = "long: a gdb session"]
fn gdb_backtrace_at_kernel_main() {
    let dir = repo_root().join("target/boot-logs");
    std::fs::create_dir_all(&dir).expect("create target/boot-logs");
    let batch = dir.join("bt.gdb");
    std::fs::write(&batch, "break kernel_main\ncontinue\nbt\n").expect("write bt.gdb");
    let out = run_script(
        "scripts/gdb.sh",
        &["--batch", batch.to_str().expect("a UTF-8 path")],
        Duration::from_secs(180),
    );
    let re = regex::Regex::new(r"(?m)^#[0-9]+ .*kernel_main").expect("regex");
    assert!(
        !out.timed_out && re.is_match(&out.stdout),
        "no frame of kernel_main in the backtrace (exit {:?}, timed out: {}):\n{}\n{}",
        out.code,
        out.timed_out,
        out.stdout,
        out.stderr
    );
}

/// Every helper against a live selftest and a live stress run (scripts/gdb-check.sh says how).
#[test]
#[ignore = "long: two gdb sessions"]
fn gdb_check() {
    let out = run_script("scripts/gdb-check.sh", &[], Duration::from_secs(300));
    assert_eq!(
        out.code,
        Some(0),
        "scripts/gdb-check.sh failed (timed out: {}):\n{}\n{}",
        out.timed_out,
        out.stdout,
        out.stderr
    );
}

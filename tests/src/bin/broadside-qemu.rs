//! `cargo run --release -- KERNEL_ARGS`: boots the kernel on QEMU through `scripts/run.sh`,
//! which builds it first. `BS_RUN_OPTS` passes run.sh's own options (`BS_RUN_OPTS="--smp 8
//! --el2"`); everything after `--` is the kernel's arguments.
//!
//! Why a host binary: the kernel's target is forced (per-package-target), and cargo then ignores
//! every `runner` setting for it, so `cargo run` needs a binary of its own to run.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let run_sh = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/run.sh");
    let opts = std::env::var("BS_RUN_OPTS").unwrap_or_default();
    let mut cmd = Command::new(&run_sh);
    cmd.args(opts.split_whitespace())
        .arg("--")
        .args(std::env::args_os().skip(1));
    // `exec` returns only on failure; on success run.sh's exit status is the kernel's.
    let err = cmd.exec();
    eprintln!("broadside-qemu: cannot run {}: {err}", run_sh.display());
    ExitCode::from(2)
}

//! The boot-test harness: build the kernel once, boot it on QEMU under a host timeout, and judge
//! the run by its exit code, its console and its typed [`Summary`].
//!
//! A test describes one boot with [`Boot`] (run.sh's options and the kernel's arguments), runs it
//! with [`Boot::expect_exit`] (which asserts the exit code and that the last line is the summary)
//! and then asserts on the [`Run`]: [`Run::check`] with a predicate on the summary,
//! [`Run::line`] with a regular expression on the console. Every failed assertion prints the
//! boot's command, the end of its console and its summary, and the whole log is kept under
//! `target/boot-logs/`.
//!
//! Boots go through `scripts/run.sh --kernel ELF`, the same command users run, so the QEMU
//! command line has one definition. At most [`slots`] boots run at once in a test binary (cargo
//! runs the binaries one after another): each boot is several vCPU threads, and the
//! timing-sensitive checks (the watchdog's stall detector, the detectors of races) must not be
//! starved. Those take the whole machine with [`Boot::exclusive`].

use regex::Regex;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use broadside_summary::{ParseError, RunResult, Summary};

pub mod stress;

/// The repository's root (the workspace this crate is a member of).
pub fn repo_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ has a parent")
            .to_path_buf()
    })
}

/// The kernel ELF, built once per test process with `cargo build --release -p broadside` (the
/// build every script uses, so a later `scripts/run.sh` does not rebuild). Panics with cargo's
/// output if the build fails, in every test that needs the kernel.
pub fn kernel() -> &'static Path {
    static KERNEL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = KERNEL.get_or_init(|| {
        let root = repo_root();
        // The `cargo` of PATH (rustup's proxy) reads rust-toolchain.toml, as the scripts do.
        let out = Command::new("cargo")
            .args(["build", "--release", "-p", "broadside"])
            .current_dir(root)
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo build --release -p broadside failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(root.join("target/aarch64-unknown-none-softfloat/release/broadside"))
    });
    match built {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// How many boots may run at once in this test process: `BS_TEST_BOOTS`, or else the host's
/// CPU count.
pub fn slots() -> usize {
    static SLOTS: OnceLock<usize> = OnceLock::new();
    *SLOTS.get_or_init(|| {
        std::env::var("BS_TEST_BOOTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    })
}

/// A counting semaphore over the machine's boot slots. An exclusive boot takes every slot; while
/// one waits, no new shared boot starts, so it is not starved by a stream of small ones.
struct Machine {
    state: Mutex<MachineState>,
    changed: Condvar,
}

struct MachineState {
    free: usize,
    exclusive_waiting: usize,
}

/// Slots held by a running boot, given back on drop (also when the test panics).
struct Held(usize);

fn machine() -> &'static Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    MACHINE.get_or_init(|| Machine {
        state: Mutex::new(MachineState {
            free: slots(),
            exclusive_waiting: 0,
        }),
        changed: Condvar::new(),
    })
}

impl Machine {
    fn acquire(&self, exclusive: bool) -> Held {
        // A panicking test cannot leave the counts inconsistent (they change only under the
        // lock, without panicking), so a poisoned lock is still good.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if exclusive {
            st.exclusive_waiting += 1;
            while st.free < slots() {
                st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.exclusive_waiting -= 1;
            st.free = 0;
            Held(slots())
        } else {
            while st.free == 0 || st.exclusive_waiting > 0 {
                st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.free -= 1;
            Held(1)
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let m = machine();
        m.state.lock().unwrap_or_else(|e| e.into_inner()).free += self.0;
        m.changed.notify_all();
    }
}

/// One boot to run: `scripts/run.sh --kernel ELF [options] -- [kernel arguments]`.
#[derive(Clone, Debug)]
pub struct Boot {
    name: String,
    opts: Vec<String>,
    args: Vec<String>,
    exclusive: bool,
    host_timeout: Duration,
}

impl Boot {
    /// A boot named `name` (used in messages and for its log file) with run.sh's defaults
    /// (4 CPUs, 1 GiB, `-cpu max`, EL1) and no kernel arguments.
    pub fn new(name: &str) -> Boot {
        Boot {
            name: name.to_owned(),
            opts: Vec::new(),
            args: Vec::new(),
            exclusive: false,
            // run.sh's own --timeout (or its default, derived from the arguments) ends a hung
            // QEMU first; this only ends a run.sh that itself hangs.
            host_timeout: Duration::from_secs(900),
        }
    }

    /// run.sh options, whitespace-separated (`"--smp 8 --el2"`).
    pub fn opts(mut self, opts: &str) -> Boot {
        self.opts.extend(opts.split_whitespace().map(str::to_owned));
        self
    }

    /// `--smp N`.
    pub fn smp(self, n: u32) -> Boot {
        self.opts(&format!("--smp {n}"))
    }

    /// `--mem SIZE`.
    pub fn mem(self, size: &str) -> Boot {
        self.opts(&format!("--mem {size}"))
    }

    /// `--cpu MODEL`.
    pub fn cpu(self, model: &str) -> Boot {
        self.opts(&format!("--cpu {model}"))
    }

    /// Kernel arguments, whitespace-separated (`"workload=stress seconds=4"`).
    pub fn args(mut self, args: &str) -> Boot {
        self.args.extend(args.split_whitespace().map(str::to_owned));
        self
    }

    /// Runs alone on the machine: for checks of timing (the stall detector) or of races that
    /// must happen within the run (the negative controls of the detectors).
    pub fn exclusive(mut self) -> Boot {
        self.exclusive = true;
        self
    }

    /// How long the harness lets run.sh take before it kills it (default 900 s); for a boot whose
    /// own `--timeout` is longer.
    pub fn host_timeout(mut self, timeout: Duration) -> Boot {
        self.host_timeout = timeout;
        self
    }

    /// The kernel arguments, space-separated.
    pub fn args_line(&self) -> String {
        self.args.join(" ")
    }

    /// The command line, as a user would type it.
    pub fn command_line(&self) -> String {
        let mut s = String::from("scripts/run.sh");
        for o in &self.opts {
            s.push(' ');
            s.push_str(o);
        }
        if !self.args.is_empty() {
            s.push_str(" --");
            for a in &self.args {
                s.push(' ');
                s.push_str(a);
            }
        }
        s
    }

    /// Boots and returns what happened, whatever it was.
    pub fn run(self) -> Run {
        let elf = kernel();
        let held = machine().acquire(self.exclusive);
        let mut cmd = Command::new(repo_root().join("scripts/run.sh"));
        cmd.arg("--kernel")
            .arg(elf)
            .args(&self.opts)
            .arg("--")
            .args(&self.args);
        let out = run_timed(&self.name, cmd, self.host_timeout);
        drop(held);
        let (stdout, stderr) = (out.stdout, out.stderr);
        let (status, timed_out, elapsed) = (out.code, out.timed_out, out.elapsed);
        let summary = Summary::from_log(&stdout);
        let run = Run {
            exit_code: status,
            timed_out,
            elapsed,
            summary,
            stdout,
            stderr,
            boot: self,
        };
        run.save_log();
        run
    }

    /// Boots, and asserts that it exited with `code` and that its last line is the summary.
    #[track_caller]
    pub fn expect_exit(self, code: i32) -> Run {
        let run = self.run();
        if run.exit_code != Some(code) {
            run.fail(&format!("exit code {:?}, expected {code}", run.exit_code));
        }
        if let Err(e) = &run.summary {
            run.fail(&e.to_string());
        }
        run
    }
}

/// A command's outcome under [`run_timed`].
#[derive(Debug)]
pub struct Output {
    /// Its exit status; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Whether the timeout ended it.
    pub timed_out: bool,
    /// Host wall time from start to exit.
    pub elapsed: Duration,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `cmd` from the repository's root with no input, capturing its output; after `timeout`
/// kills it with everything it started. `name` is for messages.
pub fn run_timed(name: &str, mut cmd: Command, timeout: Duration) -> Output {
    let started = Instant::now();
    cmd.current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A group of its own, so a timeout ends QEMU (and gdb) too, not only the script.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > timeout {
            timed_out = true;
            kill_group(child.id());
            break child.wait().expect("wait for the child");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        code: status.code(),
        timed_out,
        elapsed: started.elapsed(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs one of the repository's scripts (`scripts/gdb-check.sh`, ...) alone on the machine, after
/// the kernel is built, under `timeout`. For checks that drive QEMU through a script of their own.
pub fn run_script(script: &str, args: &[&str], timeout: Duration) -> Output {
    kernel();
    let _held = machine().acquire(true);
    let mut cmd = Command::new(repo_root().join(script));
    cmd.args(args);
    run_timed(script, cmd, timeout)
}

/// Reads a child's pipe to its end on a thread of its own (both pipes must be drained at once,
/// or QEMU blocks on a full one).
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Sends SIGKILL to the process group `pgid` (run.sh, timeout and QEMU).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
}

/// What a boot did: its exit status, its console and its summary.
#[derive(Debug)]
pub struct Run {
    /// The boot that ran.
    pub boot: Boot,
    /// run.sh's exit status: the kernel's exit code (4 also when run.sh's timeout killed QEMU);
    /// `None` if it was killed by a signal.
    pub exit_code: Option<i32>,
    /// Whether the harness had to kill run.sh (its own timeout did not end the run).
    pub timed_out: bool,
    /// Host wall time from start to exit.
    pub elapsed: Duration,
    /// The parsed summary line (the last line of the console).
    pub summary: Result<Summary, ParseError>,
    /// The kernel's console (QEMU's standard output).
    pub stdout: String,
    /// run.sh's and QEMU's diagnostics.
    pub stderr: String,
}

impl Run {
    /// The summary, if the console ended with one.
    pub fn parsed_summary(&self) -> Option<&Summary> {
        self.summary.as_ref().ok()
    }

    /// The summary; fails the test if there is none.
    #[track_caller]
    pub fn summary(&self) -> &Summary {
        match &self.summary {
            Ok(s) => s,
            Err(e) => self.fail(&e.to_string()),
        }
    }

    /// Asserts `ok(summary)`; `what` says what it means.
    #[track_caller]
    pub fn check(&self, what: &str, ok: impl FnOnce(&Summary) -> bool) -> &Run {
        if !ok(self.summary()) {
            self.fail(&format!("check failed: {what}"));
        }
        self
    }

    /// Asserts that some line of the console (standard output or error) matches `regex`.
    #[track_caller]
    pub fn line(&self, what: &str, regex: &str) -> &Run {
        let re = Regex::new(regex).unwrap_or_else(|e| panic!("bad regex {regex:?}: {e}"));
        let found = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .any(|l| re.is_match(l));
        if !found {
            self.fail(&format!("{what}: no line matches /{regex}/"));
        }
        self
    }

    /// Fails the test with `why`, the command, the end of the console and the summary.
    #[track_caller]
    pub fn fail(&self, why: &str) -> ! {
        let tail: Vec<&str> = self.stdout.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{name}: {why}\n  command: {cmd}\n  exit: {code:?}{killed} after {secs:.1}s\n  log: {log}\n--- console (last 30 lines) ---\n{tail}\n--- stderr ---\n{err}",
            name = self.boot.name,
            cmd = self.boot.command_line(),
            code = self.exit_code,
            killed = if self.timed_out {
                " (killed by the harness's timeout)"
            } else {
                ""
            },
            secs = self.elapsed.as_secs_f64(),
            log = self.log_path().display(),
            tail = tail.join("\n"),
            err = self.stderr.trim_end(),
        )
    }

    /// Where the whole log of this boot is kept.
    pub fn log_path(&self) -> PathBuf {
        let file: String = self
            .boot
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        repo_root()
            .join("target/boot-logs")
            .join(format!("{file}.log"))
    }

    fn save_log(&self) {
        let path = self.log_path();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(
            &path,
            format!(
                "$ {}\n{}{}exit: {:?}, {:.1}s\n",
                self.boot.command_line(),
                self.stdout,
                self.stderr,
                self.exit_code,
                self.elapsed.as_secs_f64()
            ),
        );
    }
}

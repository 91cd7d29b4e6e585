//! The stress matrix, defined once. Its rows are CPU counts, machines, flush and table-free modes,
//! sharing, and the negative controls that must fail with their detector fired. Two commands run
//! it, both through `tests/tests/stress_matrix.rs`:
//!
//! - `cargo test -p broadside-tests --test stress_matrix -- --ignored` (and so `scripts/test.sh`)
//!   runs the quick matrix;
//! - `scripts/stress.sh [--quick | --long]` runs that same test with `BS_STRESS_MATRIX` set to
//!   the matrix asked for, and `BS_STRESS_RESULTS` to its JSON-lines file.
//!
//! Every positive run must also have probed through the MMU (`touches > 0`), been audited
//! (`flush_obligations > 0`) and detected nothing. The controls of the QEMU-visible detectors
//! run with `audit=off`, so they show those detectors alone; the audit's own controls are the
//! `bug-*-audit` rows. Rows run at once up to the harness's boot slots ([`crate::slots`]); the
//! controls whose race must happen within the run take the machine alone.

use crate::{Boot, Run, Summary, slots};
use broadside_summary::json::JsonObject;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Which matrix: `scripts/stress.sh --quick`, no option, or `--long`. Each contains the one
/// before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Matrix {
    /// The CI matrix: every mode and control once (a few minutes).
    Quick,
    /// More seeds of the race controls, 16 CPUs, longer runs.
    Standard,
    /// The standard matrix and a 5-minute stress at 8 CPUs.
    Long,
}

impl Matrix {
    /// `BS_STRESS_MATRIX` (`quick`, `standard`, `long`); quick when unset.
    pub fn from_env() -> Result<Matrix, String> {
        match std::env::var("BS_STRESS_MATRIX").as_deref() {
            Err(_) | Ok("quick") => Ok(Matrix::Quick),
            Ok("standard") => Ok(Matrix::Standard),
            Ok("long") => Ok(Matrix::Long),
            Ok(other) => Err(format!(
                "BS_STRESS_MATRIX={other}: one of quick, standard, long"
            )),
        }
    }
}

/// A predicate on a run's summary and its source text, which is what a failure reports.
#[derive(Clone, Copy)]
pub struct Check {
    /// The predicate's expression, as written.
    pub text: &'static str,
    /// The predicate.
    pub ok: fn(&Summary) -> bool,
}

/// `check!(|s| EXPR)`: a [`Check`] whose text is EXPR's source.
macro_rules! check {
    (|$s:ident| $e:expr) => {
        Check {
            text: stringify!($e),
            ok: |$s: &Summary| $e,
        }
    };
}

/// What a row must end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exit 0, nothing detected, the touchers probed and the audit looked, and the row's check.
    Pass,
    /// Exit 1 with the row's check (its detector) true, on one of the first `seeds` seeds (each
    /// a fresh boot with `seed=N` added; 1: the arguments as they are).
    Caught {
        /// How many seeds may be tried.
        seeds: u64,
    },
}

/// One row of the matrix.
#[derive(Clone)]
pub struct Row {
    /// Its name (in the table, the results and the boot log's file name).
    pub name: String,
    /// run.sh's options.
    pub opts: &'static str,
    /// The kernel's arguments.
    pub args: String,
    /// How it must end.
    pub expect: Expect,
    /// What its summary must show besides.
    pub check: Check,
    /// Alone on the machine: a race the run must see happen.
    pub exclusive: bool,
    /// The harness's limit, above run.sh's own `--timeout` when the row sets one.
    pub host_timeout: Option<Duration>,
}

fn c(s: &Summary, name: &str) -> u64 {
    s.counter(name)
}

/// Nothing detected, the touchers probed, and the flush audit looked: what every positive row
/// must show besides its own check.
const OK_RUN: Check = check!(|s| c(s, "stale_tlb_detected") == 0
    && c(s, "uaf_detected") == 0
    && c(s, "leaf_only_flush_detected") == 0
    && c(s, "flush_gap_detected") == 0
    && c(s, "flush_obligations") > 0
    && c(s, "touches") > 0);

fn pass(name: &str, opts: &'static str, args: &str, check: Check) -> Row {
    Row {
        name: name.to_owned(),
        opts,
        args: args.to_owned(),
        expect: Expect::Pass,
        check,
        exclusive: false,
        host_timeout: None,
    }
}

/// A control of a QEMU-visible detector: its race must happen within the run, so it runs alone.
fn caught(name: &str, opts: &'static str, args: &str, check: Check) -> Row {
    caught_within(name, opts, args, 1, check)
}

/// A control whose race (a walker inside a table at the moment the planted bug frees it or hands
/// it over) must happen by chance: caught on one of the first `seeds` seeds. Measured alone,
/// every seed of 1..5 catches each of these 9–125 times per 10 s run; a miss on one seed (seen
/// once on a loaded host) is not the detector failing. The deterministic versions are the
/// selftest's scripted walks (tests/teardown_controls.rs), which catch each bug on every boot.
fn caught_within(name: &str, opts: &'static str, args: &str, seeds: u64, check: Check) -> Row {
    Row {
        name: name.to_owned(),
        opts,
        args: args.to_owned(),
        expect: Expect::Caught { seeds },
        check,
        exclusive: true,
        host_timeout: None,
    }
}

/// The rows of `matrix`, in the order of the table.
pub fn rows(matrix: Matrix) -> Vec<Row> {
    let stale = check!(|s| c(s, "stale_tlb_detected") > 0);
    let uaf = check!(|s| c(s, "uaf_detected") > 0);
    let mut rows = vec![
        pass(
            "stress-4cpu-10s",
            "--smp 4",
            "workload=stress seconds=10",
            check!(|s| c(s, "ipis_sent") == 0
                && c(s, "tlbi_ops") > 0
                && c(s, "tlbi_range_ops") > 0
                && c(s, "pages_unmapped") > 0
                && c(s, "tables_freed") > 0
                && c(s, "walker_walks") > 0
                && c(s, "grace_periods") > 0),
        ),
        pass(
            "stress-2cpu",
            "--smp 2",
            "workload=stress seconds=4",
            check!(|s| c(s, "ipis_sent") == 0
                && c(s, "walker_walks") > 0
                && c(s, "tables_freed") > 0
                && c(s, "grace_periods") > 0),
        ),
        // More CPUs than roles: the role-less CPU goes back to the idle loop, and the run ends.
        // (It used to idle inside the stress loop, where, with tickless idle, nothing woke it to
        // see the stop: the run hung until the watchdog named it.)
        pass(
            "stress-4cpu-roleless",
            "--smp 4",
            "workload=stress seconds=1 mutators=1 touchers=1 walkers=1",
            check!(|s| c(s, "walker_walks") > 0 && c(s, "mutator_ops") > 0),
        ),
        // Every flush is local on one CPU. (dsb_ish counts activation barriers too, so it is not
        // 0 here; that a local flush issues no DSB ISH is checked exactly by the selftest at
        // --smp 1.)
        pass(
            "stress-1cpu-local-flushes",
            "--smp 1",
            "workload=stress seconds=3",
            check!(|s| c(s, "walker_walks") > 0
                && c(s, "tlbi_local_ops") == c(s, "tlbi_ops")
                && c(s, "tlbi_ops") > 0),
        ),
        pass(
            "stress-8cpu",
            "--smp 8",
            "workload=stress seconds=4",
            check!(|s| c(s, "ipis_sent") == 0
                && c(s, "walker_walks") > 0
                && c(s, "grace_periods") > 0),
        ),
        pass(
            "stress-8cpu-3-mutators",
            "--smp 8",
            "workload=stress seconds=4 mutators=3 touchers=3 walkers=2 sharing=on",
            check!(|s| c(s, "tables_unshared") > 0),
        ),
        pass(
            "stress-cortex-a72",
            "--smp 4 --cpu cortex-a72",
            "workload=stress seconds=4",
            check!(|s| c(s, "tlbi_range_ops") == 0 && c(s, "tlbi_asid_ops") > 0 && !s.tlbi_range),
        ),
        // Erratum 4118414 from MIDR: exactly one repeat per broadcast completion (every DSB ISH
        // beyond the activations' is a completion or its repeat).
        pass(
            "stress-neoverse-n1",
            "--smp 4 --cpu neoverse-n1",
            "workload=stress seconds=4",
            check!(|s| !s.tlbi_range
                && s.errata.as_deref() == Some(&["repeat-tlbi".to_owned()][..])
                && c(s, "erratum_tlbi_repeats") > 0
                && c(s, "dsb_ish") - c(s, "ttbr0_loads_checked")
                    == 2 * c(s, "erratum_tlbi_repeats")),
        ),
        pass(
            "stress-el2",
            "--smp 4 --el2",
            "workload=stress seconds=3",
            check!(|s| s.boot_el == 2),
        ),
        pass(
            "flush-ipi",
            "--smp 4",
            "workload=stress seconds=4 flush=ipi",
            check!(|s| c(s, "ipis_sent") > 0 && c(s, "tlbi_local_ops") > 0),
        ),
        // Erratum 4193714 forced: its IPIs, with sharing's syncs beside them.
        pass(
            "errata-dvmsync-ipi",
            "--smp 4",
            "workload=stress seconds=4 sharing=on errata=dvmsync-ipi",
            check!(|s| c(s, "erratum_dvmsync_ipis") > 0
                && c(s, "ipis_sent") >= c(s, "erratum_dvmsync_ipis")
                && c(s, "tables_unshared") > 0),
        ),
        pass(
            "asid-bits-3",
            "--smp 4",
            "workload=stress seconds=4 asid_bits=3",
            check!(|s| c(s, "asid_rollovers") > 0),
        ),
        pass(
            "tablefree-sync-each",
            "--smp 4",
            "workload=stress seconds=4 tablefree=sync-each",
            check!(|s| c(s, "table_syncs") == c(s, "tables_freed")
                && c(s, "grace_periods") == 0
                && c(s, "ipis_sent") == 3 * c(s, "table_syncs")),
        ),
        pass(
            "tablefree-sync-batch",
            "--smp 4",
            "workload=stress seconds=4 tablefree=sync-batch",
            check!(|s| 0 < c(s, "table_syncs")
                && c(s, "table_syncs") <= c(s, "gather_flushes")
                && c(s, "table_syncs") < c(s, "tables_freed")),
        ),
        pass(
            "fail-alloc-500",
            "--smp 4",
            "workload=stress seconds=4 fail_alloc=500",
            check!(|s| c(s, "table_free_fallbacks") > 0),
        ),
        caught(
            "bug-skip-tlbi",
            "--smp 4",
            "workload=stress seconds=5 bug=skip-tlbi audit=off",
            stale,
        ),
        caught(
            "bug-local-tlbi",
            "--smp 4",
            "workload=stress seconds=5 bug=local-tlbi audit=off",
            stale,
        ),
        caught(
            "bug-local-tlbi-a72",
            "--smp 4 --cpu cortex-a72",
            "workload=stress seconds=5 bug=local-tlbi seed=2 audit=off",
            stale,
        ),
        caught_within(
            "bug-free-tables-now",
            "--smp 4",
            "workload=stress seconds=10 bug=free-tables-now walkers=2 touchers=1 audit=off",
            3,
            uaf,
        ),
        caught_within(
            "bug-walker-irqs-on",
            "--smp 4",
            "workload=stress seconds=10 bug=walker-irqs-on walkers=2 touchers=1 audit=off",
            3,
            uaf,
        ),
        caught(
            "bug-leaf-only-flush",
            "--smp 4",
            "workload=stress seconds=3 bug=leaf-only-flush audit=off",
            check!(|s| c(s, "leaf_only_flush_detected") > 0),
        ),
        pass(
            "sharing-sync-last",
            "--smp 4",
            "workload=stress seconds=4 sharing=on unshare=sync-last",
            check!(|s| c(s, "tables_unshared") > 0 && c(s, "unshare_flush_missed") == 0),
        ),
        pass(
            "sharing-sync-each",
            "--smp 4",
            "workload=stress seconds=4 sharing=on unshare=sync-each",
            check!(
                |s| c(s, "tables_unshared") > 0 && c(s, "table_syncs") >= c(s, "tables_unshared")
            ),
        ),
        pass(
            "sharing-recheck",
            "--smp 4",
            "workload=stress seconds=4 sharing=on unshare=recheck",
            check!(|s| c(s, "tables_unshared") > 0 && c(s, "table_syncs") == 0),
        ),
        pass(
            "sharing-8cpu-sync-last",
            "--smp 8",
            "workload=stress seconds=4 sharing=on",
            check!(|s| c(s, "tables_unshared") > 0),
        ),
        pass(
            "sharing-8cpu-recheck",
            "--smp 8",
            "workload=stress seconds=4 sharing=on unshare=recheck",
            check!(|s| c(s, "tables_unshared") > 0 && c(s, "table_syncs") == 0),
        ),
        caught_within(
            "bug-unshare-no-sync",
            "--smp 4",
            "workload=stress seconds=10 sharing=on bug=unshare-no-sync walkers=2 touchers=1 audit=off",
            3,
            uaf,
        ),
    ];
    // The audit's controls: it checks each operation against what it observed, so no race is
    // needed and none runs alone. (tests/tests/sanitizer.rs checks every planted bug's first
    // report on more machines; these show the audit in the stress table.)
    for bug in [
        "skip-tlbi",
        "local-tlbi",
        "leaf-only-flush",
        "last-sharer-narrow-flush",
        "protect-wide-stride",
        "wrong-asid",
        "no-dsb",
        "narrow-range",
    ] {
        let mut row = caught(
            &format!("bug-{bug}-audit"),
            "--smp 4",
            &format!("workload=stress seconds=1 sharing=on bug={bug}"),
            check!(|s| c(s, "flush_gap_detected") > 0),
        );
        row.exclusive = false;
        rows.push(row);
    }
    // The errata workarounds' controls: on an affected model, and with the erratum forced.
    for (bug, opts, args) in [
        ("erratum-no-repeat", "--smp 4 --cpu neoverse-n1", ""),
        ("erratum-no-dvmsync", "--smp 4", "errata=dvmsync-ipi "),
    ] {
        let mut row = caught(
            &format!("bug-{bug}-audit"),
            opts,
            &format!("workload=stress seconds=1 sharing=on {args}bug={bug}"),
            check!(|s| c(s, "flush_gap_detected") > 0),
        );
        row.exclusive = false;
        rows.push(row);
    }
    if matrix >= Matrix::Standard {
        for seed in 2..=4 {
            rows.push(pass(
                &format!("stress-8cpu-seed{seed}"),
                "--smp 8",
                &format!("workload=stress seconds=10 seed={seed}"),
                check!(|_s| true),
            ));
            for (bug, check) in [
                ("skip-tlbi", stale),
                ("local-tlbi", stale),
                ("free-tables-now", uaf),
                ("walker-irqs-on", uaf),
            ] {
                rows.push(caught(
                    &format!("bug-{bug}-seed{seed}"),
                    "--smp 4",
                    &format!("workload=stress seconds=10 bug={bug} seed={seed} audit=off"),
                    check,
                ));
            }
        }
        rows.push(pass(
            "stress-16cpu",
            "--smp 16",
            "workload=stress seconds=20",
            check!(|_s| true),
        ));
        rows.push(pass(
            "sharing-8cpu-sync-each",
            "--smp 8",
            "workload=stress seconds=10 sharing=on unshare=sync-each",
            check!(|s| c(s, "tables_unshared") > 0),
        ));
        for seed in 2..=3 {
            rows.push(caught(
                &format!("bug-unshare-no-sync-seed{seed}"),
                "--smp 4",
                &format!(
                    "workload=stress seconds=10 sharing=on bug=unshare-no-sync seed={seed} audit=off"
                ),
                uaf,
            ));
        }
    }
    if matrix == Matrix::Long {
        let mut row = pass(
            "long-8cpu-300s",
            "--smp 8 --timeout 1200",
            "workload=stress seconds=300",
            check!(|s| c(s, "tables_freed") > 0 && c(s, "grace_periods") > 0),
        );
        row.host_timeout = Some(Duration::from_secs(1200 + 120));
        rows.push(row);
    }
    rows
}

/// What one row did.
pub struct Outcome {
    /// The row.
    pub row: Row,
    /// Whether it ended as it must.
    pub ok: bool,
    /// Why not, if not.
    pub why: String,
    /// The last boot of the row (the one that decided it).
    pub run: Run,
}

/// Runs `row` (each seed a boot, as its [`Expect`] says) and judges it.
pub fn run_row(row: &Row) -> Outcome {
    let seeds = match row.expect {
        Expect::Caught { seeds } => seeds.max(1),
        Expect::Pass => 1,
    };
    let mut seed = 1;
    loop {
        let (name, args) = if seeds == 1 {
            (row.name.clone(), row.args.clone())
        } else {
            (
                format!("{} seed={seed}", row.name),
                format!("{} seed={seed}", row.args),
            )
        };
        let mut boot = Boot::new(&name).opts(row.opts).args(&args);
        if row.exclusive {
            boot = boot.exclusive();
        }
        if let Some(t) = row.host_timeout {
            boot = boot.host_timeout(t);
        }
        let run = boot.run();
        match judge(row, &run) {
            Ok(()) => {
                return Outcome {
                    row: row.clone(),
                    ok: true,
                    why: String::new(),
                    run,
                };
            }
            Err(why) if seed == seeds => {
                let why = if seeds > 1 {
                    format!("not caught in {seeds} seeds (seed {seed}: {why})")
                } else {
                    why
                };
                return Outcome {
                    row: row.clone(),
                    ok: false,
                    why,
                    run,
                };
            }
            Err(_) => seed += 1,
        }
    }
}

/// Whether `run` ended as `row` must; if not, why.
fn judge(row: &Row, run: &Run) -> Result<(), String> {
    let want = match row.expect {
        Expect::Pass => 0,
        Expect::Caught { .. } => 1,
    };
    if run.exit_code != Some(want) {
        return Err(format!("exit {:?}, expected {want}", run.exit_code));
    }
    let s = match &run.summary {
        Ok(s) => s,
        Err(e) => return Err(format!("no summary: {e}")),
    };
    let mut checks = vec![row.check];
    if row.expect == Expect::Pass {
        checks.insert(0, OK_RUN);
    }
    for check in checks {
        // A check naming a counter the kernel did not report panics (Summary::counter): that is
        // this row failing, not the whole matrix.
        let ok = std::panic::catch_unwind(|| (check.ok)(s))
            .map_err(|e| panic_text(&e))
            .map_err(|e| format!("check {}: {e}", check.text))?;
        if !ok {
            return Err(format!("check failed: {}", check.text));
        }
    }
    Ok(())
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}

/// Runs `rows`, at most [`slots`] boots at once, printing each outcome as it comes (with the end
/// of the console of a failed one) to standard error and, if `results` is given, appending one
/// JSON line per row to it. Returns the outcomes in the order of `rows`.
pub fn run_rows(rows: &[Row], results: Option<&Path>) -> Vec<Outcome> {
    let file = results.map(|path| {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        Mutex::new(
            std::fs::File::create(path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display())),
        )
    });
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(rows.iter().map(|_| None).collect());
    // Exclusive rows wait for every slot inside Boot::run, so a worker per slot keeps the
    // machine as full as the harness allows.
    std::thread::scope(|scope| {
        for _ in 0..slots().min(rows.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(row) = rows.get(i) else { break };
                    let outcome = run_row(row);
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    eprintln!("{}", progress_line(n, rows.len(), &outcome));
                    if let Some(f) = &file {
                        let line = json_line(&outcome);
                        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
                        let _ = writeln!(f, "{line}");
                    }
                    outcomes.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
                }
            });
        }
    });
    outcomes
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|o| o.expect("every row ran"))
        .collect()
}

fn progress_line(n: usize, total: usize, o: &Outcome) -> String {
    let mut line = format!(
        "[{n:2}/{total}] {:36} {}{} (exit {}, {:.0}s)",
        o.row.name,
        if o.ok { "ok" } else { "FAIL " },
        o.why,
        o.run.exit_code.map_or("none".to_owned(), |c| c.to_string()),
        o.run.elapsed.as_secs_f64(),
    );
    if !o.ok {
        let lines: Vec<&str> = o.run.stdout.lines().collect();
        for l in &lines[lines.len().saturating_sub(15)..] {
            let _ = write!(line, "\n      {l}");
        }
        let _ = write!(line, "\n      log: {}", o.run.log_path().display());
    }
    line
}

/// The results file's line for `o`: what scripts/stress.sh has always written.
fn json_line(o: &Outcome) -> String {
    let mut out = String::new();
    let mut obj = JsonObject::new(&mut out).expect("write to a String");
    let want = match o.row.expect {
        Expect::Pass => 0,
        Expect::Caught { .. } => 1,
    };
    let _ = obj.str("name", &o.row.name);
    let _ = obj.u64("expected_exit", want);
    let _ = obj.i64("exit", o.run.exit_code.map_or(-1, i64::from));
    let _ = obj.bool("ok", o.ok);
    let _ = obj.u64("seconds_wall_qemu", o.run.elapsed.as_secs());
    let _ = obj.str("run_opts", o.row.opts);
    let _ = obj.str("bootargs", &o.run.boot.args_line());
    let _ = obj.str("why", &o.why);
    // The kernel's own line, as it printed it (already JSON).
    let raw = o
        .run
        .stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(broadside_summary::PREFIX))
        .filter(|_| o.run.summary.is_ok())
        .unwrap_or("null");
    let _ = obj.raw_members(&format!("\"summary\":{raw}"));
    let _ = obj.finish();
    out
}

/// The table of `outcomes`: one row each, with the counters that tell the modes apart.
pub fn table(outcomes: &[Outcome]) -> String {
    const KEYS: [(&str, &str); 11] = [
        ("stale", "stale_tlb_detected"),
        ("uaf", "uaf_detected"),
        ("touches", "touches"),
        ("tlbi", "tlbi_ops"),
        ("range", "tlbi_range_ops"),
        ("ipis", "ipis_sent"),
        ("tbl_freed", "tables_freed"),
        ("gps", "grace_periods"),
        ("syncs", "table_syncs"),
        ("walks", "walker_walks"),
        ("rollovers", "asid_rollovers"),
    ];
    let mut t = format!("{:36} {:>4} {:>4}", "run", "exit", "ok");
    for (short, _) in KEYS {
        let _ = write!(t, " {short:>9}");
    }
    for o in outcomes {
        let exit = o.run.exit_code.map_or("-".to_owned(), |c| c.to_string());
        let _ = write!(
            t,
            "\n{:36} {exit:>4} {:>4}",
            o.row.name,
            if o.ok { "yes" } else { "NO" }
        );
        for (_, key) in KEYS {
            let v = o
                .run
                .parsed_summary()
                .and_then(|s| s.counters.get(key))
                .map_or("-".to_owned(), u64::to_string);
            let _ = write!(t, " {v:>9}");
        }
    }
    t
}

/// `BS_STRESS_RESULTS`, the JSON-lines file scripts/stress.sh asks for.
pub fn results_from_env() -> Option<PathBuf> {
    std::env::var_os("BS_STRESS_RESULTS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name is a row's log file and its line in the results: two rows must not share one.
    #[test]
    fn names_are_unique_and_each_matrix_contains_the_one_before() {
        let mut before: Vec<String> = Vec::new();
        for m in [Matrix::Quick, Matrix::Standard, Matrix::Long] {
            let names: Vec<String> = rows(m).into_iter().map(|r| r.name).collect();
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                names.len(),
                "{m:?}: duplicate names in {names:?}"
            );
            assert!(
                names.starts_with(&before),
                "{m:?} does not start with the smaller matrix"
            );
            assert!(names.len() > before.len(), "{m:?} adds no row");
            before = names;
        }
    }

    #[test]
    fn a_check_reads_as_written() {
        assert_eq!(OK_RUN.text.split("&&").count(), 6);
        assert!(
            OK_RUN.text.starts_with("c(s, \"stale_tlb_detected\") == 0"),
            "{}",
            OK_RUN.text
        );
    }
}

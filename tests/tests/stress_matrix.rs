//! The stress matrix (broadside_tests::stress, tests/src/stress.rs, defines its rows once).
//!
//! `cargo test -p broadside-tests --test stress_matrix -- --ignored` runs the quick matrix, the
//! one CI runs; `scripts/stress.sh` runs this same test with `BS_STRESS_MATRIX=quick|standard|
//! long` and `BS_STRESS_RESULTS=FILE` (its JSON lines). `BS_STRESS_ONLY=NAME,NAME` runs only the
//! rows so named, to rerun one.

use broadside_tests::stress::{self, Matrix, Outcome, Row};

/// The rows `BS_STRESS_ONLY` names, or all of them; panics on a name the matrix does not have.
fn selected(matrix: Matrix) -> Vec<Row> {
    let rows = stress::rows(matrix);
    let Ok(only) = std::env::var("BS_STRESS_ONLY") else {
        return rows;
    };
    let names: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    for n in &names {
        assert!(
            rows.iter().any(|r| r.name == *n),
            "BS_STRESS_ONLY: no row {n:?} in the {matrix:?} matrix; its rows: {}",
            rows.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    rows.into_iter()
        .filter(|r| names.contains(&r.name.as_str()))
        .collect()
}

/// Fails naming every row that did not end as it must.
fn assert_all_ok(outcomes: &[Outcome]) {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| {
            format!(
                "  {}: {}\n    command: {}\n    log: {}",
                o.row.name,
                o.why,
                o.run.boot.command_line(),
                o.run.log_path().display()
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} stress runs failed:\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n")
    );
}

#[test]
#[ignore = "long: the stress matrix"]
fn stress_matrix() {
    let matrix = Matrix::from_env().unwrap_or_else(|e| panic!("{e}"));
    let rows = selected(matrix);
    let results = stress::results_from_env();
    let outcomes = stress::run_rows(&rows, results.as_deref());
    let bad = outcomes.iter().filter(|o| !o.ok).count();
    eprintln!("\n{}\n", stress::table(&outcomes));
    if let Some(r) = &results {
        eprintln!("results: {}", r.display());
    }
    eprintln!("stress: {} passed, {bad} failed", outcomes.len() - bad);
    assert_all_ok(&outcomes);
}

/// More CPUs than roles (the matrix's row `stress-4cpu-roleless`), in every `cargo test`: it
/// takes a second, and a CPU left without a role once hung the run.
#[test]
fn stress_4cpu_with_a_cpu_left_without_a_role() {
    let rows: Vec<Row> = stress::rows(Matrix::Quick)
        .into_iter()
        .filter(|r| r.name == "stress-4cpu-roleless")
        .collect();
    assert_eq!(rows.len(), 1, "the quick matrix has stress-4cpu-roleless");
    assert_all_ok(&stress::run_rows(&rows, None));
}

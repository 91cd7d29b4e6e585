//! The benchmark figures in `docs/` are what their raw data gives: `scripts/bench.sh --docs`
//! measures the four benches and keeps each run's summaries in `docs/data/`, and
//! `scripts/bench_docs.py` writes every bench table and chart and the extracts quoted in
//! `docs/benchmarks.md` from them, each naming the commit it was measured at. No QEMU here.

use std::path::Path;
use std::process::Command;

fn check(docs: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(broadside_tests::repo_root().join("scripts/bench_docs.py"))
        .arg("--check")
        .arg(docs)
        .output()
        .expect("python3 runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Copies `docs/` (the figures, the chapter that quotes them, and their data) to a scratch
/// directory.
fn scratch_docs(tag: &str) -> std::path::PathBuf {
    let docs = broadside_tests::repo_root().join("docs");
    let dir = std::env::temp_dir().join(format!("bs-bench-docs-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for entry in std::fs::read_dir(&docs)
        .unwrap()
        .chain(std::fs::read_dir(docs.join("data")).unwrap())
    {
        let path = entry.unwrap().path();
        if path.is_file() {
            let rel = path.strip_prefix(&docs).unwrap();
            std::fs::copy(&path, dir.join(rel)).unwrap();
        }
    }
    dir
}

#[test]
fn published_bench_figures_are_what_their_data_gives() {
    let (ok, text) = check(&broadside_tests::repo_root().join("docs"));
    assert!(ok, "{text}");
    assert!(text.contains("9 files are what docs/data gives"), "{text}");
    let quoted =
        std::fs::read_to_string(broadside_tests::repo_root().join("docs/benchmarks.md")).unwrap();
    assert_eq!(
        quoted.matches("Measured at commit ").count(),
        4,
        "an extract does not name its commit"
    );
}

/// The negative control: a figure edited by hand, or an extract, is reported by file.
#[test]
fn a_hand_edited_figure_is_caught() {
    for (file, from, to) in [
        (
            "scale-bench-icount.md",
            "| 512 | tlbi |",
            "| 512 | tlbi | 1 |",
        ),
        ("benchmarks.md", "| upgrade | new |", "| upgrade | newer |"),
    ] {
        let dir = scratch_docs(file);
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let (ok, out) = check(&dir);
        std::fs::remove_dir_all(&dir).ok();
        assert!(!ok && out.contains(file), "an edit of {file} passed: {out}");
    }
}

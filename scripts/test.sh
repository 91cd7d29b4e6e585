#!/usr/bin/env bash
# Everything CI checks: rustfmt, clippy, unused dependencies (cargo-machete), the loom model
# checks, then `cargo test` (every crate's host unit tests and the fast boot tests of tests/) and
# the long boot tests (the ones tests/ marks #[ignore]: the stress matrix, memory pressure, the
# unshare bench's exact counts, the watchdog livelocks, the GDB sessions). Each boot test builds
# the kernel once, boots QEMU under a timeout and asserts on the typed summary (tests/src/lib.rs);
# nothing boots from here.
# Exits non-zero if anything failed.
#
# usage: scripts/test.sh [--quick]   (--quick: skip loom and the long boot tests)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$BS_ROOT"

quick=0
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bs_die "test.sh: unknown option $1 (see --help)" ;;
    esac
done
passed=0 failed=0
failures=()
out_dir=$(mktemp -d)

pass() { passed=$((passed + 1)); printf '  ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); printf '  FAIL  %s\n' "$1"; }

step() { printf '\n== %s\n' "$1"; }

# summarize LOG: one line per test binary of a cargo test log: its name and its result.
summarize() {
    awk '/^ *Running /{ n = $2; if (n == "unittests") { n = $4; gsub(/^\(target\/[a-z]+\/deps\/|-[0-9a-f]+\)$/, "", n) } }
         /^ *Doc-tests /{ n = "doc-tests " $2 }
         /^test result:/{ r = $0; sub(/^test result: /, "", r); sub(/; [0-9]+ measured.*finished in/, ", in", r); printf "    %-34s %s\n", n, r }' "$1"
}

# run NAME LOG COMMAND...: one step; cargo's result lines are shown, the whole log on failure.
run() {
    local name=$1 log=$out_dir/$2
    shift 2
    local t0=$SECONDS
    if "$@" >"$log" 2>&1; then
        summarize "$log"
        pass "$name ($((SECONDS - t0))s)"
    else
        # What cargo flagged, else (a tool with its own format) the end of the log.
        { grep -E '^(error|warning)|panicked|^test .*FAILED|^failures:|^    [a-z_0-9:]+$' -A3 "$log" \
            || tail -n 40 "$log"; } | head -80
        fail "$name (log: $log)"
    fi
}

bs_need_rust
bs_need_qemu
bs_need_gdb
bs_need_machete
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

step "rustfmt, clippy and unused dependencies"
run "rustfmt (cargo fmt --check)" fmt.log cargo fmt --check
# --workspace: the default members are the host crates; this also lints the kernel for its target.
run "clippy (release, every crate)" clippy.log cargo clippy --release --workspace -- -D warnings
run "clippy (host tests)" clippy-host.log cargo clippy --tests --workspace --exclude broadside -- -D warnings
# A dependency declared and never named in its crate's code (cargo-machete reads the sources, so
# it also sees the kernel's target-only code). --skip-target-dir: target/ holds other crates'
# manifests (packaged or vendored), not ours.
run "unused dependencies (cargo machete)" machete.log cargo machete --skip-target-dir

if [ $quick = 0 ]; then
    step "loom model checks"
    run "loom" loom.log env RUSTFLAGS="--cfg loom" cargo test --release -p broadside-sync -p broadside-mm loom
fi

step "cargo test: host unit tests and the fast boot tests"
run "cargo test" test.log cargo test

if [ $quick = 0 ]; then
    step "the long boot tests (cargo test -p broadside-tests -- --ignored)"
    run "long boot tests" test-long.log cargo test -p broadside-tests -- --ignored
fi

# Nothing stays here: every boot check, the stress matrix and the GDB checks are tests in tests/
# (tests/tests/stress_matrix.rs runs the quick matrix of tests/src/stress.rs, as
# scripts/stress.sh --quick does).

# The closing lines: the steps, then every test cargo ran (host, loom, fast and long boots),
# summed from cargo's result lines. A failed step (fmt, clippy) shows in the first line and in
# the exit status.
tests_passed=0 tests_failed=0
for log in "$out_dir"/loom.log "$out_dir"/test.log "$out_dir"/test-long.log; do
    [ -f "$log" ] || continue
    while read -r p f; do
        tests_passed=$((tests_passed + p)) tests_failed=$((tests_failed + f))
    done < <(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$log")
done
printf '\nsteps: %d passed, %d failed\n' "$passed" "$failed"
printf 'tests: %d passed, %d failed\n' "$tests_passed" "$tests_failed"
if [ "$failed" -ne 0 ]; then
    printf 'failed:\n'; printf '  %s\n' "${failures[@]}"
    exit 1
fi
rm -rf "$out_dir"
exit 0

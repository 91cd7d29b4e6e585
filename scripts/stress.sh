#!/usr/bin/env bash
# Runs a matrix of stress boots (CPU counts, flush and table-free modes, seeds, negative
# controls that must fail), shows each run's outcome as it ends, writes one JSON line per run to
# a results file and prints a table. Exits non-zero when any run did not end as expected.
#
# usage: scripts/stress.sh [--quick | --long] [--results FILE]
#   --quick  the short matrix (a few minutes): the one CI runs
#   (none)   the standard matrix: more seeds and longer runs
#   --long   the standard matrix plus a 5-minute stress at --smp 8
#   --results FILE  the JSON lines (default results/stress-DATE.jsonl)
# The matrix is defined once, in tests/src/stress.rs; this runs it through its test,
# `cargo test -p broadside-tests --test stress_matrix -- --ignored` (which alone is --quick).
# Runs go at once up to BS_TEST_BOOTS (default: the host's CPUs); the negative controls whose
# race must happen within the run take the machine alone. QEMU wall time is not hardware time:
# judge runs by their counters and exit codes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

mode="" results=""
while [ $# -gt 0 ]; do
    case $1 in
        --quick|--long)
            [ -z "$mode" ] || [ "$mode" = "${1#--}" ] || bs_die "stress.sh: --quick and --long exclude each other"
            mode=${1#--}; shift ;;
        --results) bs_need_value stress.sh "$@"; results=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bs_die "stress.sh: unknown option $1 (see --help)" ;;
    esac
done
[ -n "$mode" ] || mode=standard
[ -n "$results" ] || results="$BS_ROOT/results/stress-$(date +%Y%m%d-%H%M%S).jsonl"
# Absolute: cargo runs the test from tests/.
case $results in /*) ;; *) results="$PWD/$results" ;; esac
mkdir -p "$(dirname "$results")" || bs_die "stress.sh: --results $results: cannot create its directory"

bs_need_rust
bs_need_qemu
cd "$BS_ROOT"
set +e
BS_STRESS_MATRIX=$mode BS_STRESS_RESULTS=$results \
    cargo test -q -p broadside-tests --test stress_matrix -- --ignored --exact stress_matrix --nocapture
rc=$?
set -e
[ $rc -eq 0 ] || exit 1

#!/usr/bin/env bash
# Runs workload=unshare-bench over CPU counts and level-2 table counts, and writes to a results
# folder: raw.jsonl (one summary per boot), bench.md (a Markdown table) and chart.svg (IPIs and
# time per fork+exit against table count, one line per mode, per CPU count).
# With --scale, runs workload=scale-bench at each CPU count instead (default 1 2 4 ... 512) and
# writes raw.jsonl, scale.md and scale.svg (each per-op figure against the CPU count, one line
# per strategy; scripts/scale_chart.py draws it). With --deterministic[=SHIFT] each boot runs under
# `-icount` (run.sh --deterministic): a tick is then a fixed number of instructions executed by
# the whole machine, so ticks_per_op is the same on every run and every host.
# With --flush, runs workload=flush-bench at each CPU count (default 4 64 512), always under
# `-icount` (--deterministic[=SHIFT] picks the shift), and writes raw.jsonl, flush.md and
# flush.svg (per feature, the old path against the new: TLBIs, DSB ISH and ticks per op;
# scripts/flush_chart.py draws it).
#
# usage: scripts/bench.sh [--cpus "2 4 8"] [--tables "16 64 256"] [--children N] [--out DIR]
#        scripts/bench.sh --scale [--deterministic[=SHIFT]] [--cpus "1 2 4 ... 512"] [--out DIR]
#        scripts/bench.sh --flush [--deterministic=SHIFT] [--cpus "4 64 512"] [--out DIR]
#        scripts/bench.sh [--scale|--flush] --replot DIR    (rewrite the table and chart from DIR/raw.jsonl)
#        scripts/bench.sh --docs     (all four benches with their defaults, from the current build:
#                                     their raw data to docs/data/, then scripts/bench_docs.py
#                                     rewrites every table and chart in docs/, each naming the commit)
# Times are QEMU TCG ticks, not hardware time: read them as ratios between modes of one boot.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$BS_ROOT"

cpus="" tables="16 64 256" children=8 tables_set=0 out="" replot=0 scale=0 flush=0 det="" docs=0
while [ $# -gt 0 ]; do
    case $1 in
        --cpus) bs_need_value bench.sh "$@"; cpus=$2; shift 2 ;;
        --tables) bs_need_value bench.sh "$@"; tables=$2; tables_set=1; shift 2 ;;
        --children) bs_need_value bench.sh "$@"; children=$2; tables_set=1; shift 2 ;;
        --out) bs_need_value bench.sh "$@"; out=$2; shift 2 ;;
        --replot) bs_need_value bench.sh "$@"; out=$2; replot=1; shift 2 ;;
        --scale) scale=1; shift ;;
        --flush) flush=1; shift ;;
        --docs) docs=1; shift ;;
        --deterministic) det=$1; shift ;;
        --deterministic=*) det=$1; BS_ICOUNT=${1#--deterministic=}; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bs_die "bench.sh: unknown option $1 (see --help)" ;;
    esac
done

if [ $docs = 1 ]; then
    { [ $scale = 0 ] && [ $flush = 0 ] && [ -z "$det$cpus$out" ] && [ $replot = 0 ] && [ $tables_set = 0 ]; } \
        || bs_die "bench.sh: --docs measures every bench with its defaults: give it alone"
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-docs.XXXXXX")
    for spec in "unshare:" "scale:--scale" "scale-icount:--scale --deterministic" "flush:--flush"; do
        name=${spec%%:*} opts=${spec#*:}
        echo "== $name: scripts/bench.sh $opts"
        # shellcheck disable=SC2086 # opts is a list of options
        "$0" $opts --out "$tmp/$name" || {
            echo "bench.sh: --docs: the $name bench failed (see $tmp/$name); docs/ left as it was" >&2
            exit 1
        }
    done
    mkdir -p docs/data
    for name in unshare scale scale-icount flush; do cp "$tmp/$name/raw.jsonl" "docs/data/$name.jsonl"; done
    python3 scripts/bench_docs.py
    exit $?
fi

[ $scale = 0 ] || [ $flush = 0 ] || bs_die "bench.sh: --scale and --flush are two benches: give one"
# --flush always measures in virtual time.
[ $flush = 0 ] || [ -n "$det" ] || det=--deterministic
[ -z "$det" ] || [ $scale = 1 ] || [ $flush = 1 ] || bs_die "bench.sh: $det goes with --scale or --flush"
[ $tables_set = 0 ] || { [ $scale = 0 ] && [ $flush = 0 ]; } || bs_die "bench.sh: --tables and --children are the unshare bench's, not --scale's or --flush's"
bs_check_shift bench.sh
for n in $cpus; do bs_check_smp bench.sh "$n" --cpus; done
[ -z "$cpus" ] || [ -n "${cpus// /}" ] || bs_die "bench.sh: --cpus \"$cpus\": no CPU count"
# Their ranges are the kernel's (tables=, children=): a boot that refuses them stops the bench.
for t in $tables; do bs_check_int bench.sh --tables "$t" 1 "" "a count of level-2 tables"; done
bs_check_int bench.sh --children "$children" 1 "" "a count of children"
case $det in
    "") clock=host ;;
    --deterministic) clock="icount shift=$BS_DEFAULT_SHIFT" ;;
    *) clock="icount shift=${det#--deterministic=}" ;;
esac
# refused RC LOG: a boot that exited 2 was refused its arguments, and so would every other one:
# stop with its error line.
refused() {
    [ "$1" = 2 ] || return 0
    echo "refused"
    grep -m1 '^error: ' "$2" >&2 || true
    bs_die "bench.sh: the kernel refused the arguments (see $2)"
}

# The commit every figure names; -dirty when the build had uncommitted changes (the figure was
# not measured at HEAD).
commit=$(git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown)
# bs_stamp SUMMARY WALL_S CLOCK COMMIT: the summary line with the boot's QEMU wall time, its clock
# and the commit riding along for the tables (not part of the summary).
bs_stamp() {
    echo "$1" | python3 -c 'import json,sys; r=json.load(sys.stdin); r["wall_s"]=int(sys.argv[1]); r["clock"]=sys.argv[2]; r["commit"]=sys.argv[3]; print(json.dumps(r))' "$2" "$3" "$4"
}

# per_cpu_boots NAME WORKLOAD CHART DEFAULT_CPUS: the --scale and --flush benches. One boot of
# WORKLOAD per CPU count, its summary (with the boot's wall time, its clock and the commit) a line
# of OUT/raw.jsonl, then CHART writes OUT/NAME.md and OUT/NAME.svg; exits.
per_cpu_boots() {
    local name=$1 workload=$2 chart=$3
    [ -n "$cpus" ] || cpus=$4
    [ -n "$out" ] || out="results/$name-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$out"
    failed=0
    if [ $replot = 1 ]; then
        [ -s "$out/raw.jsonl" ] || bs_die "bench.sh: --replot $out: no raw.jsonl there"
    else
        : >"$out/raw.jsonl"
        bs_need_qemu
        bs_build
        local n log start rc line
        for n in $cpus; do
            printf '%s: %3s CPUs ... ' "$name" "$n"
            log="$out/boot-${n}cpu.log"
            start=$(date +%s)
            # yield_points=off: --deterministic would turn them on, and their stalls would
            # add virtual time of their own to the operations measured.
            scripts/run.sh --kernel "$BS_KERNEL" --smp "$n" --timeout 1800 $det -- \
                workload="$workload" yield_points=off >"$log" 2>&1
            rc=$?
            refused "$rc" "$log"
            line=$(grep '^summary: ' "$log" | tail -1 | sed 's/^summary: //')
            if [ $rc -ne 0 ] || [ -z "$line" ]; then
                echo "FAIL (exit $rc, see $log)"; failed=1; continue
            fi
            bs_stamp "$line" "$(( $(date +%s) - start ))" "$clock" "$commit" >>"$out/raw.jsonl"
            echo "ok ($(( $(date +%s) - start )) s)"
        done
    fi
    python3 "$chart" "$out" || failed=1
    echo "$name: table  $out/$name.md"
    echo "$name: chart  $out/$name.svg"
    echo "$name: raw    $out/raw.jsonl"
    exit $failed
}

[ $flush = 0 ] || per_cpu_boots flush flush-bench scripts/flush_chart.py "4 64 512"
[ $scale = 0 ] || per_cpu_boots scale scale-bench scripts/scale_chart.py "1 2 4 8 16 32 64 128 256 512"

[ -n "$cpus" ] || cpus="2 4 8"
[ -n "$out" ] || out="results/bench-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
failed=0
if [ $replot = 1 ]; then
    [ -s "$out/raw.jsonl" ] || bs_die "bench.sh: --replot $out: no raw.jsonl there"
    cpus="" tables=""
else
    : >"$out/raw.jsonl"
    bs_need_qemu
    bs_build
fi

for n in $cpus; do
    for t in $tables; do
        printf 'bench: %2s CPUs, %3s tables ... ' "$n" "$t"
        log="$out/boot-${n}cpu-${t}tables.log"
        start=$(date +%s)
        scripts/run.sh --kernel "$BS_KERNEL" --smp "$n" --timeout 900 -- \
            workload=unshare-bench tables="$t" children="$children" >"$log" 2>&1
        rc=$?
        refused "$rc" "$log"
        line=$(grep '^summary: ' "$log" | tail -1 | sed 's/^summary: //')
        if [ $rc -ne 0 ] || [ -z "$line" ]; then
            echo "FAIL (exit $rc, see $log)"; failed=1; continue
        fi
        bs_stamp "$line" "$(( $(date +%s) - start ))" host "$commit" >>"$out/raw.jsonl"
        echo "ok"
    done
done

python3 scripts/unshare_chart.py "$out" || failed=1
echo "bench: table  $out/bench.md"
echo "bench: chart  $out/chart.svg"
echo "bench: raw    $out/raw.jsonl"
exit $failed

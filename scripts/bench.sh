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
# Times are QEMU TCG ticks, not hardware time: read them as ratios between modes of one boot.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$BS_ROOT"

cpus="" tables="16 64 256" children=8 tables_set=0 out="" replot=0 scale=0 flush=0 det=""
while [ $# -gt 0 ]; do
    case $1 in
        --cpus) bs_need_value bench.sh "$@"; cpus=$2; shift 2 ;;
        --tables) bs_need_value bench.sh "$@"; tables=$2; tables_set=1; shift 2 ;;
        --children) bs_need_value bench.sh "$@"; children=$2; tables_set=1; shift 2 ;;
        --out) bs_need_value bench.sh "$@"; out=$2; shift 2 ;;
        --replot) bs_need_value bench.sh "$@"; out=$2; replot=1; shift 2 ;;
        --scale) scale=1; shift ;;
        --flush) flush=1; shift ;;
        --deterministic) det=$1; shift ;;
        --deterministic=*) det=$1; BS_ICOUNT=${1#--deterministic=}; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bs_die "bench.sh: unknown option $1 (see --help)" ;;
    esac
done

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
        local commit n log start rc line
        # -dirty when the build had uncommitted changes: the figure was not measured at HEAD.
        commit=$(git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown)
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
            # The boot's QEMU wall time, its clock and the commit ride along for the table (not
            # part of the summary).
            echo "$line" | python3 -c 'import json,sys; r=json.load(sys.stdin); r["wall_s"]=int(sys.argv[1]); r["clock"]=sys.argv[2]; r["commit"]=sys.argv[3]; print(json.dumps(r))' \
                "$(( $(date +%s) - start ))" "$clock" "$commit" >>"$out/raw.jsonl"
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
        scripts/run.sh --kernel "$BS_KERNEL" --smp "$n" --timeout 900 -- \
            workload=unshare-bench tables="$t" children="$children" >"$log" 2>&1
        rc=$?
        refused "$rc" "$log"
        line=$(grep '^summary: ' "$log" | tail -1 | sed 's/^summary: //')
        if [ $rc -ne 0 ] || [ -z "$line" ]; then
            echo "FAIL (exit $rc, see $log)"; failed=1; continue
        fi
        echo "$line" >>"$out/raw.jsonl"
        echo "ok"
    done
done

python3 - "$out" <<'PY'
import json, math, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/raw.jsonl")]
modes = ["sync-each", "sync-last", "recheck"]
colors = {"sync-each": "#d62728", "sync-last": "#1f77b4", "recheck": "#2ca02c"}
md = ["# unshare-bench", "",
      "Each row is one boot measuring all three modes on the same scenario: a parent maps a shared",
      "object over N level-2 tables, forks children that exit, then unmaps, with walker CPUs running.",
      "Ticks are CNTVCT under QEMU TCG (not hardware time): compare modes within a row.", "",
      "| CPUs | tables | children | mode | ipis_sent | table_syncs | tlbi_ops | dsb_ish | sync_waits | grace_periods | tables_unshared | uaf | ticks/fork+exit | ticks/unmap | time vs sync-last |",
      "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    b = r["bench"]
    base = r["modes"]["sync-last"]["ticks_per_fork_exit"] or 1
    for m in modes:
        x = r["modes"][m]
        md.append(f"| {r['cpus']} | {b['tables']} | {b['children']} | {m} | {x['ipis_sent']} | {x['table_syncs']} | "
                  f"{x['tlbi_ops']} | {x['dsb_ish']} | {x['sync_waits']} | {x['grace_periods']} | {x['tables_unshared']} | "
                  f"{x['uaf_detected']} | {x['ticks_per_fork_exit']} | {x['ticks_per_unmap']} | {x['ticks_per_fork_exit']/base:.2f}x |")
open(f"{out}/bench.md", "w").write("\n".join(md) + "\n")

# chart.svg: for each CPU count, two panels (IPIs per fork+exit, ticks per fork+exit), log y.
cpus = sorted({r["cpus"] for r in rows})
W, H, PW, PH, L, T = 1080, 80 + 300 * len(cpus), 400, 220, 90, 70
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="24" text-anchor="middle" font-size="16">unshare-bench: {rows[0]["bench"]["children"]} children fork and exit over N shared level-2 tables (QEMU TCG ticks; log scales)</text>']
def panel(x0, y0, title, series, ylabel):
    pts = [v for s in series.values() for (_, v) in s]
    xs = sorted({x for s in series.values() for (x, _) in s})
    if not xs: return
    lo, hi = 0, math.log10(max(max(pts), 1)) + 0.3
    def px(x): return x0 + (0 if len(xs) == 1 else (math.log2(x) - math.log2(xs[0])) / (math.log2(xs[-1]) - math.log2(xs[0])) * PW)
    def py(v): return y0 + PH - (math.log10(max(v, 1)) - lo) / (hi - lo) * PH
    svg.append(f'<text x="{x0 + PW/2}" y="{y0 - 8}" text-anchor="middle">{title}</text>')
    svg.append(f'<rect x="{x0}" y="{y0}" width="{PW}" height="{PH}" fill="none" stroke="#888"/>')
    for e in range(0, int(hi) + 1):
        y = py(10 ** e)
        svg.append(f'<line x1="{x0}" y1="{y}" x2="{x0+PW}" y2="{y}" stroke="#eee"/><text x="{x0-6}" y="{y+4}" text-anchor="end">1e{e}</text>')
    for x in xs:
        svg.append(f'<text x="{px(x)}" y="{y0+PH+16}" text-anchor="middle">{x}</text>')
    svg.append(f'<text x="{x0+PW/2}" y="{y0+PH+32}" text-anchor="middle">level-2 tables</text>')
    svg.append(f'<text x="{x0-52}" y="{y0+PH/2}" transform="rotate(-90 {x0-52} {y0+PH/2})" text-anchor="middle">{ylabel}</text>')
    for m, s in series.items():
        s = sorted(s)
        d = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(v):.1f}" for i, (x, v) in enumerate(s))
        svg.append(f'<path d="{d}" fill="none" stroke="{colors[m]}" stroke-width="2"/>')
        for x, v in s:
            svg.append(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="3" fill="{colors[m]}"/>')
for i, n in enumerate(cpus):
    y0 = T + 20 + i * 300
    sub = [r for r in rows if r["cpus"] == n]
    ipis = {m: [(r["bench"]["tables"], r["modes"][m]["ipis_sent"] + 1) for r in sub] for m in modes}
    ticks = {m: [(r["bench"]["tables"], r["modes"][m]["ticks_per_fork_exit"]) for r in sub] for m in modes}
    panel(L, y0, f"{n} CPUs: IPIs sent in the whole run, plus one", ipis, "IPIs + 1")
    panel(L + PW + 100, y0, f"{n} CPUs: CNTVCT ticks per fork+exit", ticks, "ticks")
for j, m in enumerate(modes):
    lx = L + j * 140
    svg.append(f'<rect x="{lx}" y="{44}" width="14" height="4" fill="{colors[m]}"/><text x="{lx+20}" y="{50}">{m}</text>')
svg.append("</svg>")
open(f"{out}/chart.svg", "w").write("\n".join(svg) + "\n")
PY
echo "bench: table  $out/bench.md"
echo "bench: chart  $out/chart.svg"
echo "bench: raw    $out/raw.jsonl"
exit $failed

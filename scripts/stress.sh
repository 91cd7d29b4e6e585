#!/usr/bin/env bash
# Runs a matrix of stress boots (CPU counts, flush and table-free modes, seeds, negative
# controls that must fail), shows progress, writes one JSON line per run to a results file and
# prints a table. Exits non-zero when any run did not end as expected.
#
# usage: scripts/stress.sh [--quick | --long] [--results FILE]
#   --quick  the short matrix (about two minutes); scripts/test.sh runs the same runs with the
#            same checks as tests/tests/stress_matrix.rs (keep the two in step)
#   (none)   the standard matrix: more seeds and longer runs
#   --long   the standard matrix plus a 5-minute stress at --smp 8
# QEMU wall time is not hardware time: judge runs by their counters and exit codes.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$BS_ROOT"

mode=standard results=""
while [ $# -gt 0 ]; do
    case $1 in
        --quick) mode=quick; shift ;;
        --long) mode=long; shift ;;
        --results) bs_need_value stress.sh "$@"; results=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bs_die "stress.sh: unknown option $1" ;;
    esac
done
mkdir -p results
[ -n "$results" ] || results="results/stress-$(date +%Y%m%d-%H%M%S).jsonl"
: >"$results"

bs_need_qemu
bs_build

# name | expected exit | run.sh options | kernel args | check on the summary (python; s, c)
# (every positive run must also have probed through the MMU, touches > 0, and been audited,
# flush_obligations > 0). The controls of the QEMU-visible detectors run with audit=off, so they
# show those detectors alone; the audit's own controls are the bug-*-audit rows.
ok_run="c['stale_tlb_detected']==0 and c['uaf_detected']==0 and c['leaf_only_flush_detected']==0 and c['flush_gap_detected']==0 and c['flush_obligations']>0 and c['touches']>0"
runs=(
  "stress-4cpu-10s|0|--smp 4|workload=stress seconds=10|$ok_run and c['ipis_sent']==0 and c['tlbi_ops']>0 and c['tlbi_range_ops']>0 and c['pages_unmapped']>0 and c['tables_freed']>0 and c['walker_walks']>0 and c['grace_periods']>0"
  "stress-2cpu|0|--smp 2|workload=stress seconds=4|$ok_run and c['ipis_sent']==0 and c['walker_walks']>0 and c['tables_freed']>0 and c['grace_periods']>0"
  "stress-4cpu-roleless|0|--smp 4|workload=stress seconds=1 mutators=1 touchers=1 walkers=1|$ok_run and c['walker_walks']>0 and c['mutator_ops']>0"
  # Every flush is local on one CPU. (dsb_ish counts activation barriers too, so it is not 0
  # here; that a local flush issues no DSB ISH is checked exactly by the selftest at --smp 1.)
  "stress-1cpu-local-flushes|0|--smp 1|workload=stress seconds=3|$ok_run and c['walker_walks']>0 and c['tlbi_local_ops']==c['tlbi_ops']>0"
  "stress-8cpu|0|--smp 8|workload=stress seconds=4|$ok_run and c['ipis_sent']==0 and c['walker_walks']>0 and c['grace_periods']>0"
  "stress-8cpu-3-mutators|0|--smp 8|workload=stress seconds=4 mutators=3 touchers=3 walkers=2 sharing=on|$ok_run and c['tables_unshared']>0"
  "stress-cortex-a72|0|--smp 4 --cpu cortex-a72|workload=stress seconds=4|$ok_run and c['tlbi_range_ops']==0 and c['tlbi_asid_ops']>0 and not s['tlbi_range']"
  "stress-el2|0|--smp 4 --el2|workload=stress seconds=3|$ok_run and s['boot_el']==2"
  "flush-ipi|0|--smp 4|workload=stress seconds=4 flush=ipi|$ok_run and c['ipis_sent']>0 and c['tlbi_local_ops']>0"
  "asid-bits-3|0|--smp 4|workload=stress seconds=4 asid_bits=3|$ok_run and c['asid_rollovers']>0"
  "tablefree-sync-each|0|--smp 4|workload=stress seconds=4 tablefree=sync-each|$ok_run and c['table_syncs']==c['tables_freed'] and c['grace_periods']==0 and c['ipis_sent']==3*c['table_syncs']"
  "tablefree-sync-batch|0|--smp 4|workload=stress seconds=4 tablefree=sync-batch|$ok_run and 0<c['table_syncs']<=c['gather_flushes'] and c['table_syncs']<c['tables_freed']"
  "fail-alloc-500|0|--smp 4|workload=stress seconds=4 fail_alloc=500|$ok_run and c['table_free_fallbacks']>0"
  "bug-skip-tlbi|1|--smp 4|workload=stress seconds=5 bug=skip-tlbi audit=off|c['stale_tlb_detected']>0"
  "bug-local-tlbi|1|--smp 4|workload=stress seconds=5 bug=local-tlbi audit=off|c['stale_tlb_detected']>0"
  "bug-local-tlbi-a72|1|--smp 4 --cpu cortex-a72|workload=stress seconds=5 bug=local-tlbi seed=2 audit=off|c['stale_tlb_detected']>0"
  "bug-free-tables-now|1|--smp 4|workload=stress seconds=10 bug=free-tables-now walkers=2 touchers=1 audit=off|c['uaf_detected']>0"
  "bug-walker-irqs-on|1|--smp 4|workload=stress seconds=10 bug=walker-irqs-on walkers=2 touchers=1 audit=off|c['uaf_detected']>0"
  "bug-leaf-only-flush|1|--smp 4|workload=stress seconds=3 bug=leaf-only-flush audit=off|c['leaf_only_flush_detected']>0"
  "sharing-sync-last|0|--smp 4|workload=stress seconds=4 sharing=on unshare=sync-last|$ok_run and c['tables_unshared']>0 and c['unshare_flush_missed']==0"
  "sharing-sync-each|0|--smp 4|workload=stress seconds=4 sharing=on unshare=sync-each|$ok_run and c['tables_unshared']>0 and c['table_syncs']>=c['tables_unshared']"
  "sharing-recheck|0|--smp 4|workload=stress seconds=4 sharing=on unshare=recheck|$ok_run and c['tables_unshared']>0 and c['table_syncs']==0"
  "sharing-8cpu-sync-last|0|--smp 8|workload=stress seconds=4 sharing=on|$ok_run and c['tables_unshared']>0"
  "sharing-8cpu-recheck|0|--smp 8|workload=stress seconds=4 sharing=on unshare=recheck|$ok_run and c['tables_unshared']>0 and c['table_syncs']==0"
  "bug-unshare-no-sync|1|--smp 4|workload=stress seconds=10 sharing=on bug=unshare-no-sync walkers=2 touchers=1 audit=off|c['uaf_detected']>0"
)
for bug in skip-tlbi local-tlbi leaf-only-flush last-sharer-narrow-flush protect-wide-stride wrong-asid no-dsb narrow-range; do
  runs+=("bug-$bug-audit|1|--smp 4|workload=stress seconds=1 sharing=on bug=$bug|c['flush_gap_detected']>0")
done
if [ $mode != quick ]; then
  for seed in 2 3 4; do
    runs+=("stress-8cpu-seed$seed|0|--smp 8|workload=stress seconds=10 seed=$seed|$ok_run")
    runs+=("bug-skip-tlbi-seed$seed|1|--smp 4|workload=stress seconds=10 bug=skip-tlbi seed=$seed audit=off|c['stale_tlb_detected']>0")
    runs+=("bug-local-tlbi-seed$seed|1|--smp 4|workload=stress seconds=10 bug=local-tlbi seed=$seed audit=off|c['stale_tlb_detected']>0")
    runs+=("bug-free-tables-now-seed$seed|1|--smp 4|workload=stress seconds=10 bug=free-tables-now seed=$seed audit=off|c['uaf_detected']>0")
    runs+=("bug-walker-irqs-on-seed$seed|1|--smp 4|workload=stress seconds=10 bug=walker-irqs-on seed=$seed audit=off|c['uaf_detected']>0")
  done
  runs+=("stress-16cpu|0|--smp 16|workload=stress seconds=20|$ok_run")
  runs+=("sharing-8cpu-sync-each|0|--smp 8|workload=stress seconds=10 sharing=on unshare=sync-each|$ok_run and c['tables_unshared']>0")
  for seed in 2 3; do
    runs+=("bug-unshare-no-sync-seed$seed|1|--smp 4|workload=stress seconds=10 sharing=on bug=unshare-no-sync seed=$seed audit=off|c['uaf_detected']>0")
  done
fi
if [ $mode = long ]; then
  runs+=("long-8cpu-300s|0|--smp 8 --timeout 1200|workload=stress seconds=300|$ok_run and c['tables_freed']>0 and c['grace_periods']>0")
fi

total=${#runs[@]} i=0 bad=0
log_dir=$(mktemp -d)
for r in "${runs[@]}"; do
  i=$((i + 1))
  IFS='|' read -r name want opts kargs check <<<"$r"
  printf '[%2d/%d] %-28s ' "$i" "$total" "$name"
  t0=$SECONDS
  # shellcheck disable=SC2086
  scripts/run.sh --kernel "$BS_KERNEL" $opts -- $kargs >"$log_dir/$name.log" 2>&1
  rc=$?
  secs=$((SECONDS - t0))
  summary=$(grep '^summary: ' "$log_dir/$name.log" | tail -1 | sed 's/^summary: //')
  verdict=$(NAME="$name" WANT="$want" RC="$rc" SECS="$secs" CHECK="$check" SUMMARY="$summary" OPTS="$opts" KARGS="$kargs" \
    python3 - "$results" <<'PY'
import json, os, sys
name, want, rc, check = os.environ["NAME"], int(os.environ["WANT"]), int(os.environ["RC"]), os.environ["CHECK"]
try:
    s = json.loads(os.environ["SUMMARY"])
except Exception:
    s = None
ok, why = rc == want, ""
if not ok:
    why = f"exit {rc}, expected {want}"
elif s is None:
    ok, why = False, "no summary line"
else:
    c = s.get("counters", {})
    try:
        ok = bool(eval(check))
    except Exception as e:
        ok = False
    if not ok:
        why = "check failed: " + check
line = {"name": name, "expected_exit": want, "exit": rc, "ok": ok, "seconds_wall_qemu": int(os.environ["SECS"]),
        "run_opts": os.environ["OPTS"], "bootargs": os.environ["KARGS"], "why": why, "summary": s}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(line) + "\n")
print(("ok" if ok else "FAIL") + (" " + why if why else ""))
PY
)
  echo "$verdict (exit $rc, ${secs}s)"
  case $verdict in ok*) ;; *) bad=$((bad + 1)); tail -15 "$log_dir/$name.log" | sed 's/^/      /' ;; esac
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = ["stale_tlb_detected", "uaf_detected", "touches", "tlbi_ops", "tlbi_range_ops", "ipis_sent", "tables_freed",
        "grace_periods", "table_syncs", "walker_walks", "asid_rollovers"]
short = ["stale", "uaf", "touches", "tlbi", "range", "ipis", "tbl_freed", "gps", "syncs", "walks", "rollovers"]
print()
print(f"{'run':28} {'exit':>4} {'ok':>4} " + " ".join(f"{k:>9}" for k in short))
for r in rows:
    c = (r["summary"] or {}).get("counters", {})
    print(f"{r['name']:28} {r['exit']:>4} {'yes' if r['ok'] else 'NO':>4} " + " ".join(f"{c.get(k, '-'):>9}" for k in keys))
PY
echo
echo "results: $results"
printf 'stress: %d passed, %d failed\n' $((total - bad)) "$bad"
rm -rf "$log_dir"
[ "$bad" -eq 0 ]

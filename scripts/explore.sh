#!/usr/bin/env bash
# Runs one configuration under many seeds in deterministic mode (run.sh --deterministic), on
# all the host's cores, and prints a table of seeds and outcomes. Each run is a function of its
# arguments, so a failing seed fails again the same way: every failure gets a `reproduce:` line.
#
# usage: scripts/explore.sh [--seeds N] [--first-seed S] [--keep-going] [--jobs J]
#                           [--logs DIR] [run.sh options] -- KERNEL_ARGS...
#   --seeds N          how many seeds (default 20): S, S+1, ..., S+N-1
#   --first-seed S     the first seed (default 1)
#   --keep-going       run every seed; by default no new run starts after the first failure
#   --jobs J           runs at once (default: nproc)
#   --logs DIR         keep each run's console in DIR/seed-S.log, run.sh's stderr in
#                      DIR/seed-S.err (default: a new directory
#                      under target/explore/)
#   run.sh options     --smp --mem --cpu --el2 --timeout --deterministic[=SHIFT] (default shift 3)
# Exit status: 0 if every run passed, 1 if any failed (exit code != 0), 2 on bad arguments.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
seeds=20 first=1 keep_going=0 jobs=$(nproc) logs="" shift_opt="--deterministic" cpu=""
run_opts=()
while [ $# -gt 0 ]; do
    case $1 in
        --seeds) bs_need_value explore.sh "$@"; seeds=$2; shift 2 ;;
        --first-seed) bs_need_value explore.sh "$@"; first=$2; shift 2 ;;
        --keep-going) keep_going=1; shift ;;
        --jobs) bs_need_value explore.sh "$@"; jobs=$2; shift 2 ;;
        --logs) bs_need_value explore.sh "$@"; logs=$2; shift 2 ;;
        --deterministic) shift_opt=--deterministic; shift ;;
        --deterministic=*) shift_opt=$1; BS_ICOUNT=${1#--deterministic=}; shift ;;
        # Checked here, not only by each run's run.sh: a bad one would fail every seed.
        --smp) bs_need_value explore.sh "$@"; bs_check_smp explore.sh "$2"; run_opts+=("$1" "$2"); shift 2 ;;
        --mem) bs_need_value explore.sh "$@"; bs_check_mem explore.sh "$2"; run_opts+=("$1" "$2"); shift 2 ;;
        --timeout) bs_need_value explore.sh "$@"; bs_check_timeout explore.sh "$2"; run_opts+=("$1" "$2"); shift 2 ;;
        --cpu) bs_need_value explore.sh "$@"; cpu=$2; run_opts+=("$1" "$2"); shift 2 ;;
        --el2) run_opts+=("$1"); shift ;;
        --) shift; break ;;
        -h|--help) usage; exit 0 ;;
        *) bs_die "explore.sh: unknown option $1 (see --help)" ;;
    esac
done
bs_check_shift explore.sh
bs_check_int explore.sh --seeds "$seeds" 1 "" "a count of seeds"
# The kernel takes any u64 seed; explore counts them in bash, whose integers are 64-bit signed.
bs_check_int explore.sh --first-seed "$first" 0 "" "a decimal seed"
bs_check_int explore.sh --jobs "$jobs" 1 "" "a count of runs at once"
[ $# -gt 0 ] || bs_die "explore.sh: give the kernel arguments after -- (e.g. -- workload=stress seconds=2)"
args=("$@")
for a in "${args[@]}"; do
    case $a in seed=*) bs_die "explore.sh: $a: explore chooses the seeds (use --first-seed/--seeds)" ;; esac
done

bs_need_qemu
[ -z "$cpu" ] || bs_check_cpu explore.sh "$cpu"
bs_build
if [ -z "$logs" ]; then
    logs="$BS_ROOT/target/explore/$(date -u +%Y%m%dT%H%M%SZ)-$$"
fi
mkdir -p "$logs" || bs_die "explore.sh: cannot create $logs"
# A private copy of the kernel: a rebuild while the runs go on must not change what they boot.
kernel="$logs/broadside.elf"
cp "$BS_KERNEL" "$kernel"

# The command a user reruns; it must be the same boot as the explored one.
q() { printf '%q ' "$@"; }
reproducer() {
    local seed=$1 opts=""
    [ ${#run_opts[@]} -eq 0 ] || opts=$(q "${run_opts[@]}")
    printf 'scripts/run.sh %s%s-- %sseed=%s' "$(q "$shift_opt")" "$opts" "$(q "${args[@]}")" "$seed"
}

# What a run's console says about why it failed: the first detection, watchdog, panic, failed
# check or error line.
detail_of() {
    cat "$1" "${1%.log}.err" 2>/dev/null \
        | grep -m1 -E 'DETECTED|^watchdog:|FATAL|^PANIC|FAIL|^error:|selftest: .*fail' \
        | cut -c1-100 || true
}

outcome_name() {
    case $1 in
        0) echo pass ;; 1) echo "fail (check)" ;; 2) echo "bad args" ;; 3) echo panic ;;
        4) echo watchdog ;; *) echo "exit $1" ;;
    esac
}

declare -A rc_of=() secs_of=()
running=() # pids
declare -A seed_of_pid=()
next=$first last=$((first + seeds - 1)) done_count=0 failed=0 stop=0
tty=0
[ -t 2 ] && tty=1

progress() {
    local msg
    msg=$(printf 'explore: %d/%d runs done, %d failed, %d running' \
        "$done_count" "$seeds" "$failed" "${#running[@]}")
    if [ $tty = 1 ]; then printf '\r%s ' "$msg" >&2; else printf '%s\n' "$msg" >&2; fi
}

start_run() {
    local seed=$1
    (
        start=$(date +%s%N)
        set +e
        "$BS_ROOT/scripts/run.sh" --kernel "$kernel" "$shift_opt" ${run_opts[@]+"${run_opts[@]}"} \
            -- "${args[@]}" "seed=$seed" >"$logs/seed-$seed.log" 2>"$logs/seed-$seed.err" </dev/null
        rc=$?
        end=$(date +%s%N)
        echo "$rc $(((end - start) / 1000000))" >"$logs/seed-$seed.rc"
    ) &
    running+=($!)
    seed_of_pid[$!]=$seed
}

# Reaps finished runs (at least one).
reap() {
    wait -n "${running[@]}" 2>/dev/null || true
    local still=() pid seed rc ms
    for pid in "${running[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            still+=("$pid")
            continue
        fi
        wait "$pid" 2>/dev/null || true
        seed=${seed_of_pid[$pid]}
        read -r rc ms <"$logs/seed-$seed.rc" || { rc=255 ms=0; }
        rc_of[$seed]=$rc
        secs_of[$seed]=$ms
        done_count=$((done_count + 1))
        if [ "$rc" != 0 ]; then
            failed=$((failed + 1))
            [ $keep_going = 1 ] || stop=1
        fi
    done
    running=(${still[@]+"${still[@]}"})
}

trap 'for p in ${running[@]+"${running[@]}"}; do kill -- "$p" 2>/dev/null || true; done' EXIT
wall_start=$(date +%s)
while [ $next -le $last ] || [ ${#running[@]} -gt 0 ]; do
    while [ $stop = 0 ] && [ $next -le $last ] && [ ${#running[@]} -lt "$jobs" ]; do
        start_run $next
        next=$((next + 1))
    done
    progress
    [ ${#running[@]} -gt 0 ] || break
    reap
done
trap - EXIT
progress
[ $tty = 1 ] && echo >&2
wall=$(($(date +%s) - wall_start))

printf '\n%-20s %-14s %8s  %s\n' seed outcome wall_s detail
for seed in $(printf '%s\n' "${!rc_of[@]}" | sort -n); do
    rc=${rc_of[$seed]}
    d=""
    [ "$rc" = 0 ] || d=$(detail_of "$logs/seed-$seed.log")
    printf '%-20s %-14s %8s  %s\n' "$seed" "$(outcome_name "$rc")" \
        "$(awk -v ms="${secs_of[$seed]}" 'BEGIN { printf "%.1f", ms / 1000 }')" "$d"
done
ran=${#rc_of[@]}
echo
echo "explore: $ran of $seeds seeds run, $failed failed, ${wall}s wall, $jobs at once; logs in $logs"
if [ $failed -gt 0 ]; then
    [ $ran -lt "$seeds" ] && echo "explore: stopped at the first failure (--keep-going runs every seed)"
    for seed in $(printf '%s\n' "${!rc_of[@]}" | sort -n); do
        [ "${rc_of[$seed]}" = 0 ] && continue
        echo "reproduce: $(reproducer "$seed")"
    done
    exit 1
fi
exit 0

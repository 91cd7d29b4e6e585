#!/usr/bin/env bash
# Reruns a configuration deterministically (as run.sh --deterministic) under GDB with the
# broadside helpers loaded, and stops at the failure: the detector's report site
# (broadside_base::stats::detected, through which every detector counts), the watchdog
# (broadside_smp::watchdog::fire) or a panic or unexpected exception. The frame above
# `detected` is the detector, with its state. Paste explore.sh's `reproduce:` arguments.
#
# usage: scripts/replay.sh [--batch FILE] [--at N | --back K] [--rr] [--deterministic[=SHIFT]]
#                          [run.sh options] -- KERNEL_ARGS...
#   --batch FILE   after the stop, run the gdb commands in FILE and exit (QEMU ends with gdb)
#   --at N         stop at event N of the run instead (the events numbered in deterministic
#                  runs: yield points, clears, unhooks, TLBIs, barriers, loads, frees, pins,
#                  detections; `bs-events` lists each CPU's last ones), or at the failure if
#                  it comes first
#   --back K       run to the failure once to learn its event number F, then rerun and stop
#                  at event F-K: K events before the failure, in the same run
#   --rr           QEMU record/replay: record the run first, then replay it under GDB from a
#                  snapshot, so reverse-stepi / reverse-continue work. QEMU 7.2 supports it
#                  with one vCPU only: needs --smp 1 (docs/deterministic.md)
#   run.sh options --smp --mem --cpu --el2 --timeout; --deterministic=SHIFT (default 3)
# Without --batch, gdb's prompt comes up stopped at the failure. Exit status: gdb's in batch
# mode; 1 if the run ended without a failure to stop at.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

batch="" rr=0 smp=4 mem=1G cpu=max el2=0 timeout="" shift_val=$BS_DEFAULT_SHIFT at="" back=""
gdb_opts=()
while [ $# -gt 0 ]; do
    case $1 in
        --batch) bs_need_value replay.sh "$@"; batch=$2; shift 2 ;;
        --rr) rr=1; shift ;;
        --at) bs_need_value replay.sh "$@"; at=$2; shift 2 ;;
        --back) bs_need_value replay.sh "$@"; back=$2; shift 2 ;;
        --deterministic) shift_val=$BS_DEFAULT_SHIFT; shift ;;
        --deterministic=*) shift_val=${1#--deterministic=}; shift ;;
        --smp) bs_need_value replay.sh "$@"; smp=$2; gdb_opts+=("$1" "$2"); shift 2 ;;
        --mem) bs_need_value replay.sh "$@"; mem=$2; gdb_opts+=("$1" "$2"); shift 2 ;;
        --cpu) bs_need_value replay.sh "$@"; cpu=$2; gdb_opts+=("$1" "$2"); shift 2 ;;
        --timeout) bs_need_value replay.sh "$@"; timeout=$2; gdb_opts+=("$1" "$2"); shift 2 ;;
        --el2) el2=1; gdb_opts+=("$1"); shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bs_die "replay.sh: unknown option $1 (see --help)" ;;
    esac
done
[ -z "$batch" ] || [ -f "$batch" ] || bs_die "replay.sh: --batch $batch: no such file"
# Events are numbered from 1 (the first one a run records).
[ -z "$at" ] || bs_check_int replay.sh --at "$at" 1 "" "an event number"
[ -z "$back" ] || bs_check_int replay.sh --back "$back" 1 "" "a count of events"
[ -z "$at" ] || [ -z "$back" ] || bs_die "replay.sh: --at and --back exclude each other"
# Checked here although gdb.sh checks them too: --back's first run hides gdb.sh's errors.
bs_check_smp replay.sh "$smp"
bs_check_mem replay.sh "$mem"
[ -z "$timeout" ] || bs_check_timeout replay.sh "$timeout"
[ $# -gt 0 ] || bs_die "replay.sh: give the kernel arguments after -- (paste explore.sh's reproduce: arguments; e.g. -- workload=stress seconds=2 bug=walker-irqs-on seed=1)"
BS_ICOUNT=$shift_val
bs_check_shift replay.sh
export BS_ICOUNT
if [ $rr = 1 ] && [ "$smp" != 1 ]; then
    bs_die "replay.sh: --rr needs --smp 1: QEMU 7.2 refuses record/replay with several vCPUs ('Record/replay feature is not supported for 'smp'')"
fi
bs_need_qemu
bs_check_cpu replay.sh "$cpu"
args=$(bs_deterministic_args "$*")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Stop at the first report site reached. `detected` is never inlined, so one breakpoint covers
# every detector; the others are the failure paths that are not detections. With --at (or
# --back, once the failure's number is known), also at the event asked for.
stop_script() {
    local stop_at=$1
    cat <<'EOF'
set pagination off
set confirm off
EOF
    if [ -n "$stop_at" ]; then
        printf 'bs-stop-at %s\nbreak broadside_base::events::stop_here\n' "$stop_at"
    fi
    cat <<'EOF'
break broadside_base::stats::detected
break broadside_smp::watchdog::fire
break broadside::boot::fatal_exception
break broadside::boot::fatal_panic
continue
python
import gdb
try:
    f = gdb.selected_frame()
    name = f.name() or "?"
except gdb.error:
    name = None
if name is None:
    print("replay: the run ended without reaching a failure")
    gdb.execute("quit 1")
print("replay: stopped at %s on %s" % (name, gdb.selected_thread().name or gdb.selected_thread().num))
if name.endswith("events::stop_here"):
    event = str(int(gdb.parse_and_eval("seq")))
else:
    event = gdb.execute("bs-event-count", to_string=True).strip()
print("replay: at event %s of the run" % event)
try:
    print("replay: " + gdb.execute("bs-event " + event, to_string=True).strip())
    if name.endswith("stats::detected"):
        print(gdb.execute("bs-culprit", to_string=True).rstrip())
except gdb.error:
    pass
end
bt 8
bs-cpus
EOF
}

# --back K: a first run to the failure, to learn its event number.
if [ -n "$back" ]; then
    stop_script "" >"$work/find.gdb"
    set +e
    found=$(BS_GDB_INIT="" "$BS_ROOT/scripts/gdb.sh" --batch "$work/find.gdb" \
        ${gdb_opts[@]+"${gdb_opts[@]}"} -- $args 2>/dev/null |
        sed -n 's/^replay: at event \([0-9]*\) of the run$/\1/p' | head -1)
    set -e
    [ -n "$found" ] || { echo "replay: the run ended without reaching a failure" >&2; exit 1; }
    [ "$found" -gt "$back" ] || bs_die "replay.sh: --back $back: the failure is event $found"
    at=$((found - back))
    echo "replay: the failure is event $found; stopping $back events before it, at event $at" >&2
fi
stop_script "$at" >"$work/stop.gdb"
if [ -n "$batch" ]; then
    cat "$batch" >>"$work/stop.gdb"
fi

if [ $rr = 1 ]; then
    command -v qemu-img >/dev/null 2>&1 || bs_need qemu-img qemu-utils
    bs_build
    BS_RR_DIR=$work
    qemu-img create -q -f qcow2 "$work/snapshots.qcow2" 64M
    echo "replay: recording the run (QEMU record/replay)" >&2
    BS_BOOTARGS=$args
    BS_RR_MODE=record bs_qemu_cmd "$smp" "$mem" "$cpu" "$el2" "$BS_KERNEL"
    set +e
    timeout -k 5 "$(bs_default_timeout)" "${BS_QEMU[@]}" </dev/null >"$work/record.log" 2>&1
    rc=$?
    set -e
    echo "replay: recorded run exited $rc; replaying it under gdb" >&2
    export BS_RR_MODE=replay BS_RR_DIR
fi

if [ -n "$batch" ]; then
    set +e
    BS_GDB_INIT="" "$BS_ROOT/scripts/gdb.sh" --batch "$work/stop.gdb" \
        ${gdb_opts[@]+"${gdb_opts[@]}"} -- $args
    rc=$?
    set -e
    exit $rc
fi
BS_GDB_INIT="$work/stop.gdb" "$BS_ROOT/scripts/gdb.sh" ${gdb_opts[@]+"${gdb_opts[@]}"} -- $args

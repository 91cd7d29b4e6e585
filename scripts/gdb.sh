#!/usr/bin/env bash
# Boots broadside halted under QEMU's gdbstub and attaches gdb-multiarch with symbols and the
# helpers of scripts/gdb/broadside/ (bs-cpus, bs-pt, bs-rcu, bs-gather, bs-counters).
#
# usage: scripts/gdb.sh [--batch FILE] [--debug|--opt0] [run.sh options] [-- KERNEL_ARGS...]
#   --batch FILE  run the gdb commands in FILE non-interactively; QEMU ends when gdb exits
#   --debug       build with extra debug assertions (release opt level, frame pointers kept)
#   --opt0        build unoptimised (every local visible; slower)
#   --deterministic[=SHIFT]  boot as run.sh --deterministic does (-icount, yield_points=on)
# BS_GDB_INIT=FILE: gdb commands run right after gdb attaches, before --batch's or the prompt
# (scripts/replay.sh uses it to stop at the failure).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

smp=4 mem=1G cpu=max el2=0 timeout="" batch="" profile=release
while [ $# -gt 0 ]; do
    case $1 in
        --batch) bs_need_value gdb.sh "$@"; batch=$2; shift 2 ;;
        --debug) profile=debugopt; shift ;;
        --opt0) profile=opt0; shift ;;
        --smp) bs_need_value gdb.sh "$@"; smp=$2; shift 2 ;;
        --mem) bs_need_value gdb.sh "$@"; mem=$2; shift 2 ;;
        --cpu) bs_need_value gdb.sh "$@"; cpu=$2; shift 2 ;;
        --el2) el2=1; shift ;;
        --timeout) bs_need_value gdb.sh "$@"; timeout=$2; shift 2 ;;
        --deterministic) BS_ICOUNT=$BS_DEFAULT_SHIFT; shift ;;
        --deterministic=*) BS_ICOUNT=${1#--deterministic=}; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bs_die "gdb.sh: unknown option $1 (see --help)" ;;
    esac
done
[ -z "$batch" ] || [ -f "$batch" ] || bs_die "gdb.sh: --batch $batch: no such file"
bs_check_smp gdb.sh "$smp"
bs_check_mem gdb.sh "$mem"
[ -z "$timeout" ] || bs_check_timeout gdb.sh "$timeout"
bs_check_shift gdb.sh
[ -z "${BS_GDB_INIT:-}" ] || [ -f "$BS_GDB_INIT" ] || bs_die "gdb.sh: BS_GDB_INIT=$BS_GDB_INIT: no such file"
BS_BOOTARGS=$(bs_deterministic_args "$*")
bs_need_qemu
bs_check_cpu gdb.sh "$cpu"
bs_need_gdb
bs_need_rust

kernel=$BS_KERNEL
case $profile in
    release) bs_build ;;
    debugopt|opt0)
        (cd "$BS_ROOT" && cargo build --profile "$profile" -p broadside >/dev/null 2>&1) \
            || (cd "$BS_ROOT" && cargo build --profile "$profile" -p broadside)
        kernel="$BS_ROOT/target/$BS_TARGET/$profile/broadside" ;;
esac

# A free TCP port for the gdbstub.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BS_GDB_PORT=$port
[ -n "$timeout" ] || timeout=$(( $(bs_default_timeout) + 600 ))
bs_qemu_cmd "$smp" "$mem" "$cpu" "$el2" "$kernel" 1
qemu_log=$(mktemp)
timeout -k 5 "$timeout" "${BS_QEMU[@]}" </dev/null >"$qemu_log" 2>&1 &
qemu_pid=$!
cleanup() { kill "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; }
trap cleanup EXIT

gdb_args=(-q -nx
    -ex "set pagination off" -ex "set confirm off"
    -ex "set architecture aarch64"
    -ex "file $kernel"
    -ex "source $BS_ROOT/scripts/gdb/broadside.py"
    -ex "target remote 127.0.0.1:$port")
[ -z "${BS_GDB_INIT:-}" ] || gdb_args+=(-x "$BS_GDB_INIT")
if [ -n "$batch" ]; then
    set +e
    timeout -k 5 "$timeout" gdb-multiarch -batch "${gdb_args[@]}" -x "$batch" </dev/null
    rc=$?
    set -e
    echo "--- kernel console (QEMU) ---"
    cat "$qemu_log"
    exit $rc
else
    echo "QEMU console output goes to $qemu_log (tail -f it in another terminal)" >&2
    gdb-multiarch "${gdb_args[@]}"
fi

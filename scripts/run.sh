#!/usr/bin/env bash
# Builds broadside (release) and boots it on QEMU virt. Exit status: the kernel's exit code
# (0 pass, 1 check failed, 2 bad arguments, 3 panic, 4 watchdog), or 4 if QEMU had to be
# killed by the host-side --timeout.
#
# usage: scripts/run.sh [--smp N] [--mem SIZE] [--cpu MODEL] [--el2] [--timeout SECS]
#                       [--kernel ELF] [--no-semihosting] [--deterministic[=SHIFT]]
#                       [-- KERNEL_ARGS...]
#   --kernel ELF       boot ELF as it is (no build)
#   --no-semihosting   QEMU without semihosting: the kernel powers off through PSCI (exit 0)
#   --deterministic[=SHIFT]  -icount shift=SHIFT,sleep=off (default 3): every vCPU on one host
#                      thread, time counted in instructions, so the same arguments give the same
#                      output byte for byte; adds yield_points=on unless the arguments set it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

smp=4 mem=1G cpu=max el2=0 timeout="" kernel=""
while [ $# -gt 0 ]; do
    case $1 in
        --smp) bs_need_value run.sh "$@"; smp=$2; shift 2 ;;
        --mem) bs_need_value run.sh "$@"; mem=$2; shift 2 ;;
        --cpu) bs_need_value run.sh "$@"; cpu=$2; shift 2 ;;
        --el2) el2=1; shift ;;
        --timeout) bs_need_value run.sh "$@"; timeout=$2; shift 2 ;;
        --kernel) bs_need_value run.sh "$@"; kernel=$2; shift 2 ;;
        --no-semihosting) BS_NO_SEMIHOSTING=1; shift ;;
        --deterministic) BS_ICOUNT=$BS_DEFAULT_SHIFT; shift ;;
        --deterministic=*) BS_ICOUNT=${1#--deterministic=}; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bs_die "run.sh: unknown option $1 (see --help)" ;;
    esac
done
bs_check_smp run.sh "$smp"
bs_check_mem run.sh "$mem"
[ -z "$timeout" ] || bs_check_timeout run.sh "$timeout"
[ -z "$kernel" ] || [ -f "$kernel" ] || bs_die "run.sh: --kernel $kernel: no such file"
bs_check_shift run.sh
BS_BOOTARGS=$(bs_deterministic_args "$*")

bs_need_qemu
bs_check_cpu run.sh "$cpu"
if [ -z "$kernel" ]; then
    bs_build
    kernel=$BS_KERNEL
fi
[ -n "$timeout" ] || timeout=$(bs_default_timeout)
bs_qemu_cmd "$smp" "$mem" "$cpu" "$el2" "$kernel"
set +e
timeout -k 5 "$timeout" "${BS_QEMU[@]}" </dev/null
rc=$?
set -e
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "run.sh: QEMU killed after ${timeout}s (host-side timeout; the kernel's watchdog did not end the run)" >&2
    exit 4
fi
exit $rc

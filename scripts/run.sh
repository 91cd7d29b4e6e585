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
        --smp) smp=${2:?--smp needs a value}; shift 2 ;;
        --mem) mem=${2:?--mem needs a value}; shift 2 ;;
        --cpu) cpu=${2:?--cpu needs a value}; shift 2 ;;
        --el2) el2=1; shift ;;
        --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
        --kernel) kernel=${2:?--kernel needs a value}; shift 2 ;;
        --no-semihosting) BS_NO_SEMIHOSTING=1; shift ;;
        --deterministic) BS_ICOUNT=$BS_DEFAULT_SHIFT; shift ;;
        --deterministic=*) BS_ICOUNT=${1#--deterministic=}; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bs_die "run.sh: unknown option $1 (see --help)" ;;
    esac
done
[[ $smp =~ ^[0-9]+$ ]] && [ "$smp" -ge 1 ] || bs_die "run.sh: --smp $smp: a CPU count >= 1"
[ -z "$timeout" ] || [[ $timeout =~ ^[0-9]+$ ]] || bs_die "run.sh: --timeout $timeout: seconds"
bs_check_shift
BS_BOOTARGS=$(bs_deterministic_args "$*")

bs_need_qemu
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

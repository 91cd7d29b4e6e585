#!/usr/bin/env bash
# Cargo runner for the kernel target: `cargo run --release -- KERNEL_ARGS` boots the built ELF
# with run.sh's defaults (override with BS_RUN_OPTS, e.g. BS_RUN_OPTS="--smp 8 --el2").
set -euo pipefail
elf=$1
shift
# shellcheck disable=SC2086
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" ${BS_RUN_OPTS:-} --kernel "$elf" -- "$@"

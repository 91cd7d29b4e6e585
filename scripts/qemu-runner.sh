#!/usr/bin/env bash
# Cargo runner: `cargo run --release -- KERNEL_ARGS` boots the built kernel ELF with run.sh's
# defaults (override with BS_RUN_OPTS, e.g. BS_RUN_OPTS="--smp 8 --el2"). Cargo also hands it
# the host's test binaries (the runner is looked up by the host's target): those run as they are.
set -euo pipefail
elf=$1
shift
# e_machine, the 16-bit little-endian field at offset 18 of an ELF header: 0xb7 is AArch64.
machine=$(od -An -tx1 -j18 -N2 "$elf" | tr -d ' \n')
if [ "$machine" != "b700" ]; then
    exec "$elf" "$@"
fi
# shellcheck disable=SC2086
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" ${BS_RUN_OPTS:-} --kernel "$elf" -- "$@"

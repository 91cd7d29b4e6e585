# Shared by broadside's scripts: locating the repo, installing what is missing, building, and
# composing the QEMU command line. Source it; do not run it.

BS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The kernel target; keep it equal to kernel/Cargo.toml's forced-target.
BS_TARGET=aarch64-unknown-none-softfloat
BS_KERNEL="$BS_ROOT/target/$BS_TARGET/release/broadside"

bs_log() { printf '%s\n' "$*" >&2; }
bs_die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# Checks of the scripts' own arguments. Each dies through bs_die (`error: SCRIPT: ...`, exit 2,
# the contract for bad arguments); a script runs them before it installs, builds or boots
# anything, so a typo costs nothing and is never mistaken for a kernel's result.

# bs_need_value SCRIPT OPTION [NEXT...]: OPTION takes a value; called as `bs_need_value x.sh "$@"`
# in an option loop. A following option (`--smp --el2`, `--smp -- ARGS`) is not a value.
bs_need_value() {
    [ $# -ge 3 ] && [ -n "$3" ] && [[ $3 != --* ]] || bs_die "$1: $2 needs a value"
}

# bs_check_int SCRIPT OPTION VALUE MIN MAX WHAT: VALUE is a decimal MIN..=MAX (MAX empty: no
# bound). At most 18 digits, so bash's 64-bit arithmetic on it cannot overflow.
bs_check_int() {
    local script=$1 opt=$2 v=$3 min=$4 max=$5 what=$6
    if [[ $v =~ ^[0-9]{1,18}$ ]] && ((10#$v >= min)) && { [ -z "$max" ] || ((10#$v <= max)); }; then
        return 0
    fi
    if [ -n "$max" ]; then
        bs_die "$script: $opt $v: $what from $min to $max"
    fi
    [[ ! $v =~ ^[0-9]{19,}$ ]] || bs_die "$script: $opt $v: $what of at most 18 digits"
    bs_die "$script: $opt $v: $what, $min or more"
}

# QEMU virt with GICv3 takes up to 512 vCPUs (redistributors of 124 and up in a second region).
BS_MAX_SMP=512
bs_check_smp() { bs_check_int "$1" "${3:---smp}" "$2" 1 "$BS_MAX_SMP" "a CPU count"; }

# As QEMU's -m reads it: a number, perhaps with a fraction, in MiB or with a K, M, G or T suffix.
# Whether the kernel fits is the kernel's to say (a workload names the size it needs).
bs_check_mem() {
    [[ $2 =~ ^[0-9]+(\.[0-9]+)?[KMGTkmgt]?$ && $2 =~ [1-9] ]] \
        || bs_die "$1: --mem $2: a RAM size such as 512M or 2G (MiB without a suffix)"
}

# Seconds for the host-side timeout; 0 would mean none to timeout(1).
bs_check_timeout() { bs_check_int "$1" --timeout "$2" 1 "" "seconds"; }

# A -cpu model QEMU knows (needs QEMU: call after bs_need_qemu). If QEMU cannot list its models,
# QEMU itself judges the model at boot.
bs_check_cpu() {
    local models
    models=$(qemu-system-aarch64 -M virt -cpu help 2>/dev/null | awk 'NR > 1 { print $1 }') || true
    [ -z "$models" ] || grep -qxF -- "$2" <<<"$models" \
        || bs_die "$1: --cpu $2: not a CPU model of qemu-system-aarch64 (qemu-system-aarch64 -M virt -cpu help lists them; max, cortex-a72 and neoverse-n1 are tested)"
}

# Installs a Debian package when the command it provides is missing.
bs_need() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    bs_log "installing $pkg (for $cmd)"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    if [ -z "${BS_APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq >&2 || bs_die "apt-get update failed"
        BS_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >&2 \
        || bs_die "could not install $pkg"
}

# The pinned toolchain and kernel target that rust-toolchain.toml names. rustup may not
# auto-install them, so do it here: `rustup toolchain install` in the repo reads the file
# (channel, targets, components); `rustup target add` covers an older rustup that skips targets.
# --no-self-update: installing a toolchain must not replace the user's rustup (with the default
# settings it would, even with an older release than the one installed).
bs_need_rust() {
    command -v rustup >/dev/null 2>&1 || bs_die "rustup is not installed"
    bs_rust_has_target && return 0
    bs_log "installing the Rust toolchain of rust-toolchain.toml with $BS_TARGET"
    (cd "$BS_ROOT" && rustup toolchain install --no-self-update >&2) \
        || bs_die "rustup toolchain install failed"
    bs_rust_has_target && return 0
    (cd "$BS_ROOT" && rustup target add "$BS_TARGET" >&2) || bs_die "could not add $BS_TARGET"
    bs_rust_has_target || bs_die "$BS_TARGET is still not installed for $(cd "$BS_ROOT" && rustup show active-toolchain 2>&1)"
}
bs_rust_has_target() {
    (cd "$BS_ROOT" && RUSTUP_AUTO_INSTALL=0 rustup target list --installed 2>/dev/null) | grep -qx "$BS_TARGET"
}

bs_need_qemu() { bs_need qemu-system-aarch64 qemu-system-arm; }

# cargo-machete: scripts/test.sh's check that every declared dependency is named in its crate's
# code. Not a Debian package, so cargo builds it, from the repo so with the pinned toolchain (the
# one bs_need_rust guarantees; cargo warns that it overrides the default). The version is pinned
# because a release that reads code differently could fail CI on an unchanged tree.
BS_MACHETE_VERSION=0.9.2
bs_need_machete() {
    command -v cargo-machete >/dev/null 2>&1 && return 0
    bs_need_rust
    bs_log "installing cargo-machete $BS_MACHETE_VERSION (cargo install)"
    (cd "$BS_ROOT" && cargo install --locked cargo-machete --version "$BS_MACHETE_VERSION" >&2) \
        || bs_die "could not install cargo-machete"
    # cargo installs into CARGO_INSTALL_ROOT, else CARGO_HOME, else ~/.cargo; a shell that found
    # cargo through rustup's proxy may still lack that bin/ on PATH.
    command -v cargo-machete >/dev/null 2>&1 \
        || PATH="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin:$PATH"
    command -v cargo-machete >/dev/null 2>&1 || bs_die "cargo-machete was installed but is not on PATH"
}
bs_need_gdb() { bs_need gdb-multiarch gdb-multiarch; }

# Builds the kernel (release, with debug info). Quiet unless it fails. `-p broadside`: the
# workspace's default members are the host crates, not the kernel.
bs_build() {
    bs_need_rust
    local log
    log=$(mktemp)
    if ! (cd "$BS_ROOT" && cargo build --release -p broadside ${BS_CARGO_FLAGS:-} >"$log" 2>&1); then
        cat "$log" >&2
        rm -f "$log"
        bs_die "kernel build failed"
    fi
    rm -f "$log"
}

# Sets BS_QEMU to the QEMU command for: smp mem cpu el2(0|1) kernel [gdb(0|1)]. The bootargs
# come from BS_BOOTARGS; BS_NO_SEMIHOSTING=1 leaves semihosting off (the kernel then exits
# through PSCI SYSTEM_OFF, which QEMU reports as 0 whatever the result).
bs_qemu_cmd() {
    local smp=$1 mem=$2 cpu=$3 el2=$4 kernel=$5 gdb=${6:-0}
    local machine="virt,gic-version=3"
    [ "$el2" = 1 ] && machine="$machine,virtualization=on"
    BS_QEMU=(qemu-system-aarch64 -M "$machine" -cpu "$cpu" -smp "$smp" -m "$mem"
        -nographic -kernel "$kernel" -append "${BS_BOOTARGS:-}")
    [ "${BS_NO_SEMIHOSTING:-0}" = 1 ] || BS_QEMU+=(-semihosting-config enable=on,target=native)
    [ "$gdb" = 1 ] && BS_QEMU+=(-S -gdb "tcp::${BS_GDB_PORT:-1234}")
    # Deterministic mode: every vCPU on one host thread, the virtual clock counting
    # instructions (2^SHIFT ns each) and never catching up with the host's clock while idle
    # (sleep=off), so a run is a function of its inputs.
    local rr=""
    # Record/replay (replay.sh --rr): QEMU logs every nondeterministic event to rrfile and
    # snapshots the VM at start into a qcow2 drive (reverse execution restores it). QEMU 7.2
    # refuses it with more than one vCPU.
    if [ -n "${BS_RR_MODE:-}" ]; then
        rr=",rr=$BS_RR_MODE,rrfile=$BS_RR_DIR/replay.bin,rrsnapshot=init"
        BS_QEMU+=(-drive "file=$BS_RR_DIR/snapshots.qcow2,if=none,id=rr")
    fi
    [ -n "${BS_ICOUNT:-}" ] && BS_QEMU+=(-icount "shift=$BS_ICOUNT,sleep=off$rr")
    return 0
}

# Deterministic mode (run.sh --deterministic[=SHIFT]): BS_ICOUNT holds the icount shift (one
# instruction = 2^SHIFT ns of virtual time; the vCPUs share that clock, so each of N gets
# 10^9 / 2^SHIFT / N instructions per virtual second). 3 is the default: 31 MIPS per vCPU at
# 4 vCPUs, close enough to hardware that the kernel's time constants (1 ms ticks, walks held up
# to 8 ms, touchers staying 2-10 ms) hold real work; at 5 (7.8 MIPS per vCPU) a held walk
# covered so few frees that stress caught bug=free-tables-now in 1 of 10 seeds, against 10 of
# 10 at 3, for about the same wall time (a 2-second 4-CPU stress: about 2 s).
BS_DEFAULT_SHIFT=3
# bs_check_shift SCRIPT: BS_ICOUNT, if set, is a shift QEMU accepts (0..10, MAX_ICOUNT_SHIFT).
# `auto` would adapt to the host and so is not deterministic.
bs_check_shift() {
    [ -z "${BS_ICOUNT:-}" ] && return 0
    [[ $BS_ICOUNT =~ ^([0-9]|10)$ ]] || bs_die "$1: --deterministic=$BS_ICOUNT: an icount shift from 0 to 10"
}
# The kernel arguments of a run: in deterministic mode yield_points=on goes first, unless the
# arguments set yield_points= themselves (the seed then chooses the interleaving).
bs_deterministic_args() {
    local args=$1
    if [ -n "${BS_ICOUNT:-}" ] && [[ ! " $args " =~ [[:space:]]yield_points= ]]; then
        args="yield_points=on${args:+ $args}"
    fi
    printf '%s' "$args"
}

# A host-side limit for a boot: the kernel's own watchdog should fire first.
bs_default_timeout() {
    local args=" ${BS_BOOTARGS:-} " secs=10 t
    if [[ $args =~ [[:space:]]seconds=([0-9]+)[[:space:]] ]]; then secs=${BASH_REMATCH[1]}; fi
    if [[ $args =~ [[:space:]]timeout=([0-9]+)[[:space:]] ]]; then
        t=${BASH_REMATCH[1]}
        echo $((t + 60))
    else
        echo $((secs * 3 + 240))
    fi
}

#!/usr/bin/env bash
# Everything CI checks: host unit tests (and loom model checks), clippy, rustfmt, then QEMU
# boots over a matrix of machines and arguments, each judged by exit code and summary line, and
# a batch GDB session. Every boot runs under a timeout. Exits non-zero if anything failed.
#
# usage: scripts/test.sh [--quick]   (--quick: skip the loom and longer stress boots)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$BS_ROOT"

quick=0
[ "${1:-}" = "--quick" ] && quick=1
HOST=x86_64-unknown-linux-gnu
passed=0 failed=0
failures=()
out_dir=$(mktemp -d)

pass() { passed=$((passed + 1)); printf '  ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); printf '  FAIL  %s\n' "$1"; }

step() { printf '\n== %s\n' "$1"; }

bs_need_rust
bs_need_qemu
bs_need_gdb
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

step "host unit tests"
if cargo test --workspace --exclude broadside-tests 2>&1 | tee "$out_dir/unit.log" | grep -E '^test result|panicked|FAILED'; then :; fi
grep -q '^test result: ok' "$out_dir/unit.log" && ! grep -q 'test result: FAILED' "$out_dir/unit.log" \
    && pass "cargo test (host)" || { tail -50 "$out_dir/unit.log"; fail "cargo test (host)"; }

if [ $quick = 0 ]; then
    step "loom model checks"
    if RUSTFLAGS="--cfg loom" cargo test --release -p broadside-sync -p broadside-mm loom >"$out_dir/loom.log" 2>&1; then
        grep -E '^test result' "$out_dir/loom.log"
        pass "loom"
    else
        tail -40 "$out_dir/loom.log"; fail "loom"
    fi
fi

step "clippy and rustfmt"
cargo clippy --release -- -D warnings >"$out_dir/clippy.log" 2>&1 && pass "clippy (kernel)" \
    || { grep -E '^(error|warning)' -A5 "$out_dir/clippy.log" | head -40; fail "clippy (kernel)"; }
cargo clippy --tests --workspace --exclude broadside -- -D warnings >"$out_dir/clippy-host.log" 2>&1 \
    && pass "clippy (host tests)" \
    || { grep -E '^(error|warning)' -A5 "$out_dir/clippy-host.log" | head -40; fail "clippy (host tests)"; }
cargo fmt --check >/dev/null 2>&1 && pass "rustfmt" || fail "rustfmt (run cargo fmt)"

step "kernel build"
bs_build && pass "cargo build --release" || { fail "cargo build --release"; }

# boot NAME EXPECTED_RC RUN_OPTS... -- KERNEL_ARGS... ; then checks on the summary with expect.
last_log=""
boot() {
    local name=$1 want=$2
    shift 2
    last_log="$out_dir/boot-$(echo "$name" | tr -c 'a-zA-Z0-9' _).log"
    local t0=$SECONDS
    scripts/run.sh --kernel "$BS_KERNEL" "$@" >"$last_log" 2>&1
    local rc=$?
    if [ $rc -ne "$want" ]; then
        tail -30 "$last_log"
        fail "$name: exit $rc, expected $want"
        return 1
    fi
    if ! tail -1 "$last_log" | grep -q '^summary: {'; then
        tail -10 "$last_log"; fail "$name: last line is not the summary"; return 1
    fi
    pass "$name (exit $rc, $((SECONDS - t0))s)"
}

# expect NAME PYTHON_EXPR: evaluates EXPR with s = the summary object of the last boot.
expect() {
    local name=$1 expr=$2
    if tail -1 "$last_log" | sed 's/^summary: //' | python3 -c "
import json,sys
s=json.load(sys.stdin); c=s.get('counters',{})
ok = $expr
if not ok: print('    summary:', json.dumps(s)[:600]); sys.exit(1)
"; then pass "  $name"; else fail "  $name"; fi
}

# expect_line NAME REGEX: the last boot printed a line matching REGEX.
expect_line() {
    if grep -qE "$2" "$last_log"; then pass "  $1"; else fail "  $1"; fi
}

step "boots: foundation"
boot "default (demo, 4 CPUs)" 0 && expect "4 CPUs at EL1, pass" \
    "s['cpus']==4 and s['result']=='pass' and s['boot_el']==1 and s['workload']=='demo'"
boot "smp 1" 0 --smp 1 && expect "1 CPU" "s['cpus']==1 and s['result']=='pass'"
boot "smp 8, EL2, selftest" 0 --smp 8 --el2 -- workload=selftest \
    && expect "8 CPUs entered at EL2" "s['cpus']==8 and s['boot_el']==2 and s['workload']=='selftest'"
boot "cortex-a72" 0 --cpu cortex-a72 --smp 2 && expect "no FEAT_TLBIRANGE" "s['tlbi_range'] is False and s['cpus']==2"
boot "max has FEAT_TLBIRANGE" 0 --smp 2 -- workload=selftest && expect "tlbi_range" "s['tlbi_range'] is True"
boot "smp 64 selftest" 0 --smp 64 --timeout 120 -- workload=selftest \
    && expect "64 CPUs, ticks and SGIs on all" "s['cpus']==64 and c['sgis_received']>=63 and c['timer_ticks']>=128"
boot "bad key" 2 -- bogus=1 && expect_line "names the key" '^error: bootargs: bogus=1: unknown key'
boot "bad value" 2 -- seconds=abc && expect_line "names the key" '^error: bootargs: seconds=abc: '
boot "out of range" 2 -- hz=5 && expect_line "names the key" '^error: bootargs: hz=5: '
boot "asid_bits too small for the CPUs" 2 --smp 4 -- asid_bits=2 && expect_line "says why" '^error: bootargs: asid_bits=2: '

boot "secondaries late (cpus_wait_ms=1)" 4 --smp 64 -- workload=selftest cpus_wait_ms=1 \
    && expect_line "names the missing CPUs" 'did not come online within 1 ms: cpu[0-9]+'

step "boots: without semihosting (exit through PSCI SYSTEM_OFF)"
# QEMU without -semihosting-config: the kernel's probe finds no semihosting and powers off
# through PSCI, which can only say 0; the console still carries the result.
no_semihosting() {
    BS_BOOTARGS="$*" bs_qemu_cmd 2 1G max 0 "$BS_KERNEL"
    local cmd=() skip=0 a
    for a in "${BS_QEMU[@]}"; do
        if [ $skip = 1 ]; then skip=0; continue; fi
        if [ "$a" = -semihosting-config ]; then skip=1; continue; fi
        cmd+=("$a")
    done
    last_log="$out_dir/nosemi.log"
    timeout -k 5 60 "${cmd[@]}" </dev/null >"$last_log" 2>&1
}
if no_semihosting workload=selftest && tail -1 "$last_log" | grep -q '"result":"pass"'; then
    pass "selftest powers off with PSCI (QEMU exit 0, summary pass)"
else
    tail -5 "$last_log"; fail "selftest without semihosting"
fi
if no_semihosting bogus=1 && grep -q '^error: bootargs: bogus=1' "$last_log"; then
    pass "bad arguments without semihosting: error printed, PSCI power-off"
else
    tail -5 "$last_log"; fail "bad arguments without semihosting"
fi

step "boots: the kernel's own failure paths (negative controls)"
boot "bug=panic" 3 --smp 2 -- bug=panic && expect_line "message, location, CPU" '^PANIC on cpu0: bug=panic' \
    && expect_line "backtrace" '^  backtrace:' && expect "summary says fail" "s['result']=='fail' and s['exit_code']==3"
boot "bug=fault" 3 --smp 2 -- bug=fault && expect_line "decoded syndrome" 'data abort from the current EL, translation fault' \
    && expect_line "FAR of the access" 'FAR 0xffffe00000000000' && expect_line "registers" '^  x0 '
# The kernel is soft-float and leaves CPACR_EL1.FPEN = 0b00: one FP/SIMD instruction must trap
# (ESR EC 0x07) and be named as such, not run or die anonymously.
boot "bug=fp" 3 --smp 2 -- bug=fp && expect_line "FP/SIMD trap named" 'EC 0x07 FP/SIMD instruction trapped: the kernel is built soft-float \(CPACR_EL1\.FPEN=0\)' \
    && expect_line "fatal synchronous exception" '^FATAL: unexpected synchronous exception on cpu0' \
    && expect "summary says fail" "s['result']=='fail' and s['exit_code']==3"
# The run's deadline is far (timeout=60): the stall detector, not the deadline, must end the run,
# naming the CPU that stopped taking ticks within seconds (a 4-digit "ms after ... armed").
hang_t0=$SECONDS
boot "bug=hang (watchdog)" 4 --smp 2 -- bug=hang timeout=60 \
    && expect_line "the stall detector names cpu1" '^watchdog: cpu1 stopped taking timer ticks: last tick [0-9]+ ms ago \(limit [0-9]+ ms\)' \
    && expect_line "within 10 s of arming, long before the deadline" 'stopped taking timer ticks: .*, [0-9]{1,4} ms after the watchdog was armed, [0-9]{5,} ms before the run deadline' \
    && expect_line "then every CPU's state" '^watchdog: cpu1 .*state=working .*last_tick=[0-9]+ms_ago' \
    && expect "summary says fail" "s['result']=='fail' and s['exit_code']==4" \
    && { [ $((SECONDS - hang_t0)) -lt 40 ] && pass "  host saw the exit in $((SECONDS - hang_t0))s (deadline 60s)" \
         || fail "  bug=hang took $((SECONDS - hang_t0))s: the deadline, not the stall detector, ended it"; }

step "boots: teardown race and sharing (issue 9 controls)"
# Each planted bug is caught by its selftest scenario on the first try, on both TLBI paths:
# with FEAT_TLBIRANGE (-cpu max) and without (cortex-a72). The scenarios do not depend on timing.
selftest_control() {
    local bug=$1 check=$2 cpu
    for cpu in max cortex-a72; do
        boot "selftest bug=$bug ($cpu)" 1 --smp 2 --cpu "$cpu" -- workload=selftest "bug=$bug" \
            && expect_line "names the failed check" "^selftest: $check: FAIL: " \
            && expect "one check failed" "c['selftest_failures']==1 and s['result']=='fail'"
    done
}
selftest_control map-dying "no mapping enters a space once its destroy has begun"
selftest_control last-sharer-narrow-flush "the last sharer's flush covers every block of the freed table"
selftest_control protect-wide-stride "protect over pages and blocks flushes every leaf; partial blocks refused"
selftest_control map-object-no-undo "map_object out of memory half-way undoes its sharing"
selftest_control unshare-flush-late "a full unshare is flushed under the object lock"
boot "selftest passes every scenario (cortex-a72, 1 CPU)" 0 --smp 1 --cpu cortex-a72 -- workload=selftest \
    && expect "no check failed or skipped" "c['selftest_failures']==0" \
    && expect_line "all ran" '^selftest: 14 of 14 checks passed, 0 skipped, 0 failed'
boot "selftest with a planted bug says what it skipped" 1 --smp 2 -- workload=selftest bug=map-dying \
    && expect_line "skipped, not ok" '^selftest: TLB flush of 512 pages: exact TLBI and DSB counts: skipped \('
# Without its embedded batch a gather cannot progress once batch allocations fail: the CPU
# livelocks and the watchdog ends the run.
boot "selftest bug=gather-no-local-batch (watchdog)" 4 --smp 2 -- workload=selftest bug=gather-no-local-batch timeout=10 \
    && expect_line "the watchdog fired" '^watchdog: '
boot "stress fail_alloc=1000" 0 --smp 4 -- workload=stress seconds=4 fail_alloc=1000 \
    && expect "the fallbacks ran, nothing detected" "c['table_free_fallbacks']>0 and c['gathers']>0 and c['stale_tlb_detected']==0 and c['uaf_detected']==0"
boot "stress fail_alloc=1000 sharing=on" 0 --smp 4 -- workload=stress seconds=4 fail_alloc=1000 sharing=on \
    && expect "the fallbacks ran, tables unshared, nothing detected" "c['table_free_fallbacks']>0 and c['tables_unshared']>0 and c['stale_tlb_detected']==0 and c['uaf_detected']==0"
boot "stress fail_alloc=1000 bug=gather-no-local-batch (watchdog)" 4 --smp 4 -- workload=stress seconds=4 fail_alloc=1000 bug=gather-no-local-batch timeout=12 \
    && expect_line "the watchdog fired" '^watchdog: '

step "boots: memory pressure and stress workload checks"
# (stress/unshare-bench under --mem limits, touches, adoption)
# Out of memory is an expected condition, never a panic: a workload sizes itself to the free
# memory it finds (and backs off from maps that fail mid-run), or refuses at start with exit 2
# and one line naming the memory it needs. These sizes all fit a smaller layout, so they pass.
no_detection="c['stale_tlb_detected']==0 and c['uaf_detected']==0 and c['leaf_only_flush_detected']==0"
for mem in 64M 96M; do
    boot "stress at --mem $mem" 0 --smp 4 --mem $mem -- workload=stress seconds=3 \
        && expect "sized below the 1 GiB layout, touches, no detection" \
            "s['stress']['pages_per_space']<2048 and c['touches']>0 and c['pages_unmapped']>0 and $no_detection"
    boot "stress sharing=on at --mem $mem" 0 --smp 4 --mem $mem -- workload=stress seconds=3 sharing=on \
        && expect "sized down, tables unshared, touches, no detection" \
            "s['stress']['object_gib']<4 and c['tables_unshared']>0 and c['touches']>0 and $no_detection"
    boot "unshare-bench at --mem $mem" 0 --smp 4 --mem $mem -- workload=unshare-bench \
        && expect "fewer adoptions than tables, every mode adopted them all, no detection" \
            "0<s['bench']['adopt']<64 and all(m['tables_adopted']==s['bench']['adopt'] and m['uaf_detected']==0 for m in s['modes'].values())"
done
boot "stress sharing=on refuses at --mem 40M" 2 --smp 4 --mem 40M -- workload=stress seconds=3 sharing=on \
    && expect_line "names the memory it needs" '^error: stress: needs [0-9]+ MiB of free memory .*--mem [0-9]+M or more'
boot "unshare-bench refuses at --mem 24M" 2 --smp 4 --mem 24M -- workload=unshare-bench tables=512 \
    && expect_line "names the memory it needs" '^error: unshare-bench: needs [0-9]+ MiB of free memory .*--mem [0-9]+M or more'
# Touchers stay in one space across the mutators' changes (QEMU drops a vCPU's TLB whenever the
# ASID in TTBR0 changes), so a missing TLBI is seen hundreds of times a second, not a few.
boot "stress bug=skip-tlbi: touchers see stale entries" 1 --smp 4 -- workload=stress seconds=3 bug=skip-tlbi \
    && expect "many stale-TLB detections" "c['stale_tlb_detected']>=100 and c['touches']>0"

step "boots: kernel infrastructure checks"
# (dsb_ish, stall detector)
# dsb_ish counts every DSB ISH, not only TLBI completions: on one CPU every TLBI is local (no
# completion DSB ISH), yet each address-space activation issues one before its first walk.
boot "dsb_ish counts activation barriers (smp 1)" 0 --smp 1 -- workload=selftest \
    && expect "all TLBIs local, dsb_ish > 0" "c['tlbi_ops']>0 and c['tlbi_local_ops']==c['tlbi_ops'] and c['dsb_ish']>=1" \
    && expect_line "the exact-count unmap still sees no DSB ISH" '512-page unmap: .* local=1 dsb_ish=0([^0-9]|$)'
boot "dsb_ish on 4 CPUs (selftest)" 0 --smp 4 -- workload=selftest \
    && expect "more DSB ISH than flushes (activations count too)" "c['tlbi_local_ops']==0 and c['dsb_ish']>c['flushes']" \
    && expect_line "the 512-page unmap: one range TLBI, one DSB ISH" '512-page unmap: tlbi_ops=1 range=1 asid=0 local=0 dsb_ish=1([^0-9]|$)'

step "unshare bench"
boot "unshare-bench, 8 CPUs" 0 --smp 8 -- workload=unshare-bench tables=32 children=4 \
    && expect "all three modes, IPI syncs as the fix predicts, no detection" "set(s['modes'])=={'sync-each','sync-last','recheck'} \
        and s['modes']['sync-each']['table_syncs']==4*32 and s['modes']['sync-each']['ipis_sent']==7*4*32 \
        and s['modes']['sync-last']['table_syncs']==1 and s['modes']['recheck']['table_syncs']==0 \
        and s['modes']['recheck']['ipis_sent']==0 \
        and all(m['tables_unshared']==4*32 and m['uaf_detected']==0 for m in s['modes'].values()) \
        and s['bench']['adopt']==32 and all(m['tables_adopted']==32 for m in s['modes'].values())"

step "stress matrix (scripts/stress.sh --quick)"
if scripts/stress.sh --quick --results "$out_dir/stress.jsonl" >"$out_dir/stress.log" 2>&1; then
    grep -E '^\[|^stress:' "$out_dir/stress.log"
    pass "stress matrix: every run ended as expected"
else
    cat "$out_dir/stress.log"
    fail "stress matrix"
fi

step "gdb helpers: host unit tests"
# The GDB helpers' pure decoders (scripts/gdb/broadside/{pte,sysregs,text,kernel}.py), with no
# gdb or QEMU: descriptor decoding, index math, output formats, and their agreement with the
# kernel's Rust sources.
if python3 -m unittest discover -s scripts/gdb/tests -t scripts/gdb >"$out_dir/gdb-unit.log" 2>&1; then
    tail -3 "$out_dir/gdb-unit.log" | grep -E '^Ran '
    pass "gdb helpers: python3 -m unittest (host)"
else
    tail -30 "$out_dir/gdb-unit.log"; fail "gdb helpers: python3 -m unittest (host)"
fi

step "gdb"
printf 'break kernel_main\ncontinue\nbt\n' >"$out_dir/bt.gdb"
if timeout 180 scripts/gdb.sh --batch "$out_dir/bt.gdb" >"$out_dir/gdb.log" 2>&1 \
    && grep -qE '^#[0-9]+ .*kernel_main' "$out_dir/gdb.log"; then
    pass "gdb: break kernel_main, continue, bt shows kernel_main"
else
    tail -20 "$out_dir/gdb.log"; fail "gdb: backtrace at kernel_main"
fi

if scripts/gdb-check.sh >"$out_dir/gdb-check.log" 2>&1; then
    tail -3 "$out_dir/gdb-check.log"
    pass "gdb helpers (scripts/gdb-check.sh)"
else
    tail -30 "$out_dir/gdb-check.log"; fail "gdb helpers (scripts/gdb-check.sh)"
fi

printf '\n%d passed, %d failed\n' "$passed" "$failed"
if [ "$failed" -ne 0 ]; then
    printf 'failed:\n'; printf '  %s\n' "${failures[@]}"
    exit 1
fi
rm -rf "$out_dir"
exit 0

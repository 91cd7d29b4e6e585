#!/usr/bin/env bash
# Checks the GDB helpers (scripts/gdb/broadside.py) against a live 4-CPU kernel.
#
# usage: scripts/gdb-check.sh [--keep]
#   --keep   keep the gdb/QEMU log and print its path
#
# Boots `workload=selftest` under scripts/gdb.sh --batch scripts/gdb/check.gdb, which stops in
# selftest::check_wx_layout (every CPU online), runs bs-cpus, bs-counters, bs-pt (kernel text,
# linear map, unmapped VAs) and bs-rcu, then lets the kernel finish. The output is checked
# against what the kernel and the layout say it must be. Prints `N passed, M failed`; exits 0
# when nothing failed, 1 otherwise.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

keep=0
case ${1:-} in
    --keep) keep=1 ;;
    "") ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) bs_die "gdb-check.sh: unknown option $1 (see --help)" ;;
esac

log=$(mktemp)
[ "$keep" = 1 ] || trap 'rm -f "$log"' EXIT
set +e
timeout -k 5 150 "$BS_ROOT/scripts/gdb.sh" --batch "$BS_ROOT/scripts/gdb/check.gdb" \
    --smp 4 --timeout 120 -- workload=selftest >"$log" 2>&1
rc=$?
set -e
[ "$keep" = 1 ] && echo "log: $log"

python3 - "$log" "$BS_ROOT/src/stats.rs" "$rc" <<'EOF'
import json, re, sys

log_path, stats_path, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(log_path, errors="replace").read()
PAGE_OFFSET, KIMAGE_VBASE = 0xFFFF000000000000, 0xFFFF800000000000
passed, failed = 0, 0


def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok: " + what)
    else:
        failed += 1
        print("FAIL: " + what + (": " + detail if detail else ""))


sections = {}
cur = None
for line in text.splitlines():
    m = re.match(r"^=== (.*)$", line)
    if m:
        cur = m.group(1)
        sections[cur] = []
    elif line.startswith("--- kernel console"):
        cur = None
    elif cur is not None:
        sections[cur].append(line)

check("end" in sections, "gdb ran the whole command file",
      "gdb.sh exit %d; last lines:\n%s" % (rc, "\n".join(text.splitlines()[-15:])))
check("Traceback" not in text and "Python Exception" not in text,
      "no Python tracebacks")

# help: every command documented by its docstring.
h = "\n".join(sections.get("help", []))
for cmd, first in (("bs-cpus", "List the online CPUs"), ("bs-counters", "Show the summary counters"),
                   ("bs-pt", "Walk a page table"), ("bs-rcu", "Show RCU state")):
    check(first in h, "help %s is documented" % cmd)

# bs-cpus: exactly CPUs 0..3 online, mpidr 0x0..0x3, every column decoded.
rows = sections.get("bs-cpus", [])
header = rows[0].split() if rows else []
cpus = []
for r in rows[1:]:
    if re.match(r"^\s*\d+\s", r):
        cpus.append(dict(zip(header, r.split(None, len(header) - 1))))
check(header[:1] == ["cpu"] and len(cpus) == 4, "bs-cpus lists 4 CPUs", "\n".join(rows))
check([c.get("cpu") for c in cpus] == ["0", "1", "2", "3"], "bs-cpus indexes 0..3")
check([c.get("mpidr") for c in cpus] == ["0x0", "0x1", "0x2", "0x3"], "bs-cpus mpidrs 0x0..0x3",
      str([c.get("mpidr") for c in cpus]))
check(all(c.get("state") in ("booting", "idle", "working", "parked") for c in cpus),
      "bs-cpus states decoded by name", str([c.get("state") for c in cpus]))
check(cpus[:1] and cpus[0].get("role") == "selftest", "bs-cpus: cpu 0 has role selftest")
check(all(c.get("ticks", "").isdigit() and int(c["ticks"]) > 0 for c in cpus),
      "bs-cpus ticks > 0 on every CPU")
check(all(c.get("irqs") in ("on", "masked") and c.get("walker") in ("yes", "no")
          and c.get("asid", "").isdigit() for c in cpus), "bs-cpus irqs/walker/asid decoded",
      str(cpus))
check(any(l.strip() == "online: 4 CPUs" for l in rows), "bs-cpus counts 4 online")

# bs-counters: exactly the names of src/stats.rs, in order, integer values, ticks counted.
want = re.findall(r'=>\s*"([a-z0-9_]+)"\s*,', open(stats_path).read())
got = []
values = {}
for l in sections.get("bs-counters", []):
    m = re.match(r"^([a-z0-9_]+)\s+(\d+)$", l.strip())
    if m:
        got.append(m.group(1))
        values[m.group(1)] = int(m.group(2))
check(want and got == want, "bs-counters names = src/stats.rs names (CamelCase -> snake_case)",
      "missing %s, extra %s" % (sorted(set(want) - set(got)), sorted(set(got) - set(want))))
check(len(got) == len(sections.get("bs-counters", [])), "bs-counters: every line is name + integer")
check(values.get("timer_ticks", 0) > 0, "bs-counters timer_ticks > 0")
summ = re.search(r"^summary: (\{.*\})$", text, re.M)
if summ:
    s = json.loads(summ.group(1))
    check(s.get("result") == "pass", "the kernel's selftest passed under gdb")
    check(list(s.get("counters", {})) == got, "bs-counters names = the summary's counter names")
else:
    check(False, "the kernel printed a summary line")


def walk(name):
    """(steps, result line) of a bs-pt section; steps = [(level, kind, line)]."""
    lines = sections.get(name, [])
    steps = []
    for l in lines:
        m = re.match(r"^level (\d) index\s+\d+\s+desc@pa \S+\s+raw \S+\s+(\w+)", l)
        if m:
            steps.append((int(m.group(1)), m.group(2), l))
    res = [l for l in lines if l.startswith("result:")]
    va = re.search(r"^bs-pt: va (0x[0-9a-f]+)", "\n".join(lines), re.M)
    return steps, (res[0] if res else ""), (int(va.group(1), 16) if va else None), lines


def translation(res):
    m = re.match(r"result: va (0x[0-9a-f]+) -> pa (0x[0-9a-f]+)", res)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else (None, None)


steps, res, va, lines = walk("bs-pt text")
last = steps[-1] if steps else (None, None, "")
check(last[:2] == (3, "page"), "bs-pt text: level-3 page", "\n".join(lines))
check("PXN=0" in last[2] and "AP=EL1-RO" in last[2], "bs-pt text: PXN clear, read-only", last[2])
v, pa = translation(res)
check(va is not None and v == va and pa == va - KIMAGE_VBASE,
      "bs-pt text: pa = va - KIMAGE_VBASE", res)
steps2, res2, _, _ = walk("bs-pt text-by-root")
check(res2 == res and len(steps2) == len(steps), "bs-pt with a physical root expression agrees",
      res2)

steps, res, va, lines = walk("bs-pt linear")
last = steps[-1] if steps else (None, None, "")
check(last[:2] == (2, "block"), "bs-pt linear map: level-2 block", "\n".join(lines))
check("PXN=1" in last[2] and "AP=EL1-RW" in last[2], "bs-pt linear map: PXN set, writable", last[2])
v, pa = translation(res)
check(va is not None and pa == va - PAGE_OFFSET, "bs-pt linear map: pa = va - PAGE_OFFSET", res)

for name, level in (("bs-pt unmapped", None), ("bs-pt guard", 3)):
    steps, res, va, lines = walk(name)
    m = re.match(r"result: translation fault at level (\d)", res)
    ok = m is not None and steps and steps[-1][1] == "invalid" and int(m.group(1)) == steps[-1][0]
    if level is not None:
        ok = ok and int(m.group(1)) == level
    check(ok, "%s: translation fault%s" % (name, " at level %d" % level if level else ""),
          "\n".join(lines))

rcu = sections.get("bs-rcu", [])
first = rcu[0] if rcu else ""
if first.startswith("rcu: "):
    rows = [l for l in rcu if re.match(r"^\s*\d+\s", l)]
    check(len(rows) == 4 and "gp_seq" in first, "bs-rcu: grace period and 4 CPUs", "\n".join(rcu))
else:
    check(first.startswith("bs-rcu: RCU not"), "bs-rcu: explains that there is no RCU yet",
          "\n".join(rcu))

errs = sections.get("errors", [])
check(len([l for l in errs if l.startswith("ERROR[")]) == 4 and not any("NO-ERROR" in l for l in errs),
      "bad arguments give one-line gdb errors", "\n".join(errs))

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
EOF

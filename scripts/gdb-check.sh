#!/usr/bin/env bash
# Checks the GDB helpers (the scripts/gdb/broadside/ package) against live 4-CPU kernels.
#
# usage: scripts/gdb-check.sh [--keep]
#   --keep   keep the gdb/QEMU logs and print their paths
#
# 1. `workload=selftest` under scripts/gdb.sh --batch scripts/gdb/check.gdb: stops in
#    selftest::check_wx_layout (every CPU online), runs bs-cpus, bs-counters, bs-pt (kernel text,
#    linear map, unmapped VAs), bs-rcu and bad arguments, then lets the kernel finish.
# 2. `workload=stress seconds=6` under scripts/gdb/stress-check.gdb: stops inside the lockless
#    walker and inside gather flushes, runs every command, and compares bs-pt with the walker's
#    own results (a pinned 4 KiB page, a pinned 2 MiB block, NotPresent walks) and with an
#    independent walk from raw x/gx reads, bs-cpus with the walking CPU, bs-gather with the
#    gather's invariants, and bs-counters with the kernel's summary.
# Output is checked against what the kernel and the layout say it must be. Prints
# `N passed, M failed`; exits 0 when nothing failed, 1 otherwise. Each run is under a timeout.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

keep=0
while [ $# -gt 0 ]; do
    case $1 in
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bs_die "gdb-check.sh: unknown option $1 (see --help)" ;;
    esac
done

# Build first (outside the timed runs), so each timeout covers only QEMU and gdb. The kernel's
# own `timeout=` is shorter than the host's, so a kernel that hangs is named by its watchdog
# (its clock stops while gdb holds the machine) rather than killed silently.
bs_build

log=$(mktemp)
slog=$(mktemp)
[ "$keep" = 1 ] || trap 'rm -f "$log" "$slog"' EXIT
set +e
timeout -k 5 50 "$BS_ROOT/scripts/gdb.sh" --batch "$BS_ROOT/scripts/gdb/check.gdb" \
    --smp 4 --timeout 45 -- workload=selftest timeout=30 >"$log" 2>&1
rc=$?
timeout -k 5 60 "$BS_ROOT/scripts/gdb.sh" --batch "$BS_ROOT/scripts/gdb/stress-check.gdb" \
    --smp 4 --timeout 55 -- workload=stress seconds=6 timeout=45 >"$slog" 2>&1
src=$?
set -e
[ "$keep" = 1 ] && echo "logs: $log (selftest) $slog (stress)"

python3 - "$log" "$BS_ROOT/crates/base/src/stats.rs" "$rc" "$slog" "$src" <<'EOF'
import json, re, sys

log_path, stats_path, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
slog_path, src = sys.argv[4], int(sys.argv[5])
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


def parse(text):
    """{section name: [lines]} from the `=== NAME` markers, up to the kernel console."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^=== (.*)$", line)
        if m:
            cur = m.group(1)
            out[cur] = []
        elif line.startswith("--- kernel console"):
            cur = None
        elif cur is not None:
            out[cur].append(line)
    return out


print("-- selftest run (scripts/gdb/check.gdb)")
sections = parse(text)

check("end" in sections, "gdb ran the whole command file",
      "gdb.sh exit %d; last lines:\n%s" % (rc, "\n".join(text.splitlines()[-15:])))
check("Traceback" not in text and "Python Exception" not in text,
      "no Python tracebacks")

# help: every command documented by its docstring.
h = "\n".join(sections.get("help", []))
for cmd, first in (("bs-cpus", "List the online CPUs"), ("bs-counters", "Show the summary counters"),
                   ("bs-pt", "Walk a page table"), ("bs-rcu", "Show RCU state"),
                   ("bs-gather", "Show an mmu_gather")):
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

# bs-counters: exactly the names of crates/base/src/stats.rs, in order, integer values, ticks
# counted.
want = re.findall(r'=>\s*"([a-z0-9_]+)"\s*,', open(stats_path).read())
got = []
values = {}
for l in sections.get("bs-counters", []):
    m = re.match(r"^([a-z0-9_]+)\s+(\d+)$", l.strip())
    if m:
        got.append(m.group(1))
        values[m.group(1)] = int(m.group(2))
check(want and got == want, "bs-counters names = crates/base/src/stats.rs names (CamelCase -> snake_case)",
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
check(len([l for l in errs if l.startswith("ERROR[")]) == 6 and not any("NO-ERROR" in l for l in errs),
      "bad arguments give one-line gdb errors", "\n".join(errs))

# ============================================================================================
# The stress run (scripts/gdb/stress-check.gdb).
# ============================================================================================
print("-- stress run (scripts/gdb/stress-check.gdb)")
stext = open(slog_path, errors="replace").read()
sections = parse(stext)
check("end" in sections, "stress: gdb ran the whole command file",
      "gdb.sh exit %d; last lines:\n%s" % (src, "\n".join(stext.splitlines()[-15:])))
check("Traceback" not in stext and "Python Exception" not in stext
      and "Error in sourced command file" not in stext, "stress: no Python tracebacks or errors")

OA = ((1 << 48) - 1) & ~0xFFF


def lsize(level):
    return 1 << (12 + 9 * (3 - level))


def ref_steps(lines):
    return [int(m.group(1), 16) for m in
            (re.match(r"^ref: level \d raw (0x[0-9a-f]+)", l) for l in lines) if m]


def ref_translate(raws, va):
    """The checker's own decode of the raw descriptors read by x/gx: (pa, level) or
    ("fault", level)."""
    for level, raw in enumerate(raws):
        if raw & 1 == 0 or (level == 3 and raw & 2 == 0) or (level == 0 and raw & 2 == 0):
            return "fault", level
        if level == 3 or raw & 2 == 0:
            return (raw & OA & ~(lsize(level) - 1)) + (va & (lsize(level) - 1)), level
    return None, None


def walker_result(lines):
    for l in lines:
        # `pa` is a PhysAddr newtype, which gdb prints as `broadside_arch::addr::PhysAddr (N)`
        # (a bare `N` is accepted too).
        m = re.match(r"^walker-result: .*WalkOutcome::(\w+)"
                     r"(?:\{pa: (?:[\w:]+ ?\()?(\d+)\)?, level: (\d+)\})?", l)
        if m:
            if m.group(2):
                return m.group(1), int(m.group(2)), int(m.group(3))
            return m.group(1), None, None
    return None, None, None


def walk_header(lines):
    for l in lines:
        m = re.match(r"^walk: space (0x[0-9a-f]+) va (0x[0-9a-f]+) root (0x[0-9a-f]+)", l)
        if m:
            return int(m.group(2), 16), int(m.group(3), 16)
    return None, None


def bspt_result(res):
    m = re.match(r"result: va (0x[0-9a-f]+) -> pa (0x[0-9a-f]+)\s+\(.* at level (\d)", res)
    if m:
        return int(m.group(2), 16), int(m.group(3))
    m = re.match(r"result: translation fault at level (\d)", res)
    if m:
        return "fault", int(m.group(1))
    return None, None


def agree_with_ref(name, extra_ref_lines=None):
    """bs-pt's raw descriptors and result = the independent x/gx walk and its decode."""
    steps, res, va, lines = walk(name)
    raws = ref_steps(extra_ref_lines if extra_ref_lines is not None else lines)
    bs_raws = [int(re.search(r"raw (0x[0-9a-f]+)", s[2]).group(1), 16) for s in steps]
    check(raws and raws == bs_raws, "%s: bs-pt reads the same descriptors as the x/gx walk"
          % name, "bs-pt %s, x/gx %s" % ([hex(r) for r in bs_raws], [hex(r) for r in raws]))
    got = bspt_result(res)
    want = ref_translate(raws, va if va is not None else 0)
    check(got == want and got[0] is not None, "%s: bs-pt result = the checker's own decode"
          % name, "%s vs %s" % (res, want))
    return got, va


# -- stop 1: inside pin_and_recheck ----------------------------------------------------------
stop = sections.get("walker stop", [])
m = re.search(r"^walker-cpu: (\d+)", "\n".join(stop), re.M)
wcpu = m.group(1) if m else None
header = stop[1].split() if len(stop) > 1 else []
rows = [dict(zip(header, r.split(None, len(header) - 1))) for r in stop[2:]
        if re.match(r"^\s*\d+\s", r)]
check(len(rows) == 4, "stress bs-cpus: 4 CPUs", "\n".join(stop))
me = [r for r in rows if r.get("cpu") == wcpu]
check(me and me[0].get("walker") == "yes" and me[0].get("irqs") == "masked",
      "stress bs-cpus: the stopped CPU (%s) is in the walker with IRQs masked" % wcpu,
      str(me))
check(me and me[0].get("role") == "walker" and me[0].get("state") == "working",
      "stress bs-cpus: the stopped CPU has role walker, state working", str(me))
check([r["cpu"] for r in rows if r.get("walker") == "yes"] == [wcpu],
      "stress bs-cpus: no other CPU is in a walker (one walker role on 4 CPUs)")
check(sorted(r.get("role") for r in rows) == ["mutator", "toucher", "toucher", "walker"],
      "stress bs-cpus: roles 1 mutator, 2 touchers, 1 walker (stress.rs defaults for 4 CPUs)",
      str([r.get("role") for r in rows]))
check(all(re.match(r"^\d+\*?( idle)?$", r.get("rcu-qs", "")) for r in rows),
      "stress bs-cpus: rcu-qs decoded", str([r.get("rcu-qs") for r in rows]))

cvals = {}
for l in sections.get("walker bs-counters", []):
    m = re.match(r"^([a-z0-9_]+)\s+(\d+)$", l.strip())
    if m:
        cvals[m.group(1)] = int(m.group(2))
check(cvals.get("walker_walks", 0) >= 1 and cvals.get("timer_ticks", 0) > 0,
      "stress bs-counters at the walker stop: walker_walks >= 1 (this walk), ticks > 0")

rcu = sections.get("walker bs-rcu", [])
rrows = [l for l in rcu if re.match(r"^\s*\d+\s+(yes|no|\?)\s", l)]
m = re.match(r"^rcu: (\S+)\s+gp_seq (\d+) \((GP in progress|idle)\)\s+completed (\d+)",
             rcu[0] if rcu else "")
check(m is not None and len(rrows) == 4, "stress bs-rcu: the kernel's RCU, gp_seq and 4 CPUs",
      "\n".join(rcu))
if m:
    gp = int(m.group(2))
    check(int(m.group(4)) == gp >> 1 and (m.group(3) == "GP in progress") == bool(gp & 1),
          "stress bs-rcu: completed = gp_seq >> 1, state = gp_seq & 1")

# bs-pt on the walker's space and VA = the walker's own result.
lines = sections.get("walker bs-pt", [])
va, root = walk_header(lines)
got, _ = agree_with_ref("walker bs-pt")
check(any(re.match(r"^bs-pt: va %#x\s+root %#x " % (va or 0, root or 0), l) for l in lines),
      "walker bs-pt: walks the walker's space root at the walker's VA")
kind, wpa, wlevel = walker_result(sections.get("walker result", []))
check(kind == "Pinned", "walker result: the stopped walk pinned a frame", str(kind))
if kind == "Pinned":
    check(got[0] != "fault" and got[0] & ~0xFFF == wpa and got[1] == wlevel,
          "walker bs-pt = walker: pa %#x at level %d" % (wpa, wlevel), str(got))

got, _ = agree_with_ref("walker unmapped")
check(got[0] == "fault", "bs-pt space 0x1000: translation fault", str(got))

# -- stop 2: a walk pinning a 2 MiB block -------------------------------------------------------
lines = sections.get("block bs-pt", [])
va, root = walk_header(lines)
check(va is not None and 0x80000000 <= va < 0x80800000, "block: a walk in the block region",
      "\n".join(lines[-5:]))
got, _ = agree_with_ref("block bs-pt")
steps, res, _, _ = walk("block bs-pt")
kind, wpa, wlevel = walker_result(lines)
check(got[1] == 2 and steps and steps[-1][:2] == (2, "block"), "block bs-pt: a level-2 block",
      res)
check(kind == "Pinned" and wlevel == 2 and got[0] != "fault" and got[0] & ~0xFFF == wpa,
      "block bs-pt = walker: Pinned at level 2, same pa", "walker %s %s %s, bs-pt %s" % (
          kind, wpa, wlevel, got))

# -- 3: NotPresent walks ------------------------------------------------------------------------
stable = 0
samples = [n for n in sections if n.startswith("notpresent ")]
for n in samples:
    lines = sections[n]
    va, root = walk_header(lines)
    before = [l[len("before: "):] for l in lines if l.startswith("before: ")]
    after = [l[len("after: "):] for l in lines if l.startswith("after: ")]
    kind, _, _ = walker_result(lines)
    raws = ref_steps(lines)
    b = bspt_result(before[0]) if before else (None, None)
    check(b == ref_translate(raws, va or 0) and b[0] == "fault",
          "%s: bs-pt fault = the x/gx walk's fault (level %s)" % (n, b[1]), str(before))
    same = bool(before and after and before == after)
    stable += same
    check(kind == "NotPresent" or not same,
          "%s: walker NotPresent (or bs-pt saw the tables change over the walk)" % n,
          "walker %s, bs-pt before %s after %s" % (kind, before, after))
check(stable >= 1, "NotPresent: at least one walk with stable tables (%d of %d)"
      % (stable, len(samples)))

# -- 4: gathers ----------------------------------------------------------------------------------


def gather(name):
    g = {}
    for l in sections.get(name, []):
        m = re.match(r"^  (\w+)\s+(.*)$", l)
        if m:
            g[m.group(1)] = m.group(2)
    return g


SIZES = {"4 KiB": 1 << 12, "2 MiB": 1 << 21, "1 GiB": 1 << 30}
for name in ("gather range", "gather tables"):
    g = gather(name)
    m = re.match(r"\[(0x[0-9a-f]+), (0x[0-9a-f]+)\)", g.get("range", ""))
    check(m is not None and int(m.group(1), 16) < int(m.group(2), 16),
          "%s: range non-empty, start < end" % name, g.get("range"))
    start, end = (int(m.group(1), 16), int(m.group(2), 16)) if m else (0, 0)
    lv = re.match(r"levels \[([\d, ]*)\]\s+\(cleared_levels 0b([01]+)\)", g.get("cleared", ""))
    levels = [int(x) for x in lv.group(1).split(",") if x.strip()] if lv else []
    check(lv is not None and levels and sum(1 << x for x in levels) == int(lv.group(2), 2),
          "%s: cleared levels = the bits of cleared_levels" % name, g.get("cleared"))
    freed = g.get("freed_tables")
    check(freed in ("true", "false") and g.get("fullmm") == "false",
          "%s: freed_tables/fullmm decoded (not fullmm)" % name)
    pm = re.match(r"(\d+) queued in the embedded batch and (\d+) more(: (.*))?$",
                  g.get("pages", ""))
    npages = int(pm.group(1)) if pm else -1
    orders = [int(x) for x in re.findall(r"0x[0-9a-f]+/(\d+)", pm.group(4) or "")] if pm else []
    # The embedded batch holds 8 pages: more than 8 queued means allocated batches too.
    check(pm is not None and (npages <= 8 or int(pm.group(2)) >= 1)
          and len(orders) == min(npages, 4), "%s: pages counted over batches" % name,
          g.get("pages"))
    tm = re.match(r"(\d+) queued", g.get("tables", ""))
    ntables = int(tm.group(1)) if tm else 0
    fallback = g.get("tables", "").startswith("no batch")
    check(tm is not None or fallback, "%s: tables decoded (Option<Vec<PhysAddr>>)" % name,
          g.get("tables"))
    stride = SIZES.get(g.get("stride", ""))
    if freed == "true":
        check(ntables >= 1 or (fallback and "fallback" in g.get("tables", "")),
              "%s: freed_tables -> tables queued (or the fallback path)" % name, g.get("tables"))
        check(stride == 1 << 12, "%s: freed_tables -> 4 KiB stride" % name, g.get("stride"))
        # A freed table adds one page at the start of its span (>= 2 MiB aligned) to the
        # walk-cache flush, as Linux's pte_free_tlb does.
        span_start = (start + (1 << 21) - 1) & ~((1 << 21) - 1)
        check(span_start < end,
              "%s: range holds the first page of a freed table's span (2 MiB aligned)" % name)
    else:
        check(ntables == 0, "%s: no freed_tables -> no tables queued" % name, g.get("tables"))
        check(levels and set(levels) <= {1, 2, 3},
              "%s: no freed_tables -> only leaf levels cleared" % name, str(levels))
        check(levels and stride == lsize(max(levels)),
              "%s: stride = the smallest cleared leaf (level %s)" % (name, levels and
                                                                      max(levels)),
              g.get("stride"))
    if stride:
        check(all(o == (stride.bit_length() - 13) for o in orders) or freed == "true",
              "%s: queued page orders match the stride" % name, str(orders))
    check(npages + ntables > 0 or int(g.get("flushes", "0")) > 0,
          "%s: something queued (or already flushed)" % name)
    check(re.match(r"leaf_only=(true|false) ops=\d+ how=\w+ "
                   r"coverage=(Nothing|WholeAsid|Range\[0x[0-9a-f]+,0x[0-9a-f]+\)/\d+ [KMG]iB)$",
                   g.get("last_flush", "")),
          "%s: last_flush decoded" % name, g.get("last_flush"))
    sp = re.match(r"id (\d+)\s+root (0x[0-9a-f]+)", g.get("space", ""))
    steps, res, bva, lines = walk(name + " bs-pt")
    check(sp and any(("root %s " % sp.group(2)) in l for l in lines) and bva == start,
          "%s: bs-pt self.space self.start walks the gather's space" % name)
    check(res.startswith("result: translation fault"),
          "%s: the range start is unmapped before the flush" % name, res)
check(gather("gather tables").get("freed_tables") == "true",
      "gather tables: stopped with freed_tables set")

# -- bs-counters vs the kernel's own summary ----------------------------------------------------
summ = re.search(r"^summary: (\{.*\})$", stext, re.M)
gvals = {}
for l in sections.get("gather bs-counters", []):
    m = re.match(r"^([a-z0-9_]+)\s+(\d+)$", l.strip())
    if m:
        gvals[m.group(1)] = int(m.group(2))
if summ:
    s = json.loads(summ.group(1))
    fin = s.get("counters", {})
    check(s.get("result") == "pass", "the stress run passed under gdb",
          "exit %s; the console's last lines but the per-CPU ones:\n%s" % (
              s.get("exit_code"),
              "\n".join([l for l in stext.splitlines() if not l.startswith("watchdog: cpu")][-12:])))
    check(list(fin) == list(gvals), "stress bs-counters names = the summary's names")
    sums = [k for k in fin if "max" not in k.split("_")]
    check(all(cvals.get(k, -1) <= gvals.get(k, -1) <= fin[k] for k in sums),
          "stress bs-counters: walker stop <= gather stop <= final summary (every sum counter)",
          str([(k, cvals.get(k), gvals.get(k), fin[k]) for k in sums
               if not cvals.get(k, -1) <= gvals.get(k, -1) <= fin[k]]))
    check(gvals.get("gathers", 0) >= 2 and gvals.get("walker_walks", 0) >= 3,
          "stress bs-counters: the stops' gathers and walks are counted")
else:
    check(False, "the stress run printed a summary line")

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
EOF

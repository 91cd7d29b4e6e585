# Batch commands for scripts/gdb-check.sh, stress part: a 4-CPU `workload=stress` run.
# "=== NAME" lines delimit sections; "key: value" lines are what the checker compares.
#
#  1. Stop inside the lockless walker (pin_and_recheck: IRQs masked, in_walker set, a frame
#     pinned) and run bs-cpus, bs-counters, bs-rcu, bs-pt on the walker's space and VA and on an
#     unmapped VA, each bs-pt next to an independent walk made here from raw `x/gx` reads; then
#     finish the walk and print the walker's own result (WalkOutcome).
#  2. The same for a walk that pins a 2 MiB block (a VA in stress's block region).
#  3. Walks that find nothing: bs-pt before and after the walk, and the walker's NotPresent.
#  4. Stops in MmuGather::flush_tlb_only with a non-empty range, then one with freed tables:
#     bs-gather, and bs-pt on the gather's start (must be unmapped by then).
# The kernel then runs to its summary line, which the checker compares with bs-counters.
python
PAGE_OFFSET = 0xFFFF000000000000   # crates/arch/src/aarch64/layout.rs (the linear map)
WALK_AND_PIN = "broadside_mm::walker::walk_and_pin"
WALK_MASKED = "broadside_mm::walker::walk_masked"
BLOCKS = (0x80000000, 0x80800000)  # kernel/src/workload/stress.rs BLOCKS_BASE .. + 4 * 2 MiB


def sel_frame(name):
    """Selects the innermost frame of function NAME; returns it."""
    f = gdb.newest_frame()
    while f is not None:
        if f.name() == name:
            f.select()
            return f
        f = f.older()
    raise gdb.GdbError("no frame %s" % name)


def stop_cpu():
    return gdb.selected_thread().ptid[1] - 1   # QEMU: thread N is CPU N-1


def raw64(pa):
    """The u64 at physical PA, read with x/gx through the linear map (no broadside.py)."""
    out = gdb.execute("x/gx %#x" % (PAGE_OFFSET + pa), to_string=True)
    return int(out.split(":")[1].split()[0], 16)


def ref_walk(root, va):
    """An independent walk: `ref: level L raw R` for every descriptor read."""
    out, table = [], root
    for level in range(4):
        raw = raw64(table + 8 * ((va >> (39 - 9 * level)) & 511))
        out.append("ref: level %d raw %#x" % (level, raw))
        if raw & 3 != 3 or level == 3:
            break
        table = raw & 0xFFFFFFFFF000
    return "\n".join(out) + "\n"


def run(cmd):
    return gdb.execute(cmd, to_string=True)


def here(expr):
    """EXPR as an integer; a one-field newtype (PhysAddr, VirtAddr) is read through its field."""
    v = gdb.parse_and_eval(expr)
    for _ in range(4):
        t = v.type.strip_typedefs()
        if t.code != gdb.TYPE_CODE_STRUCT or len(t.fields()) != 1:
            break
        v = v[t.fields()[0]]
    return int(v) & (2 ** 64 - 1)


def walk_result():
    """Finishes walk_and_pin (breakpoints off meanwhile) and returns `walker-result: ...`, the
    WalkOutcome the kernel returned, read from stress::walk's `out` (GDB's own "Value returned"
    is wrong here: the enum comes back in memory)."""
    sel_frame(WALK_AND_PIN)
    gdb.execute("disable", to_string=True)
    try:
        gdb.execute("finish", to_string=True)
        return "walker-result: %s\n" % gdb.parse_and_eval("out")
    finally:
        gdb.execute("enable", to_string=True)


def bs_pt(space, va, quiet=False):
    """bs-pt SPACE VA; returns its `result:` line (prints the whole output unless QUIET)."""
    out = gdb.execute("bs-pt %s %#x" % (space, va), to_string=True)
    if not quiet:
        print(out, end="")
    return [l for l in out.splitlines() if l.startswith("result:")][0]
end

# Skip the first pins, so every role is at work when the walker is stopped.
break broadside_mm::walker::pin_and_recheck
ignore 1 20
continue
python
# ---- 1. a walk stopped in pin_and_recheck (again if it backs out: Retry) ----------------------
for attempt in range(8):
    if attempt:
        gdb.execute("continue", to_string=True)
    text = "=== walker stop\nwalker-cpu: %d\n" % stop_cpu() + run("bs-cpus")
    text += "=== walker bs-counters\n" + run("bs-counters")
    text += "=== walker bs-rcu\n" + run("bs-rcu")
    sel_frame(WALK_MASKED)
    space, va, root = here("space"), here("va"), here("(*space).root")
    text += "=== walker bs-pt\nwalk: space %#x va %#x root %#x\n" % (space, va, root)
    text += run("bs-pt space va") + ref_walk(root, va)
    text += "=== walker unmapped\n" + run("bs-pt space 0x1000") + ref_walk(root, 0x1000)
    result = walk_result()
    if "Pinned" in result:
        print(text + "=== walker result\n" + result, end="")
        break
    print("walker-retry: %s" % result.strip())

# ---- 2. a walk that pins a 2 MiB block ---------------------------------------------------------
for i in range(400):
    gdb.execute("continue", to_string=True)
    sel_frame(WALK_MASKED)
    va = here("va")
    if BLOCKS[0] <= va < BLOCKS[1]:
        root = here("(*space).root")
        text = "walk: space %#x va %#x root %#x (stop %d)\n" % (here("space"), va, root, i + 1)
        text += run("bs-pt space va") + ref_walk(root, va)
        result = walk_result()
        if "Pinned" in result:
            print("=== block bs-pt\n" + text + result, end="")
            break
        print("walker-retry: %s" % result.strip())
else:
    print("block: no walk pinned a block")
end

# ---- 3. walks that find nothing -----------------------------------------------------------------
delete
break broadside_mm::walker::walk_and_pin
python
found = 0
for i in range(200):
    gdb.execute("continue", to_string=True)
    va = here("va")
    before = bs_pt("space", va, quiet=True)
    if "fault" not in before:
        continue
    root = here("(*space).root")
    try:
        reference = ref_walk(root, va)
    except gdb.MemoryError:
        # At this stop gdb read a root outside RAM (seen once in 30 runs: 0x414d50000000, an
        # optimised-out location read as `space`): no reference walk can be made from it, and
        # the stop is not one of the three compared.
        print("notpresent-skipped: root %#x unreadable" % root)
        continue
    print("=== notpresent %d" % found)
    print("walk: space %#x va %#x root %#x" % (here("space"), va, root))
    print("before: " + before)
    print(reference + walk_result(), end="")
    # The walk's frame is gone: walk the same root again, given as a physical address.
    print("after: " + bs_pt("%#x" % root, va, quiet=True))
    found += 1
    if found == 3:
        break
end

# ---- 4. gather flushes ----------------------------------------------------------------------------
# Stop inside flush_tlb_only where it starts building the flush (found by its source line, so the
# stop is past the inlined range check at the function's entry, where gdb cannot see `self`).
python
def gather_flush_location():
    # The source file as the debug info names it (the kernel's own build path), and the line.
    sal = gdb.decode_line("broadside_mm::gather::MmuGather::flush_tlb_only")[1][0]
    with open(sal.symtab.fullname()) as f:
        for n, line in enumerate(f, 1):
            if "let record = if self.fullmm {" in line:
                return "%s:%d" % (sal.symtab.filename, n)
    raise gdb.GdbError("flush_tlb_only's flush line not found in " + sal.symtab.filename)
def break_in_gather_flush(cond):
    gdb.execute("break %s if %s" % (gather_flush_location(), cond))
end
# The rarer stop first (a gather that freed tables, not a teardown): a gather over a
# range comes on nearly every unmap after it, while the run's remaining mutator cycles might
# not free tables outside a teardown.
delete
python break_in_gather_flush("self.freed_tables && !self.fullmm")
continue
echo === gather tables\n
bs-gather
echo === gather tables bs-pt\n
bs-pt self.space self.range.start
delete
python break_in_gather_flush("self.range.start < self.range.end && !self.fullmm")
continue
echo === gather range\n
bs-gather
echo === gather range bs-pt\n
bs-pt self.space self.range.start
echo === gather bs-counters\n
bs-counters
echo === end\n
delete
continue

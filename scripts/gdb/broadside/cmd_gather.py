"""bs-gather: the mmu_gather in the selected frame (or any expression): its range, levels,
flags, queued pages and tables, and its last flush."""

import gdb

from .kernel import GATHER_NAMES, GATHER_SHOW, TYPE_GATHER
from .text import (cleared_text, coverage_range_text, gather_range_text, is_type_name,
                   stride_text)
from .values import (BsError, _code, command, deref_all, evaluate, field, find_inner, has_field,
                     scalar, variant, vec_items, vec_len)

# --------------------------------------------------------------------------------------------
# bs-gather
# --------------------------------------------------------------------------------------------
def is_gather_type(t):
    t = t.strip_typedefs()
    for _ in range(3):
        if t.code in (gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_REF):
            t = t.target().strip_typedefs()
    return t.code == gdb.TYPE_CODE_STRUCT and is_type_name(t.name, TYPE_GATHER)


def frame_gather(frame):
    """(name, value) of the gather among FRAME's arguments and locals, or None. Names in
    GATHER_NAMES win; optimised-out values are skipped."""
    try:
        block = frame.block()
    except (gdb.error, RuntimeError):
        return None
    found = []
    while block is not None:
        for sym in block:
            if not (sym.is_argument or sym.is_variable) or not is_gather_type(sym.type):
                continue
            try:
                v = sym.value(frame)
                if v.is_optimized_out:
                    continue
                deref_all(v)["range"].fetch_lazy()
            except (gdb.error, gdb.MemoryError):
                continue
            found.append((sym.name, v))
        if block.function is not None:
            break
        block = block.superblock
    found.sort(key=lambda nv: GATHER_NAMES.index(nv[0]) if nv[0] in GATHER_NAMES else 99)
    return found[0] if found else None


def find_gather(arg):
    """(description, MmuGather value) from the argument or the selected frame (then its
    callers, up to 8 frames out)."""
    if arg.strip():
        v = deref_all(evaluate(arg.strip()))
        if not is_gather_type(v.type):
            raise BsError("%s is a %s, not a %s" % (arg.strip(), v.type, TYPE_GATHER))
        return arg.strip(), v
    try:
        frame = gdb.selected_frame()
    except gdb.error:
        raise BsError("no frame selected (is the target stopped?)")
    for depth in range(9):
        if frame is None:
            break
        hit = frame_gather(frame)
        if hit is not None:
            where = "`%s` in %s" % (hit[0], frame.name() or "??")
            if depth:
                where += " (%d frame%s out)" % (depth, "s" if depth > 1 else "")
            return where, deref_all(hit[1])
        frame = frame.older()
    raise BsError("no %s in the selected frame or its callers (optimised out?): give an "
                  "expression, e.g. bs-gather *self, or use scripts/gdb.sh --opt0"
                  % TYPE_GATHER)




@command
class BsGather(gdb.Command):
    """Show an mmu_gather: bs-gather [EXPR]

Without EXPR, the broadside::mm::gather::MmuGather in the selected frame (an argument or local
named self, gather, g or tlb, or any of that type; then the callers'); EXPR is a gather, or a
pointer or reference to one. Prints:
  space          the address space (id, root table PA, gathers in flight: flush_pending)
  range          [start, end) still to invalidate, or "empty" (start >= end: nothing cleared
                 since the last flush), with its size
  stride         the smallest leaf size cleared (the flush stride), or "none"
  cleared        the levels whose entries were cleared (cleared_levels as a list)
  fullmm         a whole-space teardown: the flush is one ASID invalidation
  freed_tables   tables were unhooked: the flush must cover walk caches (not leaf-only);
                 then every other bool flag of the gather by name (unshared_tables, ...)
  pages          frames queued to free after the flush: count over all batches, batch count,
                 the first few as PA/order
  tables         table pages queued for the RCU table-free path: "no batch" (None) or the count
                 and the first few PAs
  flushes        flushes this gather has issued; last_flush: the FlushRecord of the last one
Fields the gather gains later are listed at the end by name and value."""

    NAME = "bs-gather"
    KNOWN = ("space", "fullmm", "range", "freed_tables", "local", "local_len", "pages",
             "tables", "flushes", "last_flush")

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        where, g = find_gather(arg)
        addr = g.address
        print("gather: %s  @%s  (%s)" % (where, "%#x" % int(addr) if addr is not None else "?",
                                         g.type))
        # The space it works on.
        try:
            sp = deref_all(g["space"])
            extra = ""
            if has_field(sp, "flush_pending"):
                extra = "  gathers in flight %d" % field(sp, "flush_pending")
            print("  space          id %d  root %#x%s" % (field(sp, "id"), field(sp, "root"),
                                                          extra))
        except (gdb.error, BsError) as e:
            print("  space          ? (%s)" % e)
        # The range bookkeeping is a GatherRange (mm::gather_range): start, end, stride, levels.
        r = g["range"]
        start, end = field(r, "start"), field(r, "end")
        fullmm = bool(field(g, "fullmm"))
        print("  range          %s" % gather_range_text(start, end))
        stride = field(r, "stride")
        print("  stride         %s" % stride_text(stride))
        cl = field(r, "cleared_levels")
        print("  cleared        %s" % cleared_text(cl))
        freed = bool(field(g, "freed_tables"))
        print("  fullmm         %s" % ("true" if fullmm else "false"))
        # The table flags, in struct order: freed_tables and whatever else the gather has
        # (unshared_tables, fully_unshared_tables, ...): every bool field but fullmm.
        for f in g.type.strip_typedefs().fields():
            if f.name and f.name != "fullmm" and _code(f.type) == gdb.TYPE_CODE_BOOL:
                print("  %-14s %s" % (f.name, "true" if bool(g[f.name]) else "false"))
        # Pages: the embedded batch local[..local_len] first, then Vec<Vec<PageEntry>>.
        local_len = field(g, "local_len")
        local = [g["local"][i] for i in range(local_len)]
        batches = vec_items(g["pages"])
        lens = [local_len] + [vec_len(b) for b in batches]
        shown = ["%#x/%d" % (field(e, "pa"), field(e, "order", 0)) for e in local[:GATHER_SHOW]]
        for b in batches:
            for e in vec_items(b)[:GATHER_SHOW - len(shown)]:
                shown.append("%#x/%d" % (field(e, "pa"), field(e, "order", 0)))
            if len(shown) >= GATHER_SHOW:
                break
        total = sum(lens)
        print("  pages          %d queued in the embedded batch and %d more%s" % (
            total, len(lens) - 1,
            (": " + ", ".join(shown) + (", ..." if total > len(shown) else "") + "  (pa/order)")
            if shown else ""))
        # Tables: Option<Vec<PhysAddr>> (scalar() reads through the newtype).
        name, val = variant(g["tables"])
        if name == "None":
            print("  tables         no batch (None)%s" % (
                "  [freed_tables with no batch: tables were freed by the fallback path]"
                if freed else ""))
        else:
            vec = find_inner(val, lambda t: t.name is not None and
                             t.name.startswith("alloc::vec::Vec<"))
            items = vec_items(vec) if vec is not None else []
            pas = ["%#x" % scalar(x) for x in items[:GATHER_SHOW]]
            print("  tables         %d queued%s" % (
                len(items), (": " + ", ".join(pas) + (", ..." if len(items) > len(pas) else ""))
                if pas else ""))
        print("  flushes        %d" % field(g, "flushes"))
        try:
            lf = g["last_flush"]
            parts = []
            for f in lf.type.strip_typedefs().fields():
                v = lf[f.name]
                if _code(v.type) == gdb.TYPE_CODE_BOOL:
                    parts.append("%s=%s" % (f.name, "true" if bool(v) else "false"))
                elif _code(v.type) == gdb.TYPE_CODE_ENUM:
                    parts.append("%s=%s" % (f.name, str(v).rsplit("::", 1)[-1]))
                elif _code(v.type) in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
                    # A Rust enum with data (FlushCoverage): the variant, and a range's bounds.
                    vname, vval = variant(v)
                    if vname == "Range":
                        parts.append(coverage_range_text(
                            f.name, scalar(vval["start"]), scalar(vval["end"]),
                            scalar(vval["stride"])))
                    else:
                        parts.append("%s=%s" % (f.name, vname))
                else:
                    try:
                        parts.append("%s=%d" % (f.name, scalar(v)))
                    except BsError:
                        parts.append("%s=%s" % (f.name, v))
            print("  last_flush     %s" % " ".join(parts))
        except gdb.error as e:
            print("  last_flush     ? (%s)" % e)
        # Anything the gather grew since these helpers were written (e.g. an unshared flag).
        for f in g.type.strip_typedefs().fields():
            if f.name in self.KNOWN or f.name is None or _code(f.type) == gdb.TYPE_CODE_BOOL:
                continue
            try:
                v = g[f.name]
                text = "%d" % scalar(v) if _code(v.type) != gdb.TYPE_CODE_BOOL else \
                    ("true" if bool(v) else "false")
            except (gdb.error, BsError):
                text = str(g[f.name])[:100]
            print("  %-14s %s" % (f.name, text))


"""bs-pt: a software walk of a page table read from guest memory. The decoding and the line
formats are pte.py's (pure, host tested); this module finds the root, reads descriptors and
frame metadata through gdb, and prints."""

import gdb

from .kernel import (KIMAGE_VBASE_FALLBACK, PAGE_OFFSET_FALLBACK, SYM_FRAMES, SYM_PAGE_OFFSET,
                     TYPE_FRAME_KIND, TYPE_FRAMES)
from .pte import (DESC_BYTES, TTBR_BADDR_MASK, decode, format_result, format_step, is_canonical,
                  walk)
from .values import (BsError, _code, command, deref_all, enum_names, evaluate, field, find_inner,
                     lookup, once_ready, read_regs, scalar, type_is)

# --------------------------------------------------------------------------------------------
# bs-pt
# --------------------------------------------------------------------------------------------
def page_offset():
    """(PAGE_OFFSET, where it came from)."""
    v = lookup(SYM_PAGE_OFFSET)
    if v is not None:
        try:
            return scalar(v), "symbol"
        except BsError:
            pass
    return PAGE_OFFSET_FALLBACK, "layout.rs value"


def read_u64_phys(pa, off):
    """The u64 at physical PA, read through the linear map (PAGE_OFFSET + pa); if that VA is not
    readable (MMU off, early boot), through QEMU's physical-memory gdbstub mode."""
    inf = gdb.selected_inferior()
    try:
        return int.from_bytes(bytes(inf.read_memory(off + pa, DESC_BYTES)), "little")
    except gdb.MemoryError:
        pass
    try:
        gdb.execute("maintenance packet Qqemu.PhyMemMode:1", to_string=True)
        try:
            return int.from_bytes(bytes(inf.read_memory(pa, DESC_BYTES)), "little")
        finally:
            gdb.execute("maintenance packet Qqemu.PhyMemMode:0", to_string=True)
    except (gdb.error, gdb.MemoryError):
        raise BsError("cannot read physical %#x (linear map VA %#x)" % (pa, off + pa))


def frame_meta(pa):
    """A description of the frame metadata of physical PA ("kind level share=+N"), or "-"."""
    try:
        frames = lookup(SYM_FRAMES)
        if frames is None or not once_ready(frames):
            return "-"
        f = find_inner(frames, type_is(TYPE_FRAMES))
        if f is None:
            return "-"
        meta = f["meta"]
        n = scalar(meta["length"])
        first = scalar(f["first_pfn"])
        pfn = pa >> 12
        if n == 0 or not first <= pfn < first + n:
            return "-"
        m = (meta["data_ptr"] + (pfn - first)).dereference()
        kinds = enum_names(TYPE_FRAME_KIND)
        kind = field(m, "kind")
        ls = field(m, "level_and_share")
        return "frame: %s refs=%d level=%d share=+%d" % (
            kinds.get(kind, str(kind)).lower(), field(m, "refcount"), ls & 0xFF, ls >> 8)
    except (gdb.error, gdb.MemoryError, BsError):
        return "-"


def resolve_root(expr):
    """(root PA, description) of the bs-pt SPACE argument."""
    e = expr.strip()
    low = e.lower()
    if low in ("kernel", "ttbr1"):
        r = read_regs(("TTBR1_EL1",))["TTBR1_EL1"]
        if r is None:
            raise BsError("TTBR1_EL1 is not readable (QEMU gdbstub without system registers?)")
        if r & TTBR_BADDR_MASK == 0:
            raise BsError("TTBR1_EL1 is 0: the kernel's tables are not set up yet")
        return r & TTBR_BADDR_MASK, "kernel: TTBR1_EL1=%#x" % r
    if low in ("user", "ttbr0"):
        r = read_regs(("TTBR0_EL1",))["TTBR0_EL1"]
        if r is None:
            raise BsError("TTBR0_EL1 is not readable")
        if r & TTBR_BADDR_MASK == 0:
            raise BsError("TTBR0_EL1 is 0: no address space is active on this CPU")
        return r & TTBR_BADDR_MASK, "TTBR0_EL1=%#x" % r
    v = evaluate(e)
    s = deref_all(v)
    if _code(s.type) in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
        # An address space (or anything holding one): the first `root` field found by type.
        holder = find_inner(s, lambda t: t.code == gdb.TYPE_CODE_STRUCT and
                            any(f.name == "root" for f in t.fields()))
        if holder is None:
            raise BsError("%s (%s) has no `root` field" % (e, s.type))
        root = scalar(holder["root"])
        if root >= 0xFFFF_0000_0000_0000:
            root = virt_to_phys(root)
        return root & TTBR_BADDR_MASK, "%s.root (%s)" % (e, holder.type)
    return scalar(v) & TTBR_BADDR_MASK, "physical %s" % e


def virt_to_phys(va):
    off, _ = page_offset()
    if va >= KIMAGE_VBASE_FALLBACK:
        return va - KIMAGE_VBASE_FALLBACK
    return va - off


@command
class BsPt(gdb.Command):
    """Walk a page table in software: bs-pt SPACE VA

SPACE is one of:
  kernel (or ttbr1)  the kernel's table: TTBR1_EL1 of the selected CPU
  user (or ttbr0)    the selected CPU's TTBR0_EL1 table
  an expression      a physical address of a level-0 table, or a value (or pointer/reference)
                     whose type holds a `root` field with the table's physical address, e.g. an
                     address space: `bs-pt *space 0x400000`
VA is an expression (`$pc`, `0xffff000040001000`, `&__image_start`); quote an expression
that contains spaces: bs-pt kernel '$pc + 8'.

Tables are read from guest memory through the linear map (PAGE_OFFSET + PA), or through QEMU's
physical-memory mode when that is not mapped. One line per level: level, index, the
descriptor's physical address, raw value, type (table/block/page/invalid), output address and,
for leaves, the attributes: AttrIndx with its MAIR_EL1 memory type, AP, SH, AF, nG, PXN, UXN and
the software bits [58:55]; for tables, the next table's frame metadata (kind, level, extra
sharers of a shared level-2 table) or "-". The last line is the translation or the fault."""

    NAME = "bs-pt"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if len(args) < 2:
            raise BsError("usage: bs-pt kernel|user|SPACE-EXPR VA-EXPR")
        space, va_expr = " ".join(args[:-1]), args[-1]
        root, desc = resolve_root(space)
        va = scalar(evaluate(va_expr)) & (2 ** 64 - 1)
        off, off_src = page_offset()
        print("bs-pt: va %#x  root %#x (%s)  linear map at %#x (%s)"
              % (va, root, desc, off, off_src))
        top = va >> 48
        if not is_canonical(va):
            print("result: translation fault at level 0 (va %#x is not canonical)" % va)
            return
        lower = space.strip().lower() in ("user", "ttbr0")
        if space.strip().lower() in ("kernel", "ttbr1") and top != 0xFFFF:
            print("note: va %#x is in the TTBR0 half; walking the TTBR1 table anyway" % va)
        elif lower and top != 0:
            print("note: va %#x is in the TTBR1 half; walking the TTBR0 table anyway" % va)
        mair = read_regs(("MAIR_EL1",))["MAIR_EL1"]
        steps = walk(root, va, lambda pa: read_u64_phys(pa, off))
        for step in steps:
            print(format_step(step, mair, frame_meta))
        print(format_result(va, steps[-1]))


# --------------------------------------------------------------------------------------------
# bs-table
# --------------------------------------------------------------------------------------------
@command
class BsTable(gdb.Command):
    """Show a page-table page: bs-table PA-EXPR [LEVEL]

The frame's metadata (kind, level, sharers) and every entry that is not 0: its index, raw
value and type (decoded at LEVEL: given, else the metadata's level, else 3). A freed table
reads as 512 poison entries; that is said in one line."""

    NAME = "bs-table"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if not args:
            raise BsError("usage: bs-table PA-EXPR [LEVEL]")
        pa = scalar(evaluate(args[0])) & ~0xFFF
        meta = frame_meta(pa)
        level = int(args[1]) if len(args) > 1 else None
        if level is None and "level=" in meta:
            level = int(meta.split("level=")[1].split()[0])
        level = 3 if level is None else level
        off, _ = page_offset()
        try:
            page = bytes(gdb.selected_inferior().read_memory(off + pa, 4096))
            raws = [int.from_bytes(page[i * 8:i * 8 + 8], "little") for i in range(512)]
        except gdb.MemoryError:
            raws = [read_u64_phys(pa + 8 * i, off) for i in range(512)]
        print("bs-table: %#x  %s  (decoded at level %d)" % (pa, meta, level))
        if len(set(raws)) == 1 and raws[0] != 0:
            print("  all 512 entries %#018x (poison: a freed table page)" % raws[0])
            return
        shown = 0
        for i, raw in enumerate(raws):
            if raw == 0:
                continue
            kind, oa = decode(raw, level)
            line = "  [%3d] raw %#018x  %-7s" % (i, raw, kind)
            if oa is not None:
                line += " -> %#x" % oa
            print(line)
            shown += 1
        print("  %d of 512 entries not 0" % shown)

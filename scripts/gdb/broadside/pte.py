"""VMSAv8-64 stage-1 descriptors (Arm ARM D8.3; 4 KiB granule, 48-bit VA, levels 0 to 3): index
math, descriptor decoding, the software walk and bs-pt's line formats. Pure: no gdb, so the host
tests (scripts/gdb/tests) run it on plain integers.

The bit positions are those of crates/arch/src/pte.rs, cited per constant as `pte.rs NAME`;
when that file changes layout, this one must follow (the host tests pin both to the walkthrough
in docs/gdb.md).
"""

from .kernel import MAIR_INDEX_FALLBACK
from .text import size_name

DESC_BYTES = 8  # pte.rs: 512 entries per 4 KiB table (ENTRIES_PER_TABLE) -> 8 bytes each
LEVELS = (0, 1, 2, 3)  # pte.rs ROOT_LEVEL..=LEAF_LEVEL
ENTRIES_PER_TABLE = 512  # pte.rs ENTRIES_PER_TABLE
VA_BITS = 48  # pte.rs VA_BITS (TCR_EL1.TxSZ = 16)
OA_MASK = ((1 << 48) - 1) & ~0xFFF  # pte.rs OUTPUT_ADDRESS_MASK: bits [47:12]
TTBR_BADDR_MASK = ((1 << 48) - 1) & ~0xFFF  # 4K-aligned level-0 table: BADDR[47:12], no CnP

# Descriptor fields (pte.rs constants of the same meaning).
VALID_BIT = 0  # pte.rs DESC_VALID = 1 << 0
TABLE_OR_PAGE_BIT = 1  # pte.rs DESC_TABLE_OR_PAGE = 1 << 1: Table at levels 0..=2, Page at 3
ATTR_INDEX_SHIFT = 2  # pte.rs ATTR_INDEX_SHIFT, 3 bits (ATTR_INDEX_MASK = 0b111 << 2)
AP_SHIFT = 6  # pte.rs AP_SHIFT, 2 bits: AP[2:1]
SH_SHIFT = 8  # pte.rs SH_SHIFT, 2 bits
AF_BIT = 10  # pte.rs ATTR_AF = 1 << 10
NG_BIT = 11  # pte.rs ATTR_NG = 1 << 11
PXN_BIT = 53  # pte.rs ATTR_PXN = 1 << 53
UXN_BIT = 54  # pte.rs ATTR_UXN = 1 << 54
SW_SHIFT = 55  # pte.rs SW_SHIFT, 4 bits: [58:55]
AP_RO_BIT = 7  # AP[2] = bit 7: set in pte.rs El1ReadOnly (0b10) and El1El0ReadOnly (0b11)


def level_shift(level):
    """pte.rs level_shift: PAGE_SHIFT + BITS_PER_LEVEL * (LEAF_LEVEL - level)."""
    return 12 + 9 * (3 - level)


def level_size(level):
    """pte.rs level_block_size: 512 GiB, 1 GiB, 2 MiB, 4 KiB for levels 0..3."""
    return 1 << level_shift(level)


def table_index(va, level):
    """pte.rs table_index: the entry translating VA in its table at LEVEL."""
    return (va >> level_shift(level)) & (ENTRIES_PER_TABLE - 1)


def is_canonical(va):
    """pte.rs is_canonical: bits [63:48] all zeros (TTBR0 half) or all ones (TTBR1 half)."""
    top = va >> VA_BITS
    return top == 0 or top == (1 << (64 - VA_BITS)) - 1


# MAIR_EL1 attribute bytes by memory type (Arm ARM D8.5.6; pte.rs MAIR_ATTR_* are 0xff, 0x04
# and 0x44).
MAIR_TYPES = {0x00: "Device-nGnRnE", 0x04: "Device-nGnRE", 0x08: "Device-nGRE",
              0x0C: "Device-GRE", 0x44: "Normal-NC", 0xFF: "Normal-WB", 0xBB: "Normal-WT"}


def mair_name(index, mair):
    """The memory type of AttrIndx INDEX: MAIR_EL1 byte INDEX decoded, or (MAIR None: not
    readable) pte.rs's MAIR_IDX_* name."""
    if mair is None:
        return MAIR_INDEX_FALLBACK.get(index, "?")
    byte = (mair >> (8 * index)) & 0xFF
    if byte in MAIR_TYPES:
        return MAIR_TYPES[byte]
    if byte & 0xF0 == 0:
        return "Device(%#04x)" % byte
    return "Normal(%#04x)" % byte


# pte.rs AccessPermission (El1ReadWrite = 0b00, El1El0ReadWrite, El1ReadOnly, El1El0ReadOnly)
# and Shareability (0b00 NonShareable, 0b10 OuterShareable, 0b11 InnerShareable; 0b01 is
# reserved, which pte.rs decodes as NonShareable and the helpers flag with "?").
AP_NAMES = {0: "EL1-RW", 1: "EL1/EL0-RW", 2: "EL1-RO", 3: "EL1/EL0-RO"}
SH_NAMES = {0: "NS", 1: "NS?", 2: "OS", 3: "IS"}


def decode(raw, level):
    """(kind, output address) of descriptor RAW read at LEVEL; kind is table/block/page/invalid
    (as crates/arch/src/pte.rs `Descriptor::kind`)."""
    if not raw >> VALID_BIT & 1:
        return "invalid", None
    table_or_page = raw >> TABLE_OR_PAGE_BIT & 1
    if level == 3:
        return ("page", raw & OA_MASK) if table_or_page else ("invalid", None)
    if table_or_page:
        return "table", raw & OA_MASK
    if level == 0:
        return "invalid", None  # no level-0 blocks with 4K granule, 48-bit OA
    return "block", raw & OA_MASK & ~(level_size(level) - 1)


def attributes(raw, mair):
    """The leaf attributes of RAW as bs-pt prints them (pte.rs Attributes::from_bits)."""
    idx = raw >> ATTR_INDEX_SHIFT & 7
    return ("attr=%d(%s) AP=%s SH=%s AF=%d nG=%d PXN=%d UXN=%d SW=%#x"
            % (idx, mair_name(idx, mair), AP_NAMES[raw >> AP_SHIFT & 3],
               SH_NAMES[raw >> SH_SHIFT & 3], raw >> AF_BIT & 1, raw >> NG_BIT & 1,
               raw >> PXN_BIT & 1, raw >> UXN_BIT & 1, raw >> SW_SHIFT & 0xF))


def walk(root, va, read_u64):
    """[(level, index, descriptor PA, raw, kind, output address)] down to a leaf or a fault.
    READ_U64(pa) reads one descriptor: guest memory under gdb, a dict in the host tests."""
    table = root
    steps = []
    for level in LEVELS:
        index = table_index(va, level)
        dpa = table + DESC_BYTES * index
        raw = read_u64(dpa)
        kind, oa = decode(raw, level)
        steps.append((level, index, dpa, raw, kind, oa))
        if kind != "table":
            break
        table = oa
    return steps


def format_step(step, mair, table_note):
    """bs-pt's line for one walk STEP; TABLE_NOTE(pa) describes the next table (called for table
    descriptors only, as it reads frame metadata from the target)."""
    level, index, dpa, raw, kind, oa = step
    line = "level %d index %3d  desc@pa %#012x  raw %#018x  %-7s" % (
        level, index, dpa, raw, kind)
    if kind == "table":
        line += " -> %#x  next %s" % (oa, table_note(oa))
    elif kind in ("block", "page"):
        line += " -> %#x  %s" % (oa, attributes(raw, mair))
    return line


def format_result(va, last):
    """bs-pt's `result:` line from the LAST step of the walk of VA."""
    level, _, _, raw, kind, oa = last
    if kind in ("block", "page"):
        size = level_size(level)
        pa = oa + (va & (size - 1))
        ro = raw >> AP_RO_BIT & 1
        return "result: va %#x -> pa %#x  (%s %s at level %d, %s, %s)" % (
            va, pa, size_name(size), kind, level,
            "read-only" if ro else "read-write",
            "EL1-executable" if not raw >> PXN_BIT & 1 else "PXN")
    return "result: translation fault at level %d (invalid descriptor %#x)" % (level, raw)

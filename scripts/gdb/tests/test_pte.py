"""broadside.pte: descriptor decoding, index math, the software walk and bs-pt's lines.

The descriptors are the ones the bs-pt example of docs/gdb.md's walkthrough shows (a real 4-CPU
stress run) plus blocks built from crates/arch/src/pte.rs's bit positions; the expected strings are
bs-pt's output byte for byte, as scripts/gdb-check.sh parses it."""

import unittest

from broadside import pte

# crates/arch/src/pte.rs MAIR_VALUE: Normal-WB (0xff) at index 0, Device-nGnRE (0x04) at 1,
# Normal-NC (0x44) at 2: what the kernel programs into MAIR_EL1.
MAIR_VALUE = 0xFF | 0x04 << 8 | 0x44 << 16

# docs/gdb.md, "Walkthrough": bs-pt space va, va 0x4048b000 in the space whose root is 0x44ede000.
WALKTHROUGH_ROOT = 0x44EDE000
WALKTHROUGH_VA = 0x4048B000
WALKTHROUGH_TABLES = {  # descriptor PA -> raw, as the example's four lines show them
    0x0044EDE000: 0x0000000044EDF003,
    0x0044EDF008: 0x0000000044EE0003,
    0x0044EE0010: 0x00000000416D1003,
    0x00416D1458: 0x00600000458BDF03,
}
WALKTHROUGH_PAGE = 0x00600000458BDF03

# A level-2 block of the linear map as pte.rs Attributes::kernel_data() makes it: OA 0x40200000,
# AttrIndx 0, AP 0b00 (EL1 RW), SH 0b11 (IS, bits 9:8), AF (bit 10), PXN (53), UXN (54), valid.
L2_BLOCK = 0x0060000040200701
# A level-1 block as Attributes::kernel_text(): AP 0b10 (EL1 RO, bit 7), PXN clear, UXN set.
L1_TEXT_BLOCK = 0x0040000040000781
# A level-1 block as Attributes::device(): AttrIndx 1 (bits 4:2 = 0b001), SH 0b00, AF, PXN, UXN.
L1_DEVICE_BLOCK = 0x0060000000000405


class IndexMath(unittest.TestCase):
    def test_level_sizes(self):
        # pte.rs level_block_size: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
        self.assertEqual([pte.level_size(lv) for lv in pte.LEVELS],
                         [512 << 30, 1 << 30, 2 << 20, 4 << 10])
        self.assertEqual([pte.level_shift(lv) for lv in pte.LEVELS], [39, 30, 21, 12])

    def test_index_per_level_of_a_built_va(self):
        # Each level's index placed in its own 9-bit field, so a wrong shift picks a wrong one.
        va = 5 << 39 | 6 << 30 | 7 << 21 | 8 << 12 | 0x9AB
        self.assertEqual([pte.table_index(va, lv) for lv in pte.LEVELS], [5, 6, 7, 8])

    def test_index_of_the_walkthrough_va(self):
        self.assertEqual([pte.table_index(WALKTHROUGH_VA, lv) for lv in pte.LEVELS], [0, 1, 2, 139])

    def test_index_of_a_linear_map_va(self):
        # 0xffff000041234567 (gdb-check's linear-map VA): bits [63:48] are not an index.
        va = 0xFFFF000041234567
        self.assertEqual([pte.table_index(va, lv) for lv in pte.LEVELS], [0, 1, 9, 52])

    def test_index_of_the_last_va(self):
        self.assertEqual([pte.table_index(2 ** 64 - 1, lv) for lv in pte.LEVELS],
                         [511, 511, 511, 511])

    def test_canonical(self):
        for va in (0, 0x0000FFFFFFFFFFFF, 0xFFFF000000000000, 2 ** 64 - 1):
            self.assertTrue(pte.is_canonical(va), hex(va))
        for va in (0x0001000000000000, 0xFFFE000000000000, 0x8000000000000000):
            self.assertFalse(pte.is_canonical(va), hex(va))


class Decode(unittest.TestCase):
    def test_walkthrough_page(self):
        self.assertEqual(pte.decode(WALKTHROUGH_PAGE, 3), ("page", 0x458BD000))

    def test_walkthrough_page_attributes(self):
        self.assertEqual(pte.attributes(WALKTHROUGH_PAGE, MAIR_VALUE),
                         "attr=0(Normal-WB) AP=EL1-RW SH=IS AF=1 nG=1 PXN=1 UXN=1 SW=0x0")

    def test_walkthrough_table(self):
        self.assertEqual(pte.decode(0x0000000044EDF003, 0), ("table", 0x44EDF000))
        self.assertEqual(pte.decode(0x0000000044EDF003, 2), ("table", 0x44EDF000))

    def test_table_ignores_upper_attribute_bits(self):
        # Bits above 47 are not part of the next table's address (pte.rs OUTPUT_ADDRESS_MASK).
        self.assertEqual(pte.decode(0x0060000044EDF003, 1), ("table", 0x44EDF000))

    def test_invalid(self):
        self.assertEqual(pte.decode(0, 0), ("invalid", None))
        self.assertEqual(pte.decode(0, 3), ("invalid", None))
        # Bit 0 clear: invalid whatever else is set (a torn-down entry keeps its address).
        self.assertEqual(pte.decode(0x00600000458BDF02, 3), ("invalid", None))
        # Bit 1 clear at level 3 is the reserved encoding (pte.rs: it faults).
        self.assertEqual(pte.decode(0x00600000458BDF01, 3), ("invalid", None))
        # A block at level 0 needs FEAT_LPA2 with 4 KiB granules: it faults too.
        self.assertEqual(pte.decode(0x0060000040000701, 0), ("invalid", None))

    def test_2mib_block_at_level_2(self):
        self.assertEqual(pte.decode(L2_BLOCK, 2), ("block", 0x40200000))
        self.assertEqual(pte.attributes(L2_BLOCK, MAIR_VALUE),
                         "attr=0(Normal-WB) AP=EL1-RW SH=IS AF=1 nG=0 PXN=1 UXN=1 SW=0x0")

    def test_block_address_drops_bits_below_its_size(self):
        # A level-2 block's OA is bits [47:21] and a level-1 block's [47:30] (pte.rs).
        self.assertEqual(pte.decode(L2_BLOCK | 0x1FF000, 2), ("block", 0x40200000))
        self.assertEqual(pte.decode(L1_TEXT_BLOCK | 0x3FFFF000, 1), ("block", 0x40000000))

    def test_1gib_block_at_level_1(self):
        self.assertEqual(pte.decode(L1_TEXT_BLOCK, 1), ("block", 0x40000000))
        self.assertEqual(pte.attributes(L1_TEXT_BLOCK, MAIR_VALUE),
                         "attr=0(Normal-WB) AP=EL1-RO SH=IS AF=1 nG=0 PXN=0 UXN=1 SW=0x0")

    def test_device_block(self):
        self.assertEqual(pte.decode(L1_DEVICE_BLOCK, 1), ("block", 0))
        self.assertEqual(pte.attributes(L1_DEVICE_BLOCK, MAIR_VALUE),
                         "attr=1(Device-nGnRE) AP=EL1-RW SH=NS AF=1 nG=0 PXN=1 UXN=1 SW=0x0")

    def test_every_ap_and_sh_value(self):
        aps = [pte.attributes(ap << 6, MAIR_VALUE).split()[1] for ap in range(4)]
        self.assertEqual(aps, ["AP=EL1-RW", "AP=EL1/EL0-RW", "AP=EL1-RO", "AP=EL1/EL0-RO"])
        shs = [pte.attributes(sh << 8, MAIR_VALUE).split()[2] for sh in range(4)]
        self.assertEqual(shs, ["SH=NS", "SH=NS?", "SH=OS", "SH=IS"])

    def test_software_bits(self):
        # pte.rs Attributes::with_sw_bits(15): bits [58:55]; bit 59 is not software.
        self.assertTrue(pte.attributes(WALKTHROUGH_PAGE | 0xF << 55, MAIR_VALUE).endswith(" SW=0xf"))
        self.assertTrue(pte.attributes(WALKTHROUGH_PAGE | 1 << 59, MAIR_VALUE).endswith(" SW=0x0"))

    def test_attr_index_uses_three_bits(self):
        self.assertTrue(pte.attributes(7 << 2, 0x11 << 56).startswith("attr=7(Normal(0x11)) "))
        self.assertTrue(pte.attributes(1 << 5, MAIR_VALUE).startswith("attr=0(Normal-WB) "))


class MairNames(unittest.TestCase):
    def test_kernel_mair(self):
        self.assertEqual([pte.mair_name(i, MAIR_VALUE) for i in range(4)],
                         ["Normal-WB", "Device-nGnRE", "Normal-NC", "Device-nGnRnE"])

    def test_unreadable_mair_falls_back_to_pte_rs_names(self):
        self.assertEqual([pte.mair_name(i, None) for i in range(4)],
                         ["Normal-WB", "Device-nGnRE", "Normal-NC", "?"])

    def test_unnamed_bytes(self):
        self.assertEqual(pte.mair_name(0, 0x01), "Device(0x01)")
        self.assertEqual(pte.mair_name(0, 0x4F), "Normal(0x4f)")
        self.assertEqual(pte.mair_name(7, 0xBB << 56), "Normal-WT")


class Walk(unittest.TestCase):
    def read(self, memory):
        return lambda pa: memory.get(pa, 0)  # unwritten descriptors are 0: invalid

    def test_walkthrough_walk(self):
        steps = pte.walk(WALKTHROUGH_ROOT, WALKTHROUGH_VA, self.read(WALKTHROUGH_TABLES))
        self.assertEqual(steps, [
            (0, 0, 0x44EDE000, 0x44EDF003, "table", 0x44EDF000),
            (1, 1, 0x44EDF008, 0x44EE0003, "table", 0x44EE0000),
            (2, 2, 0x44EE0010, 0x416D1003, "table", 0x416D1000),
            (3, 139, 0x416D1458, WALKTHROUGH_PAGE, "page", 0x458BD000),
        ])

    def test_walkthrough_lines(self):
        # The walkthrough's bs-pt lines, byte for byte (the frame notes stand for frame_meta's reads).
        notes = {0x44EDF000: "frame: table refs=1 level=1 share=+0",
                 0x44EE0000: "frame: table refs=1 level=2 share=+0",
                 0x416D1000: "frame: table refs=1 level=3 share=+0"}
        steps = pte.walk(WALKTHROUGH_ROOT, WALKTHROUGH_VA, self.read(WALKTHROUGH_TABLES))
        lines = [pte.format_step(s, MAIR_VALUE, notes.__getitem__) for s in steps]
        lines.append(pte.format_result(WALKTHROUGH_VA, steps[-1]))
        self.assertEqual(lines, [
            "level 0 index   0  desc@pa 0x0044ede000  raw 0x0000000044edf003  table   -> "
            "0x44edf000  next frame: table refs=1 level=1 share=+0",
            "level 1 index   1  desc@pa 0x0044edf008  raw 0x0000000044ee0003  table   -> "
            "0x44ee0000  next frame: table refs=1 level=2 share=+0",
            "level 2 index   2  desc@pa 0x0044ee0010  raw 0x00000000416d1003  table   -> "
            "0x416d1000  next frame: table refs=1 level=3 share=+0",
            "level 3 index 139  desc@pa 0x00416d1458  raw 0x00600000458bdf03  page    -> "
            "0x458bd000  attr=0(Normal-WB) AP=EL1-RW SH=IS AF=1 nG=1 PXN=1 UXN=1 SW=0x0",
            "result: va 0x4048b000 -> pa 0x458bd000  (4 KiB page at level 3, read-write, PXN)",
        ])

    def test_walk_stops_at_a_block(self):
        va = 0xFFFF000040234567
        # Level 0 index 0, level 1 index 1 (0x40234567 >> 30), level 2 index 1 (0x40234567
        # >> 21 & 511): the block maps [0x40200000, 0x40400000).
        memory = {0x1000: 0x2003, 0x2008: 0x3003, 0x3008: L2_BLOCK}
        steps = pte.walk(0x1000, va, self.read(memory))
        self.assertEqual([s[:2] + s[4:] for s in steps],
                         [(0, 0, "table", 0x2000), (1, 1, "table", 0x3000),
                          (2, 1, "block", 0x40200000)])
        self.assertEqual(pte.format_result(va, steps[-1]),
                         "result: va 0xffff000040234567 -> pa 0x40234567  "
                         "(2 MiB block at level 2, read-write, PXN)")
        self.assertEqual(pte.format_step(steps[-1], MAIR_VALUE, None),
                         "level 2 index   1  desc@pa 0x0000003008  raw 0x0060000040200701  "
                         "block   -> 0x40200000  attr=0(Normal-WB) AP=EL1-RW SH=IS AF=1 nG=0 "
                         "PXN=1 UXN=1 SW=0x0")

    def test_walk_to_a_1gib_text_block(self):
        # KIMAGE_VBASE + 0x40081234: level-0 index 256 (bits 47:39 = 0b1_0000_0000), level 1
        # index 1.
        va = 0xFFFF800040081234
        steps = pte.walk(0x1000, va, self.read({0x1000 + 8 * 256: 0x2003,
                                                0x2000 + 8 * 1: L1_TEXT_BLOCK}))
        self.assertEqual([s[0] for s in steps], [0, 1])
        self.assertEqual(pte.format_result(va, steps[-1]),
                         "result: va 0xffff800040081234 -> pa 0x40081234  "
                         "(1 GiB block at level 1, read-only, EL1-executable)")

    def test_walk_faults_where_the_entry_is_invalid(self):
        # The next page, 0x4048c000: level-3 index 140 of the same table, which is empty.
        steps = pte.walk(WALKTHROUGH_ROOT, WALKTHROUGH_VA + 0x1000, self.read(WALKTHROUGH_TABLES))
        self.assertEqual(len(steps), 4)
        self.assertEqual(steps[-1], (3, 140, 0x416D1460, 0, "invalid", None))
        self.assertEqual(pte.format_result(WALKTHROUGH_VA + 0x1000, steps[-1]),
                         "result: translation fault at level 3 (invalid descriptor 0x0)")
        self.assertEqual(pte.format_step(steps[-1], MAIR_VALUE, None),
                         "level 3 index 140  desc@pa 0x00416d1460  raw 0x0000000000000000  "
                         "invalid")

    def test_walk_reads_only_the_entries_on_its_path(self):
        seen = []

        def read(pa):
            seen.append(pa)
            return WALKTHROUGH_TABLES.get(pa, 0)

        pte.walk(WALKTHROUGH_ROOT, 0x8000000000, read)  # level-0 index 1: empty
        self.assertEqual(seen, [0x44EDE008])


if __name__ == "__main__":
    unittest.main()

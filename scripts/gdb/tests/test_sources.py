"""The pure modules' copies of kernel facts agree with the kernel's Rust sources: descriptor bit
positions (crates/arch/src/pte.rs), the MAIR indexes and bytes, the layout fallbacks, the role names and
the counter names. These are the values the debug info does not carry, so a change on the Rust
side must fail here rather than make the helpers print wrong decodes."""

import os
import re
import unittest

from broadside import kernel, pte, text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))


def source(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def rust_const(src, name):
    """The integer value of `const NAME: T = VALUE;` (a literal or `1 << N`) in SRC."""
    m = re.search(r"const %s: \w+ = ([^;]+);" % re.escape(name), src)
    if m is None:
        raise AssertionError("no const %s" % name)
    v = m.group(1).replace("_", "").strip()
    m2 = re.fullmatch(r"1 << (\d+)", v)
    return 1 << int(m2.group(1)) if m2 else int(v, 0)


class PteRs(unittest.TestCase):
    src = source("crates/arch/src/pte.rs")

    def test_field_shifts(self):
        for name in ("ATTR_INDEX_SHIFT", "AP_SHIFT", "SH_SHIFT", "SW_SHIFT"):
            self.assertEqual(getattr(pte, name), rust_const(self.src, name), name)

    def test_single_bits(self):
        for py, rs in (("VALID_BIT", "DESC_VALID"), ("TABLE_OR_PAGE_BIT", "DESC_TABLE_OR_PAGE"),
                       ("AF_BIT", "ATTR_AF"), ("NG_BIT", "ATTR_NG"), ("PXN_BIT", "ATTR_PXN"),
                       ("UXN_BIT", "ATTR_UXN")):
            self.assertEqual(1 << getattr(pte, py), rust_const(self.src, rs), rs)

    def test_geometry(self):
        self.assertEqual(pte.ENTRIES_PER_TABLE, rust_const(self.src, "ENTRIES_PER_TABLE"))
        self.assertEqual(pte.VA_BITS, rust_const(self.src, "VA_BITS"))
        self.assertEqual(pte.level_size(1), rust_const(self.src, "L1_BLOCK_SIZE"))
        self.assertEqual(pte.level_size(2), rust_const(self.src, "L2_BLOCK_SIZE"))
        # The granule is defined with the address types (crates/arch/src/addr.rs).
        addr = source("crates/arch/src/addr.rs")
        self.assertEqual(pte.level_size(3), 1 << rust_const(addr, "PAGE_SHIFT"))

    def test_access_permission_and_shareability_encodings(self):
        for variant, name in (("El1ReadWrite", "EL1-RW"), ("El1El0ReadWrite", "EL1/EL0-RW"),
                              ("El1ReadOnly", "EL1-RO"), ("El1El0ReadOnly", "EL1/EL0-RO")):
            value = int(re.search(r"%s = (0b[01]+)," % variant, self.src).group(1), 0)
            self.assertEqual(pte.AP_NAMES[value], name, variant)
        self.assertEqual(pte.AP_RO_BIT, pte.AP_SHIFT + 1)  # AP[2]: the RO variants' high bit
        for variant, name in (("NonShareable", "NS"), ("OuterShareable", "OS"),
                              ("InnerShareable", "IS")):
            value = int(re.search(r"%s = (0b[01]+)," % variant, self.src).group(1), 0)
            self.assertEqual(pte.SH_NAMES[value], name, variant)

    def test_mair_indexes_and_bytes(self):
        for idx, byte, name in (("MAIR_IDX_NORMAL", "MAIR_ATTR_NORMAL_WB", "Normal-WB"),
                                ("MAIR_IDX_DEVICE_nGnRE", "MAIR_ATTR_DEVICE_NGNRE", "Device-nGnRE"),
                                ("MAIR_IDX_NORMAL_NC", "MAIR_ATTR_NORMAL_NC", "Normal-NC")):
            self.assertEqual(kernel.MAIR_INDEX_FALLBACK[rust_const(self.src, idx)], name)
            self.assertEqual(pte.MAIR_TYPES[rust_const(self.src, byte)], name)


class Layout(unittest.TestCase):
    def test_fallbacks(self):
        src = source("crates/arch/src/aarch64/layout.rs")
        self.assertEqual(kernel.PAGE_OFFSET_FALLBACK, rust_const(src, "PAGE_OFFSET"))
        self.assertEqual(kernel.KIMAGE_VBASE_FALLBACK, rust_const(src, "KIMAGE_VBASE"))


class Counters(unittest.TestCase):
    def test_snake_and_aggregate_match_stats_rs(self):
        pairs = re.findall(r"^\s*(\w+) => \"([a-z0-9_]+)\", (Sum|Max);", source("crates/base/src/stats.rs"),
                           re.M)
        self.assertGreater(len(pairs), 10)
        for variant, name, agg in pairs:
            self.assertEqual(text.snake(variant), name, variant)
            self.assertEqual(text.is_max_counter(name), agg == "Max", name)


if __name__ == "__main__":
    unittest.main()

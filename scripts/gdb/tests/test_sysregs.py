"""broadside.sysregs: bs-cpus' irqs and asid columns from raw register values."""

import unittest

from broadside import sysregs

TTBR0 = 7 << 48 | 0x44EDE000  # ASID 7, the root of docs/gdb.md's walkthrough space
TTBR1 = 3 << 48 | 0x40100000


class Irqs(unittest.TestCase):
    def test_pstate_i(self):
        self.assertEqual(sysregs.irqs_text(0x3C5), "masked")  # DAIF all set, EL1h
        self.assertEqual(sysregs.irqs_text(0x345), "on")  # D, A, F set, I clear
        self.assertEqual(sysregs.irqs_text(0x80), "masked")
        self.assertEqual(sysregs.irqs_text(None), "?")


class Asid(unittest.TestCase):
    def test_ttbr0_16_bit(self):
        self.assertEqual(sysregs.current_asid({"TCR_EL1": 1 << 36, "TTBR0_EL1": TTBR0,
                                               "TTBR1_EL1": TTBR1}), 7)

    def test_a1_selects_ttbr1(self):
        self.assertEqual(sysregs.current_asid({"TCR_EL1": 1 << 36 | 1 << 22, "TTBR0_EL1": TTBR0,
                                               "TTBR1_EL1": TTBR1}), 3)

    def test_8_bit_asids_without_as(self):
        self.assertEqual(sysregs.current_asid({"TCR_EL1": 0, "TTBR0_EL1": 0x1FF << 48}), 0xFF)

    def test_without_tcr_16_bits_of_ttbr0(self):
        self.assertEqual(sysregs.current_asid({"TTBR0_EL1": 0xABCD << 48}), 0xABCD)

    def test_unreadable(self):
        self.assertIsNone(sysregs.current_asid({}))
        self.assertIsNone(sysregs.current_asid({"TCR_EL1": 1 << 22, "TTBR0_EL1": TTBR0}))


if __name__ == "__main__":
    unittest.main()

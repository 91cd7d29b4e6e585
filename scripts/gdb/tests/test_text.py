"""broadside.text: the formats bs-gather, bs-cpus and bs-counters print (scripts/gdb-check.sh
parses them with regexes, docs/gdb.md shows them) and the parsing of gdb's text."""

import unittest

from broadside import kernel, text


class SizeName(unittest.TestCase):
    def test_exact_units(self):
        self.assertEqual([text.size_name(n) for n in (4096, 2 << 20, 1 << 30, 512 << 30)],
                         ["4 KiB", "2 MiB", "1 GiB", "512 GiB"])

    def test_largest_unit_that_divides(self):
        self.assertEqual(text.size_name(3 << 20), "3 MiB")
        self.assertEqual(text.size_name(1536 << 10), "1536 KiB")  # 1.5 MiB: not whole MiB
        self.assertEqual(text.size_name(1 << 40), "1024 GiB")  # no TiB unit

    def test_bytes(self):
        self.assertEqual(text.size_name(0), "0 B")
        self.assertEqual(text.size_name(4097), "4097 B")
        self.assertEqual(text.size_name(1536), "1536 B")


class LevelList(unittest.TestCase):
    def test_bits(self):
        self.assertEqual(text.level_list(0), [])
        self.assertEqual(text.level_list(0b1111), [0, 1, 2, 3])
        self.assertEqual(text.level_list(0b1010), [1, 3])
        self.assertEqual(text.level_list(0b1000_0000), [7])
        self.assertEqual(text.level_list(1 << 8), [])  # a u8 field: bit 8 is not a level


class CounterNames(unittest.TestCase):
    def test_snake(self):
        self.assertEqual(text.snake("TlbiOps"), "tlbi_ops")
        self.assertEqual(text.snake("RcuMaxGpTicks"), "rcu_max_gp_ticks")
        self.assertEqual(text.snake("TimerTicks"), "timer_ticks")
        self.assertEqual(text.snake("Tlbi2Range"), "tlbi2_range")

    def test_max_counter_is_the_word_max(self):
        self.assertTrue(text.is_max_counter("rcu_max_gp_ticks"))
        self.assertTrue(text.is_max_counter("max"))
        self.assertFalse(text.is_max_counter("tlbi_ops"))
        self.assertFalse(text.is_max_counter("maximal_walks"))


class RcuQs(unittest.TestCase):
    def test_idle_grace_period_no_star(self):
        self.assertEqual(text.rcu_qs_text(81, 82, 1, None), "81")
        self.assertEqual(text.rcu_qs_text(81, 82, 1, True), "81")  # no GP in progress

    def test_owes_from_gp_state(self):
        self.assertEqual(text.rcu_qs_text(81, 83, 1, True), "81*")
        self.assertEqual(text.rcu_qs_text(83, 83, 1, False), "83")

    def test_owes_guessed_without_gp_state(self):
        self.assertEqual(text.rcu_qs_text(81, 83, 1, None), "81*")
        self.assertEqual(text.rcu_qs_text(83, 83, 1, None), "83")

    def test_idle_eqs(self):
        self.assertEqual(text.rcu_qs_text(81, 83, 2, None), "81* idle")
        self.assertEqual(text.rcu_qs_text(81, 82, 0, None), "81 idle")
        self.assertEqual(text.rcu_qs_text(81, 82, -1, None), "81")  # EQS unreadable


class GatherCells(unittest.TestCase):
    def test_walkthrough_range(self):
        self.assertEqual(text.gather_range_text(0x8000000000, 0x10000000000),
                         "[0x8000000000, 0x10000000000)  512 GiB (134217728 pages)")

    def test_range_of_a_few_pages(self):
        self.assertEqual(text.gather_range_text(0x400000, 0x403000),
                         "[0x400000, 0x403000)  12 KiB (3 pages)")

    def test_whole_space(self):
        self.assertEqual(text.gather_range_text(0, 1 << 48),
                         "[0x0, 0x1000000000000)  256 TiB (68719476736 pages)")

    def test_empty(self):
        self.assertEqual(text.gather_range_text(2 ** 64 - 1, 0),
                         "empty (start 0xffffffffffffffff, end 0x0)")
        self.assertEqual(text.gather_range_text(0x5000, 0x5000), "empty (start 0x5000, end 0x5000)")

    def test_stride(self):
        self.assertEqual(text.stride_text(0), "none")
        self.assertEqual(text.stride_text(2 ** 64 - 1), "none")
        self.assertEqual(text.stride_text(1 << 63), "none")
        self.assertEqual(text.stride_text(4096), "4 KiB")
        self.assertEqual(text.stride_text(2 << 20), "2 MiB")

    def test_cleared(self):
        self.assertEqual(text.cleared_text(0b1111), "levels [0, 1, 2, 3]  (cleared_levels 0b1111)")
        self.assertEqual(text.cleared_text(0b100), "levels [2]  (cleared_levels 0b0100)")
        self.assertEqual(text.cleared_text(0), "levels []  (cleared_levels 0b0000)")

    def test_coverage_range(self):
        self.assertEqual(text.coverage_range_text("coverage", 0x400000, 0x600000, 2 << 20),
                         "coverage=Range[0x400000,0x600000)/2 MiB")


class TypeNames(unittest.TestCase):
    def test_vec_element(self):
        self.assertEqual(text.vec_element_type_name("alloc::vec::Vec<u64, alloc::alloc::Global>"),
                         "u64")
        self.assertEqual(text.vec_element_type_name(
            "alloc::vec::Vec<alloc::vec::Vec<broadside::mm::gather::PageEntry, "
            "alloc::alloc::Global>, alloc::alloc::Global>"),
            "alloc::vec::Vec<broadside::mm::gather::PageEntry, alloc::alloc::Global>")
        self.assertIsNone(text.vec_element_type_name("u64"))
        self.assertIsNone(text.vec_element_type_name("alloc::vec::Vec<u64>"))

    def test_gather_type(self):
        self.assertTrue(text.is_type_name("broadside_mm::gather::MmuGather", kernel.TYPE_GATHER))
        self.assertTrue(text.is_type_name("broadside_mm::gather::MmuGather<8>",
                                          kernel.TYPE_GATHER))
        self.assertFalse(text.is_type_name("broadside_mm::gather::MmuGatherBatch",
                                           kernel.TYPE_GATHER))
        self.assertFalse(text.is_type_name("xbroadside_mm::gather::MmuGather",
                                           kernel.TYPE_GATHER))
        self.assertFalse(text.is_type_name(None, kernel.TYPE_GATHER))


class InfoVariables(unittest.TestCase):
    def test_file_and_line_pairs(self):
        # gdb-multiarch's `info variables -n -t Once<` on today's kernel, cut to two files, the
        # second with a second declaration added to cover several lines under one heading.
        out = (
            'All defined variables with type matching regular expression "Once<" :\n'
            "\n"
            "File crates/sync/src/rcu_kernel.rs:\n"
            "12:\tstatic spin::once::Once<broadside_sync::rcu::Rcu, spin::relax::Spin>;\n"
            "\n"
            "File crates/mm/src/aspace.rs:\n"
            "71:\tstatic spin::once::Once<broadside_mm::asid::AsidAllocator, spin::relax::Spin>;\n"
            "140:\tstatic spin::once::Once<broadside_mm::asid::AsidAllocator, spin::relax::Spin>;\n"
            "\n"
            "Non-debugging symbols:\n"
            "0x0000000040090000  broadside_sync::rcu_kernel::RCU\n")
        self.assertEqual(text.info_variables_lines(out),
                         [("crates/sync/src/rcu_kernel.rs", 12), ("crates/mm/src/aspace.rs", 71),
                          ("crates/mm/src/aspace.rs", 140)])

    def test_lines_before_any_file_are_ignored(self):
        self.assertEqual(text.info_variables_lines("12: static x;\n"), [])
        self.assertEqual(text.info_variables_lines(""), [])


if __name__ == "__main__":
    unittest.main()

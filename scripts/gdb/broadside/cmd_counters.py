"""bs-counters: the summary counters, live, from broadside::stats::COUNTS."""

import gdb

from .kernel import SYM_COUNTS, SYM_PERCPU, TYPE_COUNTER
from .text import is_max_counter, snake
from .values import BsError, array_elements, command, enum_names, field, find_inner, require, scalar

# --------------------------------------------------------------------------------------------
# bs-counters
# --------------------------------------------------------------------------------------------
def counter_list():
    """[(index, snake_name, variant)] from the Counter enum in the debug info."""
    names = enum_names(TYPE_COUNTER)
    if not names:
        raise BsError("enum %s not in the debug info" % TYPE_COUNTER)
    return [(v, snake(n), n) for v, n in sorted(names.items())]


@command
class BsCounters(gdb.Command):
    """Show the summary counters, live: bs-counters [-a]

Reads broadside::stats::COUNTS (one row of counters per CPU) and prints every counter of the
Counter enum, by its summary name (the variant in snake_case), summed over CPUs (Max for the
`*max*` counter), in summary order. With -a, also each online CPU's value."""

    NAME = "bs-counters"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        per_cpu = arg.strip() == "-a"
        if arg.strip() and not per_cpu:
            raise BsError("usage: bs-counters [-a]")
        counts = require(SYM_COUNTS)
        rows = []
        for cpu in array_elements(counts):
            # CpuCounters([AtomicU64; N]) wraps the array: find it by type, not by position.
            arr = find_inner(cpu, lambda t: t.code == gdb.TYPE_CODE_ARRAY)
            if arr is None:
                raise BsError("no counter array in %s" % cpu.type)
            lo, hi = arr.type.strip_typedefs().range()
            rows.append([scalar(arr[i]) for i in range(lo, hi + 1)])
        online = []
        if per_cpu:
            percpu = require(SYM_PERCPU)
            online = [i for i, pc in enumerate(array_elements(percpu)) if field(pc, "online")]
        width = max(len(n) for _, n, _ in counter_list())
        for idx, name, _ in counter_list():
            values = [r[idx] for r in rows]
            total = max(values) if is_max_counter(name) else sum(values)
            line = "%-*s %12d" % (width, name, total)
            if per_cpu:
                line += "   " + " ".join("cpu%d=%d" % (i, values[i]) for i in online)
            print(line)


# --------------------------------------------------------------------------------------------

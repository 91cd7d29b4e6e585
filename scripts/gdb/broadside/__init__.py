"""broadside GDB helpers: see what the kernel sees.

Loaded by scripts/gdb.sh (`source scripts/gdb/broadside.py`, which imports this package and its
`commands` module). Commands (`help CMD` for each):

    bs-cpus       one line per online CPU: state, role, ticks, walker, IRQ mask, ASID, RCU QS
    bs-counters   the summary counters, live, summed over CPUs
    bs-pt         walk a page table in software from guest memory, decoding every level
    bs-rcu        grace-period state, per-CPU quiescent states, queued callbacks
    bs-gather     the mmu_gather in the selected frame: range, levels, flags, queued frames
    bs-events     the numbered events of a deterministic run, the last few of every CPU
    bs-stop-at    stop at event N of this run (scripts/replay.sh --at N uses it)
    bs-event-count  the number of the last event so far (replay.sh --back reads it)
    bs-event      one event of this run, described
    bs-culprit    the unhook and free of the frame a detector blamed, and how far back they are
    bs-table      a page-table page: its frame metadata and its entries

Every kernel data structure is read by symbol and by type from the ELF's DWARF: fields by name,
enum variants by name, element sizes from the types. Nothing here knows a struct offset or size,
so the helpers keep working when structures change. What the debug info cannot give (Rust
`const`s are not emitted) is listed under "Fallbacks" in kernel.py, each with where it comes
from.

Only the architecture's own formats are coded here: the VMSAv8-64 descriptor layout (4 KiB
granule, 48-bit VA; the same layout as crates/arch/src/pte.rs), PSTATE.I, TTBRn_EL1.ASID,
TCR_EL1.A1/AS and MAIR_EL1 attribute encodings.

Modules. The pure ones never import `gdb`, so the host tests (scripts/gdb/tests, plain
unittest) run them on plain integers and strings:

    kernel        symbol paths, type names, fallback values
    pte           descriptor decoding, index math, the software walk, bs-pt's line formats
    sysregs       PSTATE.I, TCR_EL1/TTBRn_EL1 ASID selection
    text          size names, level lists, counter names, bs-gather/bs-cpus cells, parsing of
                  gdb's `info variables` output and of Vec type names

The gdb-facing ones read the target:

    values        one-line errors, command registration, Rust value readers, vCPU registers
    rcu           finding the kernel's RCU engine
    cmd_cpus, cmd_counters, cmd_pt, cmd_rcu, cmd_gather, cmd_events   the commands
    commands      imports the cmd_* modules, which registers them

This file imports nothing, so `import broadside.pte` works without gdb.
"""

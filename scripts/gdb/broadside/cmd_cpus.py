"""bs-cpus: one line per online CPU, from PERCPU, that vCPU's registers and the RCU engine."""

import gdb

from .kernel import SYM_PERCPU, TYPE_CPU_STATE, TYPE_ROLE
from .rcu import rcu_cpus
from .sysregs import current_asid, irqs_text
from .text import rcu_qs_text
from .values import (BsError, array_elements, command, cpu_threads, enum_names, field, lookup,
                     read_regs, require, scalar)

# --------------------------------------------------------------------------------------------
# bs-cpus
# --------------------------------------------------------------------------------------------
def role_names():
    """{value: name}: the enumerators of the kernel's `Role` enum, from the debug info, lower
    case (`Role::TouchWalk` is "touchwalk")."""
    return {v: n.lower() for v, n in enum_names(TYPE_ROLE).items()}


class CpuView(object):
    """What one bs-cpus line is made from."""

    def __init__(self, index, pc, regs, rcu, rcu_cpu, states, roles, owes=None):
        self.index = index
        self.owes = owes  # GpState.owes_qs[index] or None
        self.pc = pc  # the PerCpu record (a local copy)
        self.regs = regs  # {register: int or None} from that CPU's thread
        self.rcu = rcu  # the Rcu engine or None
        self.rcu_cpu = rcu_cpu  # that CPU's Rcu record or None
        self.states = states
        self.roles = roles


def _state(c):
    v = field(c.pc, "state")
    return c.states.get(v, str(v)).lower()


def _irqs(c):
    return irqs_text(c.regs.get("cpsr"))


def _asid(c):
    a = current_asid(c.regs)
    return "?" if a is None else "%d" % a


def _rcu_qs(c):
    """The gp_seq of this CPU's last reported QS; `*` = the GP in progress still waits for it
    (GpState.owes_qs, or qs != gp_seq when that is unreadable); `idle` = in an extended
    quiescent state (even EQS counter)."""
    if c.rcu_cpu is None:
        return "-"
    return rcu_qs_text(field(c.rcu_cpu, "qs_reported_for_gp"), field(c.rcu["counters"], "gp_seq"),
                       field(c.rcu_cpu, "eqs_counter", -1), c.owes)


# One entry per column: (header, width, function of a CpuView). Adding a column is one line.
CPU_COLUMNS = [
    ("cpu", 3, lambda c: "%d" % c.index),
    ("mpidr", 10, lambda c: "%#x" % field(c.pc, "mpidr")),
    ("state", 8, _state),
    ("role", 8, lambda c: c.roles.get(field(c.pc, "role"), "?%d" % field(c.pc, "role"))),
    ("ticks", 8, lambda c: "%d" % field(c.pc, "ticks")),
    ("heartbeat", 10, lambda c: "%d" % field(c.pc, "heartbeat")),
    ("walker", 6, lambda c: "yes" if field(c.pc, "in_walker") else "no"),
    ("irqs", 6, _irqs),
    ("asid", 5, _asid),
    ("rcu-qs", 8, _rcu_qs),
]
CPU_REGS = ("cpsr", "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1")


@command
class BsCpus(gdb.Command):
    """List the online CPUs: bs-cpus

One line per CPU whose PERCPU[i].online is set:
  cpu        logical index (DTB order)
  mpidr      MPIDR affinity
  state      CpuState (offline/booting/idle/working/parked), by name from the debug info
  role       the workload role (none/selftest/toucher/mutator/walker/bench)
  ticks      timer ticks taken; heartbeat: workload progress
  walker     inside a lockless walk (an RCU read-side section)
  irqs       PSTATE.I of that vCPU now (masked = IRQs masked)
  asid       the ASID in use (TTBR0_EL1 bits 63:48, or TTBR1's when TCR_EL1.A1 is set)
  rcu-qs     gp_seq of the CPU's last reported quiescent state ("*": the grace period in
             progress still waits for it, from GpState.owes_qs; "idle": in an extended QS,
             even EQS counter); "-" without RCU. bs-rcu has the full per-CPU RCU view.
Registers come from the vCPU's own GDB thread (QEMU: thread N is CPU N-1)."""

    NAME = "bs-cpus"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        if arg.strip():
            raise BsError("takes no arguments")
        percpu = require(SYM_PERCPU)
        states = enum_names(TYPE_CPU_STATE)
        roles = role_names()
        rcu, rcu_per_cpu, owes = rcu_cpus()
        threads = cpu_threads()
        rows = []
        for i, pc in enumerate(array_elements(percpu)):
            if not field(pc, "online"):
                continue
            index = field(pc, "index", i)
            regs = read_regs(CPU_REGS, threads.get(index)) if index in threads else {}
            rc = rcu_per_cpu[index] if rcu_per_cpu and index < len(rcu_per_cpu) else None
            ow = owes[index] if owes and index < len(owes) else None
            rows.append(CpuView(index, pc, regs, rcu, rc, states, roles, ow))
        print("  ".join(h.rjust(w) for h, w, _ in CPU_COLUMNS))
        for c in rows:
            cells = []
            for h, w, f in CPU_COLUMNS:
                try:
                    cells.append(f(c).rjust(w))
                except (gdb.error, BsError):
                    cells.append("?".rjust(w))
            print("  ".join(cells))
        print("online: %d CPUs" % len(rows))


"""bs-rcu: grace-period state, per-CPU quiescent states, queued callbacks."""

import gdb

from .kernel import TYPE_RCU_GP_STATE, TYPE_RCU_SEGMENTS
from .rcu import find_rcu
from .values import BsError, command, field, find_inner, scalar, type_is, vec_items

# --------------------------------------------------------------------------------------------
# bs-rcu
# --------------------------------------------------------------------------------------------
@command
class BsRcu(gdb.Command):
    """Show RCU state: bs-rcu

The grace-period sequence (gp_seq: bit 0 = a grace period in progress, gp_seq >> 1 = GPs
completed), the highest GP anyone asked for, and per CPU: whether the GP in progress still waits
for it, the gp_seq of its last reported quiescent state, its EQS counter (even = idle), and its
callbacks (queued minus invoked; per segment done/wait/next-ready/next when readable).
Reads the global that holds a broadside::sync::rcu::Rcu (found by name or by type); prints a
one-line explanation when the kernel has none yet."""

    NAME = "bs-rcu"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        if arg.strip():
            raise BsError("takes no arguments")
        name, rcu = find_rcu()
        if rcu is None:
            print("bs-rcu: %s" % name)
            return
        ctr = rcu["counters"]
        gp = field(ctr, "gp_seq")
        gpstate = find_inner(rcu["gp_lock"], type_is(TYPE_RCU_GP_STATE))
        needed = field(gpstate, "gp_seq_needed", -1) if gpstate is not None else -1
        print("rcu: %s  gp_seq %d (%s)  completed %d  needed %s  grace_periods %d  "
              "max_gp_ticks %d" % (
                  name, gp, "GP in progress" if gp & 1 else "idle", gp >> 1,
                  needed if needed >= 0 else "?", field(ctr, "grace_periods", -1),
                  field(ctr, "max_gp_ticks", -1)))
        owes = None
        if gpstate is not None:
            try:
                owes = [bool(scalar(b)) for b in vec_items(gpstate["owes_qs"])]
                print("waiting for %d CPU(s)" % field(gpstate, "owing", -1))
            except (gdb.error, BsError):
                owes = None
        print("%3s  %6s  %8s  %8s  %7s  %s" % ("cpu", "owes", "qs-gp", "eqs", "queued",
                                              "done/wait/ready/next"))
        for i, c in enumerate(vec_items(rcu["cpus"])):
            queued = field(c, "cbs_queued", 0) - field(c, "cbs_invoked", 0)
            eqs = field(c, "eqs_counter")
            segs = "-"
            cbs = find_inner(c, type_is(TYPE_RCU_SEGMENTS))
            if cbs is not None:
                try:
                    n = field(cbs["cbs"], "len")
                    d, w, r = (field(cbs, k) for k in ("done_end", "wait_end", "ready_end"))
                    segs = "%d/%d/%d/%d" % (d, w - d, r - w, n - r)
                except (gdb.error, BsError):
                    segs = "-"
            print("%3d  %6s  %8d  %8s  %7d  %s" % (
                i, ("yes" if owes[i] else "no") if owes and i < len(owes) else "?",
                field(c, "qs_reported_for_gp"), "%d%s" % (eqs, " idle" if eqs & 1 == 0 else ""),
                queued, segs))

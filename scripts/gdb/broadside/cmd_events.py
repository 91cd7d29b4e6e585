"""bs-events: the numbered events of a deterministic run, per CPU; bs-stop-at: where to stop."""

import gdb

from .kernel import (EVENT_KINDS, KIMAGE_VBASE_FALLBACK, SYM_EVENT_RINGS, SYM_EVENT_SEQ,
                     SYM_EVENT_STOP_AT, SYM_UNHOOK_RINGS)
from .text import event_text
from .values import BsError, array_elements, command, require, scalar


def ring_events(ring):
    """The events of one ring (a broadside_base::events::Ring), oldest first, as (seq, kind, a,
    b) tuples."""
    nxt = scalar(ring["next"])
    slots = array_elements(ring["slots"])
    n = len(slots)
    out = []
    for i in range(max(0, nxt - n), nxt):
        slot = slots[i % n]
        s = [scalar(slot[w]) for w in range(4)]
        if s[0]:
            out.append(tuple(s))
    return out


def all_events(symbol=SYM_EVENT_RINGS):
    """Every event still in a ring, as (seq, cpu, kind, a, b), in run order."""
    rings = require(symbol)
    lo, hi = rings.type.strip_typedefs().range()
    out = []
    for cpu in range(lo, hi + 1):
        ring = rings[cpu]
        if scalar(ring["next"]) == 0:
            continue
        out.extend((seq, cpu, kind, a, b) for seq, kind, a, b in ring_events(ring))
    return sorted(out)


def kind_number(name):
    return next(k for k, v in EVENT_KINDS.items() if v == name)


@command
class BsEvents(gdb.Command):
    """List the last events of every CPU: bs-events [N]

The numbered events of a deterministic run (yield points, clears, unhooks, TLBIs, barriers,
TTBR0 loads, frees, pins, detections, grace periods) that each CPU recorded, its last N (default
12), oldest first, with their numbers: event N of this run is event N of every rerun, so
`scripts/replay.sh --at N` stops there. Events are numbered only with yield_points=on (what
run.sh --deterministic adds)."""

    NAME = "bs-events"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        n = int(arg.strip() or "12", 0)
        total = scalar(require(SYM_EVENT_SEQ))
        print("events: %d so far" % total)
        by_cpu = {}
        for seq, cpu, kind, a, b in all_events():
            by_cpu.setdefault(cpu, []).append((seq, kind, a, b))
        for cpu, events in sorted(by_cpu.items()):
            print("cpu%d:" % cpu)
            for seq, kind, a, b in events[-n:]:
                print("  %10d  %s" % (seq, event_text(kind, a, b)))


@command
class BsStopAt(gdb.Command):
    """Stop at event N of this run: bs-stop-at N

Sets broadside_base::events::STOP_AT, so that the CPU that records event N calls
broadside_base::events::stop_here (break there). Writing memory while the machine is halted
changes no instruction count: the run stays the run explore saw."""

    NAME = "bs-stop-at"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        if not arg.strip():
            raise BsError("usage: bs-stop-at N")
        n = int(arg.strip(), 0)
        stop = require(SYM_EVENT_STOP_AT)
        addr = int(stop.address)
        inf = gdb.selected_inferior()
        try:
            inf.write_memory(addr, n.to_bytes(8, "little"))
        except gdb.MemoryError:
            # Halted before the MMU is on (replay.sh sets it at the reset vector): the image's
            # virtual address is not mapped yet, but its physical one is (VA = PA there).
            if addr < KIMAGE_VBASE_FALLBACK:
                raise
            inf.write_memory(addr - KIMAGE_VBASE_FALLBACK, n.to_bytes(8, "little"))
        print("bs-stop-at: stopping at event %d" % n)


@command
class BsEventCount(gdb.Command):
    """Print the number of the selected CPU's last event: bs-event-count

The number of the last event the CPU of the selected thread (gdb thread N is cpu N-1) recorded,
0 if none (events are numbered only with yield_points=on). That CPU is the one that stopped, so
the number is the same in every rerun; SEQ, the run's count (bs-events prints it), is not
quite: when one vCPU stops, QEMU lets the others run a few more instructions before all halt.
scripts/replay.sh --back K reads it at the failure, then reruns to stop K events earlier."""

    NAME = "bs-event-count"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        cpu = gdb.selected_thread().num - 1
        mine = [seq for seq, c, _, _, _ in all_events() if c == cpu]
        print("%d" % (mine[-1] if mine else 0))


@command
class BsEvent(gdb.Command):
    """Describe one event of this run: bs-event [N]

Event N (default: the selected CPU's last), if the ring of the CPU that recorded it still holds it."""

    NAME = "bs-event"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        if arg.strip():
            n = int(arg.strip(), 0)
        else:
            n = int(gdb.execute("bs-event-count", to_string=True))
        for seq, cpu, kind, a, b in all_events():
            if seq == n:
                print("event %d on cpu%d: %s" % (seq, cpu, event_text(kind, a, b)))
                return
        print("event %d: no longer in any CPU's ring (each keeps its last ones)" % n)


@command
class BsCulprit(gdb.Command):
    """What was last done to the frame a detector blamed: bs-culprit

At a detection that names a frame (the walker's "a table the walk held was freed under it"
records a blame event with the table), finds the last unhook, and the free, of that frame
before it, on any CPU, and prints how many events before the last event the unhook was: pass
that to scripts/replay.sh --back to stop there, in the same run."""

    NAME = "bs-culprit"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        # The unhooks' own rings keep them longer than the main rings do.
        events = sorted(set(all_events()) | set(all_events(SYM_UNHOOK_RINGS)))
        blame, unhook, free = kind_number("blame"), kind_number("unhook"), kind_number("free")
        blamed = [e for e in events if e[2] == blame]
        if not blamed:
            raise BsError("bs-culprit: no detector blamed a frame in the events kept")
        seq, cpu, _, frame, level = blamed[-1]
        # From the blaming CPU's last event: the one number at this stop that every rerun shares.
        now = max(e[0] for e in events if e[1] == cpu)
        print("bs-culprit: event %d on cpu%d blames table %#x (level %d of the walk)"
              % (seq, cpu, frame, level))
        before = [e for e in events if e[0] < seq and
                  ((e[2] == unhook and e[4] == frame) or (e[2] == free and e[3] == frame))]
        for kind in (free, unhook):
            last = [e for e in before if e[2] == kind]
            if last:
                s, c, k, a, b = last[-1]
                print("bs-culprit: event %d on cpu%d: %s" % (s, c, event_text(k, a, b)))
        unhooks = [e for e in before if e[2] == unhook]
        if not unhooks:
            raise BsError("bs-culprit: the unhook of %#x is no longer in any ring" % frame)
        print("bs-culprit: back %d (from event %d to the unhook, event %d)"
              % (now - unhooks[-1][0], now, unhooks[-1][0]))

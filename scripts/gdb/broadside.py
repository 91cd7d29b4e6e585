"""broadside GDB helpers: see what the kernel sees.

Loaded by scripts/gdb.sh (`source scripts/gdb/broadside.py`). Commands (`help CMD` for each):

    bs-cpus       one line per online CPU: state, role, ticks, walker, IRQ mask, ASID, RCU QS
    bs-counters   the summary counters, live, summed over CPUs
    bs-pt         walk a page table in software from guest memory, decoding every level
    bs-rcu        grace-period state, per-CPU quiescent states, queued callbacks
    bs-gather     the mmu_gather in the selected frame: range, levels, flags, queued frames

Every kernel data structure is read by symbol and by type from the ELF's DWARF: fields by name,
enum variants by name, element sizes from the types. Nothing here knows a struct offset or size,
so the helpers keep working when structures change. What the debug info cannot give (Rust
`const`s are not emitted) is listed under "Fallbacks" below, each with where it comes from.

Only the architecture's own formats are coded here: the VMSAv8-64 descriptor layout (4 KiB
granule, 48-bit VA; the same layout as src/mm/pte.rs), PSTATE.I, TTBRn_EL1.ASID, TCR_EL1.A1/AS
and MAIR_EL1 attribute encodings.
"""

import re
from contextlib import contextmanager

import gdb

# --------------------------------------------------------------------------------------------
# Symbols the helpers read (Rust paths).
# --------------------------------------------------------------------------------------------
SYM_PERCPU = "broadside::smp::percpu::PERCPU"
SYM_COUNTS = "broadside::stats::COUNTS"
SYM_FRAMES = "broadside::mm::frame::FRAMES"
SYM_PAGE_OFFSET = "broadside::arch::aarch64::layout::PAGE_OFFSET"
TYPE_CPU_STATE = "broadside::smp::percpu::CpuState"
TYPE_COUNTER = "broadside::stats::Counter"
TYPE_FRAME_KIND = "broadside::mm::frame::FrameKind"
TYPE_FRAMES = "broadside::mm::frame::Frames"
TYPE_RCU = "broadside::sync::rcu::Rcu"
TYPE_RCU_GP_STATE = "broadside::sync::rcu::GpState"
TYPE_RCU_SEGMENTS = "broadside::sync::rcu::SegmentedCallbacks"
ROLE_MODULE = "broadside::workload::role"
# Where a global RCU engine is expected first; any other global whose type contains TYPE_RCU is
# found by a type search (see find_rcu).
RCU_CANDIDATES = (
    "broadside::sync::rcu_kernel::RCU",
    "broadside::sync::rcu::RCU",
    "broadside::sync::RCU",
    "broadside::mm::RCU",
    "broadside::kernel::RCU",
)

# --------------------------------------------------------------------------------------------
# Fallbacks: values the DWARF does not carry.
# --------------------------------------------------------------------------------------------
# Rust `const`s are not emitted as symbols, so PAGE_OFFSET is looked up (in case a future build
# emits it, e.g. as a static) and otherwise taken from src/arch/aarch64/layout.rs.
PAGE_OFFSET_FALLBACK = 0xFFFF_0000_0000_0000
KIMAGE_VBASE_FALLBACK = 0xFFFF_8000_0000_0000  # layout.rs KIMAGE_VBASE (same reason)
# `broadside::workload::role` holds `pub const`s, which are not emitted either: its symbols are
# tried first and this copy of src/workload/mod.rs `role_name` is used when they are absent.
ROLE_FALLBACK = {0: "none", 1: "selftest", 2: "toucher", 3: "mutator", 4: "walker", 5: "bench"}
# src/mm/pte.rs MAIR_IDX_* names, used only when MAIR_EL1 cannot be read from the target.
MAIR_INDEX_FALLBACK = {0: "Normal-WB", 1: "Device-nGnRE", 2: "Normal-NC"}

# --------------------------------------------------------------------------------------------
# The architecture (Arm ARM D8.3, VMSAv8-64 4 KiB granule, 48-bit VA).
# --------------------------------------------------------------------------------------------
DESC_BYTES = 8
LEVELS = (0, 1, 2, 3)
OA_MASK = ((1 << 48) - 1) & ~0xFFF
TTBR_BADDR_MASK = ((1 << 48) - 1) & ~0xFFF  # 4K-aligned level-0 table: BADDR[47:12], no CnP


def level_shift(level):
    return 12 + 9 * (3 - level)


def level_size(level):
    return 1 << level_shift(level)


def size_name(n):
    for unit, s in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << s and n % (1 << s) == 0:
            return "%d %s" % (n >> s, unit)
    return "%d B" % n


# --------------------------------------------------------------------------------------------
# Helpers: clean errors, language, values.
# --------------------------------------------------------------------------------------------
class BsError(gdb.GdbError):
    """An error shown to the user as one line (no traceback)."""


_COMMANDS = []  # the registered command objects, kept alive


def command(cls):
    """Registers a gdb.Command subclass whose `run(arg, from_tty)` errors print as one line."""

    def invoke(self, arg, from_tty):
        try:
            self.run(arg, from_tty)
        except BsError as e:
            raise gdb.GdbError("%s: %s" % (cls.NAME, e))
        except gdb.GdbError:
            raise
        except gdb.MemoryError as e:
            raise gdb.GdbError("%s: %s (kernel virtual addresses are readable once the MMU is "
                               "on)" % (cls.NAME, e))
        except (gdb.error, gdb.MemoryError, ValueError, KeyError, IndexError, TypeError,
                AttributeError, OverflowError, RuntimeError) as e:
            raise gdb.GdbError("%s: %s" % (cls.NAME, e))

    cls.invoke = invoke
    _COMMANDS.append(cls())
    return cls


@contextmanager
def language(lang):
    """Temporarily `set language LANG` (restores the user's setting, `auto` included)."""
    old = gdb.parameter("language")
    if old == lang:
        yield
        return
    gdb.execute("set language %s" % lang, to_string=True)
    try:
        yield
    finally:
        gdb.execute("set language %s" % old, to_string=True)


def evaluate(expr, langs=("rust", "c")):
    """Evaluates EXPR in the current language, then in each of LANGS (Rust paths need a Rust
    frame or `set language rust`; linker symbols like `&__image_start` need C)."""
    try:
        return gdb.parse_and_eval(expr)
    except gdb.error as first:
        for lang in langs:
            try:
                with language(lang):
                    return gdb.parse_and_eval(expr)
            except gdb.error:
                pass
        raise first


def _symbol(path):
    """The gdb.Symbol of global PATH or None. GDB 13 sometimes misses a Rust static on the first
    lookup (the lookup expands its compilation unit as a side effect), so every way is tried
    twice."""
    for _ in range(2):
        for finder in (gdb.lookup_global_symbol, gdb.lookup_static_symbol):
            try:
                sym = finder(path)
            except gdb.error:
                sym = None
            if sym is not None and sym.is_variable:
                return sym
        try:
            syms = [s for s in gdb.lookup_static_symbols(path) if s.is_variable]
        except (gdb.error, AttributeError):
            syms = []
        if syms:
            return syms[0]
    return None


def lookup(path):
    """The value of the global at Rust path PATH, or None when the ELF has no such symbol.
    Raises BsError when it exists but its memory cannot be read (MMU still off)."""
    sym = _symbol(path)
    if sym is not None:
        try:
            return sym.value()
        except gdb.MemoryError as e:
            raise BsError("%s is not readable yet (%s): the helpers read kernel virtual "
                          "addresses, which exist once the MMU is on" % (path, e))
        except gdb.error:
            pass
    for _ in range(2):
        try:
            with language("rust"):
                return gdb.parse_and_eval(path)
        except gdb.MemoryError as e:
            raise BsError("%s is not readable yet (%s)" % (path, e))
        except gdb.error:
            pass
    return None


def require(path):
    v = lookup(path)
    if v is None:
        raise BsError("symbol %s not found (is this the broadside ELF, with debug info?)" % path)
    return v


def lookup_type(name):
    """The gdb.Type named NAME (a Rust path) or None; tried twice, like _symbol."""
    for _ in range(2):
        try:
            with language("rust"):
                return gdb.lookup_type(name)
        except gdb.error:
            pass
    return None


def snapshot(value):
    """A local copy of VALUE read with one memory access (its fields are decoded from the copy
    by type, so reading a 256-entry array costs one remote read, not thousands)."""
    mem = gdb.selected_inferior().read_memory(int(value.address), value.type.sizeof)
    return gdb.Value(bytes(mem), value.type)


def array_elements(value):
    """The elements of a fixed-size array VALUE, read with one memory access, as local values."""
    lo, hi = value.type.strip_typedefs().range()
    elem = value.type.strip_typedefs().target()
    mem = bytes(gdb.selected_inferior().read_memory(int(value.address), value.type.sizeof))
    n = hi - lo + 1
    return [gdb.Value(mem[i * elem.sizeof:(i + 1) * elem.sizeof], elem) for i in range(n)]


def _code(t):
    return t.strip_typedefs().code


def scalar(value):
    """The integer inside VALUE, unwrapping single-field wrappers by type (Atomic<T> -> UnsafeCell
    -> Align8 -> T, newtypes like PhysAddr(u64)). Raises BsError when VALUE is no wrapper."""
    v = value
    for _ in range(12):
        c = _code(v.type)
        if c in (gdb.TYPE_CODE_INT, gdb.TYPE_CODE_BOOL, gdb.TYPE_CODE_CHAR, gdb.TYPE_CODE_ENUM,
                 gdb.TYPE_CODE_PTR):
            return int(v)
        if c in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
            fields = [f for f in v.type.strip_typedefs().fields() if not f.artificial]
            real = [f for f in fields if f.type is not None and f.type.sizeof > 0]
            if len(real) == 1:
                v = v[real[0].name]
                continue
        break
    raise BsError("cannot read %s as an integer" % value.type)


def field(value, name, default=None):
    """VALUE.NAME as an integer, or DEFAULT when the type has no such field (optional fields)."""
    try:
        return scalar(value[name])
    except gdb.error:
        if default is not None:
            return default
        raise BsError("%s has no field `%s`" % (value.type, name))


def has_field(value, name):
    t = value.type.strip_typedefs()
    return _code(t) in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION) and \
        any(f.name == name for f in t.fields())


def deref_all(value):
    """Follows references and pointers (e.g. `&'static AddressSpace`) to what they point at."""
    v = value
    for _ in range(4):
        if _code(v.type) in (gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_REF) and int(v) != 0:
            v = v.dereference()
        else:
            break
    return v


def find_inner(value, pred, depth=8):
    """Breadth-first search through VALUE's fields (structs, unions such as MaybeUninit, and
    non-null pointers such as Box/Arc/&) for a sub-value whose type satisfies PRED. This is how
    wrappers are seen through without knowing their layout: spin::Once, Lazy, Mutex, Option..."""
    frontier = [value]
    for _ in range(depth):
        nxt = []
        for v in frontier:
            t = v.type.strip_typedefs()
            if pred(t):
                return v
            c = t.code
            if c in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
                for f in t.fields():
                    if f.name is None or f.is_base_class:
                        continue
                    try:
                        nxt.append(v[f.name])
                    except gdb.error:
                        pass
            elif c in (gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_REF):
                try:
                    if int(v) != 0 and _code(t.target()) in (gdb.TYPE_CODE_STRUCT,
                                                             gdb.TYPE_CODE_UNION):
                        nxt.append(v.dereference())
                except gdb.error:
                    pass
        frontier = nxt
        if not frontier:
            break
    return None


def once_ready(value):
    """False when VALUE is a spin::Once (or holds one at top level) whose `status` is not
    `Complete` (decoded by name from spin's Status enum); True otherwise."""
    v = deref_all(value)
    if not has_field(v, "status") or "Once" not in str(v.type):
        return True
    try:
        status = scalar(v["status"])
    except BsError:
        return True
    names = enum_names("spin::once::status::Status")
    return names.get(status, "Complete") == "Complete" if names else status != 0


def type_is(name):
    return lambda t: t.name is not None and t.name == name


def vec_items(vec):
    """The elements of an alloc::vec::Vec<T> VALUE (its `len` and the first pointer inside its
    buffer, cast to T by the Vec's own template argument)."""
    t = vec.type.strip_typedefs()
    try:
        elem = t.template_argument(0)
    except (gdb.error, RuntimeError):
        m = re.match(r"alloc::vec::Vec<(.*), [^,]*>$", str(t))
        if not m:
            raise BsError("cannot tell the element type of %s" % t)
        elem = lookup_type(m.group(1))
    n = scalar(vec["len"])
    ptr = find_inner(vec["buf"], lambda ty: ty.code == gdb.TYPE_CODE_PTR)
    if ptr is None:
        raise BsError("no buffer pointer in %s" % t)
    base = ptr.cast(elem.pointer())
    return [(base + i).dereference() for i in range(n)]


def enum_names(type_name):
    """{value: VariantName} of the C-like enum TYPE_NAME, from DWARF; {} when absent."""
    t = lookup_type(type_name)
    if t is None or t.strip_typedefs().code != gdb.TYPE_CODE_ENUM:
        return {}
    return {f.enumval: f.name.rsplit("::", 1)[-1] for f in t.strip_typedefs().fields()}


def snake(name):
    """CamelCase -> snake_case, the summary's spelling of a Counter variant (TlbiOps ->
    tlbi_ops). scripts/gdb-check.sh checks the result against src/stats.rs."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


# --------------------------------------------------------------------------------------------
# Per-CPU registers: QEMU's gdbstub has one thread per vCPU, thread id = cpu_index + 1.
# --------------------------------------------------------------------------------------------
def cpu_threads():
    """{cpu index: gdb.InferiorThread}."""
    out = {}
    for t in gdb.selected_inferior().threads():
        tid = t.ptid[1] if t.ptid[1] else t.num
        out[tid - 1] = t
    return out


@contextmanager
def on_thread(thread):
    """Selects THREAD, then puts the user's thread and frame back."""
    old_thread = gdb.selected_thread()
    try:
        old_frame = gdb.selected_frame()
    except gdb.error:
        old_frame = None
    if thread is not None and thread != old_thread:
        thread.switch()
    try:
        yield
    finally:
        if old_thread is not None and old_thread.is_valid():
            old_thread.switch()
            if old_frame is not None:
                try:
                    old_frame.select()
                except (gdb.error, RuntimeError):
                    pass


def read_regs(names, thread=None):
    """{name: int or None} of registers NAMES on THREAD (None: the selected thread)."""
    out = {}
    with on_thread(thread):
        for n in names:
            try:
                out[n] = int(gdb.parse_and_eval("$" + n)) & (2 ** 64 - 1)
            except gdb.error:
                out[n] = None
    return out


def current_asid(regs):
    """The ASID in use: TCR_EL1.A1 (bit 22) picks TTBR1 or TTBR0, TCR_EL1.AS (bit 36) 16 or 8
    bits. Without TCR_EL1, TTBR0's bits 63:48."""
    tcr = regs.get("TCR_EL1")
    ttbr = regs.get("TTBR0_EL1")
    bits = 16
    if tcr is not None:
        if tcr >> 22 & 1:
            ttbr = regs.get("TTBR1_EL1")
        bits = 16 if tcr >> 36 & 1 else 8
    if ttbr is None:
        return None
    return (ttbr >> 48) & ((1 << bits) - 1)


# --------------------------------------------------------------------------------------------
# RCU
# --------------------------------------------------------------------------------------------
def _global_by_type(type_regex, accept):
    """Globals whose type matches TYPE_REGEX (via `info variables -t`, whose Rust output lacks
    names, so each hit is resolved through its file:line symbol table)."""
    try:
        with language("rust"):
            text = gdb.execute("info variables -q -n -t %s" % type_regex, to_string=True)
    except gdb.error:
        return None
    cur_file = None
    for line in text.splitlines():
        m = re.match(r"^File (.*):$", line)
        if m:
            cur_file = m.group(1)
            continue
        m = re.match(r"^(\d+):", line)
        if not (m and cur_file):
            continue
        try:
            sals = gdb.decode_line("%s:%s" % (cur_file, m.group(1)))[1] or ()
        except gdb.error:
            continue
        for sal in sals:
            if sal.symtab is None:
                continue
            for block in (sal.symtab.static_block(), sal.symtab.global_block()):
                for sym in block:
                    if sym.is_variable and sym.line == int(m.group(1)):
                        try:
                            v = sym.value()
                        except gdb.error:
                            continue
                        if accept(v):
                            return sym.name, v
    return None


def find_rcu():
    """(symbol name, Rcu value) of the kernel's RCU engine, or (message, None)."""
    if lookup_type(TYPE_RCU) is None:
        return "RCU not built: type %s not in the debug info" % TYPE_RCU, None

    def inner(v):
        return find_inner(v, type_is(TYPE_RCU))

    hit = None
    for name in RCU_CANDIDATES:
        try:
            v = lookup(name)
        except BsError as e:
            return "RCU not readable: %s" % e, None
        if v is not None:
            hit = (name, v)
            break
    if hit is None:
        hit = _global_by_type(re.escape(TYPE_RCU) + "[,>]|" + re.escape(TYPE_RCU) + "$",
                              lambda v: True)
    if hit is None:
        return ("RCU not initialised: no global holding a %s (looked for %s and by type)"
                % (TYPE_RCU, ", ".join(RCU_CANDIDATES)), None)
    name, v = hit
    if not once_ready(v):
        return "RCU not initialised: %s (a spin::Once) has not been set yet" % name, None
    # A spin::Once / Lazy that has not run yet holds zeroed storage: an Rcu with no CPUs.
    rcu = inner(v)
    if rcu is None:
        return "RCU not initialised: %s holds no %s yet" % (name, TYPE_RCU), None
    try:
        if scalar(rcu["cpus"]["len"]) == 0:
            return "RCU not initialised: %s has no CPUs yet" % name, None
    except (gdb.error, BsError):
        pass
    return name, rcu


def rcu_owes(rcu):
    """[bool per CPU] from GpState.owes_qs (the grace period in progress still waits for that
    CPU's quiescent state), or None when it cannot be read."""
    gpstate = find_inner(rcu["gp_lock"], type_is(TYPE_RCU_GP_STATE))
    if gpstate is None:
        return None
    try:
        return [bool(scalar(b)) for b in vec_items(gpstate["owes_qs"])]
    except (gdb.error, BsError):
        return None


def rcu_cpus():
    """(Rcu, [per-CPU Rcu record], [owes_qs per CPU] or None), or Nones (for bs-cpus)."""
    _, rcu = find_rcu()
    if rcu is None:
        return None, None, None
    return rcu, vec_items(rcu["cpus"]), rcu_owes(rcu)


# --------------------------------------------------------------------------------------------
# bs-cpus
# --------------------------------------------------------------------------------------------
def role_names():
    """{value: name}: from `broadside::workload::role::*` symbols when emitted, else the copy of
    role_name() in ROLE_FALLBACK (Rust consts are normally not in the debug info)."""
    names = {}
    for v, n in ROLE_FALLBACK.items():
        sym = lookup("%s::%s" % (ROLE_MODULE, n.upper()))
        if sym is not None:
            names[scalar(sym)] = n
    return names or dict(ROLE_FALLBACK)


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
    cpsr = c.regs.get("cpsr")
    if cpsr is None:
        return "?"
    return "masked" if cpsr >> 7 & 1 else "on"  # PSTATE.I


def _asid(c):
    a = current_asid(c.regs)
    return "?" if a is None else "%d" % a


def _rcu_qs(c):
    """The gp_seq of this CPU's last reported QS; `*` = the GP in progress still waits for it
    (GpState.owes_qs, or qs != gp_seq when that is unreadable); `idle` = in an extended
    quiescent state (even EQS counter)."""
    if c.rcu_cpu is None:
        return "-"
    qs = field(c.rcu_cpu, "qs_reported_for_gp")
    gp = field(c.rcu["counters"], "gp_seq")
    eqs = field(c.rcu_cpu, "eqs_counter", -1)
    s = "%d" % qs
    owes = c.owes if c.owes is not None else (gp & 1 and qs != gp)
    if gp & 1 and owes:
        s += "*"
    if eqs >= 0 and eqs & 1 == 0:
        s += " idle"
    return s


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


# --------------------------------------------------------------------------------------------
# bs-counters
# --------------------------------------------------------------------------------------------
def counter_list():
    """[(index, snake_name, variant)] from the Counter enum in the debug info."""
    names = enum_names(TYPE_COUNTER)
    if not names:
        raise BsError("enum %s not in the debug info" % TYPE_COUNTER)
    return [(v, snake(n), n) for v, n in sorted(names.items())]


def is_max_counter(name):
    """Counter::aggregate() is a const fn (not in the debug info): a counter whose name has the
    word `max` is an Aggregate::Max counter (rcu_max_gp_ticks), every other one is summed."""
    return "max" in name.split("_")


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
# bs-pt
# --------------------------------------------------------------------------------------------
def page_offset():
    """(PAGE_OFFSET, where it came from)."""
    v = lookup(SYM_PAGE_OFFSET)
    if v is not None:
        try:
            return scalar(v), "symbol"
        except BsError:
            pass
    return PAGE_OFFSET_FALLBACK, "layout.rs value"


def read_u64_phys(pa, off):
    """The u64 at physical PA, read through the linear map (PAGE_OFFSET + pa); if that VA is not
    readable (MMU off, early boot), through QEMU's physical-memory gdbstub mode."""
    inf = gdb.selected_inferior()
    try:
        return int.from_bytes(bytes(inf.read_memory(off + pa, DESC_BYTES)), "little")
    except gdb.MemoryError:
        pass
    try:
        gdb.execute("maintenance packet Qqemu.PhyMemMode:1", to_string=True)
        try:
            return int.from_bytes(bytes(inf.read_memory(pa, DESC_BYTES)), "little")
        finally:
            gdb.execute("maintenance packet Qqemu.PhyMemMode:0", to_string=True)
    except (gdb.error, gdb.MemoryError):
        raise BsError("cannot read physical %#x (linear map VA %#x)" % (pa, off + pa))


MAIR_TYPES = {0x00: "Device-nGnRnE", 0x04: "Device-nGnRE", 0x08: "Device-nGRE",
              0x0C: "Device-GRE", 0x44: "Normal-NC", 0xFF: "Normal-WB", 0xBB: "Normal-WT"}


def mair_name(index, mair):
    if mair is None:
        return MAIR_INDEX_FALLBACK.get(index, "?")
    byte = (mair >> (8 * index)) & 0xFF
    if byte in MAIR_TYPES:
        return MAIR_TYPES[byte]
    if byte & 0xF0 == 0:
        return "Device(%#04x)" % byte
    return "Normal(%#04x)" % byte


AP_NAMES = {0: "EL1-RW", 1: "EL1/EL0-RW", 2: "EL1-RO", 3: "EL1/EL0-RO"}
SH_NAMES = {0: "NS", 1: "NS?", 2: "OS", 3: "IS"}


def decode(raw, level):
    """(kind, output address) of descriptor RAW read at LEVEL; kind is table/block/page/invalid
    (as src/mm/pte.rs `Descriptor::kind`)."""
    if not raw & 1:
        return "invalid", None
    table_or_page = raw >> 1 & 1
    if level == 3:
        return ("page", raw & OA_MASK) if table_or_page else ("invalid", None)
    if table_or_page:
        return "table", raw & OA_MASK
    if level == 0:
        return "invalid", None  # no level-0 blocks with 4K granule, 48-bit OA
    return "block", raw & OA_MASK & ~(level_size(level) - 1)


def attributes(raw, mair):
    idx = raw >> 2 & 7
    return ("attr=%d(%s) AP=%s SH=%s AF=%d nG=%d PXN=%d UXN=%d SW=%#x"
            % (idx, mair_name(idx, mair), AP_NAMES[raw >> 6 & 3], SH_NAMES[raw >> 8 & 3],
               raw >> 10 & 1, raw >> 11 & 1, raw >> 53 & 1, raw >> 54 & 1, raw >> 55 & 0xF))


def frame_meta(pa):
    """A description of the frame metadata of physical PA ("kind level share=+N"), or "-"."""
    try:
        frames = lookup(SYM_FRAMES)
        if frames is None or not once_ready(frames):
            return "-"
        f = find_inner(frames, type_is(TYPE_FRAMES))
        if f is None:
            return "-"
        meta = f["meta"]
        n = scalar(meta["length"])
        first = scalar(f["first_pfn"])
        pfn = pa >> 12
        if n == 0 or not first <= pfn < first + n:
            return "-"
        m = (meta["data_ptr"] + (pfn - first)).dereference()
        kinds = enum_names(TYPE_FRAME_KIND)
        kind = field(m, "kind")
        ls = field(m, "level_and_share")
        return "frame: %s refs=%d level=%d share=+%d" % (
            kinds.get(kind, str(kind)).lower(), field(m, "refcount"), ls & 0xFF, ls >> 8)
    except (gdb.error, gdb.MemoryError, BsError):
        return "-"


def resolve_root(expr):
    """(root PA, description) of the bs-pt SPACE argument."""
    e = expr.strip()
    low = e.lower()
    if low in ("kernel", "ttbr1"):
        r = read_regs(("TTBR1_EL1",))["TTBR1_EL1"]
        if r is None:
            raise BsError("TTBR1_EL1 is not readable (QEMU gdbstub without system registers?)")
        if r & TTBR_BADDR_MASK == 0:
            raise BsError("TTBR1_EL1 is 0: the kernel's tables are not set up yet")
        return r & TTBR_BADDR_MASK, "kernel: TTBR1_EL1=%#x" % r
    if low in ("user", "ttbr0"):
        r = read_regs(("TTBR0_EL1",))["TTBR0_EL1"]
        if r is None:
            raise BsError("TTBR0_EL1 is not readable")
        if r & TTBR_BADDR_MASK == 0:
            raise BsError("TTBR0_EL1 is 0: no address space is active on this CPU")
        return r & TTBR_BADDR_MASK, "TTBR0_EL1=%#x" % r
    v = evaluate(e)
    s = deref_all(v)
    if _code(s.type) in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
        # An address space (or anything holding one): the first `root` field found by type.
        holder = find_inner(s, lambda t: t.code == gdb.TYPE_CODE_STRUCT and
                            any(f.name == "root" for f in t.fields()))
        if holder is None:
            raise BsError("%s (%s) has no `root` field" % (e, s.type))
        root = scalar(holder["root"])
        if root >= 0xFFFF_0000_0000_0000:
            root = virt_to_phys(root)
        return root & TTBR_BADDR_MASK, "%s.root (%s)" % (e, holder.type)
    return scalar(v) & TTBR_BADDR_MASK, "physical %s" % e


def virt_to_phys(va):
    off, _ = page_offset()
    if va >= KIMAGE_VBASE_FALLBACK:
        return va - KIMAGE_VBASE_FALLBACK
    return va - off


def walk(root, va):
    """[(level, index, descriptor PA, raw, kind, output address)] down to a leaf or a fault."""
    off, _ = page_offset()
    table = root
    steps = []
    for level in LEVELS:
        index = (va >> level_shift(level)) & 511
        dpa = table + DESC_BYTES * index
        raw = read_u64_phys(dpa, off)
        kind, oa = decode(raw, level)
        steps.append((level, index, dpa, raw, kind, oa))
        if kind != "table":
            break
        table = oa
    return steps


@command
class BsPt(gdb.Command):
    """Walk a page table in software: bs-pt SPACE VA

SPACE is one of:
  kernel (or ttbr1)  the kernel's table: TTBR1_EL1 of the selected CPU
  user (or ttbr0)    the selected CPU's TTBR0_EL1 table
  an expression      a physical address of a level-0 table, or a value (or pointer/reference)
                     whose type holds a `root` field with the table's physical address, e.g. an
                     address space: `bs-pt *space 0x400000`
VA is an expression (`$pc`, `0xffff000040001000`, `&__image_start`); quote an expression
that contains spaces: bs-pt kernel '$pc + 8'.

Tables are read from guest memory through the linear map (PAGE_OFFSET + PA), or through QEMU's
physical-memory mode when that is not mapped. One line per level: level, index, the
descriptor's physical address, raw value, type (table/block/page/invalid), output address and,
for leaves, the attributes: AttrIndx with its MAIR_EL1 memory type, AP, SH, AF, nG, PXN, UXN and
the software bits [58:55]; for tables, the next table's frame metadata (kind, level, extra
sharers of a shared level-2 table) or "-". The last line is the translation or the fault."""

    NAME = "bs-pt"

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if len(args) < 2:
            raise BsError("usage: bs-pt kernel|user|SPACE-EXPR VA-EXPR")
        space, va_expr = " ".join(args[:-1]), args[-1]
        root, desc = resolve_root(space)
        va = scalar(evaluate(va_expr)) & (2 ** 64 - 1)
        off, off_src = page_offset()
        print("bs-pt: va %#x  root %#x (%s)  linear map at %#x (%s)"
              % (va, root, desc, off, off_src))
        top = va >> 48
        if top not in (0, 0xFFFF):
            print("result: translation fault at level 0 (va %#x is not canonical)" % va)
            return
        lower = space.strip().lower() in ("user", "ttbr0")
        if space.strip().lower() in ("kernel", "ttbr1") and top != 0xFFFF:
            print("note: va %#x is in the TTBR0 half; walking the TTBR1 table anyway" % va)
        elif lower and top != 0:
            print("note: va %#x is in the TTBR1 half; walking the TTBR0 table anyway" % va)
        mair = read_regs(("MAIR_EL1",))["MAIR_EL1"]
        steps = walk(root, va)
        for level, index, dpa, raw, kind, oa in steps:
            line = "level %d index %3d  desc@pa %#012x  raw %#018x  %-7s" % (
                level, index, dpa, raw, kind)
            if kind == "table":
                line += " -> %#x  next %s" % (oa, frame_meta(oa))
            elif kind in ("block", "page"):
                line += " -> %#x  %s" % (oa, attributes(raw, mair))
            print(line)
        level, _, _, raw, kind, oa = steps[-1]
        if kind in ("block", "page"):
            size = level_size(level)
            pa = oa + (va & (size - 1))
            ro = raw >> 7 & 1
            print("result: va %#x -> pa %#x  (%s %s at level %d, %s, %s)" % (
                va, pa, size_name(size), kind, level,
                "read-only" if ro else "read-write",
                "EL1-executable" if not raw >> 53 & 1 else "PXN"))
        else:
            print("result: translation fault at level %d (invalid descriptor %#x)" % (level, raw))


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


# --------------------------------------------------------------------------------------------
# bs-gather
# --------------------------------------------------------------------------------------------
TYPE_GATHER = "broadside::mm::gather::MmuGather"
# Names a gather goes by in the kernel's frames, tried first (any other local or argument of
# the gather's type is found too).
GATHER_NAMES = ("self", "gather", "g", "tlb")
# How many queued pages / tables are listed by address.
GATHER_SHOW = 4


def variant(value):
    """(variant name, variant value) of a Rust enum VALUE: GDB resolves only the active
    variant, so the field that can be read is the one in use (Option: None / Some)."""
    for f in value.type.strip_typedefs().fields():
        if f.name is None:
            continue
        try:
            return f.name, value[f.name]
        except gdb.error:
            continue
    raise BsError("cannot tell the active variant of %s" % value.type)


def vec_len(vec):
    return scalar(vec["len"])


def is_gather_type(t):
    t = t.strip_typedefs()
    for _ in range(3):
        if t.code in (gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_REF):
            t = t.target().strip_typedefs()
    return t.code == gdb.TYPE_CODE_STRUCT and t.name is not None and \
        re.match(re.escape(TYPE_GATHER) + r"($|<)", t.name) is not None


def frame_gather(frame):
    """(name, value) of the gather among FRAME's arguments and locals, or None. Names in
    GATHER_NAMES win; optimised-out values are skipped."""
    try:
        block = frame.block()
    except (gdb.error, RuntimeError):
        return None
    found = []
    while block is not None:
        for sym in block:
            if not (sym.is_argument or sym.is_variable) or not is_gather_type(sym.type):
                continue
            try:
                v = sym.value(frame)
                if v.is_optimized_out:
                    continue
                deref_all(v)["range"].fetch_lazy()
            except (gdb.error, gdb.MemoryError):
                continue
            found.append((sym.name, v))
        if block.function is not None:
            break
        block = block.superblock
    found.sort(key=lambda nv: GATHER_NAMES.index(nv[0]) if nv[0] in GATHER_NAMES else 99)
    return found[0] if found else None


def find_gather(arg):
    """(description, MmuGather value) from the argument or the selected frame (then its
    callers, up to 8 frames out)."""
    if arg.strip():
        v = deref_all(evaluate(arg.strip()))
        if not is_gather_type(v.type):
            raise BsError("%s is a %s, not a %s" % (arg.strip(), v.type, TYPE_GATHER))
        return arg.strip(), v
    try:
        frame = gdb.selected_frame()
    except gdb.error:
        raise BsError("no frame selected (is the target stopped?)")
    for depth in range(9):
        if frame is None:
            break
        hit = frame_gather(frame)
        if hit is not None:
            where = "`%s` in %s" % (hit[0], frame.name() or "??")
            if depth:
                where += " (%d frame%s out)" % (depth, "s" if depth > 1 else "")
            return where, deref_all(hit[1])
        frame = frame.older()
    raise BsError("no %s in the selected frame or its callers (optimised out?): give an "
                  "expression, e.g. bs-gather *self, or use scripts/gdb.sh --opt0"
                  % TYPE_GATHER)


def level_list(bits):
    return [lv for lv in range(8) if bits >> lv & 1]


@command
class BsGather(gdb.Command):
    """Show an mmu_gather: bs-gather [EXPR]

Without EXPR, the broadside::mm::gather::MmuGather in the selected frame (an argument or local
named self, gather, g or tlb, or any of that type; then the callers'); EXPR is a gather, or a
pointer or reference to one. Prints:
  space          the address space (id, root table PA, gathers in flight: flush_pending)
  range          [start, end) still to invalidate, or "empty" (start >= end: nothing cleared
                 since the last flush), with its size
  stride         the smallest leaf size cleared (the flush stride), or "none"
  cleared        the levels whose entries were cleared (cleared_levels as a list)
  fullmm         a whole-space teardown: the flush is one ASID invalidation
  freed_tables   tables were unhooked: the flush must cover walk caches (not leaf-only);
                 then every other bool flag of the gather by name (unshared_tables, ...)
  pages          frames queued to free after the flush: count over all batches, batch count,
                 the first few as PA/order
  tables         table pages queued for the RCU table-free path: "no batch" (None) or the count
                 and the first few PAs
  flushes        flushes this gather has issued; last_flush: the FlushRecord of the last one
Fields the gather gains later are listed at the end by name and value."""

    NAME = "bs-gather"
    KNOWN = ("space", "fullmm", "range", "freed_tables", "local", "local_len", "pages",
             "tables", "flushes", "last_flush")

    def __init__(self):
        super().__init__(self.NAME, gdb.COMMAND_DATA)

    def run(self, arg, from_tty):
        where, g = find_gather(arg)
        addr = g.address
        print("gather: %s  @%s  (%s)" % (where, "%#x" % int(addr) if addr is not None else "?",
                                         g.type))
        # The space it works on.
        try:
            sp = deref_all(g["space"])
            extra = ""
            if has_field(sp, "flush_pending"):
                extra = "  gathers in flight %d" % field(sp, "flush_pending")
            print("  space          id %d  root %#x%s" % (field(sp, "id"), field(sp, "root"),
                                                          extra))
        except (gdb.error, BsError) as e:
            print("  space          ? (%s)" % e)
        # The range bookkeeping is a GatherRange (mm::gather_range): start, end, stride, levels.
        r = g["range"]
        start, end = field(r, "start"), field(r, "end")
        fullmm = bool(field(g, "fullmm"))
        if start < end:
            n = end - start
            print("  range          [%#x, %#x)  %s (%d pages)" % (start, end, size_name(n)
                                                                  if n < 1 << 48 else "256 TiB",
                                                                  n >> 12))
        else:
            print("  range          empty (start %#x, end %#x)" % (start, end))
        stride = field(r, "stride")
        print("  stride         %s" % ("none" if stride >= 1 << 63 or stride == 0
                                       else size_name(stride)))
        cl = field(r, "cleared_levels")
        print("  cleared        levels %s  (cleared_levels %s)" % (level_list(cl), format(cl, "#06b")))
        freed = bool(field(g, "freed_tables"))
        print("  fullmm         %s" % ("true" if fullmm else "false"))
        # The table flags, in struct order: freed_tables and whatever else the gather has
        # (unshared_tables, fully_unshared_tables, ...): every bool field but fullmm.
        for f in g.type.strip_typedefs().fields():
            if f.name and f.name != "fullmm" and _code(f.type) == gdb.TYPE_CODE_BOOL:
                print("  %-14s %s" % (f.name, "true" if bool(g[f.name]) else "false"))
        # Pages: the embedded batch local[..local_len] first, then Vec<Vec<PageEntry>>.
        local_len = field(g, "local_len")
        local = [g["local"][i] for i in range(local_len)]
        batches = vec_items(g["pages"])
        lens = [local_len] + [vec_len(b) for b in batches]
        shown = ["%#x/%d" % (field(e, "pa"), field(e, "order", 0)) for e in local[:GATHER_SHOW]]
        for b in batches:
            for e in vec_items(b)[:GATHER_SHOW - len(shown)]:
                shown.append("%#x/%d" % (field(e, "pa"), field(e, "order", 0)))
            if len(shown) >= GATHER_SHOW:
                break
        total = sum(lens)
        print("  pages          %d queued in the embedded batch and %d more%s" % (
            total, len(lens) - 1,
            (": " + ", ".join(shown) + (", ..." if total > len(shown) else "") + "  (pa/order)")
            if shown else ""))
        # Tables: Option<Vec<u64>>.
        name, val = variant(g["tables"])
        if name == "None":
            print("  tables         no batch (None)%s" % (
                "  [freed_tables with no batch: tables were freed by the fallback path]"
                if freed else ""))
        else:
            vec = find_inner(val, lambda t: t.name is not None and
                             t.name.startswith("alloc::vec::Vec<"))
            items = vec_items(vec) if vec is not None else []
            pas = ["%#x" % scalar(x) for x in items[:GATHER_SHOW]]
            print("  tables         %d queued%s" % (
                len(items), (": " + ", ".join(pas) + (", ..." if len(items) > len(pas) else ""))
                if pas else ""))
        print("  flushes        %d" % field(g, "flushes"))
        try:
            lf = g["last_flush"]
            parts = []
            for f in lf.type.strip_typedefs().fields():
                v = lf[f.name]
                if _code(v.type) == gdb.TYPE_CODE_BOOL:
                    parts.append("%s=%s" % (f.name, "true" if bool(v) else "false"))
                elif _code(v.type) == gdb.TYPE_CODE_ENUM:
                    parts.append("%s=%s" % (f.name, str(v).rsplit("::", 1)[-1]))
                elif _code(v.type) in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
                    # A Rust enum with data (FlushCoverage): the variant, and a range's bounds.
                    vname, vval = variant(v)
                    if vname == "Range":
                        parts.append("%s=Range[%#x,%#x)/%s" % (
                            f.name, scalar(vval["start"]), scalar(vval["end"]),
                            size_name(scalar(vval["stride"]))))
                    else:
                        parts.append("%s=%s" % (f.name, vname))
                else:
                    try:
                        parts.append("%s=%d" % (f.name, scalar(v)))
                    except BsError:
                        parts.append("%s=%s" % (f.name, v))
            print("  last_flush     %s" % " ".join(parts))
        except gdb.error as e:
            print("  last_flush     ? (%s)" % e)
        # Anything the gather grew since these helpers were written (e.g. an unshared flag).
        for f in g.type.strip_typedefs().fields():
            if f.name in self.KNOWN or f.name is None or _code(f.type) == gdb.TYPE_CODE_BOOL:
                continue
            try:
                v = g[f.name]
                text = "%d" % scalar(v) if _code(v.type) != gdb.TYPE_CODE_BOOL else \
                    ("true" if bool(v) else "false")
            except (gdb.error, BsError):
                text = str(g[f.name])[:100]
            print("  %-14s %s" % (f.name, text))

"""Formatting of the helpers' output and parsing of gdb's text: pure, no gdb, so the host tests
(scripts/gdb/tests) pin every format that scripts/gdb-check.sh and docs/gdb.md rely on."""

import re


def size_name(n):
    """N bytes in the largest binary unit that divides it exactly: 4 KiB, 2 MiB, 512 GiB."""
    for unit, s in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << s and n % (1 << s) == 0:
            return "%d %s" % (n >> s, unit)
    return "%d B" % n


def level_list(bits):
    """The levels whose bit is set in BITS (a gather's cleared_levels): 0b1011 -> [0, 1, 3]."""
    return [lv for lv in range(8) if bits >> lv & 1]


def snake(name):
    """CamelCase -> snake_case, the summary's spelling of a Counter variant (TlbiOps ->
    tlbi_ops). scripts/gdb-check.sh checks the result against crates/base/src/stats.rs."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def is_max_counter(name):
    """Counter::aggregate() is a const fn (not in the debug info): a counter whose name has the
    word `max` is an Aggregate::Max counter (rcu_max_gp_ticks), every other one is summed."""
    return "max" in name.split("_")


def rcu_qs_text(qs, gp, eqs, owes):
    """bs-cpus' rcu-qs cell: QS (the gp_seq of the CPU's last reported quiescent state), `*` when
    the grace period in progress (GP_SEQ odd) still waits for it (OWES: GpState.owes_qs, or None
    when unreadable: then qs != gp_seq stands in), ` idle` for an even EQS counter (EQS -1:
    unknown)."""
    s = "%d" % qs
    owes = owes if owes is not None else (gp & 1 and qs != gp)
    if gp & 1 and owes:
        s += "*"
    if eqs >= 0 and eqs & 1 == 0:
        s += " idle"
    return s


def gather_range_text(start, end):
    """bs-gather's range cell: [start, end) with its size and pages, or empty (start >= end).
    A range of 256 TiB or more (a fullmm teardown) is named as the whole 48-bit space."""
    if start < end:
        n = end - start
        return "[%#x, %#x)  %s (%d pages)" % (start, end, size_name(n)
                                              if n < 1 << 48 else "256 TiB", n >> 12)
    return "empty (start %#x, end %#x)" % (start, end)


def stride_text(stride):
    """bs-gather's stride cell: "none" for 0 or the GatherRange's u64::MAX-like sentinel."""
    return "none" if stride >= 1 << 63 or stride == 0 else size_name(stride)


def cleared_text(bits):
    """bs-gather's cleared cell: the cleared_levels bits as a list and in binary."""
    return "levels %s  (cleared_levels %s)" % (level_list(bits), format(bits, "#06b"))


def coverage_range_text(name, start, end, stride):
    """A FlushCoverage::Range field of last_flush: NAME=Range[start,end)/stride."""
    return "%s=Range[%#x,%#x)/%s" % (name, start, end, size_name(stride))


def vec_element_type_name(type_name):
    """The T of `alloc::vec::Vec<T, A>` from the type's name, or None. Used when gdb cannot give
    the Vec's template argument (older gdb, or Rust types it does not model as templates)."""
    m = re.match(r"alloc::vec::Vec<(.*), [^,]*>$", type_name)
    return m.group(1) if m else None


def is_type_name(name, path):
    """Whether type NAME is PATH or an instance of the generic PATH<...>."""
    return name is not None and re.match(re.escape(path) + r"($|<)", name) is not None


def info_variables_lines(text):
    """[(file, line)] of the declarations in the output of `info variables -n -t REGEX`. Its Rust
    output has no variable names, only `File F:` headings and `LINE:` entries, so the caller
    resolves each (file, line) to a symbol."""
    out = []
    cur_file = None
    for line in text.splitlines():
        m = re.match(r"^File (.*):$", line)
        if m:
            cur_file = m.group(1)
            continue
        m = re.match(r"^(\d+):", line)
        if m and cur_file:
            out.append((cur_file, int(m.group(1))))
    return out


def event_text(kind, a, b):
    """One event's description from its kind number and detail words (crates/base/src/events.rs
    says what a and b hold for each kind)."""
    from .kernel import BARRIER_NAMES, EVENT_KINDS, TLBI_NAMES
    name = EVENT_KINDS.get(kind, "kind-%d" % kind)
    if name == "tlbi":
        op = TLBI_NAMES.get(b & 15, "op-%d" % (b & 15))
        return "tlbi %s%s operand %#x" % (op, "" if b & 16 else "is", a)
    if name == "barrier":
        return BARRIER_NAMES.get(a, "barrier-%d" % a)
    if name in ("clear",):
        return "clear va %#x frame %#x" % (a, b)
    if name == "unhook":
        return "unhook table %#x" % b + (" at va %#x" % a if a else "")
    if name == "ttbr0":
        return "ttbr0 root %#x asid %d" % (a, b)
    if name == "free":
        return "free %s %#x" % ("table" if b else "frame", a)
    if name == "pin":
        return "pin va %#x frame %#x" % (a, b)
    if name == "yield":
        return "yield point (site %d)" % a
    if name == "detection":
        return "detection (counter %d)" % a
    if name == "gp-end":
        return "grace period %d ends" % a
    if name == "drain":
        return "store to %#x becomes visible" % a
    if name == "blame":
        return "a detector blames frame %#x (level %d)" % (a, b)
    if name == "change-point":
        return "priority now %d" % a
    return "%s %#x %#x" % (name, a, b)

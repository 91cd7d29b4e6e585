"""Reading Rust values through gdb: one-line errors, command registration, symbol and type
lookup, and readers that see through wrappers by type (scalar, field, find_inner, vec_items,
variant, deref_all), plus per-vCPU register reads. This is the gdb-facing half of the package;
what can be decided from plain integers and strings lives in the pure modules (pte, sysregs,
text), which the host tests exercise without gdb."""

from contextlib import contextmanager

import gdb

from .text import vec_element_type_name

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
        name = vec_element_type_name(str(t))
        if name is None:
            raise BsError("cannot tell the element type of %s" % t)
        elem = lookup_type(name)
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


# --------------------------------------------------------------------------------------------
# Rust enums and Vecs.
# --------------------------------------------------------------------------------------------
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


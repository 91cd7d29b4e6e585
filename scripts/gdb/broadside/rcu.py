"""Finding and reading the kernel's RCU engine (for bs-rcu and bs-cpus' rcu-qs column)."""

import re

import gdb

from .kernel import RCU_CANDIDATES, TYPE_RCU, TYPE_RCU_GP_STATE
from .text import info_variables_lines
from .values import (BsError, find_inner, language, lookup, lookup_type, once_ready, scalar,
                     type_is, vec_items)

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
    for cur_file, lineno in info_variables_lines(text):
        try:
            sals = gdb.decode_line("%s:%d" % (cur_file, lineno))[1] or ()
        except gdb.error:
            continue
        for sal in sals:
            if sal.symtab is None:
                continue
            for block in (sal.symtab.static_block(), sal.symtab.global_block()):
                for sym in block:
                    if sym.is_variable and sym.line == lineno:
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
